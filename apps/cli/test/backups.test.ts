import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { backupRepository, Cairn, objectKey, type SnapshotRecord } from "@cairn/core";
import { factory as sqlite } from "@cairn/engine-sqlite";
import { factory as folder } from "@cairn/store-fs";
import { beforeAll, describe, expect, it } from "vitest";
import { EXIT, expectOneLineError, setupCli } from "./helpers.js";

// `cairn backups list`, `cairn backups prune` and `cairn verify`, run as a user would, on backups written by
// core's backupRepository at chosen times (so that retention rules have days and weeks to work on).

const cli = setupCli();
let locations = 0;

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

/** A new, empty backup location: its folder and URL. */
function location(): { dir: string; url: string } {
  const dir = join(cli.dir, `backup-${++locations}`);
  return { dir, url: pathToFileURL(dir).href };
}

/** Runs `fn` on the CLI's metadata engine in this process: setting up costs no process start. */
async function withCairn<T>(fn: (cairn: Cairn) => Promise<T>): Promise<T> {
  const engine = await sqlite.open(cli.meta);
  const cairn = new Cairn({ engine, openStore: (u) => folder.open(u) });
  try {
    return await fn(cairn);
  } finally {
    await cairn.close();
    await engine.close();
  }
}

let generation = 0;

/** Creates repository `name` with `files` committed on main. */
const createRepository = (name: string, files: Record<string, string>) =>
  withCairn(async (cairn) => {
    const namespace = pathToFileURL(join(cli.dir, "data", `${name}-${++generation}`)).href;
    const repo = await cairn.createRepository({ name, namespace });
    for (const [path, text] of Object.entries(files)) await repo.upload("main", path, Buffer.from(text));
    await repo.commit("main", { message: "files", author: "tester" });
    return repo;
  });

/** Backs up `repo` into `url` as if it were `iso` now. */
function backupAt(repo: string, url: string, iso: string): Promise<SnapshotRecord> {
  return withCairn(async (cairn) => {
    const store = await folder.open(url);
    try {
      return (await backupRepository(cairn, repo, store, { now: () => new Date(iso) })).snapshot;
    } finally {
      await store.close();
    }
  });
}

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

const lockFile = (dir: string, refreshedAt: Date, host = "backup-07", pid = 4242, operation = "backup") => {
  const id = `L${refreshedAt.getTime()}`;
  const json = JSON.stringify({
    id,
    operation,
    host,
    pid,
    createdAt: refreshedAt.toISOString(),
    refreshedAt: refreshedAt.toISOString(),
  });
  mkdirSync(join(dir, "locks"), { recursive: true });
  writeFileSync(join(dir, "locks", `${id}.json`), json);
  return `locks/${id}.json`;
};

beforeAll(async () => {
  const photos = await createRepository("photos", { "a.jpg": "first photo\n" });
  await withCairn(async (cairn) => {
    const repo = await cairn.repository(photos.info.name);
    await repo.createBranch("dev", "main");
    await repo.upload("dev", "b.jpg", Buffer.from("second photo\n"));
    await repo.commit("dev", { message: "two", author: "tester" });
    await repo.createTag("v1", "dev");
  });
  await createRepository("docs", { "doc.txt": "a document\n" });
});

describe("cairn backups list", () => {
  it("lists the complete snapshots oldest first, as text or JSON Lines, of one repository with --repo", async () => {
    const { dir, url } = location();
    const b = await backupAt("photos", url, "2026-02-02T10:00:00Z");
    const a = await backupAt("photos", url, "2026-02-01T10:00:00Z");
    const d = await backupAt("docs", url, "2026-02-01T12:00:00Z");
    // An interrupted backup: files without a record are never listed.
    writeFileSync(join(dir, "snapshots", "partial.tmp"), "");

    const text = (await cli.ok(["backups", "list", url])).trimEnd().split("\n");
    expect(text).toHaveLength(3);
    expect(text[0]).toMatch(
      new RegExp(
        `^${a.id}\\s+2026-02-01 10:00:00 UTC\\s+photos\\s+3 commits, 2 branches, 1 tag\\s+\\d+ objects \\(`,
      ),
    );
    expect(text[1]).toContain(d.id);
    expect(text[2]).toContain(b.id);

    const json = await cli.json<SnapshotRecord>(["backups", "list", url]);
    expect(json.map((s) => s.id)).toEqual([a.id, d.id, b.id]);
    expect(json[0]).toEqual(a);

    const docs = await cli.json<SnapshotRecord>(["backups", "list", url, "--repo", "docs"]);
    expect(docs.map((s) => s.id)).toEqual([d.id]);
    const none = await cli(["backups", "list", url, "--repo", "nope"]);
    expect(none.status).toBe(0);
    expect(none.stdout).toBe("");
    expect(none.stderr).toContain("No snapshots of repository nope");
  });

  it("refuses a location that holds no backup with NOT_FOUND, naming it", async () => {
    const { url } = location();
    const err = await cli.fails(["backups", "list", url], EXIT.NOT_FOUND);
    expect(err).toContain(url);
    expect(err).toContain("holds no cairn backup");
  });
});

describe("cairn backups prune", () => {
  it("refuses an empty policy, a malformed count and a malformed duration", async () => {
    const { url } = location();
    await backupAt("docs", url, "2026-01-01T00:00:00Z");
    expect(await cli.fails(["backups", "prune", url], EXIT.INVALID_ARGUMENT)).toMatch(
      /policy is empty.*--keep-/,
    );
    expect(
      await cli.fails(["backups", "prune", url, "--keep-daily", "many"], EXIT.INVALID_ARGUMENT),
    ).toContain('--keep-daily must be a whole number of snapshots (or "unlimited"), not "many"');
    expect(
      await cli.fails(["backups", "prune", url, "--keep-within", "3 days"], EXIT.INVALID_ARGUMENT),
    ).toContain('--keep-within "3 days"');
  });

  it("shows its plan with --dry-run and changes nothing; then removes records, files and unreferenced objects", async () => {
    const { dir, url } = location();
    const old = await backupAt("photos", url, "2026-01-05T10:00:00Z");
    // A repository deleted and made again: the objects of its first life are needed by the old snapshot only.
    await createRepository("gone", { "x.txt": "gone soon\n" });
    const gone1 = await backupAt("gone", url, "2026-01-05T11:00:00Z");
    await withCairn((cairn) => cairn.deleteRepository("gone"));
    await createRepository("gone", { "y.txt": "here to stay\n" });
    const gone2 = await backupAt("gone", url, "2026-01-05T12:00:00Z");
    const mid = await backupAt("photos", url, "2026-01-06T10:00:00Z");
    const last = await backupAt("photos", url, "2026-01-07T10:00:00Z");
    const before = files(dir);
    const goneObject = join(dir, objectKey(sha("gone soon\n")));
    expect(existsSync(goneObject)).toBe(true);

    const dry = await cli(["backups", "prune", url, "--keep-last", "1", "--keep-daily", "2", "--dry-run"]);
    expect(dry.status, dry.stderr).toBe(0);
    const lines = dry.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(new RegExp(`^would remove\\s+${old.id}\\s+2026-01-05 10:00:00 UTC\\s+photos$`));
    expect(dry.stdout).toMatch(new RegExp(`would remove\\s+${gone1.id}`));
    expect(dry.stdout).toMatch(new RegExp(`keep\\s+${gone2.id}\\s+.*gone\\s+last, daily`));
    expect(dry.stdout).toMatch(new RegExp(`keep\\s+${mid.id}\\s+.*photos\\s+daily$`, "m"));
    expect(dry.stdout).toMatch(new RegExp(`keep\\s+${last.id}\\s+.*photos\\s+last, daily$`, "m"));
    expect(lines.at(-1)).toMatch(
      /^Would remove 2 snapshots, 4 snapshot files and [1-9]\d* objects \(.+\); 3 snapshots and \d+ objects kept\. Nothing was changed \(--dry-run\)\.$/,
    );
    expect(files(dir)).toEqual(before);

    const json = await cli.json<{
      type: string;
      id?: string;
      reasons?: string[];
      objects?: { deleted: number };
    }>(["backups", "prune", url, "--keep-last", "1", "--keep-daily", "2", "--dry-run"]);
    expect(json.filter((r) => r.type === "remove").map((r) => r.id)).toEqual([old.id, gone1.id]);
    expect(json.find((r) => r.id === last.id)?.reasons).toEqual(["last", "daily"]);
    const summary = json.at(-1)!;
    expect(summary).toMatchObject({ type: "summary", dryRun: true, removed: 2, kept: 3 });
    expect(files(dir)).toEqual(before);

    const real = await cli.ok(["backups", "prune", url, "--keep-last", "1", "--keep-daily", "2"]);
    expect(real).toMatch(
      new RegExp(`^Removed 2 snapshots, 4 snapshot files and ${summary.objects!.deleted} objects`, "m"),
    );
    expect((await cli.json<SnapshotRecord>(["backups", "list", url])).map((s) => s.id)).toEqual([
      gone2.id,
      mid.id,
      last.id,
    ]);
    expect(existsSync(goneObject)).toBe(false);
    expect(existsSync(join(dir, "snapshots", old.id))).toBe(false);
    expect(await cli.ok(["verify", url, "--read-data"])).toMatch(
      /^Checked 3 snapshots and \d+ objects .*: no problems\.\n$/,
    );
  });

  it("refuses while a backup holds a fresh lock, naming its host, pid and age; proceeds over a stale one", async () => {
    const { dir, url } = location();
    await backupAt("docs", url, "2026-01-01T00:00:00Z");
    await backupAt("docs", url, "2026-01-02T00:00:00Z");
    const fresh = lockFile(dir, new Date(Date.now() - 2 * 60_000));
    const before = files(dir);
    const err = await cli.fails(["backups", "prune", url, "--keep-last", "1"], EXIT.PRECONDITION_FAILED);
    expect(err).toContain(url);
    expect(err).toContain("backup on host backup-07 (pid 4242)");
    expect(err).toMatch(/refreshed 2m\d*s? ago/);
    expect(err).toContain(fresh);
    expect(files(dir)).toEqual(before);

    rmSync(join(dir, fresh));
    const stale = lockFile(dir, new Date(Date.now() - 11 * 60_000));
    const r = await cli(["backups", "prune", url, "--keep-last", "1"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`Removed the stale lock ${stale}.`);
    expect(r.stdout).toMatch(/^Removed 1 snapshot, 2 snapshot files/m);
    expect(files(dir).filter((f) => f.startsWith("locks/"))).toEqual([]);
  });
});

describe("cairn verify", () => {
  it("passes a sound backup, and names a corrupted object and its snapshot with --read-data (exit 8)", async () => {
    const { dir, url } = location();
    const first = await backupAt("photos", url, "2026-01-01T00:00:00Z");
    await backupAt("photos", url, "2026-01-02T00:00:00Z");
    expect(await cli.ok(["verify", url])).toMatch(
      /^Checked 2 snapshots and \d+ objects \(.+\), sizes only: no problems\.\n$/,
    );

    const key = objectKey(sha("first photo\n"));
    const bytes = readFileSync(join(dir, key));
    bytes[0]! ^= 0x20;
    writeFileSync(join(dir, key), bytes);

    // Same size: a size-only check cannot see it.
    expect((await cli(["verify", url])).status).toBe(0);
    for (const args of [["--read-data"], ["--read-data-subset", "100%"]]) {
      const r = await cli(["verify", url, ...args]);
      expectOneLineError(r, EXIT.CORRUPT);
      expect(r.stdout.trimEnd().split("\n")).toHaveLength(1);
      expect(r.stdout).toMatch(
        new RegExp(`^digest: ${key} of snapshot ${first.id} does not match its SHA-256`),
      );
      expect(r.stderr).toContain(`Verify found 1 problem in ${url} (damaged snapshot ${first.id})`);
    }

    const json = await cli(["verify", url, "--read-data", "--json"]);
    expect(json.status).toBe(EXIT.CORRUPT);
    const records = json.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records[0]).toMatchObject({ type: "problem", kind: "digest", path: key, snapshot: first.id });
    expect(records[1]).toMatchObject({ type: "summary", problems: 1, damaged: [first.id] });
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: "CORRUPT", status: EXIT.CORRUPT } });
  });

  it("names a missing object, and a missing inventory, by path and snapshot", async () => {
    const { dir, url } = location();
    const s = await backupAt("docs", url, "2026-01-01T00:00:00Z");
    const key = objectKey(sha("a document\n"));
    rmSync(join(dir, key));
    const r = await cli(["verify", url]);
    expectOneLineError(r, EXIT.CORRUPT);
    expect(r.stdout).toMatch(
      new RegExp(`^missing: ${key} \\(data .+ of snapshot ${s.id}\\) is missing\\.\n$`),
    );

    rmSync(join(dir, s.inventory.path));
    const r2 = await cli(["verify", url, "--snapshot", s.id]);
    expectOneLineError(r2, EXIT.CORRUPT);
    expect(r2.stdout).toContain(`file: ${s.inventory.path} of snapshot ${s.id} is missing`);
  });

  it("refuses to start during a prune (exit 7), and with --no-lock checks without writing a lock", async () => {
    const { dir, url } = location();
    await backupAt("docs", url, "2026-01-01T00:00:00Z");
    const pruning = lockFile(dir, new Date(Date.now() - 60_000), "prune-host", 77, "prune");
    const err = await cli.fails(["verify", url], EXIT.PRECONDITION_FAILED);
    expect(err).toContain("is being pruned by host prune-host (pid 77");
    expect(err).toContain("verify once the prune is done");
    expect(files(dir).filter((f) => f.startsWith("locks/"))).toEqual([pruning]);
    expect(await cli.ok(["verify", url, "--no-lock"])).toMatch(
      /^Checked 1 snapshot and \d+ objects .*: no problems\.\n$/,
    );
    expect(files(dir).filter((f) => f.startsWith("locks/"))).toEqual([pruning]);
    rmSync(join(dir, pruning));
    await cli.ok(["verify", url]);
    // Its own lock is gone once it is done.
    expect(files(dir).filter((f) => f.startsWith("locks/"))).toEqual([]);
  });

  it("refuses an unknown snapshot (exit 4), a malformed subset (exit 3), and both read options at once (exit 2)", async () => {
    const { url } = location();
    await backupAt("docs", url, "2026-01-01T00:00:00Z");
    const err = await cli.fails(["verify", url, "--snapshot", "20990101T000000Z-00000000"], EXIT.NOT_FOUND);
    expect(err).toContain("has no snapshot 20990101T000000Z-00000000");
    expect(await cli.fails(["verify", url, "--read-data-subset", "150%"], EXIT.INVALID_ARGUMENT)).toContain(
      '"150%"',
    );
    expect(await cli.fails(["verify", url, "--read-data", "--read-data-subset", "1/2"], EXIT.USAGE)).toMatch(
      /cannot be used with/,
    );
  });
});
