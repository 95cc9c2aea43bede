import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { finished } from "node:stream/promises";
import { pathToFileURL } from "node:url";
import { gunzipSync, gzipSync } from "node:zlib";
import {
  applyRetention,
  BACKUP_MARKER,
  backupRepository,
  Cairn,
  copyVerified,
  type Dated,
  type GetOptions,
  INVENTORY_SCHEMAS,
  INVENTORY_SECTIONS,
  LOCK_STALE_MS,
  listSnapshots,
  type ObjectStore,
  objectKey,
  parseReadDataSubset,
  pruneBackups,
  type RetentionPolicy,
  restoreRepository,
  type SnapshotRecord,
  snapshotRecordKey,
  type VerifyOptions,
  type VerifyProblem,
  verifyBackup,
} from "@cairn/core";
import { type DumpRecord, readDump, writeDump } from "@cairn/manifest";
import { factory as folder } from "@cairn/store-fs";
import { collect, expectCode, tempDir } from "@cairn/testkit";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { factory } from "../src/index.js";

// Backups of real repositories (SQLite engine × folder store) into a folder, pruned and verified.

const at = (iso: string) => () => new Date(iso);

interface World {
  root: string;
  cairn: Cairn;
  backup: ObjectStore;
  /** The folder of the backup location. */
  dir: string;
  /** Creates repository `name` holding `files` on main, a branch `dev` with one more commit and a tag. */
  repository(name: string, files: Record<string, string>): Promise<void>;
  snapshot(name: string, iso: string): Promise<SnapshotRecord>;
}

async function world(): Promise<World> {
  const root = await tempDir("cairn-maintenance-");
  const engine = await factory.open(`sqlite://${join(root, "meta.db")}`);
  const cairn = new Cairn({ engine, openStore: (u) => folder.open(u) });
  const dir = join(root, "backup");
  const backup = await folder.open(pathToFileURL(dir).href);
  let generation = 0;
  return {
    root,
    cairn,
    backup,
    dir,
    async repository(name, files) {
      const namespace = pathToFileURL(join(root, "ns", `${name}-${++generation}`)).href;
      const repo = await cairn.createRepository({ name, namespace });
      for (const [path, text] of Object.entries(files)) await repo.upload("main", path, Buffer.from(text));
      await repo.commit("main", { message: "files", author: "t" });
      await repo.createBranch("dev", "main");
      await repo.upload("dev", "dev.txt", Buffer.from(`dev of ${name} ${generation}`));
      await repo.commit("dev", { message: "dev", author: "t" });
      await repo.createTag("v1", "dev");
    },
    async snapshot(name, iso) {
      return (await backupRepository(cairn, name, backup, { now: at(iso) })).snapshot;
    },
  };
}

const sha = (text: string) => createHash("sha256").update(text).digest("hex");
const objectFile = (w: World, text: string) => join(w.dir, objectKey(sha(text)));
const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

async function verify(w: World, options: VerifyOptions = {}) {
  const problems: VerifyProblem[] = [];
  const result = await verifyBackup(w.backup, { ...options, onProblem: (p) => problems.push(p) });
  expect(result.problems).toBe(problems.length);
  return { result, problems };
}

async function lock(
  w: World,
  refreshedAt: Date,
  host = "backup-07",
  pid = 4242,
  operation = "backup",
): Promise<string> {
  const id = `L${refreshedAt.getTime()}`;
  const key = `locks/${id}.json`;
  await w.backup.put(
    key,
    Buffer.from(
      JSON.stringify({
        id,
        operation,
        host,
        pid,
        createdAt: refreshedAt.toISOString(),
        refreshedAt: refreshedAt.toISOString(),
      }),
    ),
  );
  return key;
}

/** Every file of the backup folder, relative, sorted. */
async function files(dir: string): Promise<string[]> {
  const out = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
  return out.sort();
}

describe("pruneBackups", () => {
  it("removes the snapshots no rule keeps, then the objects only they listed; what is kept verifies and restores", async () => {
    const w = await world();
    await w.repository("photos", { "a.txt": "old photo", "shared.txt": "shared bytes" });
    const old = await w.snapshot("photos", "2026-01-01T10:00:00Z");
    // The repository is deleted and made again: its old objects are no longer needed by newer snapshots.
    await w.cairn.deleteRepository("photos");
    await w.repository("photos", { "b.txt": "new photo", "shared.txt": "shared bytes" });
    const mid = await w.snapshot("photos", "2026-01-02T10:00:00Z");
    const last = await w.snapshot("photos", "2026-01-03T10:00:00Z");
    expect(await exists(objectFile(w, "old photo"))).toBe(true);

    const result = await pruneBackups(w.backup, { last: 2 });
    expect(result.remove.map((s) => s.id)).toEqual([old.id]);
    expect(result.keep.map((k) => [k.snapshot.id, k.reasons])).toEqual([
      [mid.id, ["last"]],
      [last.id, ["last"]],
    ]);
    expect(result.files).toBe(2);
    // a.txt, its range and metarange, dev.txt of the first generation and its range and metarange …
    expect(result.objects.deleted).toBeGreaterThanOrEqual(3);
    expect(result.objects.bytes).toBeGreaterThan(0);
    expect((await listSnapshots(w.backup)).map((s) => s.id)).toEqual([mid.id, last.id]);
    expect(await exists(join(w.dir, snapshotRecordKey(old.id)))).toBe(false);
    expect(await exists(join(w.dir, "snapshots", old.id))).toBe(false);
    expect(await exists(objectFile(w, "old photo"))).toBe(false);
    expect(await exists(objectFile(w, "shared bytes"))).toBe(true);
    expect(await exists(objectFile(w, "new photo"))).toBe(true);
    // Its own lock is gone.
    expect((await files(w.dir)).filter((f) => f.startsWith("locks/"))).toEqual([]);

    const { result: checked, problems } = await verify(w, { readData: true });
    expect(problems).toEqual([]);
    expect(checked).toMatchObject({ snapshots: 2, unreferenced: 0, problems: 0 });

    const restored = await restoreRepository(w.cairn, w.backup, {
      snapshot: mid.id,
      name: "photos-back",
      namespace: pathToFileURL(join(w.root, "ns", "photos-back")).href,
    });
    expect(restored.snapshot.id).toBe(mid.id);
    const repo = await w.cairn.repository("photos-back");
    const read = async (ref: string, path: string) => {
      const r = await repo.read(ref, path);
      const chunks: Buffer[] = [];
      for await (const c of r.body) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString();
    };
    expect(await read("main", "b.txt")).toBe("new photo");
    expect(await read("v1", "shared.txt")).toBe("shared bytes");
    expect((await collect(repo.listBranches())).map((b) => b.name).sort()).toEqual(["dev", "main"]);

    // A second prune with the same rules finds nothing more to do.
    const again = await pruneBackups(w.backup, { last: 2 });
    expect(again).toMatchObject({ remove: [], files: 0, objects: { deleted: 0 } });
  });

  it("applies the rules to each repository on its own, and --repo to one only", async () => {
    const w = await world();
    await w.repository("photos", { "p.txt": "p" });
    await w.repository("docs", { "d.txt": "d" });
    const p1 = await w.snapshot("photos", "2026-03-01T08:00:00Z");
    const d1 = await w.snapshot("docs", "2026-03-01T09:00:00Z");
    const p2 = await w.snapshot("photos", "2026-03-01T10:00:00Z");
    const d2 = await w.snapshot("docs", "2026-03-02T09:00:00Z");
    const p3 = await w.snapshot("photos", "2026-03-02T10:00:00Z");

    // One a day, per repository: photos keeps p2 (newest of 03-01) and p3; docs keeps both.
    const daily = await pruneBackups(w.backup, { daily: 5 }, { dryRun: true });
    expect(daily.remove.map((s) => s.id)).toEqual([p1.id]);
    expect(daily.keep.map((k) => k.snapshot.id)).toEqual([d1.id, p2.id, d2.id, p3.id]);

    const only = await pruneBackups(w.backup, { last: 1 }, { repository: "docs" });
    expect(only.remove.map((s) => s.id)).toEqual([d1.id]);
    expect(only.keep.find((k) => k.snapshot.id === p1.id)?.reasons).toEqual(["other repository"]);
    const remaining = await listSnapshots(w.backup);
    expect(remaining.map((s) => s.id)).toEqual([p1.id, p2.id, d2.id, p3.id]);
    expect((await verify(w)).problems).toEqual([]);
    // What is left under objects/ is exactly the union of the remaining inventories.
    const union = new Set<string>();
    for (const s of remaining) {
      const inventory = gunzipSync(await readFile(join(w.dir, s.inventory.path)));
      for await (const r of readDump([inventory], { schemas: INVENTORY_SCHEMAS }))
        union.add(objectKey(r.sha256 as string));
    }
    expect((await files(w.dir)).filter((f) => f.startsWith("objects/"))).toEqual([...union].sort());
  });

  it("changes nothing in a dry run, and says what it would delete", async () => {
    const w = await world();
    await w.repository("photos", { "a.txt": "first" });
    await w.snapshot("photos", "2026-01-01T00:00:00Z");
    await w.cairn.deleteRepository("photos");
    await w.repository("photos", { "b.txt": "second" });
    await w.snapshot("photos", "2026-01-02T00:00:00Z");
    const stale = await lock(w, new Date(Date.now() - LOCK_STALE_MS - 60_000));
    const before = await files(w.dir);

    const result = await pruneBackups(w.backup, { last: 1 }, { dryRun: true });
    expect(result.dryRun).toBe(true);
    expect(result.remove).toHaveLength(1);
    expect(result.files).toBe(2);
    expect(result.objects.deleted).toBeGreaterThan(0);
    expect(result.objects.bytes).toBeGreaterThan(0);
    expect(result.staleLocks).toEqual([stale]);
    expect(await files(w.dir)).toEqual(before);

    // The real run deletes exactly what the dry run announced.
    const real = await pruneBackups(w.backup, { last: 1 });
    expect({ ...real, dryRun: true }).toEqual(result);
    expect(await exists(join(w.dir, stale))).toBe(false);
  });

  it("refuses while another process holds a fresh lock, naming it, and proceeds over a stale one", async () => {
    const w = await world();
    await w.repository("photos", { "a.txt": "a" });
    await w.snapshot("photos", "2026-01-01T00:00:00Z");
    await w.snapshot("photos", "2026-01-02T00:00:00Z");
    const now = new Date("2026-06-01T12:00:00Z");
    const fresh = await lock(w, new Date(now.getTime() - 3 * 60_000), "backup-07", 4242);
    const before = await files(w.dir);

    for (const dryRun of [false, true]) {
      const error = await expectCode(
        pruneBackups(w.backup, { last: 1 }, { now: () => now, dryRun }),
        "PRECONDITION_FAILED",
      );
      expect(error.message).toContain(w.backup.url);
      expect(error.message).toContain("backup-07");
      expect(error.message).toContain("pid 4242");
      expect(error.message).toContain("3m ago");
      expect(error.message).toContain(fresh);
    }
    expect(await files(w.dir)).toEqual(before);

    // Ten minutes and more without refresh: the process died; its lock goes, and the prune runs.
    await rm(join(w.dir, fresh));
    const stale = await lock(w, new Date(now.getTime() - LOCK_STALE_MS - 1000));
    const result = await pruneBackups(w.backup, { last: 1 }, { now: () => now });
    expect(result.staleLocks).toEqual([stale]);
    expect(result.remove).toHaveLength(1);
    expect((await files(w.dir)).filter((f) => f.startsWith("locks/"))).toEqual([]);
  });

  it("refuses a lock it cannot read when it was written recently", async () => {
    const w = await world();
    await w.repository("photos", { "a.txt": "a" });
    await w.snapshot("photos", "2026-01-01T00:00:00Z");
    await w.backup.put("locks/garbled.json", Buffer.from("{not json"));
    const error = await expectCode(pruneBackups(w.backup, { last: 1 }), "PRECONDITION_FAILED");
    expect(error.message).toContain("locks/garbled.json");
  });

  it("refuses an empty or malformed policy before touching the location", async () => {
    const w = await world();
    await w.repository("photos", { "a.txt": "a" });
    await w.snapshot("photos", "2026-01-01T00:00:00Z");
    const before = await files(w.dir);
    for (const policy of [{}, { last: 0, daily: 0 }] as RetentionPolicy[]) {
      const error = await expectCode(pruneBackups(w.backup, policy), "INVALID_ARGUMENT");
      expect(error.message).toMatch(/empty.*--keep-/);
    }
    const error = await expectCode(pruneBackups(w.backup, { last: 1.5 }), "INVALID_ARGUMENT");
    expect(error.message).toContain("last");
    expect(await files(w.dir)).toEqual(before);
  });

  it("cleans up what interrupted backups left: snapshot folders without a record, objects nothing lists", async () => {
    const w = await world();
    await w.repository("photos", { "a.txt": "a" });
    const kept = await w.snapshot("photos", "2026-01-01T00:00:00Z");
    const orphanId = "20260101T010000Z-0badc0de";
    await w.backup.put(`snapshots/${orphanId}/refs.json.gz`, Buffer.from("partial"));
    await w.backup.put(objectKey(sha("copied, never listed")), Buffer.from("copied, never listed"));
    // Not cairn's: left alone.
    await w.backup.put("objects/README", Buffer.from("hands off"));

    const result = await pruneBackups(w.backup, { last: 5 });
    expect(result.remove).toEqual([]);
    expect(result.leftovers).toEqual([orphanId]);
    expect(result.files).toBe(1);
    expect(result.objects.deleted).toBe(1);
    expect(result.objects.bytes).toBe("copied, never listed".length);
    expect(await exists(join(w.dir, "snapshots", orphanId))).toBe(false);
    expect(await exists(join(w.dir, "objects/README"))).toBe(true);
    expect((await listSnapshots(w.backup)).map((s) => s.id)).toEqual([kept.id]);
    expect((await verify(w, { readData: true })).problems).toEqual([]);
  });

  it("deletes nothing when a remaining snapshot's inventory is damaged, naming it", async () => {
    const w = await world();
    await w.repository("photos", { "a.txt": "first" });
    await w.snapshot("photos", "2026-01-01T00:00:00Z");
    await w.cairn.deleteRepository("photos");
    await w.repository("photos", { "b.txt": "second" });
    const last = await w.snapshot("photos", "2026-01-02T00:00:00Z");
    await rm(join(w.dir, last.inventory.path));
    const before = await files(w.dir);
    const error = await expectCode(pruneBackups(w.backup, { last: 1 }), "CORRUPT");
    expect(error.message).toContain(last.inventory.path);
    expect(error.message).toContain(last.id);
    expect(error.message).toContain("deleted nothing");
    expect((await files(w.dir)).filter((f) => !f.startsWith("locks/"))).toEqual(
      before.filter((f) => !f.startsWith("locks/")),
    );
  });

  it("refuses a location that holds no backup", async () => {
    const w = await world();
    const empty = await folder.open(pathToFileURL(join(w.root, "nothing")).href);
    const error = await expectCode(pruneBackups(empty, { last: 1 }), "NOT_FOUND");
    expect(error.message).toContain(empty.url);
    expect(error.message).toContain(BACKUP_MARKER);
  });
});

describe("verifyBackup", () => {
  async function twoSnapshots() {
    const w = await world();
    await w.repository("photos", { "a.txt": "alpha", "b.txt": "bravo bravo" });
    const first = await w.snapshot("photos", "2026-01-01T00:00:00Z");
    const repo = await w.cairn.repository("photos");
    await repo.upload("main", "c.txt", Buffer.from("charlie"));
    await repo.commit("main", { message: "c", author: "t" });
    const second = await w.snapshot("photos", "2026-01-02T00:00:00Z");
    return { w, first, second };
  }

  it("finds nothing wrong with a sound backup, checking shared objects once", async () => {
    const { w, second } = await twoSnapshots();
    const { result, problems } = await verify(w, { readData: true });
    expect(problems).toEqual([]);
    // The second snapshot lists every object of the first.
    expect(result).toMatchObject({
      snapshots: 2,
      objects: second.counts.objects,
      bytes: second.counts.bytes,
      readObjects: second.counts.objects,
      readBytes: second.counts.bytes,
      unreferenced: 0,
      problems: 0,
      damaged: [],
    });
  });

  it("names a corrupted object and its snapshot with readData; sizes alone cannot see it", async () => {
    const { w, first } = await twoSnapshots();
    const file = objectFile(w, "alpha");
    const bytes = await readFile(file);
    bytes[0]! ^= 0xff;
    await writeFile(file, bytes);

    expect((await verify(w)).problems).toEqual([]);
    const { result, problems } = await verify(w, { readData: true });
    expect(problems).toEqual([
      expect.objectContaining({ kind: "digest", path: objectKey(sha("alpha")), snapshot: first.id }),
    ]);
    expect(problems[0]!.message).toContain(objectKey(sha("alpha")));
    expect(problems[0]!.message).toContain(first.id);
    expect(result.damaged).toEqual([first.id]);
  });

  it("names a missing object and a truncated one, once each, marking every snapshot that needs them", async () => {
    const { w, first, second } = await twoSnapshots();
    await rm(objectFile(w, "alpha"));
    await writeFile(objectFile(w, "bravo bravo"), "bravo");
    const { result, problems } = await verify(w);
    expect(problems.map((p) => [p.kind, p.path, p.snapshot])).toEqual([
      ["missing", objectKey(sha("alpha")), first.id],
      ["size", objectKey(sha("bravo bravo")), first.id],
    ]);
    expect(problems[0]!.message).toMatch(/a\.txt|data\//);
    expect(problems[1]!.message).toContain("has 5 bytes; the inventory says 11");
    expect(result.damaged).toEqual([first.id, second.id]);
    // With the bytes read, the truncated object is not read again, and the missing one is not reported twice.
    expect((await verify(w, { readData: true })).problems).toHaveLength(2);
  });

  it("names a missing or altered inventory or refs file", async () => {
    const { w, first, second } = await twoSnapshots();
    await rm(join(w.dir, first.inventory.path));
    const inv = join(w.dir, second.inventory.path);
    const bytes = await readFile(inv);
    bytes[bytes.length - 5]! ^= 0x01;
    await writeFile(inv, bytes);
    await writeFile(join(w.dir, second.refs.path), "not gzip");
    const { result, problems } = await verify(w);
    expect(problems.map((p) => [p.kind, p.path, p.snapshot])).toEqual([
      ["file", first.inventory.path, first.id],
      ["file", second.refs.path, second.id],
      ["file", second.inventory.path, second.id],
    ]);
    expect(problems[0]!.message).toContain("missing");
    expect(problems[2]!.message).toContain("does not match its record");
    expect(result.damaged).toEqual([first.id, second.id]);
  });

  it("names a commit whose metarange the inventory leaves out, and an inventory that does not parse", async () => {
    const { w, second } = await twoSnapshots();
    // Rewrite the inventory without its metaranges, and its record to match: consistent files, incomplete snapshot.
    const records = (await collect(
      readDump([gunzipSync(await readFile(join(w.dir, second.inventory.path)))], {
        schemas: INVENTORY_SCHEMAS,
      }),
    )) as DumpRecord[];
    const kept = records.filter((r) => r.kind !== "metarange");
    const dropped = records.length - kept.length;
    expect(dropped).toBeGreaterThan(0);
    const path = join(w.root, "inventory.json.gz");
    const out = createWriteStream(path);
    const writer = writeDump({
      output: out,
      sections: INVENTORY_SECTIONS,
      source: { engine: "sqlite" },
      tool: { name: "cairn-test", version: "0" },
      gzip: true,
    });
    for (const r of kept) await writer.write(r);
    await writer.end();
    await finished(out);
    const rewritten = await readFile(path);
    await writeFile(join(w.dir, second.inventory.path), rewritten);
    const record = JSON.parse(await readFile(join(w.dir, snapshotRecordKey(second.id)), "utf8"));
    record.inventory.size = rewritten.length;
    record.inventory.sha256 = createHash("sha256").update(rewritten).digest("hex");
    await writeFile(join(w.dir, snapshotRecordKey(second.id)), JSON.stringify(record));

    const { problems } = await verify(w, { snapshot: second.id });
    expect(problems.length).toBe(dropped);
    for (const p of problems) {
      expect(p).toMatchObject({ kind: "refs", path: second.inventory.path, snapshot: second.id });
      expect(p.message).toMatch(/does not list the metarange [0-9a-f]{64} of commit [0-9a-f]{64}/);
    }

    // Valid gzip and a matching record, but not a dump: the inventory does not parse.
    const garbage = gzipSync("not a dump\n");
    await writeFile(join(w.dir, second.inventory.path), garbage);
    record.inventory.size = garbage.length;
    record.inventory.sha256 = createHash("sha256").update(garbage).digest("hex");
    await writeFile(join(w.dir, snapshotRecordKey(second.id)), JSON.stringify(record));
    const parsed = await verify(w, { snapshot: second.id });
    expect(parsed.problems).toEqual([
      expect.objectContaining({ kind: "inventory", path: second.inventory.path, snapshot: second.id }),
    ]);
  });

  it("reports an unreadable snapshot record and goes on with the others", async () => {
    const { w, first, second } = await twoSnapshots();
    await writeFile(join(w.dir, snapshotRecordKey(first.id)), "{");
    const { result, problems } = await verify(w);
    expect(problems).toEqual([
      expect.objectContaining({ kind: "record", path: snapshotRecordKey(first.id) }),
    ]);
    expect(result.snapshots).toBe(1);
    expect(result.damaged).toEqual([]);
    expect((await verify(w, { snapshot: second.id })).problems).toEqual([]);
  });

  it("checks one snapshot with --snapshot; an unknown one is NOT_FOUND, a malformed one INVALID_ARGUMENT", async () => {
    const { w, first } = await twoSnapshots();
    const { result } = await verify(w, { snapshot: first.id, readData: true });
    expect(result).toMatchObject({ snapshots: 1, objects: first.counts.objects, problems: 0 });
    expect(result.unreferenced).toBeUndefined();
    const missing = await expectCode(verify(w, { snapshot: "20990101T000000Z-00000000" }), "NOT_FOUND");
    expect(missing.message).toContain("20990101T000000Z-00000000");
    expect(missing.message).toContain(w.backup.url);
    const bad = await expectCode(verify(w, { snapshot: "latest" }), "INVALID_ARGUMENT");
    expect(bad.message).toContain('"latest"');
  });

  it("re-hashes a random share, or every object once over the groups n/m", async () => {
    const w = await world();
    const many: Record<string, string> = {};
    for (let i = 0; i < 40; i++) many[`f${i}.txt`] = `file number ${i}`;
    await w.repository("photos", many);
    const s = await w.snapshot("photos", "2026-01-01T00:00:00Z");
    const total = s.counts.objects;

    const some = await verify(w, { readData: { percent: 25 } });
    expect(some.result.readObjects).toBe(Math.ceil(total / 4));
    let sum = 0;
    for (let part = 1; part <= 3; part++) {
      sum += (await verify(w, { readData: { part, of: 3 } })).result.readObjects;
    }
    expect(sum).toBe(total);
  });

  it("parses subsets like restic, and refuses others by name", () => {
    expect(parseReadDataSubset("10%")).toEqual({ percent: 10 });
    expect(parseReadDataSubset("2.5%")).toEqual({ percent: 2.5 });
    expect(parseReadDataSubset("2/5")).toEqual({ part: 2, of: 5 });
    for (const bad of ["0%", "101%", "0/5", "6/5", "ten", "5", "1/0"]) {
      expect(() => parseReadDataSubset(bad), bad).toThrow(new RegExp(`"${bad.replace("/", "\\/")}"`));
    }
  });

  it("holds a lock while it checks, so that a prune refuses to start meanwhile", async () => {
    const { w } = await twoSnapshots();
    // A store that runs a prune when verify first reads an inventory, and waits for its outcome.
    let pruned: Promise<unknown> | undefined;
    const gated = new Proxy(w.backup, {
      get(target, property) {
        const value = Reflect.get(target, property, target);
        if (property !== "get") return typeof value === "function" ? value.bind(target) : value;
        return async (key: string, options?: GetOptions) => {
          if (key.endsWith("inventory.json.gz")) {
            pruned ??= pruneBackups(w.backup, { last: 1 }).then(
              () => undefined,
              (error: unknown) => error,
            );
            await pruned;
          }
          return target.get(key, options);
        };
      },
    });
    const before = await files(w.dir);
    const result = await verifyBackup(gated);
    expect(result.problems).toBe(0);
    const error = (await pruned) as Error;
    expect(error).toMatchObject({ code: "PRECONDITION_FAILED" });
    expect(error.message).toMatch(/verify on host .* holds locks\/[^ ]+\.json/);
    // The prune changed nothing, and the verify took its lock away.
    expect(await files(w.dir)).toEqual(before);
  });

  it("refuses to start while a prune is at work, unless told to take no lock", async () => {
    const { w } = await twoSnapshots();
    const now = new Date();
    const pruning = await lock(w, new Date(now.getTime() - 60_000), "prune-host", 77, "prune");
    const error = await expectCode(verifyBackup(w.backup, { now: () => now }), "PRECONDITION_FAILED");
    expect(error.message).toContain("is being pruned by host prune-host (pid 77");
    expect(error.message).toContain("verify once the prune is done");
    expect((await files(w.dir)).filter((f) => f.startsWith("locks/"))).toEqual([pruning]);
    // Without a lock (a location this process may only read): it checks, and writes nothing.
    const { result } = await verify(w, { lock: false, now: () => now });
    expect(result.snapshots).toBe(2);
    expect((await files(w.dir)).filter((f) => f.startsWith("locks/"))).toEqual([pruning]);
  });

  it("refuses a location that holds no backup", async () => {
    const w = await world();
    const empty = await folder.open(pathToFileURL(join(w.root, "nothing")).href);
    const error = await expectCode(verifyBackup(empty), "NOT_FOUND");
    expect(error.message).toContain("holds no cairn backup");
  });
});

describe("copyVerified", () => {
  it("opens the source only once the target reads the body, so that a put waiting its turn holds nothing open", async () => {
    const root = await tempDir("cairn-copy-");
    const from = await folder.open(pathToFileURL(join(root, "from")).href);
    const to = await folder.open(pathToFileURL(join(root, "to")).href);
    const text = "the bytes of one object\n";
    await from.put("o", Buffer.from(text));
    const events: string[] = [];
    let turn!: () => void;
    const ourTurn = new Promise<void>((resolve) => {
      turn = resolve;
    });
    const bound = (store: ObjectStore, property: string | symbol) => {
      const value = Reflect.get(store, property, store);
      return typeof value === "function" ? value.bind(store) : value;
    };
    const source = new Proxy(from, {
      get: (store, property) =>
        property !== "get"
          ? bound(store, property)
          : (key: string) => {
              events.push("source opened");
              return store.get(key);
            },
    });
    // A target whose put waits before it reads, as a store bounding its upload buffers makes it.
    const target = new Proxy(to, {
      get: (store, property) =>
        property !== "put"
          ? bound(store, property)
          : async (...args: Parameters<ObjectStore["put"]>) => {
              events.push("put called");
              await ourTurn;
              events.push("put reads");
              return store.put(...args);
            },
    });
    const copying = copyVerified(
      source,
      "o",
      target,
      "o",
      { sha256: sha(text), size: text.length },
      "object o",
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(events).toEqual(["put called"]);
    turn();
    await copying;
    expect(events).toEqual(["put called", "put reads", "source opened"]);
    const copied = await collect((await to.get("o")).body);
    expect(Buffer.concat(copied as Buffer[]).toString("utf8")).toBe(text);
    // A source object that is gone fails the copy as a missing object, and the target is left without it.
    const error = await expectCode(
      copyVerified(from, "gone", to, "gone", { sha256: sha(""), size: 0 }, "object gone"),
      "CORRUPT",
    );
    expect(error.message).toContain("object gone is missing");
    expect(await to.head("gone")).toBeUndefined();
  });
});

describe("retention (restic's rules)", () => {
  const HOUR = 3600_000;
  const itemArb = fc
    .uniqueArray(fc.integer({ min: 0, max: 3 * 365 * 24 }), { minLength: 0, maxLength: 60 })
    .map((hours) =>
      hours.map((h, i) => ({
        id: `s${String(i).padStart(3, "0")}`,
        time: new Date(Date.UTC(2025, 0, 1) + h * HOUR),
      })),
    );
  const count = fc.oneof(fc.constant(undefined), fc.integer({ min: 0, max: 8 }));
  const policyArb = fc
    .record({
      last: count,
      hourly: count,
      daily: count,
      weekly: count,
      monthly: count,
      yearly: count,
      within: fc.oneof(
        fc.constant(undefined),
        fc.integer({ min: 1, max: 400 }).map((d) => d * 24 * HOUR),
      ),
    })
    .filter((p) => Object.values(p).some((v) => v !== undefined && v !== 0));

  const ids = (items: readonly { id: string }[]) => items.map((i) => i.id).sort();

  it("keeps exactly the union of each rule applied alone, each kept item with a reason", () => {
    fc.assert(
      fc.property(itemArb, policyArb, (items: Dated[], policy: RetentionPolicy) => {
        const decision = applyRetention(items, policy);
        const union = new Set<string>();
        for (const [rule, value] of Object.entries(policy)) {
          if (value === undefined || value === 0) continue;
          for (const k of applyRetention(items, { [rule]: value }).keep) union.add(k.item.id);
        }
        expect(ids(decision.keep.map((k) => k.item))).toEqual([...union].sort());
        for (const k of decision.keep) expect(k.reasons.length).toBeGreaterThan(0);
        expect(decision.keep.length + decision.remove.length).toBe(items.length);
        expect(ids([...decision.keep.map((k) => k.item), ...decision.remove])).toEqual(ids(items));
      }),
      { numRuns: 300 },
    );
  });

  it("keeps min(N, count) with last N, the newest ones", () => {
    fc.assert(
      fc.property(itemArb, fc.integer({ min: 1, max: 80 }), (items: Dated[], n: number) => {
        const { keep } = applyRetention(items, { last: n });
        expect(keep).toHaveLength(Math.min(n, items.length));
        const newest = [...items].sort((a, b) => b.time.getTime() - a.time.getTime()).slice(0, n);
        expect(ids(keep.map((k) => k.item))).toEqual(ids(newest));
      }),
      { numRuns: 200 },
    );
  });

  it("keeps one per calendar bucket, at most N buckets, the newest of each", () => {
    fc.assert(
      fc.property(itemArb, fc.integer({ min: 1, max: 10 }), (items: Dated[], n: number) => {
        const { keep } = applyRetention(items, { daily: n });
        const days = new Map<string, Dated>();
        for (const item of items) {
          const day = item.time.toISOString().slice(0, 10);
          const known = days.get(day);
          if (!known || known.time < item.time) days.set(day, item);
        }
        const expected = [...days.entries()]
          .sort((a, b) => (a[0] < b[0] ? 1 : -1))
          .slice(0, n)
          .map(([, item]) => item);
        expect(ids(keep.map((k) => k.item))).toEqual(ids(expected));
      }),
      { numRuns: 200 },
    );
  });
});
