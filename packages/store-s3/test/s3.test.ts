import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { collect, expectCode, randomName } from "@cairn/testkit";
import { freePort } from "@cairn/testkit/servers";
import { describe, expect, inject, it, onTestFinished } from "vitest";
import { createS3Store, factory, formatS3Url, parseS3Url, type S3Store } from "../src/index.js";
import { newBucket, type RecordingProxy, restartableS3rver, startProxy } from "./helpers.js";

const endpoint = inject("s3Endpoint");
const bucket = await newBucket(endpoint);
const MiB = 1024 * 1024;
const SECRET = "wJalrXUtnFEMI-never-shown-K7MDENG";
const utf8 = (s: string) => new TextEncoder().encode(s);

async function openStore(params = "", base = endpoint, inBucket = bucket): Promise<S3Store> {
  return factory.open(`s3://${inBucket}/${randomName("s3")}?endpoint=${base}${params}`);
}

/** A recording proxy in front of s3rver (closed when the test ends) and a store reaching s3rver through it. */
async function throughProxy(params: string): Promise<{ proxy: RecordingProxy; store: S3Store }> {
  const proxy = await startProxy(endpoint);
  onTestFinished(() => proxy.close());
  return { proxy, store: await openStore(params, proxy.endpoint) };
}

async function readAll(store: S3Store, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of (await store.get(key)).body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** `total` random bytes in 1 MiB chunks; `onChunk` runs before chunk `i` is yielded. */
async function* generate(
  total: number,
  hash: ReturnType<typeof createHash>,
  onChunk?: (i: number) => Promise<void>,
): AsyncGenerator<Uint8Array> {
  for (let i = 0; i * MiB < total; i++) {
    await onChunk?.(i);
    const chunk = randomBytes(Math.min(MiB, total - i * MiB));
    hash.update(chunk);
    yield chunk;
  }
}

/** Everything an error shows: message, stack, and its causes' messages and fields. */
function everything(error: unknown): string {
  const parts: string[] = [];
  for (
    let e = error as (Error & { cause?: unknown }) | undefined, i = 0;
    e && i < 6;
    e = e.cause as typeof e, i++
  ) {
    parts.push(String(e.message), String(e.stack));
    try {
      parts.push(JSON.stringify(e));
    } catch {
      // Circular structures: the message and stack are what a user would see anyway.
    }
  }
  return parts.join("\n");
}

describe("s3 URL", () => {
  it("reads bucket, prefix and parameters, and writes them back", () => {
    expect(parseS3Url("s3://my-bucket")).toEqual({ bucket: "my-bucket", prefix: "" });
    expect(parseS3Url("s3://my-bucket/")).toEqual({ bucket: "my-bucket", prefix: "" });
    expect(parseS3Url("s3://my.bucket/a/b%20c/?region=eu-west-1")).toEqual({
      bucket: "my.bucket",
      prefix: "a/b c",
      region: "eu-west-1",
    });
    const url =
      "s3://data/photos?region=us-east-1&endpoint=http://127.0.0.1:9000&forcePathStyle=true&createOnly=check&maxAttempts=5&connectTimeout=2.5&requestTimeout=30&partSize=16&partConcurrency=8&singlePutLimit=64&uploadBuffer=256";
    const options = parseS3Url(url);
    expect(options).toEqual({
      bucket: "data",
      prefix: "photos",
      region: "us-east-1",
      endpoint: "http://127.0.0.1:9000",
      forcePathStyle: true,
      createOnly: "check",
      maxAttempts: 5,
      connectTimeout: 2.5,
      requestTimeout: 30,
      partSize: 16 * MiB,
      partConcurrency: 8,
      singlePutLimit: 64 * MiB,
      uploadBuffer: 256 * MiB,
    });
    expect(formatS3Url(options)).toBe(url);
    expect(parseS3Url(formatS3Url({ bucket: "b12", prefix: "ünï/a b" }))).toEqual({
      bucket: "b12",
      prefix: "ünï/a b",
    });
    expect(factory.schemes).toEqual(["s3"]);
  });

  it("refuses credentials in the URL without repeating them", async () => {
    for (const url of [
      `s3://AKIAEXAMPLE:${SECRET}@bucket/prefix`,
      `s3://${SECRET}@bucket/prefix`,
      `s3://bucket/prefix?secretAccessKey=${SECRET}`,
      `s3://bucket/prefix?accessKeyId=AKIA&secret_access_key=${SECRET}`,
      `s3://bucket/prefix?sessionToken=${SECRET}`,
      `s3://bucket/prefix?endpoint=http://user:${SECRET}@127.0.0.1:9000`,
    ]) {
      const error = await expectCode(factory.open(url), "INVALID_ARGUMENT");
      expect(error.message, url).toMatch(/credential/i);
      expect(error.message, url).toContain("AWS_ACCESS_KEY_ID");
      expect(everything(error), url).not.toContain(SECRET);
    }
  });

  it("refuses unknown and malformed parameters, naming them", async () => {
    const cases: Array<[string, string]> = [
      ["s3://bucket/p?regoin=us-east-1", '"regoin"'],
      ["s3://bucket/p?forcePathStyle=yes", "forcePathStyle=yes"],
      ["s3://bucket/p?createOnly=always", "createOnly=always"],
      ["s3://bucket/p?maxAttempts=0", "maxAttempts=0"],
      ["s3://bucket/p?maxAttempts=2.5", "maxAttempts=2.5"],
      ["s3://bucket/p?connectTimeout=-1", "connectTimeout=-1"],
      ["s3://bucket/p?partSize=4", "partSize=4"],
      ["s3://bucket/p?partConcurrency=0", "partConcurrency=0"],
      ["s3://bucket/p?endpoint=ftp://host", "ftp://host"],
      ["s3://bucket/p?endpoint=not a url", "not a url"],
      ["s3://bucket/p?region=us-east-1&region=eu-west-1", '"region"'],
      ["s3://Bad_Bucket/p", '"Bad_Bucket"'],
      ["s3://ab/p", '"ab"'],
      ["s3:///p", "bucket name"],
      ["s3://bucket/a//b", "segment"],
      ["s3://bucket/a/../b", "segment"],
      ["s3://bucket/p#frag", "fragment"],
      ["file:///srv/data", "not an s3 URL"],
    ];
    for (const [url, shown] of cases) {
      const error = await expectCode(factory.open(url), "INVALID_ARGUMENT");
      expect(error.message, url).toContain(shown);
    }
  });
});

describe("s3 store", () => {
  it("reports a missing bucket with NOT_FOUND, naming it", async () => {
    const store = await openStore("", endpoint, randomName("missing").toLowerCase());
    const calls: Array<[string, () => Promise<unknown>]> = [
      ["put", () => store.put("k", utf8("v"))],
      [
        "stream put",
        () =>
          store.put(
            "k",
            (async function* () {
              yield utf8("v");
            })(),
          ),
      ],
      ["create", () => store.put("k", utf8("v"), { createOnly: true })],
      ["get", () => store.get("k")],
      ["head", () => store.head("k")],
      ["list", () => collect(store.list(""))],
      ["copy", () => store.copy("a", "b")],
    ];
    for (const [name, call] of calls) {
      const error = await expectCode(call(), "NOT_FOUND");
      expect(error.message, name).toContain(`bucket "${store.bucket}"`);
      expect(error.message, name).toContain(store.url);
    }
  });

  it("reports refused credentials with PERMISSION_DENIED and never shows the secret", async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    // The credential chain reads the environment: a wrong access key there, as a user would set it.
    process.env.AWS_ACCESS_KEY_ID = "WRONGKEY";
    process.env.AWS_SECRET_ACCESS_KEY = SECRET;
    try {
      const fromEnv = await openStore();
      const direct = createS3Store({
        bucket,
        prefix: randomName("s3"),
        endpoint,
        credentials: { accessKeyId: "OTHERKEY", secretAccessKey: SECRET },
      });
      for (const store of [fromEnv, direct]) {
        expect(store.url).not.toContain(SECRET);
        for (const call of [
          () => store.put("k", utf8("v")),
          () => store.get("k"),
          () => store.head("k"),
          () => collect(store.list("")),
          () => store.delete("k"),
        ]) {
          const error = await expectCode(call(), "PERMISSION_DENIED");
          expect(error.message).toContain(store.url);
          expect(everything(error)).not.toContain(SECRET);
        }
        await store.close();
      }
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved.id;
      process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    }
  });

  it("rejects a key longer than S3 allows with INVALID_ARGUMENT, writing nothing", async () => {
    const store = await openStore();
    const key = `long/${"k".repeat(1100)}`;
    for (const call of [() => store.put(key, utf8("v")), () => store.head(key), () => store.get(key)]) {
      const error = await expectCode(call(), "INVALID_ARGUMENT");
      expect(error.message).toContain("too long");
      expect(error.message).toContain('"long/kkkk');
      expect(error.message).toContain(store.url);
    }
    // The prefix counts too: S3's limit is on the whole key.
    // (In segments: s3rver keeps keys as file paths, and a 1,000-byte file name would bring it down.)
    const nearly = Array.from({ length: 9 }, () => "n".repeat(99))
      .join("/")
      .concat("/", "n".repeat(1024 - store.root.length - 900));
    await store.put(nearly, utf8("fits"));
    await expectCode(store.put(`${nearly}x`, utf8("does not")), "INVALID_ARGUMENT");
    expect((await collect(store.list(""))).map((i) => i.key)).toEqual([nearly]);
  });

  it("never overwrites with createOnly on a service that ignores If-None-Match (s3rver)", async () => {
    const store = await openStore();
    // s3rver accepts the second of two If-None-Match writes, so the probe must settle on HEAD checks.
    expect(await store.createOnlyMode()).toBe("check");
    const first = await store.put("once", utf8("first"), { createOnly: true });
    await expectCode(store.put("once", utf8("second"), { createOnly: true }), "ALREADY_EXISTS");
    await expectCode(
      store.put(
        "once",
        (async function* () {
          yield utf8("third");
        })(),
        { createOnly: true },
      ),
      "ALREADY_EXISTS",
    );
    await store.put("other", utf8("other"));
    await expectCode(store.copy("other", "once", { createOnly: true }), "ALREADY_EXISTS");
    expect((await readAll(store, "once")).toString()).toBe("first");
    expect((await store.head("once"))?.etag).toBe(first.etag);
    // The probe left nothing behind, and its folder is reserved.
    expect((await collect(store.list(""))).map((i) => i.key)).toEqual(["once", "other"]);
    await expectCode(store.put(".cairn-probe/x", utf8("x")), "INVALID_ARGUMENT");

    const checked = await openStore("&createOnly=check");
    expect(await checked.createOnlyMode()).toBe("check");
    await checked.put("k", utf8("kept"), { createOnly: true });
    await expectCode(checked.put("k", utf8("lost"), { createOnly: true }), "ALREADY_EXISTS");
    expect((await readAll(checked, "k")).toString()).toBe("kept");
  });

  it("sends If-None-Match: * in conditional mode, and one request per plain put", async () => {
    const { proxy, store } = await throughProxy("&createOnly=conditional");
    expect(await store.createOnlyMode()).toBe("conditional");
    await store.put("plain", utf8("plain"));
    expect(proxy.requests.map((r) => r.method)).toEqual(["PUT"]);
    expect(proxy.requests[0]!.headers["if-none-match"]).toBeUndefined();
    proxy.requests.length = 0;
    await store.put("created", utf8("created"), { createOnly: true });
    expect(proxy.requests.map((r) => [r.method, r.headers["if-none-match"]])).toEqual([["PUT", "*"]]);
    proxy.requests.length = 0;
    await store.copy("plain", "copied", { createOnly: true });
    const copy = proxy.requests.find((r) => r.headers["x-amz-copy-source"] !== undefined);
    expect(copy?.headers["if-none-match"]).toBe("*");
  });

  it("reads objects in one request without the SDK, and leaves other answers to it", async () => {
    const { proxy, store } = await throughProxy("");
    // The SDK marks each of its requests with an invocation id; the store's direct reads carry none.
    const bySdk = () => proxy.requests.map((r) => r.headers["amz-sdk-invocation-id"] !== undefined);
    await store.put("a b/k(1)!", utf8("0123456789"));
    proxy.requests.length = 0;
    expect((await readAll(store, "a b/k(1)!")).toString()).toBe("0123456789");
    const part = await store.get("a b/k(1)!", { range: { start: 2, end: 4 } });
    expect(Buffer.concat(await collect(part.body)).toString()).toBe("234");
    expect(part.size).toBe(10);
    expect(bySdk()).toEqual([false, false]);

    // A missing key: the SDK asks again and reports it.
    proxy.requests.length = 0;
    await expectCode(store.get("missing"), "NOT_FOUND");
    expect(bySdk()).toEqual([false, true]);

    // A refusal: the SDK asks again, and every later read goes through it.
    proxy.requests.length = 0;
    proxy.refuseNext = 1;
    expect((await readAll(store, "a b/k(1)!")).toString()).toBe("0123456789");
    expect((await readAll(store, "a b/k(1)!")).toString()).toBe("0123456789");
    expect(bySdk()).toEqual([false, true, true]);
  });

  it("checks whole reads against the MD5 of their ETag, unless told the caller checks them", async () => {
    const { proxy, store } = await throughProxy("");
    const small = randomBytes(64 * 1024);
    const big = randomBytes(5 * MiB);
    await store.put("small", small);
    await store.put("big", big);

    // Up to 4 MiB the bytes are checked before get returns, and a mismatch is read again.
    proxy.requests.length = 0;
    proxy.corruptNext = 1;
    expect((await readAll(store, "small")).equals(small)).toBe(true);
    expect(proxy.requests.filter((r) => r.method === "GET")).toHaveLength(2);
    // Larger ones fail at their end.
    proxy.corruptNext = 1;
    await expectCode(readAll(store, "big"), "CORRUPT");

    // verify: false hands over what came, once.
    proxy.requests.length = 0;
    proxy.corruptNext = 1;
    const unchecked = Buffer.concat(await collect((await store.get("small", { verify: false })).body));
    expect(unchecked.equals(small)).toBe(false);
    expect(unchecked.subarray(1).equals(small.subarray(1))).toBe(true);
    expect(proxy.requests).toHaveLength(1);
  });

  it("reads through the SDK alone with one attempt per request", async () => {
    const { proxy, store } = await throughProxy("&maxAttempts=1");
    await store.put("k", utf8("once"));
    proxy.requests.length = 0;
    proxy.failNext = 1;
    await expectCode(store.get("k"), "UNAVAILABLE");
    expect(proxy.requests).toHaveLength(1);
    expect(proxy.requests[0]!.headers["amz-sdk-invocation-id"]).toBeDefined();
  });

  it("retries throttling and 5xx answers, and reports them as UNAVAILABLE when attempts run out", async () => {
    const { proxy, store } = await throughProxy("&maxAttempts=3");
    proxy.failNext = 2;
    const info = await store.put("k", utf8("after two refusals"));
    expect(info.size).toBe(18);
    expect(proxy.requests.filter((r) => r.method === "PUT")).toHaveLength(3);
    expect((await readAll(store, "k")).toString()).toBe("after two refusals");

    proxy.failNext = 100;
    const error = await expectCode(store.get("k"), "UNAVAILABLE");
    expect(error.message).toContain('"k"');
    expect(error.message).toContain(store.url);
    expect(error.message).toContain("SlowDown");
    expect(100 - proxy.failNext).toBe(3);
  });

  it("aborts a multipart upload whose body fails, leaving no object", async () => {
    const { proxy, store } = await throughProxy("&partSize=5");
    const hash = createHash("sha256");
    const failing = generate(30 * MiB, hash, async (i) => {
      if (i === 12) throw new Error("the body failed on purpose");
    });
    await expect(store.put("big", failing)).rejects.toThrow("the body failed on purpose");
    const abort = proxy.requests.find((r) => r.method === "DELETE" && r.url.includes("uploadId="));
    expect(abort, "an AbortMultipartUpload request").toBeDefined();
    expect(proxy.requests.some((r) => r.method === "POST" && r.url.includes("uploadId="))).toBe(false);
    expect(await store.head("big")).toBeUndefined();
    expect(await collect(store.list(""))).toEqual([]);
  });

  it("uploads in parts above the part size, and the object appears whole", async () => {
    const store = await openStore("&partSize=5&partConcurrency=2");
    const bytes = randomBytes(12 * MiB + 17);
    const info = await store.put("parts", bytes);
    expect(info.size).toBe(bytes.length);
    expect((await store.head("parts"))?.size).toBe(bytes.length);
    expect(Buffer.compare(await readAll(store, "parts"), bytes)).toBe(0);
    await expectCode(store.put("sized", randomBytes(100), { size: 99 }), "INVALID_ARGUMENT");
    const hash = createHash("sha256");
    await expectCode(store.put("sized", generate(6 * MiB, hash), { size: 6 * MiB - 1 }), "INVALID_ARGUMENT");
    expect(await store.head("sized")).toBeUndefined();
  });

  it("sends a stream in parts at most partConcurrency at a time, and one that fits in a part as one PUT", async () => {
    const { proxy, store } = await throughProxy("&partSize=5&partConcurrency=2");
    const parts = () => proxy.requests.filter((r) => r.method === "PUT" && r.url.includes("partNumber="));
    const completes = () => proxy.requests.filter((r) => r.method === "POST" && r.url.includes("uploadId="));
    for (const [key, total, expected] of [
      ["five", 23 * MiB + 5, 5],
      ["two", 10 * MiB, 2],
      ["one", 5 * MiB, 0],
      ["small", 17, 0],
      ["empty", 0, 0],
    ] as const) {
      const before = { parts: parts().length, completes: completes().length };
      const hash = createHash("sha256");
      const info = await store.put(key, generate(total, hash));
      expect(info.size).toBe(total);
      expect(parts().length - before.parts, key).toBe(expected);
      expect(completes().length - before.completes, key).toBe(expected > 0 ? 1 : 0);
      expect(
        createHash("sha256")
          .update(await readAll(store, key))
          .digest("hex"),
        key,
      ).toBe(hash.digest("hex"));
    }
    expect(proxy.mostPartsAtOnce).toBeGreaterThanOrEqual(1);
    expect(proxy.mostPartsAtOnce).toBeLessThanOrEqual(2);
  });

  it("holds at most uploadBuffer of parts across its puts: a multipart upload that does not fit waits, unread", async () => {
    // Each upload needs (1 + 1) × 5 MiB of parts: a 10 MiB budget runs one at a time, small puts beside it.
    const store = await openStore("&partSize=5&partConcurrency=1&uploadBuffer=10");
    const events: string[] = [];
    const hashes = [createHash("sha256"), createHash("sha256")];
    const puts = ["a", "b"].map((key, n) =>
      store
        .put(
          key,
          generate(12 * MiB, hashes[n]!, async (i) => {
            if (i === 0) events.push(`${key} read`);
          }),
          { size: 12 * MiB },
        )
        .then(() => events.push(`${key} done`)),
    );
    await store.put("small", utf8("beside them"), { size: 11 });
    events.push("small done");
    await Promise.all(puts);
    expect(events.filter((e) => e !== "small done")).toEqual(["a read", "a done", "b read", "b done"]);
    // A body in memory needs no parts: it does not wait behind them.
    expect(events.indexOf("small done")).toBeLessThan(events.indexOf("b read"));
    for (const [n, key] of ["a", "b"].entries()) {
      const read = createHash("sha256").update(await readAll(store, key));
      expect(read.digest("hex")).toBe(hashes[n]!.digest("hex"));
    }
    await expectCode(openStore("&uploadBuffer=0"), "INVALID_ARGUMENT");
  });

  it("sends a body it can reopen in one PUT, and sends it again from a reopened stream when the PUT fails", async () => {
    const { proxy, store } = await throughProxy("&partSize=5&singlePutLimit=16&maxAttempts=3");
    const bytes = randomBytes(12 * MiB);
    const size = bytes.length;
    let reopens = 0;
    const open = () =>
      Readable.from(Array.from({ length: 12 }, (_, i) => bytes.subarray(i * MiB, (i + 1) * MiB)));
    const reopen = () => {
      reopens++;
      return open();
    };
    const puts = () => proxy.requests.filter((r) => r.method === "PUT").length;

    expect((await store.put("one", open(), { size, reopen })).size).toBe(size);
    expect(proxy.requests.map((r) => r.method)).toEqual(["PUT"]);
    expect(reopens).toBe(0);

    // Cut midway, then throttled: the third attempt, from the second reopened stream, goes through.
    proxy.cutNextPut = 1;
    proxy.failNext = 1;
    await store.put("one", open(), { size, reopen });
    expect(reopens).toBe(2);
    expect(puts()).toBe(4);
    expect(Buffer.compare(await readAll(store, "one"), bytes)).toBe(0);

    // Attempts run out: UNAVAILABLE, naming the key.
    proxy.failNext = 3;
    const error = await expectCode(store.put("one", open(), { size, reopen }), "UNAVAILABLE");
    expect(error.message).toContain('"one"');
    expect(puts()).toBe(7);
    expect(reopens).toBe(4);

    // Too large for one PUT, or not reopenable: in parts.
    proxy.requests.length = 0;
    await store.put("parts", open(), { size });
    await store.put("parts", Readable.from([bytes, bytes]), { size: 2 * size, reopen: () => open() });
    expect(proxy.requests.filter((r) => r.method === "POST" && r.url.includes("?uploads"))).toHaveLength(2);
    expect((await store.head("parts"))?.size).toBe(2 * size);
  });

  it("fails a one-PUT upload when its body fails or lies about its size, without sending it again", async () => {
    const { proxy, store } = await throughProxy("&partSize=5&singlePutLimit=16&maxAttempts=3");
    let reopens = 0;
    const reopen = () => {
      reopens++;
      return generate(12 * MiB, createHash("sha256"));
    };
    const failing = generate(12 * MiB, createHash("sha256"), async (i) => {
      if (i === 6) throw new Error("the body failed on purpose");
    });
    await expect(store.put("two", failing, { size: 12 * MiB, reopen })).rejects.toThrow(
      "the body failed on purpose",
    );
    for (const size of [12 * MiB - 1, 12 * MiB + 1]) {
      const error = await expectCode(
        store.put("two", generate(12 * MiB, createHash("sha256")), { size, reopen }),
        "INVALID_ARGUMENT",
      );
      expect(error.message).toContain(`not the ${size}`);
    }
    expect(reopens).toBe(0);
    // Each failed PUT was ended early: S3 then stores nothing.
    expect(proxy.requests.filter((r) => r.method === "PUT")).toHaveLength(3);
  });

  it("survives the server going away mid-upload: nothing partial is visible, and the put can be retried", {
    timeout: 90_000,
  }, async () => {
    const server = await restartableS3rver();
    try {
      const own = await newBucket(server.endpoint);
      const url = `s3://${own}/mid?endpoint=${server.endpoint}&partSize=5&maxAttempts=2&connectTimeout=1`;
      const store = await factory.open(url);
      const hash = createHash("sha256");
      // Two 5 MiB parts are in when the server stops; the third and later fail.
      const body = generate(24 * MiB, hash, async (i) => {
        if (i === 11) await server.stop();
      });
      const started = Date.now();
      const error = await expectCode(store.put("big/object", body), "UNAVAILABLE");
      expect(error.message).toContain('"big/object"');
      expect(error.message).toContain(store.url);
      expect(Date.now() - started).toBeLessThan(30_000);

      await server.start();
      expect(await store.head("big/object")).toBeUndefined();
      expect(await collect(store.list(""))).toEqual([]);
      const again = createHash("sha256");
      const info = await store.put("big/object", generate(24 * MiB, again));
      expect(info.size).toBe(24 * MiB);
      const read = createHash("sha256");
      for await (const chunk of (await store.get("big/object")).body) read.update(chunk as Buffer);
      expect(read.digest("hex")).toBe(again.digest("hex"));
      await store.close();
    } finally {
      await server.dispose();
    }
  });

  it("reports an unreachable service with UNAVAILABLE", async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const store = await factory.open(`s3://${bucket}/x?endpoint=${dead}&maxAttempts=1&connectTimeout=1`);
    const error = await expectCode(store.put("k", utf8("v")), "UNAVAILABLE");
    expect(error.message).toContain(store.url);
    expect(error.message).toContain("unreachable");
  });

  it("fails every call after close with UNAVAILABLE", async () => {
    const store = await openStore();
    await store.put("k", utf8("v"));
    await store.close();
    await expectCode(store.head("k"), "UNAVAILABLE");
    await expectCode(store.put("k", utf8("v")), "UNAVAILABLE");
    await expectCode(collect(store.list("")), "UNAVAILABLE");
  });
});
