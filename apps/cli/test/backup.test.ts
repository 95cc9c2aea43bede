import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  createBucket,
  createContainer,
  EMULATOR_CREDENTIALS,
  freePort,
  startS3rver,
} from "@cairn/testkit/servers";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { BIN, EXIT, expectOneLineError, setupCli } from "./helpers.js";

const cli = setupCli();
const s3 = inject("s3Endpoint");
const azure = inject("azureConnectionString");
const run = `t${Date.now().toString(36)}`;
const bucket = `backups-${run}`;
const container = `backups-${run}`;
const redisPrefix = `cairn-cli-${run}:`;
const redisUrl = `${process.env.REDIS_URL ?? "redis://127.0.0.1:6379"}?prefix=${redisPrefix}`;
const file = (name: string) => pathToFileURL(join(cli.dir, name)).href;
const sqlite = (name: string) => `sqlite://${join(cli.dir, name)}`;
const s3Url = (prefix: string, endpoint = s3) => `s3://${bucket}/${prefix}?endpoint=${endpoint}`;
const azureUrl = (prefix: string) => `azure://${container}/${prefix}`;

/** Runs the CLI against another metadata engine than the test file's own. */
const on = (meta: string) => ({
  ok: async (args: string[]) => {
    const r = await cli([...args, "--meta", meta], { meta: false });
    if (r.status !== 0)
      throw new Error(`cairn ${args.join(" ")} --meta ${meta} exited ${r.status}:\n${r.stderr}`);
    return r.stdout;
  },
  json: async <T>(args: string[]) =>
    (await on(meta).ok([...args, "--json"]))
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as T),
  run: (args: string[]) => cli([...args, "--meta", meta], { meta: false }),
});

/** What a user sees of a repository: branches, tags, each branch's log and listing, and the bytes of a file. */
async function view(meta: string, repo: string): Promise<unknown> {
  const c = on(meta);
  const branches = await c.json<{ name: string; commitId: string }>(["branch", "list", `cairn://${repo}`]);
  const tags = await c.json<{ name: string; commitId: string }>(["tag", "list", `cairn://${repo}`]);
  const perBranch: Record<string, unknown> = {};
  for (const b of branches) {
    perBranch[b.name] = {
      log: (await c.json<{ id: string }>(["log", `cairn://${repo}/${b.name}`, "--all-parents"])).map(
        (x) => x.id,
      ),
      files: (
        await c.json<{ path: string; sha256: string; size: number }>([
          "fs",
          "ls",
          `cairn://${repo}/${b.name}/`,
          "--recursive",
        ])
      ).map((e) => `${e.path} ${e.sha256} ${e.size}`),
    };
  }
  const bytes = await c.ok(["fs", "cat", `cairn://${repo}/main/docs/b.txt`]);
  return { branches: branches.map((b) => `${b.name} ${b.commitId}`), tags, perBranch, bytes };
}

async function put(text: string, dest: string) {
  const local = join(cli.dir, "upload.tmp");
  writeFileSync(local, text);
  await cli.ok(["fs", "upload", local, dest]);
}

let original: unknown;

beforeAll(async () => {
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: EMULATOR_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: EMULATOR_CREDENTIALS.secretAccessKey,
    AWS_REGION: "us-east-1",
    AZURE_STORAGE_CONNECTION_STRING: azure,
  });
  await createBucket(s3, bucket);
  await createContainer(azure, container);
  await cli.ok(["repo", "create", "cairn://origin"]);
  await put("one\n", "cairn://origin/main/a.txt");
  await cli.ok(["commit", "cairn://origin/main", "-m", "one"]);
  await cli.ok(["branch", "create", "cairn://origin/dev", "--source", "main"]);
  await put("two ✓\n", "cairn://origin/dev/docs/b.txt");
  for (let i = 0; i < 8; i++) await put(`file ${i}\n`.repeat(i + 1), `cairn://origin/dev/many/${i}.txt`);
  await cli.ok(["commit", "cairn://origin/dev", "-m", "two"]);
  await cli.ok(["tag", "create", "cairn://origin/v1", "dev"]);
  await cli.ok(["merge", "cairn://origin/dev", "cairn://origin/main"]);
  original = await view(cli.meta, "origin");
}, 120_000);

afterAll(() => {
  // The Redis keys of this run, under its own prefix.
  const keys = spawnSync("redis-cli", ["--scan", "--pattern", `${redisPrefix}*`], { encoding: "utf8" });
  const list = keys.stdout.split("\n").filter(Boolean);
  if (list.length > 0) spawnSync("redis-cli", ["del", ...list]);
});

describe("backup and restore", () => {
  it("disaster recovery: the same repository back on a new engine and a new folder, identical", {
    timeout: 120_000,
  }, async () => {
    await put("uncommitted\n", "cairn://origin/dev/wip.txt");
    const backup = await cli(["backup", "cairn://origin", "--to", file("backup")]);
    expect(backup.status, backup.stderr).toBe(0);
    expect(backup.stderr).toContain("branch dev has uncommitted changes");
    expect(backup.stdout).toMatch(/^Snapshot \d{8}T\d{6}Z-[0-9a-f]{8} of origin: /);
    await cli.ok(["branch", "reset", "cairn://origin/dev"]);
    const meta = sqlite("recovered.db");
    const restored = await on(meta).run([
      "restore",
      file("backup"),
      "--to",
      "cairn://origin",
      "--namespace",
      file("ns-recovered"),
    ]);
    expect(restored.status, restored.stderr).toBe(0);
    expect(await view(meta, "origin")).toEqual(original);
  });

  it("an unchanged repository's second backup copies nothing", async () => {
    const [snapshot] = await cli.json<{ copied: number; skipped: number; counts: { objects: number } }>([
      "backup",
      "cairn://origin",
      "--to",
      file("backup"),
    ]);
    expect(snapshot!.copied).toBe(0);
    expect(snapshot!.skipped).toBe(snapshot!.counts.objects);
  });

  it("copies again an object a cut upload left in pieces, instead of skipping it", async () => {
    // As a first backup cut short leaves a location on a store that keeps a cut upload's bytes (s3rver does):
    // every object there, one of them short, and no snapshot yet.
    await cli.ok(["backup", "cairn://origin", "--to", file("pieces")]);
    rmSync(join(cli.dir, "pieces", "snapshots"), { recursive: true });
    const objects = readdirSafe(join(cli.dir, "pieces", "objects"), true);
    const piece = join(cli.dir, "pieces", "objects", objects[0]!);
    const whole = readFileSync(piece);
    writeFileSync(piece, whole.subarray(0, whole.length >> 1));
    const [snapshot] = await cli.json<{ copied: number; skipped: number; counts: { objects: number } }>([
      "backup",
      "cairn://origin",
      "--to",
      file("pieces"),
    ]);
    expect(snapshot!.copied).toBe(1);
    expect(snapshot!.skipped).toBe(objects.length - 1);
    expect(readFileSync(piece).equals(whole)).toBe(true);
    expect(await cli.ok(["verify", file("pieces"), "--read-data"])).toMatch(/^Checked .*: no problems/m);
  });

  it("migration: from SQLite and a folder, through S3, to Redis and Azure Blob", {
    timeout: 180_000,
  }, async () => {
    await cli.ok(["backup", "cairn://origin", "--to", s3Url("cairn")]);
    const restored = await on(redisUrl).run([
      "restore",
      s3Url("cairn"),
      "--to",
      "cairn://origin",
      "--namespace",
      azureUrl("origin"),
    ]);
    expect(restored.status, restored.stderr).toBe(0);
    expect(await view(redisUrl, "origin")).toEqual(original);
    // It works there: commit, diff.
    await on(redisUrl).ok(["fs", "rm", "cairn://origin/main/a.txt"]);
    await on(redisUrl).ok(["commit", "cairn://origin/main", "-m", "after migration"]);
  });

  it("clone: a copy beside the original, from a backup on Azure Blob", { timeout: 120_000 }, async () => {
    await cli.ok(["backup", "cairn://origin", "--to", azureUrl("backup")]);
    await cli.ok(["restore", azureUrl("backup"), "--to", "cairn://copy", "--namespace", file("ns-copy")]);
    expect(await view(cli.meta, "copy")).toEqual(original);
    expect(await view(cli.meta, "origin")).toEqual(original);
  });

  it("lists, verifies and prunes backups on S3 and Azure Blob, and dumps the engine there on schedule", {
    timeout: 180_000,
  }, async () => {
    for (const url of [s3Url("cairn"), azureUrl("backup")]) {
      await cli.ok(["backup", "cairn://origin", "--to", url]);
      const listed = await cli.json<{ id: string; repository: { name: string } }>(["backups", "list", url]);
      expect(listed.length).toBeGreaterThanOrEqual(2);
      expect(await cli.ok(["verify", url, "--read-data"])).toMatch(/^Checked .*: no problems/m);
      await cli.ok(["backups", "prune", url, "--keep-last", "1"]);
      expect(await cli.json(["backups", "list", url])).toHaveLength(1);
      await cli.ok(["verify", url, "--read-data"]);
      await cli.ok(["backup-meta", "run", "--once", "--to", url]);
      expect(await cli.ok(["backup-meta", "status", "--to", url])).toMatch(
        /dump-\d{4}-\d{2}-\d{2}-\d{6}\.json\.gz/,
      );
    }
  });

  it("refuses to restore over a repository that holds data, changing nothing", async () => {
    const error = await cli.fails(
      ["restore", file("backup"), "--to", "cairn://origin", "--namespace", file("ns-other")],
      EXIT.PRECONDITION_FAILED,
    );
    expect(error).toContain('Repository "origin" already exists and holds data');
    expect(await view(cli.meta, "origin")).toEqual(original);
  });

  it("--on-top shows what it reverts and adds, changes nothing with --dry-run, then applies it", {
    timeout: 120_000,
  }, async () => {
    const meta = sqlite("ontop.db");
    const c = on(meta);
    await c.ok(["restore", file("backup"), "--to", "cairn://site", "--namespace", file("ns-ontop")]);
    const [snap] = await on(meta).json<{ id: string }>(["backups", "list", file("backup")]);
    expect(snap).toBeDefined();
    const atSnapshot = await view(meta, "site");
    // Work after the snapshot: a commit on main, a moved tag, a deleted branch, a new branch.
    const local = join(cli.dir, "later.txt");
    writeFileSync(local, "later\n");
    await c.ok(["fs", "upload", local, "cairn://site/main/later.txt"]);
    await c.ok(["fs", "rm", "cairn://site/main/a.txt"]);
    await c.ok(["commit", "cairn://site/main", "-m", "later"]);
    await c.ok(["tag", "delete", "cairn://site/v1"]);
    await c.ok(["tag", "create", "cairn://site/v1", "main"]);
    await c.ok(["branch", "delete", "cairn://site/dev"]);
    await c.ok(["branch", "create", "cairn://site/extra", "--source", "main"]);
    const before = await c.ok(["log", "cairn://site/main"]);

    const dry = await c.ok(["restore", file("backup"), "--to", "cairn://site", "--on-top", "--dry-run"]);
    expect(dry).toMatch(
      /^branch main: revert [0-9a-f]{12} → [0-9a-f]{12} \(1 added, 1 removed, 0 changed\)$/m,
    );
    expect(dry).toMatch(/^branch dev: add at [0-9a-f]{12} \(\d+ added, 0 removed, 0 changed\)$/m);
    expect(dry).toMatch(/^tag v1: revert /m);
    expect(dry).toContain("branch extra: kept");
    expect(dry).toContain("Dry run: nothing changed in site.");
    expect(await c.ok(["log", "cairn://site/main"])).toBe(before);

    await put("wip\n", "cairn://origin/main/unused.txt"); // another repository's staging is no concern
    writeFileSync(local, "wip\n");
    await c.ok(["fs", "upload", local, "cairn://site/main/wip.txt"]);
    const refused = await c.run(["restore", file("backup"), "--to", "cairn://site", "--on-top"]);
    expectOneLineError(refused, EXIT.PRECONDITION_FAILED);
    expect(refused.stderr).toContain('Branch main of repository "site" has uncommitted changes');
    expect(await c.ok(["log", "cairn://site/main"])).toBe(before);
    await c.ok(["branch", "reset", "cairn://site/main"]);
    await cli.ok(["branch", "reset", "cairn://origin/main"]);

    const applied = await c.ok(["restore", file("backup"), "--to", "cairn://site", "--on-top"]);
    expect(applied).toMatch(/Restored snapshot .* over site/);
    type View = { branches: string[]; tags: unknown; perBranch: Record<string, unknown> };
    const after = (await view(meta, "site")) as View;
    const expected = atSnapshot as View;
    // Back to the snapshot's main, dev and v1; the branch made after it is kept.
    expect(after.branches.filter((b) => !b.startsWith("extra "))).toEqual(expected.branches);
    expect(after.branches.some((b) => b.startsWith("extra "))).toBe(true);
    expect(after.tags).toEqual(expected.tags);
    expect(after.perBranch.main).toEqual(expected.perBranch.main);
    expect(after.perBranch.dev).toEqual(expected.perBranch.dev);
  });

  it("names a snapshot that does not exist, and a location that holds no backup", async () => {
    const meta = sqlite("missing.db");
    const r = await on(meta).run([
      "restore",
      file("backup"),
      "--to",
      "cairn://x",
      "--snapshot",
      "20200101T000000Z-00000000",
    ]);
    expectOneLineError(r, EXIT.NOT_FOUND);
    expect(r.stderr).toContain("has no snapshot 20200101T000000Z-00000000");
    const empty = await on(meta).run(["restore", file("nothing-here"), "--to", "cairn://x"]);
    expectOneLineError(empty, EXIT.NOT_FOUND);
    expect(empty.stderr).toContain("holds no cairn backup");
    expect(await on(meta).ok(["repo", "list"])).toBe("");
  });

  it("refuses a corrupted object and names a missing one, leaving the restored repository unusable", async () => {
    await cli.ok(["backup", "cairn://origin", "--to", file("damaged")]);
    const objects = listFiles(join(cli.dir, "damaged", "objects"));
    const victim = objects.find((f) => readFileSync(f, "utf8").startsWith("file 7"))!;
    writeFileSync(victim, readFileSync(victim, "utf8").replace("file 7", "file 8"));
    const meta = sqlite("damaged.db");
    const r = await on(meta).run([
      "restore",
      file("damaged"),
      "--to",
      "cairn://origin",
      "--namespace",
      file("ns-d"),
    ]);
    expectOneLineError(r, EXIT.CORRUPT);
    expect(r.stderr).toContain(victim.split("/").at(-1)!);
    expect(r.stderr).toContain("does not match its digest");
    rmSync(victim);
    const again = await on(meta).run([
      "restore",
      file("damaged"),
      "--to",
      "cairn://origin",
      "--namespace",
      file("ns-d"),
    ]);
    expectOneLineError(again, EXIT.CORRUPT);
    expect(again.stderr).toContain("is missing");
    const branches = await on(meta).run(["branch", "list", "cairn://origin"]);
    expect(branches.stdout).toBe("");
  });

  it("completes after kill -9 without copying twice, for a first backup and for a later one", {
    timeout: 180_000,
  }, async () => {
    const target = join(cli.dir, "killed");
    // Adds 300 files in one commit, starts a backup, kills it once it copied 60 objects, and runs it again.
    const interruptAndRerun = async (round: number) => {
      const bulk = join(cli.dir, `bulk-${round}`);
      mkdirSync(bulk);
      for (let i = 0; i < 300; i++) writeFileSync(join(bulk, `${i}.txt`), `bulk ${round} ${i}\n`.repeat(200));
      await cli.ok(["fs", "upload", "--recursive", bulk, `cairn://origin/main/bulk-${round}/`]);
      await cli.ok(["commit", "cairn://origin/main", "-m", `bulk ${round}`]);
      const start = countFiles(join(target, "objects"));
      const records = readdirSafe(join(target, "snapshots")).filter((f) => f.endsWith(".json"));
      const child = spawn(
        process.execPath,
        [BIN, "backup", "cairn://origin", "--to", file("killed"), "--parallel", "1", "--meta", cli.meta],
        { cwd: cli.dir, stdio: "ignore" },
      );
      await new Promise<void>((resolve) => {
        const poll = setInterval(() => {
          if (countFiles(join(target, "objects")) >= start + 60) {
            clearInterval(poll);
            resolve();
          }
        }, 20);
      });
      child.kill("SIGKILL");
      await new Promise((r) => child.once("close", r));
      const before = countFiles(join(target, "objects"));
      expect(readdirSafe(join(target, "snapshots")).filter((f) => f.endsWith(".json"))).toEqual(records);
      const [snapshot] = await cli.json<{ copied: number; skipped: number; counts: { objects: number } }>([
        "backup",
        "cairn://origin",
        "--to",
        file("killed"),
      ]);
      // Every object already there — from an earlier snapshot or from the killed run — is skipped.
      expect(snapshot!.skipped).toBe(before);
      expect(snapshot!.copied + snapshot!.skipped).toBe(snapshot!.counts.objects);
      expect(countFiles(join(target, "objects"))).toBe(snapshot!.counts.objects);
      expect(await cli.ok(["verify", file("killed"), "--read-data"])).toMatch(/^Checked .*: no problems/m);
    };
    await interruptAndRerun(1);
    await interruptAndRerun(2);
  });

  it("fails clearly when the target store goes away mid-backup, and a rerun against it completes", {
    timeout: 120_000,
  }, async () => {
    // A server of its own, on a port and folder that survive a restart, so the rerun finds what the first run copied.
    const dataDir = mkdtempSync(join(tmpdir(), "cairn-flaky-s3-"));
    const port = await freePort();
    let server = await startS3rver({ port, dataDir });
    try {
      await createBucket(server.endpoint, bucket);
      await cli.ok(["repo", "create", "cairn://flaky"]);
      const bulk = join(cli.dir, "bulk-flaky");
      mkdirSync(bulk);
      for (let i = 0; i < 200; i++) writeFileSync(join(bulk, `${i}.txt`), `flaky ${i}\n`.repeat(200));
      await cli.ok(["fs", "upload", "--recursive", bulk, "cairn://flaky/main/"]);
      await cli.ok(["commit", "cairn://flaky/main", "-m", "bulk"]);
      const url = `${s3Url("flaky", server.endpoint)}&maxAttempts=1&connectTimeout=2`;
      // s3rver keeps each object as `<key>._S3rver_object` beside its metadata files.
      const objects = (under: string) =>
        readdirSafe(join(dataDir, bucket, "flaky", under), true).filter((f) => f.endsWith("._S3rver_object"));
      const copied = () => objects("objects").length;
      const child = spawn(
        process.execPath,
        [BIN, "backup", "cairn://flaky", "--to", url, "--parallel", "1", "--meta", cli.meta],
        { cwd: cli.dir, stdio: ["ignore", "ignore", "pipe"] },
      );
      let stderr = "";
      child.stderr!.setEncoding("utf8").on("data", (s: string) => {
        stderr += s;
      });
      const status = new Promise<number>((r) => child.once("close", (code) => r(code ?? -1)));
      await new Promise<void>((resolve, reject) => {
        const poll = setInterval(() => {
          if (copied() >= 40) {
            clearInterval(poll);
            resolve();
          }
        }, 20);
        child.once("exit", (code) => {
          clearInterval(poll);
          reject(
            new Error(
              `the backup ended (status ${code}) before the server was stopped: ${stderr} ${JSON.stringify(readdirSafe(dataDir, true).slice(0, 8))}`,
            ),
          );
        });
      });
      await server.stop();
      expectOneLineError(
        { status: await status, stdout: "", stderr, bytes: Buffer.alloc(0) },
        EXIT.UNAVAILABLE,
      );
      expect(stderr).toContain(`s3://${bucket}/flaky`);
      expect(objects("snapshots")).toEqual([]);

      server = await startS3rver({ port, dataDir });
      // Less the one PUT that may have been under way when the server stopped, and that S3 would not keep.
      const partial = copied();
      expect(partial).toBeGreaterThanOrEqual(39);
      const [snapshot] = await cli.json<{ copied: number; skipped: number; counts: { objects: number } }>([
        "backup",
        "cairn://flaky",
        "--to",
        url,
      ]);
      expect(snapshot!.skipped).toBeGreaterThanOrEqual(partial);
      expect(snapshot!.copied + snapshot!.skipped).toBe(snapshot!.counts.objects);
      expect(copied()).toBe(snapshot!.counts.objects);
      expect(await cli.ok(["verify", url, "--read-data"])).toMatch(/^Checked .*: no problems/m);
    } finally {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("waits for no prune: refused while a prune holds a fresh lock, changing nothing", async () => {
    const locks = join(cli.dir, "backup", "locks");
    mkdirSync(locks, { recursive: true });
    const now = new Date().toISOString();
    const lock = {
      id: "x",
      operation: "prune",
      host: "elsewhere",
      pid: 42,
      createdAt: now,
      refreshedAt: now,
    };
    writeFileSync(join(locks, "x.json"), JSON.stringify(lock));
    const snapshots = readdirSafe(join(cli.dir, "backup", "snapshots"));
    const error = await cli.fails(
      ["backup", "cairn://origin", "--to", file("backup")],
      EXIT.PRECONDITION_FAILED,
    );
    expect(error).toContain("is being pruned by host elsewhere (pid 42");
    expect(readdirSafe(join(cli.dir, "backup", "snapshots"))).toEqual(snapshots);
    expect(readdirSafe(locks)).toEqual(["x.json"]);
    rmSync(join(locks, "x.json"));
  });

  it("refuses bad options and a location that holds something else", async () => {
    writeFileSync(join(cli.dir, "not-a-backup.txt"), "x");
    await cli.fails(
      ["backup", "cairn://origin", "--to", file("backup"), "--parallel", "0"],
      EXIT.INVALID_ARGUMENT,
    );
    const mkdir = join(cli.dir, "other");
    spawnSync("mkdir", ["-p", mkdir]);
    writeFileSync(join(mkdir, "photo.jpg"), "x");
    const error = await cli.fails(["backup", "cairn://origin", "--to", file("other")], EXIT.INVALID_ARGUMENT);
    expect(error).toContain("is not empty");
    await cli.fails(["backup", "cairn://nope", "--to", file("backup")], EXIT.NOT_FOUND);
  });
});

function listFiles(dir: string): string[] {
  return readdirSafe(dir, true).map((f) => join(dir, f));
}

function readdirSafe(dir: string, recursive = false): string[] {
  try {
    return (readdirSync(dir, { recursive, withFileTypes: true }) as import("node:fs").Dirent[])
      .filter((e) => e.isFile())
      .map((e) =>
        join(e.parentPath ?? (e as unknown as { path: string }).path, e.name).slice(dir.length + 1),
      );
  } catch {
    return [];
  }
}

function countFiles(dir: string): number {
  return readdirSafe(dir, true).length;
}
