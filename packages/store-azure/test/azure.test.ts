import { randomBytes } from "node:crypto";
import { inspect } from "node:util";
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  generateAccountSASQueryParameters,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { compareKeys, type ObjectStore } from "@cairn/core";
import { collect, expectCode, randomName } from "@cairn/testkit";
import { AZURITE_ACCOUNT, startAzurite } from "@cairn/testkit/servers";
import { describe, expect, it, onTestFinished } from "vitest";
import { type AzureStore, azureStoreOptions, createAzureStore, factory } from "../src/index.js";
import { utf8Order } from "../src/keys.js";
import { containerClient, newContainer, useAzurite } from "./helpers.js";
import { type FaultProxy, startProxy } from "./proxy.js";

const { endpoint, connectionString } = useAzurite();
const container = await newContainer(endpoint);
const KiB = 1024;
const MiB = 1024 * KiB;
const utf8 = (s: string) => Buffer.from(s, "utf8");

/** A store on a fresh prefix of this file's container, closed after the test. */
async function open(
  params = "",
  env?: NodeJS.ProcessEnv,
  extra: { pageSize?: number } = {},
): Promise<AzureStore> {
  const url = `azure://${container}/${randomName("t")}${params}`;
  const store = createAzureStore({ ...azureStoreOptions(url, env), ...extra });
  onTestFinished(() => store.close());
  return store;
}

/** A fault proxy in front of Azurite (cut when the test ends) and a store reaching Azurite through it. */
async function throughProxy(query: string): Promise<{ proxy: FaultProxy; store: AzureStore }> {
  const proxy = await startProxy(endpoint);
  onTestFinished(() => proxy.cut());
  const env = { AZURE_STORAGE_CONNECTION_STRING: connectionString.replace(endpoint, proxy.endpoint) };
  return { proxy, store: await open(query, env) };
}

async function read(store: ObjectStore, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of (await store.get(key)).body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Byte equality without a deep comparison, which takes seconds per megabyte. */
function expectSame(actual: Buffer, expected: Uint8Array) {
  expect(actual.length).toBe(expected.length);
  expect(actual.equals(expected), "same bytes").toBe(true);
}

async function* slowly(total: number, chunk: number, onChunk?: (sent: number) => void | Promise<void>) {
  for (let sent = 0; sent < total; sent += chunk) {
    await onChunk?.(sent);
    yield randomBytes(Math.min(chunk, total - sent));
  }
}

async function* failing(after: number, chunk = 64 * KiB): AsyncGenerator<Uint8Array> {
  for (let sent = 0; sent < after; sent += chunk) yield randomBytes(chunk);
  throw new Error("the body failed on purpose");
}

const raw = async (prefix: string, includeUncommitted = false) => {
  const names: string[] = [];
  for await (const b of containerClient(endpoint, container).listBlobsFlat({
    prefix,
    includeUncommitedBlobs: includeUncommitted,
  }))
    names.push(b.name);
  return names;
};

/** The message and every dump of an error (cause included) hold none of `secrets`. */
function expectNoSecret(error: Error, ...secrets: string[]) {
  const dumps = [
    error.message,
    String(error),
    inspect(error, { depth: 5 }),
    JSON.stringify(error),
    String(error.stack),
  ];
  for (const secret of secrets) for (const dump of dumps) expect(dump).not.toContain(secret);
}

describe("layout", () => {
  it("stores each key as the block blob <prefix>/<key>, with its content type", async () => {
    const store = await open();
    await store.put("a/b c/é.txt", utf8("hello"), { contentType: "text/plain" });
    await store.put("top", utf8("x"));
    expect(await raw(store.prefix)).toEqual([`${store.prefix}a/b c/é.txt`, `${store.prefix}top`]);
    const props = await store.containerClient
      .getBlockBlobClient(`${store.prefix}a/b c/é.txt`)
      .getProperties();
    expect(props.contentType).toBe("text/plain");
    expect(props.blobType).toBe("BlockBlob");
  });

  it("writes U+FFFD..U+FFFF, which XML listings cannot carry, as U+FFFD and a digit, and reads them back", async () => {
    const store = await open();
    for (const key of ["x\uffff", "x\ufffe", "x\ufffd", "x\ufffd0", "y"]) await store.put(key, utf8(key));
    expect(await raw(store.prefix)).toEqual(
      ["x\ufffd0", "x\ufffd00", "x\ufffd1", "x\ufffd2", "y"].map((n) => store.prefix + n),
    );
    expect((await collect(store.list(""))).map((i) => i.key)).toEqual([
      "x\ufffd",
      "x\ufffd0",
      "x\ufffe",
      "x\uffff",
      "y",
    ]);
    expect((await collect(store.list("x\ufffe"))).map((i) => i.key)).toEqual(["x\ufffe"]);
    expectSame(await read(store, "x\uffff"), utf8("x\uffff"));
    // A name another tool wrote that is no key of this store is not listed.
    await store.containerClient.getBlockBlobClient(`${store.prefix}z\ufffdq`).upload("z", 1);
    await store.containerClient.getBlockBlobClient(`${store.prefix}folder/`).upload("", 0);
    expect((await collect(store.list("z"))).map((i) => i.key)).toEqual([]);
    expect((await collect(store.list("folder"))).map((i) => i.key)).toEqual([]);
  });

  it("refuses keys Azure would store under another name with INVALID_ARGUMENT", async () => {
    const store = await open();
    for (const key of ["dot./x", "trailing.", "back\\slash", "tab\there", "cr\rlf"]) {
      const error = await expectCode(store.put(key, utf8("x")), "INVALID_ARGUMENT");
      expect(error.message).toContain(store.url);
    }
    expect(await raw(store.prefix)).toEqual([]);
  });
});

describe("staged uploads", () => {
  it("uploads bodies larger than a block as blocks committed at once, from streams and buffers", async () => {
    const store = await open("?blockSize=64KiB&concurrency=3");
    const bytes = randomBytes(MiB + 1);
    const info = await store.put("streamed", slowly(bytes.length, 10_000), { size: bytes.length });
    expect(info.size).toBe(MiB + 1);
    const fromBuffer = await store.put("buffered", bytes, { contentType: "application/x-test" });
    expect(fromBuffer.size).toBe(MiB + 1);
    expectSame(await read(store, "buffered"), bytes);
    const list = await store.containerClient
      .getBlockBlobClient(`${store.prefix}buffered`)
      .getBlockList("all");
    expect(list.committedBlocks?.length).toBe(17);
    expect(list.uncommittedBlocks ?? []).toEqual([]);
    expect((await store.head("buffered"))?.etag).toBe(fromBuffer.etag);
    expect((await collect(store.list(""))).map((i) => [i.key, i.size, i.etag])).toEqual([
      ["buffered", MiB + 1, fromBuffer.etag],
      ["streamed", MiB + 1, info.etag],
    ]);
  });

  it("holds at most uploadBuffer of blocks across its puts: an upload of a stream that does not fit waits, unread", async () => {
    // Each upload of a stream needs (1 + 1) blocks of 64 KiB: a 128 KiB budget runs one at a time.
    const store = await open("?blockSize=64KiB&concurrency=1&uploadBuffer=128KiB");
    const events: string[] = [];
    const puts = ["a", "b"].map((key) =>
      store
        .put(
          key,
          slowly(MiB, 10_000, (sent) => {
            if (sent === 0) events.push(`${key} read`);
          }),
          { size: MiB },
        )
        .then(() => events.push(`${key} done`)),
    );
    await store.put("small", utf8("beside them"));
    events.push("small done");
    await Promise.all(puts);
    expect(events.filter((e) => e !== "small done")).toEqual(["a read", "a done", "b read", "b done"]);
    // A body in memory needs no block buffers: it does not wait behind them.
    expect(events.indexOf("small done")).toBeLessThan(events.indexOf("b read"));
    expect((await store.head("b"))?.size).toBe(MiB);
  });

  it("commits nothing when the body fails after some blocks, keeping the previous version", async () => {
    const store = await open("?blockSize=64KiB&concurrency=2");
    await expect(store.put("k", failing(512 * KiB))).rejects.toThrow("the body failed on purpose");
    expect(await store.head("k")).toBeUndefined();
    expect(await raw(store.prefix)).toEqual([]);
    const old = await store.put("k", utf8("old"));
    await expect(store.put("k", failing(512 * KiB))).rejects.toThrow("the body failed on purpose");
    await expect(store.put("k", failing(512 * KiB), { createOnly: true })).rejects.toThrow();
    expect((await store.head("k"))?.etag).toBe(old.etag);
    expectSame(await read(store, "k"), utf8("old"));
  });

  it("refuses a body whose length differs from its size option, writing nothing", async () => {
    const store = await open("?blockSize=64KiB");
    for (const [body, size] of [
      [utf8("four"), 5],
      [slowly(300 * KiB, 50 * KiB), 300 * KiB - 1],
      [randomBytes(200 * KiB), 10],
    ] as const) {
      const error = await expectCode(store.put("sized", body, { size }), "INVALID_ARGUMENT");
      expect(error.message).toContain(`"sized" in ${store.url}`);
    }
    expect(await raw(store.prefix)).toEqual([]);
  });

  it("refuses a create-only staged upload of an existing key with ALREADY_EXISTS", async () => {
    const store = await open("?blockSize=64KiB");
    await store.put("once", utf8("first"));
    await expectCode(store.put("once", randomBytes(300 * KiB), { createOnly: true }), "ALREADY_EXISTS");
    await expectCode(store.put("once", slowly(300 * KiB, 64 * KiB), { createOnly: true }), "ALREADY_EXISTS");
    expectSame(await read(store, "once"), utf8("first"));
  });
});

describe("listing order", () => {
  const KEYS = [
    "a",
    "a\u{1f600}",
    "a\u{1f600}/x",
    "a\ue000",
    "a\uffee/b",
    "a\u{10000}z",
    "a\u{1f600}\ue000",
    "a\u{1f600}\u{1f601}",
    "\u{1f600}",
    "\ue000",
    "\uffff",
    "b",
    "b\u{1d11e}/\u{1f600}/c",
    "b\u{1d11e}/\ufff0/c",
    "b\u{1d11e}/z",
  ];

  it("lists in UTF-8 byte order, across pages, although the service sorts by UTF-16", async () => {
    const store = await open("", undefined, { pageSize: 2 });
    for (const key of KEYS) await store.put(key, utf8(key));
    const sorted = [...KEYS].sort(compareKeys);
    expect(sorted).not.toEqual([...KEYS].sort());
    expect((await collect(store.list(""))).map((i) => i.key)).toEqual(sorted);
    for (const prefix of ["a", "a\u{1f600}", "b\u{1d11e}/", "\ud83d"]) {
      for (const after of [undefined, "a", "a\ue000", "a\u{1f600}", "b\u{1d11e}/\ufff0/c", "\uffff"]) {
        const expected = sorted.filter(
          (k) => k.startsWith(prefix) && (after === undefined || compareKeys(k, after) > 0),
        );
        const got = (await collect(store.list(prefix, after === undefined ? {} : { after }))).map(
          (i) => i.key,
        );
        expect(got, `prefix ${JSON.stringify(prefix)} after ${JSON.stringify(after)}`).toEqual(expected);
      }
    }
  });

  it("reorders any UTF-16 sorted stream into byte order (random keys)", async () => {
    const alphabet = ["a", "b", "/", "\ue000", "\uffff", "\u{10000}", "\u{1f600}", "\u00e9"];
    for (let round = 0; round < 200; round++) {
      const keys = new Set<string>();
      const n = 1 + Math.floor(Math.random() * 40);
      while (keys.size < n) {
        let k = "";
        const len = 1 + Math.floor(Math.random() * 5);
        for (let i = 0; i < len; i++) k += alphabet[Math.floor(Math.random() * alphabet.length)];
        keys.add(k);
      }
      const utf16 = [...keys].sort();
      async function* source() {
        yield* utf16;
      }
      expect(await collect(utf8Order(source(), (k) => k, 0))).toEqual([...keys].sort(compareKeys));
    }
  });
});

describe("faults", () => {
  it("fails with NOT_FOUND naming the container when it does not exist", async () => {
    const store = await factory.open("azure://no-such-container/p");
    const calls: Array<[string, () => Promise<unknown>]> = [
      ["put", () => store.put("k", utf8("x"))],
      ["get", () => store.get("k")],
      ["head", () => store.head("k")],
      ["list", () => collect(store.list(""))],
      ["delete", () => store.delete("k")],
      ["copy", () => store.copy("k", "k2")],
    ];
    for (const [name, call] of calls) {
      const error = await expectCode(call(), "NOT_FOUND");
      expect(error.message, name).toContain('container "no-such-container"');
      expect(error.message, name).toContain("azure://no-such-container/p");
    }
  });

  it("fails with PERMISSION_DENIED on a wrong account key, never showing a key", async () => {
    const wrongKey = Buffer.from("not the right key, but base64 of the right length!!").toString("base64");
    const env = {
      AZURE_STORAGE_CONNECTION_STRING: connectionString.replace(AZURITE_ACCOUNT.key, wrongKey),
    };
    const store = await open("", env);
    for (const call of [
      () => store.put("k", utf8("x")),
      () => store.head("k"),
      () => collect(store.list("")),
    ]) {
      const error = await expectCode(call(), "PERMISSION_DENIED");
      expect(error.message).toContain(store.url);
      expectNoSecret(error, wrongKey, AZURITE_ACCOUNT.key);
    }
  });

  it("works with a SAS from the connection string, and refuses a forged one without showing it", async () => {
    const sas = generateAccountSASQueryParameters(
      {
        expiresOn: new Date(Date.now() + 3600_000),
        permissions: AccountSASPermissions.parse("rwdlac"),
        resourceTypes: AccountSASResourceTypes.parse("sco").toString(),
        services: AccountSASServices.parse("b").toString(),
      },
      new StorageSharedKeyCredential(AZURITE_ACCOUNT.name, AZURITE_ACCOUNT.key),
    ).toString();
    const sig = new URLSearchParams(sas).get("sig")!;
    const store = await open("", {
      AZURE_STORAGE_CONNECTION_STRING: `BlobEndpoint=${endpoint};SharedAccessSignature=${sas}`,
    });
    await store.put("k", utf8("via sas"));
    expect((await store.copy("k", "copy")).size).toBe(7);
    expectSame(await read(store, "copy"), utf8("via sas"));
    expect(inspect(store, { depth: 4 })).not.toContain(sig);

    const forgedSig = Buffer.from("forged signature, 32 bytes long!").toString("base64");
    const forged = await open("", {
      AZURE_STORAGE_CONNECTION_STRING: `BlobEndpoint=${endpoint};SharedAccessSignature=${sas.replace(encodeURIComponent(sig), encodeURIComponent(forgedSig))}`,
    });
    const error = await expectCode(forged.put("k", utf8("x")), "PERMISSION_DENIED");
    expectNoSecret(error, forgedSig, encodeURIComponent(forgedSig), sig, encodeURIComponent(sig));
    expect(error.message).toContain(forged.url);
  });

  it("fails with INVALID_ARGUMENT for a name Azure does not take: over 1,024 characters, a bad container", async () => {
    const store = await open();
    const key = `long/${"n".repeat(1100)}`;
    for (const [name, call] of [
      ["put", () => store.put(key, utf8("x"))],
      ["get", () => store.get(key)],
      ["copy", () => store.copy("src", key)],
    ] as const) {
      const error = await expectCode(call(), "INVALID_ARGUMENT").catch((e) => {
        throw new Error(`${name}: ${e.message}`);
      });
      expect(error.message).toContain(store.url);
      expect(error.message).toContain("1,024");
    }
    // The service itself refuses a container name URL parsing would not let through.
    const bad = createAzureStore({ ...azureStoreOptions(`azure://${container}/p`), container: "a_b" });
    const error = await expectCode(bad.put("k", utf8("x")), "INVALID_ARGUMENT");
    expect(error.message).toContain("rejects the name");
  });

  it("reads blobs in one request without the SDK, and leaves other answers to it", async () => {
    const { proxy, store } = await throughProxy("");
    // The SDK marks each of its requests with a client request id; the store's direct reads carry none.
    const bySdk = () => proxy.seen.map((r) => r.headers["x-ms-client-request-id"] !== undefined);
    await store.put("a b/k(1)!", utf8("0123456789"));
    proxy.seen.length = 0;
    expectSame(await read(store, "a b/k(1)!"), utf8("0123456789"));
    const part = await store.get("a b/k(1)!", { range: { start: 2, end: 4 } });
    expectSame(Buffer.concat(await collect(part.body)), utf8("234"));
    expect(part.size).toBe(10);
    expect(bySdk()).toEqual([false, false]);
    // With an account key, the store signs a SAS of the container itself, for reading and listing only.
    expect(new URL(proxy.seen[0]!.url, "http://x").searchParams.get("sp")).toBe("rl");

    // Listings too.
    proxy.seen.length = 0;
    expect((await collect(store.list(""))).map((i) => [i.key, i.size])).toEqual([["a b/k(1)!", 10]]);
    expect(bySdk()).toEqual([false]);

    // A missing blob: the SDK asks again and reports it.
    proxy.seen.length = 0;
    await expectCode(store.get("missing"), "NOT_FOUND");
    expect(bySdk()).toEqual([false, true]);

    // A refusal: the SDK asks again, and every later read goes through it.
    proxy.seen.length = 0;
    proxy.failNext(1, 403, "AuthorizationFailure");
    expectSame(await read(store, "a b/k(1)!"), utf8("0123456789"));
    expectSame(await read(store, "a b/k(1)!"), utf8("0123456789"));
    expect(bySdk()).toEqual([false, true, true]);
  });

  it("resumes a read cut short where it stopped, pinned to the version it started on", async () => {
    const { proxy, store } = await throughProxy("");
    // Up to 4 MiB a blob is read whole before `get` returns; larger ones are streamed.
    for (const size of [3 * MiB, 6 * MiB]) {
      const bytes = randomBytes(size);
      const { etag } = await store.put("big", bytes);
      proxy.seen.length = 0;
      proxy.cutNextBody(MiB + 5);
      expectSame(await read(store, "big"), bytes);
      expect(proxy.seen).toHaveLength(2);
      const resumed = proxy.seen[1]!.headers;
      // From the byte after the last one that arrived (the proxy cuts after MiB + 5 sent; some may be lost).
      const from = Number(/^bytes=(\d+)-(\d+)$/.exec(String(resumed["x-ms-range"]))?.[1]);
      expect(from).toBeGreaterThan(0);
      expect(from).toBeLessThanOrEqual(MiB + 5);
      expect(resumed["x-ms-range"]).toBe(`bytes=${from}-${size - 1}`);
      expect(resumed["if-match"]).toBe(`"${etag}"`);
    }

    // A streamed read cut short of a blob replaced meanwhile fails rather than mixing two versions. The cut comes
    // after more bytes than the reader and the sockets between can hold (a few MiB), so that the reader, which
    // does not read on until the blob is replaced, meets it only then.
    await store.put("big", randomBytes(24 * MiB));
    proxy.cutNextBody(16 * MiB);
    const reader = await store.get("big");
    await store.put("big", randomBytes(6 * MiB));
    await expect(collect(reader.body)).rejects.toThrow();
  });

  it("checks whole reads against the MD5 the service keeps, unless told the caller checks them", async () => {
    const { proxy, store } = await throughProxy("");
    // Up to 4 MiB read whole by get, larger streamed: both fail at their end.
    for (const size of [64 * KiB, 6 * MiB]) {
      const bytes = randomBytes(size);
      await store.put("k", bytes, { size });
      proxy.corruptNextBody();
      await expectCode(read(store, "k"), "CORRUPT");

      proxy.corruptNextBody();
      const unchecked = Buffer.concat(await collect((await store.get("k", { verify: false })).body));
      expect(unchecked.subarray(1).equals(bytes.subarray(1))).toBe(true);
      expect(unchecked[0]).toBe(bytes[0]! ^ 0xff);
      // A range is not the whole blob, and is not checked.
      proxy.corruptNextBody();
      const part = Buffer.concat(await collect((await store.get("k", { range: { start: 0, end: 9 } })).body));
      expect(part[0]).toBe(bytes[0]! ^ 0xff);
    }
  });

  it("retries 503 (throttling) with backoff, and gives up with UNAVAILABLE after its retries", async () => {
    const { proxy, store } = await throughProxy("?retries=2");
    proxy.failNext(2, 503, "ServerBusy");
    const before = proxy.requests;
    await store.put("k", utf8("after two 503s"));
    expect(proxy.requests - before).toBe(3);
    expectSame(await read(store, "k"), utf8("after two 503s"));

    proxy.failNext(3, 500, "InternalError");
    const error = await expectCode(store.head("k"), "UNAVAILABLE");
    expect(error.message).toContain(`"k" in ${store.url}`);
    expect(error.message).toContain("500");
  });

  it("gives up on a hung server after its timeout in seconds", async () => {
    const { proxy, store } = await throughProxy("?retries=0&timeout=1");
    proxy.failNext(1, 0, "");
    const started = Date.now();
    const error = await expectCode(store.head("k"), "UNAVAILABLE");
    expect(Date.now() - started).toBeLessThan(5000);
    expect(error.message).toContain(store.url);
  });

  it("leaves nothing when the connection is cut in the middle of a staged upload, and a retry succeeds", async () => {
    const { proxy, store } = await throughProxy("?retries=1&timeout=5&blockSize=1MiB&concurrency=2");
    const direct = createAzureStore({ ...azureStoreOptions(store.url), prefix: store.prefix });
    const error = await expectCode(
      store.put(
        "big",
        slowly(24 * MiB, 256 * KiB, async (sent) => {
          if (sent === 6 * MiB) await proxy.cut();
        }),
      ),
      "UNAVAILABLE",
    );
    expect(error.message).toContain(`"big" in ${store.url}`);
    expect(await direct.head("big")).toBeUndefined();
    expect(await collect(direct.list(""))).toEqual([]);

    await proxy.restore();
    const bytes = randomBytes(3 * MiB);
    await store.put("big", bytes);
    expectSame(await read(direct, "big"), bytes);
  });

  it("fails with UNAVAILABLE when the server stops in the middle of an upload; the write then succeeds elsewhere", async () => {
    const second = await startAzurite();
    onTestFinished(() => second.stop());
    const name = randomName("gone");
    await containerClient(second.endpoint, name).create();
    const store = createAzureStore(
      azureStoreOptions(`azure://${name}/p?retries=1&timeout=5&blockSize=1MiB&concurrency=2`, {
        AZURE_STORAGE_CONNECTION_STRING: second.connectionString,
      }),
    );
    const error = await expectCode(
      store.put(
        "big",
        slowly(24 * MiB, 256 * KiB, async (sent) => {
          if (sent === 6 * MiB) await second.stop();
        }),
      ),
      "UNAVAILABLE",
    );
    expect(error.message).toContain(`"big" in azure://${name}/p`);
    expect(error.message).toContain(second.endpoint);
    expectNoSecret(error, AZURITE_ACCOUNT.key);

    const shared = await open();
    const bytes = randomBytes(3 * MiB);
    await shared.put("big", bytes);
    expectSame(await read(shared, "big"), bytes);
  });

  it("rejects every call after close with UNAVAILABLE", async () => {
    const store = await open();
    await store.put("k", utf8("v"));
    await store.close();
    await store.close();
    await expectCode(store.head("k"), "UNAVAILABLE");
    await expectCode(store.put("k", utf8("v")), "UNAVAILABLE");
  });
});
