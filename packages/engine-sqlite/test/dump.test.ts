import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import {
  Cairn,
  ENGINE_DUMP_SCHEMAS,
  hasCode,
  loadEngine,
  type MetadataEngine,
  type Repository,
} from "@cairn/core";
import { readDump } from "@cairn/manifest";
import { factory as folder } from "@cairn/store-fs";
import { collect, dumpToBytes, expectCode, randomName, tempDir } from "@cairn/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { factory } from "../src/index.js";

const dir = await tempDir("cairn-dump-");

async function engineAt(name: string): Promise<MetadataEngine> {
  return factory.open(`sqlite://${join(dir, name, "meta.db")}`);
}

/** What a user sees of every repository: branches, tags, full logs, listings and uncommitted changes. */
async function view(engine: MetadataEngine): Promise<unknown> {
  const cairn = new Cairn({ engine, openStore: (u) => folder.open(u) });
  const out: Record<string, unknown> = {};
  for await (const info of cairn.listRepositories()) {
    const repo = await cairn.repository(info.name);
    const branches = await collect(repo.listBranches());
    out[info.name] = {
      info,
      branches,
      tags: await collect(repo.listTags()),
      refs: await Promise.all(
        branches.map(async (b) => ({
          log: (await collect(repo.log(b.name, { firstParent: false }))).map((c) => c.id),
          entries: await collect(repo.walk(b.name)),
          uncommitted: await collect(repo.diffUncommitted(b.name)),
        })),
      ),
    };
  }
  await cairn.close();
  return out;
}

type Op =
  | { kind: "upload"; branch: number; path: string; content: string; meta: Record<string, string> }
  | { kind: "delete"; branch: number; pick: number }
  | { kind: "commit"; branch: number; message: string }
  | { kind: "branch"; from: number }
  | { kind: "merge"; source: number; dest: number }
  | { kind: "tag"; branch: number };

const segment = fc.stringMatching(/^[a-zA-Z0-9éü😀 _.-]{1,6}$/u).filter((s) => s !== "." && s !== "..");
const path = fc.array(segment, { minLength: 1, maxLength: 3 }).map((parts) => parts.join("/"));
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant("upload" as const),
      branch: fc.nat(3),
      path,
      content: fc.string(),
      meta: fc.dictionary(fc.stringMatching(/^[a-z]{1,4}$/), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
    }),
    weight: 5,
  },
  {
    arbitrary: fc.record({ kind: fc.constant("delete" as const), branch: fc.nat(3), pick: fc.nat() }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant("commit" as const),
      branch: fc.nat(3),
      message: fc.string({ minLength: 1 }),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ kind: fc.constant("branch" as const), from: fc.nat(3) }), weight: 1 },
  {
    arbitrary: fc.record({ kind: fc.constant("merge" as const), source: fc.nat(3), dest: fc.nat(3) }),
    weight: 1,
  },
  { arbitrary: fc.record({ kind: fc.constant("tag" as const), branch: fc.nat(3) }), weight: 1 },
);

/** Applies `ops` to a repository; operations the state refuses (nothing to commit, conflicts…) are skipped. */
async function play(repo: Repository, ops: Op[]): Promise<void> {
  const branches = ["main"];
  let tags = 0;
  const at = (i: number) => branches[i % branches.length]!;
  for (const o of ops) {
    try {
      switch (o.kind) {
        case "upload":
          await repo.upload(at(o.branch), o.path, Buffer.from(o.content), { metadata: o.meta });
          break;
        case "delete": {
          const entries = await collect(repo.walk(at(o.branch)));
          if (entries.length > 0)
            await repo.deleteObject(at(o.branch), entries[o.pick % entries.length]!.path);
          break;
        }
        case "commit":
          await repo.commit(at(o.branch), { message: o.message });
          break;
        case "branch": {
          const from = at(o.from);
          const name = `b${branches.length}`;
          await repo.createBranch(name, from);
          branches.push(name);
          break;
        }
        case "merge":
          await repo.merge(at(o.source), at(o.dest), { strategy: "source-wins" });
          break;
        case "tag":
          await repo.createTag(`t${tags++}`, at(o.branch));
          break;
      }
    } catch (e) {
      if (!hasCode(e, "PRECONDITION_FAILED") && !hasCode(e, "CONFLICT") && !hasCode(e, "INVALID_ARGUMENT"))
        throw e;
    }
  }
}

describe("dump and load of a SQLite engine", () => {
  it("round-trips random repositories: the second dump equals the first, and the repositories behave the same", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
        const name = randomName("prop");
        const source = await engineAt(`${name}-a`);
        const target = await engineAt(`${name}-b`);
        try {
          const cairn = new Cairn({ engine: source, openStore: (u) => folder.open(u) });
          const repo = await cairn.createRepository({
            name: "prop",
            namespace: pathToFileURL(join(dir, `${name}-ns`)).href,
          });
          await play(repo, ops);
          await cairn.close();
          const first = await dumpToBytes(source);
          // Half the runs read the dump here, half on a reader thread.
          await loadEngine(
            target,
            ops.length % 2 === 0
              ? readDump([first.bytes], { schemas: ENGINE_DUMP_SCHEMAS })
              : { bytes: [first.bytes] },
          );
          const second = await dumpToBytes(target);
          expect(second.records).toEqual(first.records);
          expect(await view(target)).toEqual(await view(source));
        } finally {
          await source.close();
          await target.close();
        }
      }),
      { numRuns: 25 },
    );
  }, 120_000);

  it("writes every other record of the engine once, byte for byte, wherever its key sorts", async () => {
    const source = await engineAt(randomName("others"));
    const target = await engineAt(randomName("others"));
    try {
      const cairn = new Cairn({ engine: source, openStore: (u) => folder.open(u) });
      const repo = await cairn.createRepository({
        name: "others",
        namespace: pathToFileURL(join(dir, randomName("ns"))).href,
      });
      await repo.upload("main", "a.txt", Buffer.from("a"));
      await repo.commit("main", { message: "one" });
      await repo.upload("main", "b.txt", Buffer.from("b"));
      await cairn.close();
      const [repoPartition] = (await collect(source.partitions())).filter((p) => p !== "cairn");
      // Keys before, between and after the sections the dump writes on their own, and beside their prefixes.
      const others: Record<string, string[]> = {
        cairn: ["a", "leases/job", "namespaces", "namespaces0", "repos", "repos0", "zz", "😀"],
        [repoPartition!]: [
          "a",
          "branch",
          "branch0",
          "commit",
          "commit0/x",
          "meta",
          "staged0",
          "tag",
          "tag0",
          "😀",
        ],
        elsewhere: ["branch/x", "commit/y", "k"],
      };
      for (const [partition, keys] of Object.entries(others)) {
        for (const key of keys) await source.set(partition, key, Buffer.from(`${partition} ${key}`));
      }
      const first = await dumpToBytes(source);
      const engineRecords = first.records
        .filter((r) => r.type === "engine-record")
        .map((r) => `${r.partition} ${r.key} ${Buffer.from(r.value as string, "base64").toString()}`);
      const expected = Object.entries(others).flatMap(([p, keys]) => keys.map((k) => `${p} ${k} ${p} ${k}`));
      expect(engineRecords.sort()).toEqual(expected.sort());
      expect(first.records.filter((r) => r.type === "commit")).toHaveLength(2);
      expect(first.records.filter((r) => r.type === "staged")).toHaveLength(1);

      await loadEngine(target, readDump([first.bytes], { schemas: ENGINE_DUMP_SCHEMAS }));
      expect((await dumpToBytes(target)).records).toEqual(first.records);
    } finally {
      await source.close();
      await target.close();
    }
  });

  it('writes credentials in repository settings as "removed" unless asked to keep them', async () => {
    const engine = await engineAt(randomName("secret"));
    try {
      const record = {
        name: "cloud",
        namespace: "s3://bucket/cloud?region=eu-west-1&secretKey=hunter2",
        defaultBranch: "main",
        createdAt: "2026-11-25T00:00:00.000Z",
        bare: true,
        instanceId: "0123456789abcdef",
      };
      await engine.set("cairn", "repos/cloud", Buffer.from(JSON.stringify(record)));
      const redacted = (await dumpToBytes(engine)).records.find((r) => r.type === "repository");
      expect(redacted?.namespace).toBe("s3://bucket/cloud?region=eu-west-1&secretKey=removed");
      const kept = (await dumpToBytes(engine, { keepSecrets: true })).records.find(
        (r) => r.type === "repository",
      );
      expect(kept?.namespace).toBe(record.namespace);
    } finally {
      await engine.close();
    }
  });
});

/** `engine` with its `writeBatch` replaced. */
function withWriteBatch(engine: MetadataEngine, writeBatch: MetadataEngine["writeBatch"]): MetadataEngine {
  return new Proxy(engine, {
    get: (target, name) => {
      if (name === "writeBatch") return writeBatch;
      const value = Reflect.get(target, name);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** A dump with its record lines replaced by `edit`'s, and a footer that counts and digests them. */
function withRecordLines(bytes: Buffer, edit: (records: string[]) => string[]): Buffer {
  const lines = bytes.toString("utf8").split("\n");
  const records = edit(lines.slice(1, -2));
  const digest = createHash("sha256");
  const counts: Record<string, number> = {};
  for (const line of records) {
    digest.update(`${line}\n`);
    const { type } = JSON.parse(line) as { type: string };
    counts[type] = (counts[type] ?? 0) + 1;
  }
  const footer = { ...JSON.parse(lines.at(-2)!), counts, sha256: digest.digest("hex") };
  return Buffer.from([lines[0], ...records, JSON.stringify(footer), ""].join("\n"));
}

/** A dump with `lines(first)` — `first` the first staged entry, parsed — put before that entry. */
function withStagedBefore<T extends object>(bytes: Buffer, lines: (first: T) => string[]): Buffer {
  return withRecordLines(bytes, (records) => {
    const first = records.findIndex((l) => l.includes('"type":"staged"'));
    return [...records.slice(0, first), ...lines(JSON.parse(records[first]!) as T), ...records.slice(first)];
  });
}

describe("loading a dump's bytes on a reader thread", () => {
  /** An engine with two repositories, committed and staged, and its dump. */
  async function dumped(): Promise<{ source: MetadataEngine; bytes: Buffer }> {
    const source = await engineAt(randomName("thread"));
    const cairn = new Cairn({ engine: source, openStore: (u) => folder.open(u) });
    for (const name of ["one", "two"]) {
      const repo = await cairn.createRepository({
        name,
        namespace: pathToFileURL(join(dir, randomName("ns"))).href,
      });
      for (let i = 0; i < 3000; i++) await source.set("scratch", `k${i}`, Buffer.from("x"));
      await repo.upload("main", "a.txt", Buffer.from(name));
      await repo.commit("main", { message: "first" });
      await repo.upload("main", "b.txt", Buffer.from(name));
    }
    await cairn.close();
    return { source, bytes: (await dumpToBytes(source)).bytes };
  }

  it("loads what a load on this thread loads, leaving the caller's buffers as they were", async () => {
    const { source, bytes } = await dumped();
    const copy = Buffer.from(bytes);
    const here = await engineAt(randomName("here"));
    const there = await engineAt(randomName("there"));
    try {
      const a = await loadEngine(here, readDump([bytes], { schemas: ENGINE_DUMP_SCHEMAS }));
      const progress: number[] = [];
      // Chunks of every size, down to a byte, so that lines cross chunks.
      const chunks = [bytes.subarray(0, 1), bytes.subarray(1, 1000), bytes.subarray(1000)];
      const b = await loadEngine(there, { bytes: chunks }, { onRecord: (n) => progress.push(n) });
      expect(b).toEqual(a);
      expect(bytes.equals(copy)).toBe(true);
      expect(progress.at(-1)).toBe(Object.values(b.counts).reduce((x, y) => x + y, 0));
      expect((await dumpToBytes(there)).records).toEqual((await dumpToBytes(source)).records);
    } finally {
      await Promise.all([source.close(), here.close(), there.close()]);
    }
  });

  it("stores the same values from lines written otherwise: fields reordered, spaced, or unknown ones added", async () => {
    const { source, bytes } = await dumped();
    const lines = bytes.toString("utf8").split("\n");
    const records = lines.slice(1, -2);
    const rewritten = records.map((line, i) => {
      const record = JSON.parse(line) as Record<string, unknown>;
      if (record.type !== "staged" && record.type !== "commit") return line;
      switch (i % 3) {
        case 0: // the same fields, last first
          return JSON.stringify(Object.fromEntries(Object.entries(record).reverse()));
        case 1: // spaces between fields
          return JSON.stringify(record, null, 1).replaceAll("\n", "");
        default: // a field this version does not know, which a staged entry does not keep
          return JSON.stringify({ ...record, later: 1 });
      }
    });
    const edited = withRecordLines(bytes, () => rewritten);
    const target = await engineAt(randomName("rewritten"));
    try {
      await loadEngine(target, { bytes: [edited] });
      const expected = (await dumpToBytes(source)).records.map((r) =>
        r.type === "commit" && records.findIndex((l) => l.includes(`"id":"${r.id}"`)) % 3 === 2
          ? { ...r, later: 1 }
          : r,
      );
      expect((await dumpToBytes(target)).records).toEqual(expected);
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  });

  it("keeps the last of two records of one key, as a load on this thread does", async () => {
    const { source, bytes } = await dumped();
    // 1,500 staged entries, then the first again, smaller, in a later batch: keys no longer ascend from there.
    const edited = withStagedBefore(bytes, (staged: { entry: { size: number } }) => {
      const many = Array.from({ length: 1500 }, (_, i) => {
        const path = `many/${String(i).padStart(4, "0")}`;
        return JSON.stringify({ ...staged, path, entry: { ...staged.entry, path } });
      });
      const again = JSON.parse(many[0]!) as typeof staged;
      again.entry.size = 0;
      return [...many, JSON.stringify(again)];
    });
    const here = await engineAt(randomName("twice-here"));
    const there = await engineAt(randomName("twice-there"));
    try {
      await loadEngine(here, readDump([edited], { schemas: ENGINE_DUMP_SCHEMAS }));
      // An engine that may apply batches out of order, as one with a pool of connections does: the batch with
      // the first of the two records takes longest.
      let delayed = false;
      const writeBatch: MetadataEngine["writeBatch"] = async (ops) => {
        if (!delayed && ops.some((op) => op.key.endsWith("/many/0000"))) {
          delayed = true;
          await new Promise((resolve) => setTimeout(resolve, 300));
        }
        return there.writeBatch(ops);
      };
      const unordered = withWriteBatch(there, writeBatch);
      await loadEngine(unordered, { bytes: [edited] });
      expect(delayed).toBe(true);
      const loaded = (await dumpToBytes(there)).records;
      expect(loaded).toEqual((await dumpToBytes(here)).records);
      const zero = loaded.filter((r) => r.type === "staged" && (r.entry as { size: number }).size === 0);
      expect(zero.map((r) => r.path)).toEqual(["many/0000"]);
    } finally {
      await Promise.all([source.close(), here.close(), there.close()]);
    }
  });

  it("removes what it wrote when the engine fails part-way", async () => {
    const { source, bytes } = await dumped();
    const target = await engineAt(randomName("failing"));
    let batches = 0;
    const writeBatch: MetadataEngine["writeBatch"] = async (ops) => {
      if (++batches === 3) throw new Error("disk full");
      return target.writeBatch(ops);
    };
    const failing = withWriteBatch(target, writeBatch);
    try {
      await expect(loadEngine(failing, { bytes: [bytes] })).rejects.toThrow("disk full");
      expect(await collect(target.partitions())).toEqual([]);
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  });

  it("reads a dump's file itself, and names a file it cannot read", async () => {
    const { source, bytes } = await dumped();
    const file = join(dir, `${randomName("file")}.json`);
    await writeFile(file, bytes);
    const target = await engineAt(randomName("file"));
    try {
      await loadEngine(target, { file });
      expect((await dumpToBytes(target)).records).toEqual((await dumpToBytes(source)).records);
      for (const [path, code] of [
        [join(dir, "missing.json"), "ENOENT"],
        [dir, "EISDIR"],
      ] as const) {
        const empty = await engineAt(randomName("unreadable"));
        try {
          const error = await expectCode(loadEngine(empty, { file: path }), "INVALID_ARGUMENT");
          expect(error.message).toBe(`Cannot read the dump ${path} (${code}).`);
          expect(await collect(empty.partitions())).toEqual([]);
        } finally {
          await empty.close();
        }
      }
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  });

  it("loads a gzipped stream through an engine slower than the reader", async () => {
    const { source, bytes } = await dumped();
    const many = withStagedBefore(bytes, (staged) =>
      Array.from({ length: 20_000 }, (_, i) =>
        JSON.stringify({
          ...staged,
          path: `many/${String(i).padStart(5, "0")}-${randomBytes(24).toString("hex")}`,
        }),
      ),
    );
    const zipped = gzipSync(many);
    // Small chunks that arrive late, into an engine that takes its time: the reader thread waits for input (the
    // gunzip pulls it ahead) and for room to hand over batches at once.
    async function* trickle() {
      for (let at = 0; at < zipped.length; at += 4096) {
        await new Promise((resolve) => setTimeout(resolve, 2));
        yield zipped.subarray(at, at + 4096);
      }
    }
    const target = await engineAt(randomName("slow"));
    const slow = withWriteBatch(target, async (ops) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return target.writeBatch(ops);
    });
    try {
      const { counts } = await loadEngine(slow, { bytes: trickle() });
      expect(counts.staged).toBe(20_002);
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  }, 30_000);

  it("refuses chunks that are not bytes, with the target left empty", async () => {
    const { source, bytes } = await dumped();
    const target = await engineAt(randomName("text"));
    try {
      const text = [bytes.toString("utf8")] as unknown as Buffer[];
      const error = await expectCode(loadEngine(target, { bytes: text }), "INVALID_ARGUMENT");
      expect(error.message).toContain("not text (a stream with an encoding set?)");
      expect(await collect(target.partitions())).toEqual([]);
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  });

  it("reports an input that fails while it is read, with the target left empty", async () => {
    const { source, bytes } = await dumped();
    const target = await engineAt(randomName("cut"));
    async function* cut() {
      yield bytes.subarray(0, 100_000);
      throw new Error("connection reset");
    }
    try {
      await expect(loadEngine(target, { bytes: cut() })).rejects.toThrow("connection reset");
      expect(await collect(target.partitions())).toEqual([]);
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  });

  it("reports a bad line or a broken reference as a load on this thread does, with the target left empty", async () => {
    const { source, bytes } = await dumped();
    const lines = bytes.toString("utf8").split("\n");
    const branch = lines.findIndex((l) => l.includes('"type":"branch"'));
    const badJson = [...lines];
    badJson[branch] = badJson[branch]!.replace('"name"', "name");
    const badRef = [...lines];
    badRef[branch] = badRef[branch]!.replace(/"commitId":"[0-9a-f]+"/, '"commitId":"ffff"');
    // A commit whose parent is not in the dump, digested anew so that only the reference is wrong: a parent that
    // looks like a commit id and one that does not.
    const missingParent = (parent: string) =>
      withRecordLines(bytes, (records) =>
        records.map((line) => line.replace(/"parents":\["[0-9a-f]{64}"\]/, `"parents":["${parent}"]`)),
      ).toString("utf8");
    const absent = "e".repeat(64);
    try {
      for (const [text, code, message] of [
        [badJson.join("\n"), "CORRUPT", `dump, line ${branch + 1} (byte offset`],
        [badRef.join("\n"), "CORRUPT", "points at commit ffff, which is not in the dump"],
        [`${lines.slice(0, -2).join("\n")}\n`, "CORRUPT", "without a footer: it is truncated"],
        [missingParent(absent), "CORRUPT", `has a commit whose parent ${absent} is not in the dump`],
        [missingParent("nope"), "CORRUPT", "has a commit whose parent nope is not in the dump"],
      ] as const) {
        const target = await engineAt(randomName("bad"));
        try {
          const error = await expectCode(
            loadEngine(target, { bytes: [Buffer.from(text)], label: "dump" }),
            code,
          );
          expect(error.message).toContain(message);
          expect(await collect(target.partitions())).toEqual([]);
        } finally {
          await target.close();
        }
      }
    } finally {
      await source.close();
    }
  });
});
