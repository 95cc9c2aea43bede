import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import {
  Cairn,
  type DiffEntry,
  type EngineFactory,
  type Entry,
  hasCode,
  isCairnError,
  type MetadataEngine,
  type ObjectStore,
  type Repository,
  type StoreFactory,
} from "@cairn/core";
import { afterEach, describe, expect, it } from "vitest";

/** What a driver's test file tells the repository suite. */
export interface RepositorySuiteOptions {
  /** URL of a fresh, empty engine; a different one on each call. */
  engineUrl: () => Promise<string> | string;
  /** URL of a fresh, empty storage namespace; a different one on each call. */
  namespaceUrl: () => Promise<string> | string;
  /** Module exporting the engine's `factory` (a file URL or an absolute path), also loaded by worker processes. */
  engineModule: string;
  /** Module exporting the store's `factory`. */
  storeModule: string;
}

const text = (s: string) => Buffer.from(s, "utf8");

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const code = async (p: Promise<unknown>): Promise<string | undefined> => {
  try {
    await p;
    return undefined;
  } catch (e) {
    if (!isCairnError(e)) throw e;
    return e.code;
  }
};

const moduleUrl = (m: string) => (m.startsWith("file:") || !m.startsWith("/") ? m : `file://${m}`);

/**
 * The repository behaviour suite: everything a user can do with a repository, run on one engine × store pair
 * through the real URL path. Every engine and every store runs this same file.
 */
export function describeRepository(name: string, options: RepositorySuiteOptions): void {
  describe(`repository behaviour on ${name}`, () => {
    const open: Array<{ cairn: Cairn; engine: MetadataEngine }> = [];

    const factories = async () => {
      const engine = (await import(moduleUrl(options.engineModule))) as { factory: EngineFactory };
      const store = (await import(moduleUrl(options.storeModule))) as { factory: StoreFactory };
      return { engine: engine.factory, store: store.factory };
    };

    /** A Cairn on a fresh engine; `engineUrl` reuses one (another connection, as another process would). */
    const newCairn = async (engineUrl?: string, wrapStore?: (s: ObjectStore) => ObjectStore) => {
      const f = await factories();
      const url = engineUrl ?? (await options.engineUrl());
      const engine = await f.engine.open(url);
      const cairn = new Cairn({
        engine,
        openStore: async (u) => {
          const s = await f.store.open(u);
          return wrapStore ? wrapStore(s) : s;
        },
      });
      open.push({ cairn, engine });
      return { cairn, engine, url };
    };

    const newRepo = async (repoName = "repo") => {
      const { cairn, engine, url } = await newCairn();
      const namespace = await options.namespaceUrl();
      const repo = await cairn.createRepository({ name: repoName, namespace });
      return { cairn, engine, url, repo, namespace };
    };

    const upload = (repo: Repository, branch: string, path: string, content: string, contentType?: string) =>
      repo.upload(branch, path, text(content), contentType ? { contentType } : {});

    const cat = async (repo: Repository, ref: string, path: string) =>
      (await readAll((await repo.read(ref, path)).body)).toString("utf8");

    afterEach(async () => {
      for (const { cairn, engine } of open.splice(0)) {
        await cairn.close();
        await engine.close();
      }
    });

    describe("repositories", () => {
      it("creates a repository with its default branch and an initial commit", async () => {
        const { cairn, repo, namespace } = await newRepo("photos");
        expect(repo.info).toMatchObject({ name: "photos", defaultBranch: "main", bare: false });
        expect(repo.info.namespace).toBe(namespace.replace(/\/+$/, ""));
        const main = await repo.getBranch("main");
        const log = await collect(repo.log("main"));
        expect(log).toHaveLength(1);
        expect(log[0]!.id).toBe(main.commitId);
        expect(log[0]!.id).toMatch(/^[0-9a-f]{64}$/);
        expect((await cairn.getRepository("photos")).name).toBe("photos");
        expect((await collect(cairn.listRepositories())).map((r) => r.name)).toEqual(["photos"]);
      });

      it("takes another default branch name", async () => {
        const { cairn } = await newCairn();
        const repo = await cairn.createRepository({
          name: "data",
          namespace: await options.namespaceUrl(),
          defaultBranch: "trunk",
        });
        expect((await collect(repo.listBranches())).map((b) => b.name)).toEqual(["trunk"]);
      });

      it("refuses invalid repository names with INVALID_ARGUMENT", async () => {
        const { cairn } = await newCairn();
        for (const bad of [
          "",
          "ab",
          "Upper",
          "with_underscore",
          "-start",
          "end-",
          "a".repeat(64),
          "dot.ted",
          "x y",
        ]) {
          expect(
            await code(cairn.createRepository({ name: bad, namespace: await options.namespaceUrl() })),
          ).toBe("INVALID_ARGUMENT");
        }
        expect(await collect(cairn.listRepositories())).toEqual([]);
      });

      it("refuses a duplicate name and a shared storage namespace", async () => {
        const { cairn, namespace } = await newRepo("first");
        expect(
          await code(cairn.createRepository({ name: "first", namespace: await options.namespaceUrl() })),
        ).toBe("ALREADY_EXISTS");
        expect(await code(cairn.createRepository({ name: "second", namespace }))).toBe("ALREADY_EXISTS");
        expect(await code(cairn.createBareRepository({ name: "second", namespace }))).toBe("ALREADY_EXISTS");
        expect((await collect(cairn.listRepositories())).map((r) => r.name)).toEqual(["first"]);
      });

      it("refuses to create over another repository's data, and create-bare takes it over", async () => {
        const { namespace } = await newRepo("origin");
        const { cairn } = await newCairn();
        expect(await code(cairn.createRepository({ name: "copy", namespace }))).toBe("PRECONDITION_FAILED");
        const bare = await cairn.createBareRepository({ name: "copy", namespace });
        expect(bare.info.bare).toBe(true);
        expect(await collect(bare.listBranches())).toEqual([]);
      });

      it("deletes a repository's metadata and frees its name and namespace", async () => {
        const { cairn, repo, namespace } = await newRepo("gone");
        await upload(repo, "main", "a.txt", "a");
        await cairn.deleteRepository("gone");
        expect(await code(cairn.getRepository("gone"))).toBe("NOT_FOUND");
        expect(await code(cairn.deleteRepository("gone"))).toBe("NOT_FOUND");
        // The namespace was released: a new repository may take it; its objects are still there.
        const again = await cairn.createRepository({ name: "gone", namespace });
        expect((await collect(again.listBranches())).map((b) => b.name)).toEqual(["main"]);
      });
    });

    describe("branches", () => {
      it("creates from any ref, lists, gets and deletes", async () => {
        const { repo } = await newRepo();
        await upload(repo, "main", "a.txt", "one");
        const c1 = await repo.commit("main", { message: "one" });
        await repo.createTag("v1", "main");
        await upload(repo, "main", "a.txt", "two");
        await repo.commit("main", { message: "two" });
        await repo.createBranch("from-branch", "main");
        await repo.createBranch("from-tag", "v1");
        await repo.createBranch("from-id", c1.id);
        await repo.createBranch("from-prefix", c1.id.slice(0, 7));
        await repo.createBranch("from-parent", "main~1");
        expect((await collect(repo.listBranches())).map((b) => b.name)).toEqual([
          "from-branch",
          "from-id",
          "from-parent",
          "from-prefix",
          "from-tag",
          "main",
        ]);
        for (const b of ["from-tag", "from-id", "from-prefix", "from-parent"]) {
          expect((await repo.getBranch(b)).commitId).toBe(c1.id);
          expect(await cat(repo, b, "a.txt")).toBe("one");
        }
        expect(await cat(repo, "from-branch", "a.txt")).toBe("two");
        await repo.deleteBranch("from-id");
        expect(await code(repo.getBranch("from-id"))).toBe("NOT_FOUND");
        expect(await code(repo.deleteBranch("main"))).toBe("PRECONDITION_FAILED");
        expect(await code(repo.createBranch("main", "from-tag"))).toBe("ALREADY_EXISTS");
        expect(await code(repo.createBranch("x", "no-such-ref"))).toBe("NOT_FOUND");
      });

      it("refuses invalid branch and tag names", async () => {
        const { repo } = await newRepo();
        for (const bad of ["", "a b", "a/b", ".hidden", "-x", "a..b", "deadbeef", "x~1", "x^", "ä"]) {
          expect(await code(repo.createBranch(bad, "main"))).toBe("INVALID_ARGUMENT");
          expect(await code(repo.createTag(bad, "main"))).toBe("INVALID_ARGUMENT");
        }
      });

      it("resets a branch, dropping its uncommitted changes", async () => {
        const { repo } = await newRepo();
        await upload(repo, "main", "keep.txt", "keep");
        await repo.commit("main", { message: "keep" });
        await upload(repo, "main", "new.txt", "new");
        await upload(repo, "main", "keep.txt", "changed");
        await repo.deleteObject("main", "keep.txt");
        expect((await collect(repo.diffUncommitted("main"))).length).toBe(2);
        await repo.resetBranch("main");
        expect(await collect(repo.diffUncommitted("main"))).toEqual([]);
        expect(await cat(repo, "main", "keep.txt")).toBe("keep");
        expect(await code(repo.stat("main", "new.txt"))).toBe("NOT_FOUND");
      });
    });

    describe("objects", () => {
      it("uploads streaming bodies with size, SHA-256, content type and metadata", async () => {
        const { repo } = await newRepo();
        const payload = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
        const chunks = async function* () {
          for (let i = 0; i < payload.length; i += 65536) yield payload.subarray(i, i + 65536);
        };
        const entry = await repo.upload("main", "big/blob.bin", Readable.from(chunks()), {
          contentType: "application/x-test",
          metadata: { owner: "ops", "note ✓": "ünïcode" },
        });
        expect(entry.size).toBe(payload.length);
        expect(entry.sha256).toBe(createHash("sha256").update(payload).digest("hex"));
        const stat = await repo.stat("main", "big/blob.bin");
        expect(stat).toMatchObject({
          contentType: "application/x-test",
          metadata: { owner: "ops", "note ✓": "ünïcode" },
        });
        expect((await readAll((await repo.read("main", "big/blob.bin")).body)).equals(payload)).toBe(true);
        const empty = await repo.upload("main", "empty", new Uint8Array());
        expect(empty.size).toBe(0);
        expect(await cat(repo, "main", "empty")).toBe("");
      });

      it("streams a large body through the store without holding it", async () => {
        const { repo } = await newRepo();
        const size = 24 * 1024 * 1024 + 5;
        const hash = createHash("sha256");
        const chunk = Buffer.alloc(1024 * 1024, 0x5a);
        const body = async function* () {
          let left = size;
          while (left > 0) {
            const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
            hash.update(c);
            left -= c.length;
            yield c;
          }
        };
        const entry = await repo.upload("main", "large.bin", Readable.from(body()));
        expect(entry.size).toBe(size);
        expect(entry.sha256).toBe(hash.digest("hex"));
        const back = createHash("sha256");
        let n = 0;
        for await (const c of (await repo.read("main", "large.bin")).body) {
          back.update(c as Buffer);
          n += (c as Buffer).length;
        }
        expect(n).toBe(size);
        expect(back.digest("hex")).toBe(entry.sha256);
      });

      it("writes a large body it can read twice once, at its content address, or not at all when it is there", async () => {
        const writes: string[] = [];
        const recording = (s: ObjectStore): ObjectStore => ({
          kind: s.kind,
          url: s.url,
          put: (k, b, o) => {
            writes.push(`put ${k}`);
            return s.put(k, b, o);
          },
          get: (k, o) => s.get(k, o),
          head: (k) => s.head(k),
          list: (p, o) => s.list(p, o),
          delete: (k) => s.delete(k),
          copy: (a, b, o) => {
            writes.push(`copy ${b}`);
            return s.copy(a, b, o);
          },
          close: () => s.close(),
        });
        const { cairn } = await newCairn(undefined, recording);
        const repo = await cairn.createRepository({ name: "twice", namespace: await options.namespaceUrl() });
        const size = 12 * 1024 * 1024 + 3;
        const bytes = Buffer.alloc(size);
        for (let i = 0; i + 4 <= size; i += 4096) bytes.writeUInt32BE((i * 2654435761) >>> 0, i);
        const sha256 = createHash("sha256").update(bytes).digest("hex");
        const stream = (from: Buffer) =>
          Readable.from(
            Array.from({ length: 13 }, (_, i) => from.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024)),
          );
        let reopens = 0;
        const reopen = () => {
          reopens++;
          return stream(bytes);
        };
        writes.length = 0;
        const entry = await repo.upload("main", "big.bin", stream(bytes), { reopen });
        expect(entry).toMatchObject({ size, sha256, address: expect.stringContaining(sha256) });
        expect(writes).toEqual([`put ${entry.address}`]);
        expect(reopens).toBe(1);
        const [again] = await repo.uploadMany("main", [{ path: "again.bin", body: stream(bytes), reopen }]);
        expect(again!.address).toBe(entry.address);
        expect(writes).toHaveLength(1);
        expect(reopens).toBe(1);
        expect(
          createHash("sha256")
            .update(await readAll((await repo.read("main", "again.bin")).body))
            .digest("hex"),
        ).toBe(sha256);

        // Changed between the two reads: CONFLICT, nothing staged, and the right bytes still go up afterwards.
        const changed = Buffer.from(bytes);
        changed.writeUInt8(changed.readUInt8(size - 1) ^ 0xff, size - 1);
        const error = await repo
          .upload("main", "changed.bin", stream(changed), { reopen: () => stream(bytes) })
          .catch((e: unknown) => e);
        expect(hasCode(error, "CONFLICT"), String(error)).toBe(true);
        expect((error as Error).message).toContain('"changed.bin"');
        expect(await code(repo.read("main", "changed.bin"))).toBe("NOT_FOUND");
        const fixed = await repo.upload("main", "changed.bin", stream(changed), {
          reopen: () => stream(changed),
        });
        expect(
          createHash("sha256")
            .update(await readAll((await repo.read("main", "changed.bin")).body))
            .digest("hex"),
        ).toBe(fixed.sha256);
      });

      it("reads byte ranges", async () => {
        const { repo } = await newRepo();
        await upload(repo, "main", "r.txt", "0123456789");
        const part = async (start: number, end?: number) =>
          (
            await readAll(
              (
                await repo.read("main", "r.txt", { range: end === undefined ? { start } : { start, end } })
              ).body,
            )
          ).toString();
        expect(await part(2, 4)).toBe("234");
        expect(await part(7)).toBe("789");
        expect(await part(9, 9)).toBe("9");
        expect(await code(repo.read("main", "r.txt", { range: { start: 10 } }))).toBe("INVALID_ARGUMENT");
        expect(await code(repo.read("main", "r.txt", { range: { start: 5, end: 2 } }))).toBe(
          "INVALID_ARGUMENT",
        );
      });

      it("refuses invalid paths with INVALID_ARGUMENT", async () => {
        const { repo } = await newRepo();
        for (const bad of [
          "",
          "/abs",
          "a//b",
          "a/",
          "../x",
          "a/../b",
          "./a",
          "a/./b",
          "nul\u0000x",
          "x".repeat(1025),
          "\ud800",
        ]) {
          expect(await code(repo.upload("main", bad, text("x")))).toBe("INVALID_ARGUMENT");
          expect(await code(repo.stat("main", bad))).toBe("INVALID_ARGUMENT");
        }
        expect(await collect(repo.diffUncommitted("main"))).toEqual([]);
      });

      it("lists in byte order of paths with prefix, delimiter and pagination", async () => {
        const { repo } = await newRepo();
        const paths = ["a.txt", "a/b", "a/c/d", "a0", "b", "é/x", "z/😀", "z/\uffee", "Z"];
        for (const p of paths) await upload(repo, "main", p, p);
        const sorted = [...paths].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
        const all = (await collect(repo.walk("main"))).map((e) => e.path);
        expect(all).toEqual(sorted);
        await repo.commit("main", { message: "files" });
        expect((await collect(repo.walk("main"))).map((e) => e.path)).toEqual(sorted);
        const top = await repo.list("main", { delimiter: "/" });
        expect(top.entries.map((e) => e.path)).toEqual(["Z", "a.txt", "a0", "b"]);
        expect(top.commonPrefixes).toEqual(["a/", "z/", "é/"]);
        const underA = await repo.list("main", { prefix: "a/", delimiter: "/" });
        expect(underA.entries.map((e) => e.path)).toEqual(["a/b"]);
        expect(underA.commonPrefixes).toEqual(["a/c/"]);
        // Pagination, mixing entries and common prefixes.
        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await repo.list("main", { delimiter: "/", limit: 2, ...(after ? { after } : {}) });
          seen.push(...page.entries.map((e) => e.path), ...page.commonPrefixes);
          if (!page.next) break;
          after = page.next;
        }
        expect(seen.sort()).toEqual(["Z", "a.txt", "a/", "a0", "b", "z/", "é/"].sort());
        // Staged changes on top of the commit show in the listing.
        await repo.deleteObject("main", "a0");
        await upload(repo, "main", "a1", "new");
        expect((await repo.list("main", { prefix: "a", delimiter: "/" })).entries.map((e) => e.path)).toEqual(
          ["a.txt", "a1"],
        );
      });

      it("paginates a listing of thousands of entries", async () => {
        const { repo } = await newRepo();
        const { address, sha256 } = await upload(repo, "main", "seed", "x");
        const n = 3000;
        await repo.importChanges(
          "main",
          changes(n, (i) => entry(`dir/${String(i).padStart(5, "0")}`, address, sha256)),
          {
            message: "many",
          },
        );
        // A few staged on top, so the listing merges staging and tree across pages.
        for (const i of [5, 1500, 2999])
          await repo.stageEntry("main", entry(`dir/${String(i).padStart(5, "0")}x`, address, sha256));
        let count = 0;
        let after: string | undefined;
        let last = "";
        for (;;) {
          const page = await repo.list("main", { prefix: "dir/", limit: 700, ...(after ? { after } : {}) });
          for (const e of page.entries) {
            expect(e.path > last).toBe(true);
            last = e.path;
          }
          count += page.entries.length;
          if (!page.next) break;
          after = page.next;
        }
        expect(count).toBe(n + 3);
      });

      it("deletes with a staged tombstone, undone by reset and made real by commit", async () => {
        const { repo } = await newRepo();
        await upload(repo, "main", "x", "x");
        await repo.commit("main", { message: "x" });
        await repo.deleteObject("main", "x");
        expect(await code(repo.stat("main", "x"))).toBe("NOT_FOUND");
        expect(await cat(repo, "main~0", "x")).toBe("x");
        expect(await collect(repo.diffUncommitted("main"))).toMatchObject([{ path: "x", type: "removed" }]);
        await repo.commit("main", { message: "rm x" });
        expect(await code(repo.stat("main", "x"))).toBe("NOT_FOUND");
        expect(await cat(repo, "main~1", "x")).toBe("x");
        expect(await code(repo.deleteObject("main", "x"))).toBe("NOT_FOUND");
        expect(await code(repo.read("main", "never"))).toBe("NOT_FOUND");
      });
    });

    describe("commits, log and diff", () => {
      it("commits with message, author and metadata; refuses an empty commit unless asked", async () => {
        const { repo } = await newRepo();
        expect(await code(repo.commit("main", { message: "nothing" }))).toBe("PRECONDITION_FAILED");
        expect(await code(repo.commit("main", { message: "" }))).toBe("INVALID_ARGUMENT");
        const empty = await repo.commit("main", { message: "marker", allowEmpty: true });
        await upload(repo, "main", "a", "a");
        const c = await repo.commit("main", { message: "add a", author: "ada", metadata: { ticket: "42" } });
        expect(c).toMatchObject({
          message: "add a",
          author: "ada",
          metadata: { ticket: "42" },
          parents: [empty.id],
        });
        expect(await repo.getCommit(c.id)).toEqual(c);
        // Staging the same content again changes nothing.
        await upload(repo, "main", "a", "a");
        expect(await code(repo.commit("main", { message: "same" }))).toBe("PRECONDITION_FAILED");
        expect(await collect(repo.diffUncommitted("main"))).toEqual([]);
      });

      it("logs first parents by default, all parents on request, paginated by limit", async () => {
        const { repo } = await newRepo();
        for (const i of [1, 2, 3]) {
          await upload(repo, "main", `f${i}`, `${i}`);
          await repo.commit("main", { message: `c${i}` });
        }
        await repo.createBranch("side", "main");
        await upload(repo, "side", "s", "s");
        await repo.commit("side", { message: "side" });
        await upload(repo, "main", "m", "m");
        await repo.commit("main", { message: "main" });
        await repo.merge("side", "main");
        const first = (await collect(repo.log("main"))).map((c) => c.message);
        expect(first).toEqual(["Merge side into main", "main", "c3", "c2", "c1", "Repository created"]);
        const all = (await collect(repo.log("main", { firstParent: false }))).map((c) => c.message);
        expect(all).toHaveLength(7);
        expect(all).toContain("side");
        const page = await collect(repo.log("main", { limit: 2 }));
        expect(page.map((c) => c.message)).toEqual(["Merge side into main", "main"]);
        const next = await collect(repo.log(page[1]!.parents[0]!, { limit: 2 }));
        expect(next.map((c) => c.message)).toEqual(["c3", "c2"]);
        const merge = (await collect(repo.log("main", { limit: 1 })))[0]!;
        expect((await repo.resolveRef("main^2")).commitId).toBe((await repo.getBranch("side")).commitId);
        expect((await repo.resolveRef("main^1")).commitId).toBe(merge.parents[0]);
        expect((await repo.resolveRef("main~3")).commitId).toBe((await repo.resolveRef("main~2^")).commitId);
        expect(await code(repo.resolveRef("main~99"))).toBe("NOT_FOUND");
        expect(await code(repo.resolveRef(merge.id.slice(0, 6)))).toBe("NOT_FOUND");
        expect((await repo.resolveRef(merge.id.slice(0, 7))).commitId).toBe(merge.id);
        expect(await code(repo.resolveRef("nope"))).toBe("NOT_FOUND");
      });

      it("diffs two refs and a branch's uncommitted changes", async () => {
        const { repo } = await newRepo();
        await upload(repo, "main", "keep", "k");
        await upload(repo, "main", "change", "1");
        await upload(repo, "main", "remove", "r");
        await repo.commit("main", { message: "base" });
        await repo.createTag("base", "main");
        await upload(repo, "main", "change", "2");
        await upload(repo, "main", "add", "a");
        await repo.deleteObject("main", "remove");
        const shape = (d: DiffEntry[]) => d.map((x) => `${x.type} ${x.path}`);
        expect(shape(await collect(repo.diffUncommitted("main")))).toEqual([
          "added add",
          "changed change",
          "removed remove",
        ]);
        expect(shape(await collect(repo.diff("base", "main")))).toEqual([
          "added add",
          "changed change",
          "removed remove",
        ]);
        await repo.commit("main", { message: "next" });
        expect(shape(await collect(repo.diff("base", "main")))).toEqual([
          "added add",
          "changed change",
          "removed remove",
        ]);
        expect(shape(await collect(repo.diff("main", "base")))).toEqual([
          "removed add",
          "changed change",
          "added remove",
        ]);
        expect(await collect(repo.diff("main", "main"))).toEqual([]);
      });
    });

    describe("merges", () => {
      const setup = async () => {
        const r = await newRepo();
        await upload(r.repo, "main", "shared", "base");
        await upload(r.repo, "main", "other", "base");
        await r.repo.commit("main", { message: "base" });
        await r.repo.createBranch("feature", "main");
        return r;
      };

      it("fast-forwards when the destination has not moved", async () => {
        const { repo } = await setup();
        await upload(repo, "feature", "new", "n");
        const c = await repo.commit("feature", { message: "feature" });
        const result = await repo.merge("feature", "main");
        expect(result).toMatchObject({ fastForward: true, commitId: c.id, changes: 1 });
        expect((await repo.getBranch("main")).commitId).toBe(c.id);
        expect(await repo.merge("feature", "main")).toMatchObject({ upToDate: true });
      });

      it("merges three ways with a merge commit", async () => {
        const { repo } = await setup();
        await upload(repo, "feature", "shared", "feature");
        await upload(repo, "feature", "f-only", "f");
        await repo.commit("feature", { message: "f" });
        await repo.deleteObject("main", "other");
        await upload(repo, "main", "m-only", "m");
        await repo.commit("main", { message: "m" });
        const result = await repo.merge("feature", "main", { message: "merge it" });
        expect(result).toMatchObject({ fastForward: false, changes: 2 });
        const head = await repo.getCommit(result.commitId);
        expect(head.message).toBe("merge it");
        expect(head.parents).toHaveLength(2);
        expect(await cat(repo, "main", "shared")).toBe("feature");
        expect(await cat(repo, "main", "f-only")).toBe("f");
        expect(await cat(repo, "main", "m-only")).toBe("m");
        expect(await code(repo.stat("main", "other"))).toBe("NOT_FOUND");
      });

      it("refuses conflicts listing the paths, and settles them with a strategy", async () => {
        const { repo } = await setup();
        await upload(repo, "feature", "shared", "feature side");
        await repo.deleteObject("feature", "other");
        await repo.commit("feature", { message: "f" });
        await upload(repo, "main", "shared", "main side");
        await upload(repo, "main", "other", "main changed");
        await repo.commit("main", { message: "m" });
        const before = await repo.getBranch("main");
        try {
          await repo.merge("feature", "main");
          expect.unreachable("a conflicting merge must fail");
        } catch (e) {
          expect(hasCode(e, "CONFLICT")).toBe(true);
          expect((e as { paths: string[] }).paths).toEqual(["other", "shared"]);
          expect((e as Error).message).toContain("shared");
        }
        expect((await repo.getBranch("main")).commitId).toBe(before.commitId);
        await repo.createBranch("copy", "main");
        await repo.merge("feature", "main", { strategy: "dest-wins" });
        expect(await cat(repo, "main", "shared")).toBe("main side");
        expect(await cat(repo, "main", "other")).toBe("main changed");
        await repo.merge("feature", "copy", { strategy: "source-wins" });
        expect(await cat(repo, "copy", "shared")).toBe("feature side");
        expect(await code(repo.stat("copy", "other"))).toBe("NOT_FOUND");
        expect(await code(repo.merge("feature", "copy", { strategy: "x" as never }))).toBe(
          "INVALID_ARGUMENT",
        );
      });

      it("refuses to merge into a branch with uncommitted changes", async () => {
        const { repo } = await setup();
        await upload(repo, "feature", "new", "n");
        await repo.commit("feature", { message: "f" });
        await upload(repo, "main", "dirty", "d");
        expect(await code(repo.merge("feature", "main"))).toBe("PRECONDITION_FAILED");
      });
    });

    describe("tags", () => {
      it("creates, lists, resolves and deletes tags", async () => {
        const { repo } = await newRepo();
        await upload(repo, "main", "a", "a");
        const c = await repo.commit("main", { message: "a" });
        await repo.createTag("v1.0", "main");
        await repo.createTag("v0.9", "main~1");
        expect(await collect(repo.listTags())).toEqual([
          { name: "v0.9", commitId: c.parents[0] },
          { name: "v1.0", commitId: c.id },
        ]);
        expect(await cat(repo, "v1.0", "a")).toBe("a");
        expect(await code(repo.createTag("v1.0", "main"))).toBe("ALREADY_EXISTS");
        await repo.deleteTag("v1.0");
        expect(await code(repo.deleteTag("v1.0"))).toBe("NOT_FOUND");
        expect(await code(repo.createTag("v2", "missing"))).toBe("NOT_FOUND");
      });
    });

    describe("committed trees", () => {
      it("rewrites only the ranges a small change touches, and diff reads only those", async () => {
        let gets = 0;
        const counting = (s: ObjectStore): ObjectStore => ({
          kind: s.kind,
          url: s.url,
          put: (k, b, o) => s.put(k, b, o),
          get: (k, o) => {
            if (k.startsWith("_cairn/ranges/")) gets++;
            return s.get(k, o);
          },
          head: (k) => s.head(k),
          list: (p, o) => s.list(p, o),
          delete: (k) => s.delete(k),
          copy: (a, b, o) => s.copy(a, b, o),
          close: () => s.close(),
        });
        const { repo, namespace, url } = await newRepo();
        const { address, sha256 } = await upload(repo, "main", "seed", "x");
        await repo.commit("main", { message: "seed" });
        const n = 20_000;
        const big = await repo.importChanges(
          "main",
          changes(n, (i) => entry(`p/${String(i).padStart(6, "0")}`, address, sha256)),
          { message: "big" },
        );
        const store = repo.store;
        const countRanges = async () => (await collect(store.list("_cairn/ranges/"))).length;
        const rangesBefore = await countRanges();
        const metaBefore = await repo.trees.readMetarange(big.metarangeId);
        expect(metaBefore.ranges.length).toBeGreaterThan(10);
        for (const i of [17, 9_000, 19_999]) {
          await repo.stageEntry("main", {
            ...entry(`p/${String(i).padStart(6, "0")}`, address, sha256),
            metadata: { v: "2" },
          });
        }
        const small = await repo.commit("main", { message: "small" });
        const written = (await countRanges()) - rangesBefore;
        expect(written).toBeGreaterThan(0);
        expect(written).toBeLessThanOrEqual(6);
        // A fresh process (empty caches) diffs the two commits reading only the changed ranges.
        const { cairn } = await newCairn(url, counting);
        const fresh = await cairn.repository("repo");
        const diff = await collect(fresh.diff(big.id, small.id));
        expect(diff.map((d) => d.path)).toEqual(["p/000017", "p/009000", "p/019999"]);
        expect(gets).toBeLessThanOrEqual(2 * written);
        expect(namespace).toBeTruthy();
      }, 120_000);

      it("reports a corrupted range object by name instead of crashing", async () => {
        const { repo, url } = await newRepo();
        await upload(repo, "main", "a", "a");
        const c = await repo.commit("main", { message: "a" });
        const meta = await repo.trees.readMetarange(c.metarangeId);
        const key = `_cairn/ranges/${meta.ranges[0]!.id}`;
        await repo.store.put(key, text('{"format":"cairn.range","version":1,"entries":[["garbage'));
        const { cairn } = await newCairn(url);
        const fresh = await cairn.repository("repo");
        const ops = [
          () => collect(fresh.walk("main")),
          () => fresh.stat("main", "a"),
          () => fresh.read("main", "a"),
        ];
        for (const op of ops) {
          try {
            await op();
            expect.unreachable("reading a corrupted range must fail");
          } catch (e) {
            expect(hasCode(e, "CORRUPT")).toBe(true);
            expect((e as Error).message).toContain(key);
          }
        }
        await repo.store.delete(key);
        const { cairn: again } = await newCairn(url);
        const gone = await again.repository("repo");
        expect(await code(gone.stat("main", "a"))).toBe("CORRUPT");
      });
    });

    describe("concurrency", () => {
      it("keeps every staged write when two processes upload and commit to one branch at once", async () => {
        const { repo, url, namespace } = await newRepo("busy");
        expect(namespace).toBeTruthy();
        const worker = fileURLToPath(new URL("./repository-worker.js", import.meta.url));
        const run = (id: string) =>
          new Promise<{ commits: number; conflicts: number }>((resolve, reject) => {
            const child = spawn(
              process.execPath,
              [
                worker,
                JSON.stringify({
                  engineModule: moduleUrl(options.engineModule),
                  storeModule: moduleUrl(options.storeModule),
                  engineUrl: url,
                  repository: "busy",
                  branch: "main",
                  prefix: `w${id}/`,
                  files: 30,
                  commitEvery: 3,
                }),
              ],
              { stdio: ["ignore", "pipe", "pipe"] },
            );
            let out = "";
            let err = "";
            child.stdout.on("data", (d) => {
              out += d;
            });
            child.stderr.on("data", (d) => {
              err += d;
            });
            child.on("error", reject);
            child.on("close", (status) => {
              if (status === 0) resolve(JSON.parse(out));
              else reject(new Error(`worker ${id} exited ${status}: ${err}`));
            });
          });
        const results = await Promise.all([run("a"), run("b")]);
        expect(results.reduce((n, r) => n + r.commits, 0)).toBeGreaterThan(0);
        // Whatever a conflicting commit left staged is committed now; then every write must be in the tree.
        if (await repo.hasUncommitted("main")) await repo.commit("main", { message: "rest" });
        const paths = (await collect(repo.walk("main"))).map((e: Entry) => e.path);
        const expected = ["a", "b"].flatMap((w) =>
          Array.from({ length: 30 }, (_, i) => `w${w}/${String(i).padStart(3, "0")}`),
        );
        expect(paths.filter((p) => p !== "seed").sort()).toEqual(expected.sort());
        for (const p of ["wa/007", "wb/029"]) expect(await cat(repo, "main", p)).toBe(p);
      }, 120_000);
    });
  });
}

async function* changes(
  n: number,
  make: (i: number) => Entry,
): AsyncGenerator<{ path: string; entry: Entry }> {
  for (let i = 0; i < n; i++) {
    const e = make(i);
    yield { path: e.path, entry: e };
  }
}

function entry(path: string, address: string, sha256: string): Entry {
  return {
    path,
    address,
    size: 1,
    sha256,
    contentType: "application/octet-stream",
    mtime: "2026-01-01T00:00:00.000Z",
    metadata: {},
  };
}
