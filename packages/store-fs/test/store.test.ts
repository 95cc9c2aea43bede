import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { collect, describeStore, expectCode, tempDir } from "@cairn/testkit";
import { describe, expect, it } from "vitest";
import { createFsStore, type FsStore, factory, parseFileUrl } from "../src/index.js";

describeStore("fs", {
  open: async () => factory.open(pathToFileURL(join(await tempDir("cairn-fs-"), "store")).href),
});

const utf8 = (s: string) => new TextEncoder().encode(s);

async function openStore(url = ""): Promise<FsStore> {
  return factory.open(`${pathToFileURL(join(await tempDir("cairn-fs-"), "store")).href}${url}`);
}

async function* failing(): AsyncGenerator<Uint8Array> {
  yield new Uint8Array(100_000);
  throw new Error("the body failed on purpose");
}

async function tempFiles(store: FsStore): Promise<string[]> {
  return readdir(join(store.root, ".cairn-tmp")).catch(() => []);
}

describe("fs store", () => {
  it("keeps each object as a plain file at root/key", async () => {
    const store = await openStore();
    await store.put("a/b c/😀.txt", utf8("hello"));
    expect(await readFile(join(store.root, "a", "b c", "😀.txt"), "utf8")).toBe("hello");
  });

  it("leaves no object and no temporary file after a failed put or copy", async () => {
    const store = await openStore();
    await expect(store.put("k", failing())).rejects.toThrow("the body failed on purpose");
    expect(await tempFiles(store)).toEqual([]);
    await store.put("k", utf8("v"), { createOnly: true });
    await expectCode(store.put("k", utf8("w"), { createOnly: true }), "ALREADY_EXISTS");
    await expectCode(store.copy("absent", "k2"), "NOT_FOUND");
    await expectCode(store.copy("k", "k", { createOnly: true }), "ALREADY_EXISTS");
    await expectCode(store.put("sized", utf8("four"), { size: 5 }), "INVALID_ARGUMENT");
    expect(await tempFiles(store)).toEqual([]);
    expect((await collect(store.list(""))).map((i) => i.key)).toEqual(["k"]);
  });

  it("fails with PERMISSION_DENIED, naming the key and the store, where the user may not write or read", async () => {
    const base = await tempDir("cairn-fs-");
    const root = join(base, "store");
    await mkdir(root);
    await writeFile(join(root, "secret"), "secret");
    await writeFile(join(root, "public"), "public");
    const url = pathToFileURL(root).href;

    let outcome: Record<string, { ok?: true; code?: string; message?: string }>;
    if (process.getuid?.() === 0) {
      // Root ignores file modes, so the calls run in a child process as the unprivileged user "nobody".
      await chmod(base, 0o755);
      await chmod(root, 0o755);
      await chmod(join(root, "secret"), 0o600);
      await chmod(join(root, "public"), 0o644);
      const script = fileURLToPath(new URL("./fixtures/try-store.mjs", import.meta.url));
      const storeModule = new URL("../dist/index.js", import.meta.url);
      if (!existsSync(storeModule))
        expect.fail("dist/index.js is missing: run `pnpm --filter @cairn/store-fs build` first");
      outcome = await new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [script, storeModule.href, url], { uid: 65534, gid: 65534 });
        let stdout = "";
        let stderr = "";
        child.stdout.setEncoding("utf8").on("data", (s: string) => {
          stdout += s;
        });
        child.stderr.setEncoding("utf8").on("data", (s: string) => {
          stderr += s;
        });
        child.once("error", reject);
        child.once("exit", (code) =>
          code === 0
            ? resolve(JSON.parse(stdout))
            : reject(new Error(`child exited with ${code}: ${stderr}`)),
        );
      });
    } else {
      await chmod(root, 0o555);
      await chmod(join(root, "secret"), 0o000);
      const store = await factory.open(url);
      outcome = {};
      const calls: Record<string, () => Promise<unknown>> = {
        put: () => store.put("new", utf8("x")),
        getSecret: async () => (await store.get("secret")).body.destroy(),
        getPublic: async () => (await store.get("public")).body.destroy(),
        delete: () => store.delete("public"),
      };
      for (const [name, call] of Object.entries(calls)) {
        outcome[name] = await call().then(
          () => ({ ok: true as const }),
          (e: { code?: string; message?: string }) => ({ code: e.code, message: e.message }),
        );
      }
      await chmod(root, 0o755);
    }
    expect(outcome.put?.code).toBe("PERMISSION_DENIED");
    expect(outcome.put?.message).toContain('"new"');
    expect(outcome.put?.message).toContain(url);
    expect(outcome.getSecret?.code).toBe("PERMISSION_DENIED");
    expect(outcome.getSecret?.message).toContain('"secret"');
    expect(outcome.getPublic).toEqual({ ok: true });
    expect(outcome.delete?.code).toBe("PERMISSION_DENIED");
    expect(await readFile(join(root, "public"), "utf8")).toBe("public");
  });

  it("reserves .cairn-tmp: its keys are rejected and it is never listed", async () => {
    const store = await openStore();
    await store.put("visible", utf8("v"));
    await writeFile(join(store.root, ".cairn-tmp", "stray.tmp"), "left by a crash");
    await expectCode(store.put(".cairn-tmp/x", utf8("x")), "INVALID_ARGUMENT");
    await expectCode(store.get(".cairn-tmp/stray.tmp"), "INVALID_ARGUMENT");
    expect((await collect(store.list(""))).map((i) => i.key)).toEqual(["visible"]);
    expect(await collect(store.list(".cairn-tmp/"))).toEqual([]);
    expect(await collect(store.list(".cairn"))).toEqual([]);
    await store.put(".cairn-tmp2/ok", utf8("a neighbour is fine"));
    expect((await collect(store.list(".cairn"))).map((i) => i.key)).toEqual([".cairn-tmp2/ok"]);
  });

  it("removes folders emptied by delete, up to but not including the root", async () => {
    const store = await openStore();
    await store.put("x/y/z", utf8("1"));
    await store.put("x/keep", utf8("2"));
    await store.delete("x/y/z");
    expect(existsSync(join(store.root, "x", "y"))).toBe(false);
    expect(existsSync(join(store.root, "x"))).toBe(true);
    await store.delete("x/keep");
    expect(existsSync(join(store.root, "x"))).toBe(false);
    expect(existsSync(store.root)).toBe(true);
  });

  it("deletes every key of a folder at once without failing, though each delete may remove the folder", async () => {
    const store = await openStore();
    for (let round = 0; round < 20; round++) {
      const keys = Array.from({ length: 8 }, (_, i) => `objects/ab/${round}/${i}`);
      await Promise.all(keys.map((key) => store.put(key, utf8(key))));
      await Promise.all(keys.map((key) => store.delete(key)));
      for (const key of keys) expect(await store.head(key)).toBeUndefined();
    }
    expect(existsSync(join(store.root, "objects"))).toBe(false);
  });

  it("fails with CONFLICT when a key is also a folder of other keys, and ignores an empty folder", async () => {
    const store = await openStore();
    await store.put("a/b", utf8("1"));
    const error = await expectCode(store.put("a", utf8("2")), "CONFLICT");
    expect(error.message).toContain('"a"');
    await expectCode(store.put("a/b/c", utf8("3")), "CONFLICT");
    await expectCode(store.copy("a/b", "a", { createOnly: true }), "CONFLICT");
    expect(await store.head("a")).toBeUndefined();
    await store.delete("a");
    expect(await store.head("a/b")).toBeDefined();

    await mkdir(join(store.root, "empty", "nested"), { recursive: true });
    await store.put("empty/nested", utf8("fits"));
    expect(await readFile(join(store.root, "empty", "nested"), "utf8")).toBe("fits");
    expect(await tempFiles(store)).toEqual([]);
  });

  it("never fails a put because a concurrent delete removed its emptied folder", {
    timeout: 30_000,
  }, async () => {
    const store = await openStore("?fsync=false");
    // The race is narrow (between mkdir and rename), so several chains run it many times.
    await Promise.all(
      ["p", "q", "r", "s"].map(async (chain) => {
        for (let i = 0; i < 300; i++) {
          await Promise.all([
            store.put(`${chain}/b/c/${i}`, utf8("x")),
            store.delete(`${chain}/b/c/${i - 1}`),
          ]);
        }
      }),
    );
    expect((await collect(store.list(""))).map((i) => i.key)).toEqual([
      "p/b/c/299",
      "q/b/c/299",
      "r/b/c/299",
      "s/b/c/299",
    ]);
    expect(await tempFiles(store)).toEqual([]);
  });

  it("changes the etag when an object is replaced by one of the same size", async () => {
    const store = await openStore();
    const first = await store.put("k", utf8("aaaa"));
    const second = await store.put("k", utf8("bbbb"));
    expect(second.etag).not.toBe(first.etag);
  });

  it("lets a reader finish the version it opened while the key is replaced", async () => {
    const store = await openStore();
    const old = new Uint8Array(3 * 1024 * 1024).fill(1);
    await store.put("k", old);
    const reader = await store.get("k");
    await store.put("k", utf8("new"));
    await store.delete("k");
    const chunks: Buffer[] = [];
    for await (const chunk of reader.body) chunks.push(chunk as Buffer);
    expect(Buffer.compare(Buffer.concat(chunks), old)).toBe(0);
  });

  it("rejects keys a file system cannot hold with INVALID_ARGUMENT", async () => {
    const store = await openStore();
    await expectCode(store.put("nul\u0000byte", utf8("x")), "INVALID_ARGUMENT");
    await expectCode(store.put(`${"n".repeat(300)}`, utf8("x")), "INVALID_ARGUMENT");
    await expectCode(store.head("lone \ud800"), "INVALID_ARGUMENT");
    await expectCode(store.get("k", { range: { start: 5, end: 2 } }), "INVALID_ARGUMENT");
    await store.put("k", utf8("abc"));
    await expectCode(store.get("k", { range: { start: 3 } }), "INVALID_ARGUMENT");
    expect(await tempFiles(store)).toEqual([]);
  });

  it("reads its URL: absolute, relative to the working directory, fsync, and errors", async () => {
    const base = await tempDir("cairn-fs-");
    expect(parseFileUrl(pathToFileURL(join(base, "a b")).href)).toEqual({ root: join(base, "a b") });
    expect(parseFileUrl("file:///srv/cairn?fsync=false")).toEqual({ root: "/srv/cairn", fsync: false });
    expect(parseFileUrl("file://./data/objects")).toEqual({ root: join(process.cwd(), "data", "objects") });
    expect(parseFileUrl("file://../up")).toEqual({ root: join(process.cwd(), "..", "up") });
    expect(parseFileUrl("file://.")).toEqual({ root: process.cwd() });

    const rel = relative(process.cwd(), join(base, "rel store"));
    const store = await factory.open(
      `file://./${rel.split("/").map(encodeURIComponent).join("/")}?fsync=false`,
    );
    expect(store.root).toBe(join(base, "rel store"));
    expect(store.url).toBe(`${pathToFileURL(join(base, "rel store")).href}?fsync=false`);
    await store.put("k", utf8("v"));
    expect(await readFile(join(base, "rel store", "k"), "utf8")).toBe("v");

    await writeFile(join(base, "file"), "x");
    for (const url of [
      "file:///srv/cairn?fsync=maybe",
      "file:///srv/cairn?mode=fast",
      "file://remote-host/share",
      "s3://bucket/prefix",
      pathToFileURL(join(base, "file")).href,
      pathToFileURL(join(base, "file", "below")).href,
    ]) {
      const error = await expectCode(factory.open(url), "INVALID_ARGUMENT");
      expect(error.message.length).toBeGreaterThan(10);
    }
    expect(factory.schemes).toEqual(["file"]);
  });

  it("creates its root folder on the first write and reads as empty before", async () => {
    const base = await tempDir("cairn-fs-");
    const store = createFsStore({ root: join(base, "deep", "new", "store"), fsync: false });
    expect(await collect(store.list(""))).toEqual([]);
    expect(await store.head("k")).toBeUndefined();
    expect(existsSync(store.root)).toBe(false);
    await store.put("k", utf8("v"));
    expect(existsSync(join(store.root, "k"))).toBe(true);
  });

  it("rejects every call after close with UNAVAILABLE", async () => {
    const store = await openStore();
    await store.put("k", utf8("v"));
    await store.close();
    await expectCode(store.head("k"), "UNAVAILABLE");
    await expectCode(store.put("k", utf8("v")), "UNAVAILABLE");
    await expectCode(collect(store.list("")), "UNAVAILABLE");
  });
});
