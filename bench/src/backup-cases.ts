// Backup and restore of a repository of 10,000 objects (~1 GB) on SQLite + local folder to S3 (s3rver): the first
// backup next to `rclone copy` of the same namespace folder, a second one with nothing changed, one after 1 % of
// the objects changed, and the restore into a new SQLite engine and folder.

import { spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type BackupResult, backupRepository, Cairn, restoreRepository } from "@cairn/core";
import { factory as sqlite } from "@cairn/engine-sqlite";
import { factory as fs } from "@cairn/store-fs";
import { freePort, startServer, type TestServer } from "@cairn/testkit/servers";
import type { Case } from "./cases.js";
import {
  BENCH_DATA,
  cpuNote,
  ensureRclone,
  figures,
  type Remote,
  rcloneCopy,
  SCALE,
  s3Remote,
  scaleNote,
  seconds,
  type Timing,
  timed,
} from "./store-cases.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const COUNT = Math.max(100, Math.round(10_000 * SCALE));
/** Objects added or replaced before the third backup: 1 %. */
const CHANGED = Math.max(1, Math.round(COUNT / 100));
/** `backupRepository`'s and `restoreRepository`'s `parallel`; unset measures their default (8). */
const PARALLEL = process.env.CAIRN_BENCH_BACKUP_PARALLEL
  ? Number(process.env.CAIRN_BENCH_BACKUP_PARALLEL)
  : undefined;
const parallelNote = `parallel ${PARALLEL ?? "8 (default)"}`;

/** The repository, built once: `meta.db`, `data/` (its namespace) and `READY` holding a build id. */
const BASE = join(BENCH_DATA, `backup-${COUNT}`);
/** What the runs share: `s3/` (s3rver's folder, the backup location), `state.json`, scratch folders. */
const WORK = join(BENCH_DATA, `backup-${COUNT}-run`);
const S3_DIR = join(WORK, "s3");
const STATE = join(WORK, "state.json");
const BUCKET = "backup";

/**
 * Mostly small objects with a few MB-sized ones: every 50th is 1–6 MiB (~3.5 MiB on average, 3/4 of the
 * bytes), the others 1–47 KiB (~24 KiB); ~1 GB for 10,000. Sizes are fixed by the index, contents random.
 */
export function sizeOf(i: number): number {
  const k = Math.floor(i / 50);
  if (i % 50 === 25) return MiB + (k % 5) * MiB + ((k * 37) % 1024) * KiB;
  return KiB + ((i * 2654435761) % 46) * KiB + (i % 1000);
}

const pathOf = (i: number) =>
  `set-${String(Math.floor(i / 1000)).padStart(3, "0")}/obj-${String(i).padStart(6, "0")}.bin`;

/**
 * A SQLite engine and folder store in `dir`. `namespace` remaps the repository's recorded namespace to another
 * folder: a clone of the repository (a copied `meta.db`, hard-linked objects) then works on its own folder
 * while its engine still names the original one.
 */
async function openRepo(dir: string, remap?: { from: string; to: string }) {
  mkdirSync(dir, { recursive: true });
  const engine = await sqlite.open(`sqlite://${join(dir, "meta.db")}`);
  const cairn = new Cairn({
    engine,
    openStore: (url) => fs.open(remap && url === remap.from ? remap.to : url),
  });
  return {
    cairn,
    close: async () => {
      await cairn.close();
      await engine.close();
    },
  };
}

const nsOf = (dir: string) => pathToFileURL(join(dir, "data")).href;

/** Builds the repository once (10,000 objects in batches of 500, 16 bodies at a time, one commit). */
async function ensureBase(): Promise<string> {
  if (existsSync(join(BASE, "READY"))) return readFileSync(join(BASE, "READY"), "utf8");
  rmSync(BASE, { recursive: true, force: true });
  rmSync(WORK, { recursive: true, force: true });
  console.error(`bench: building a repository of ${COUNT} objects in ${BASE}`);
  const { cairn, close } = await openRepo(BASE);
  const repo = await cairn.createRepository({ name: "bench", namespace: nsOf(BASE) });
  for (let i = 0; i < COUNT; i += 500) {
    const files = [];
    for (let k = i; k < Math.min(COUNT, i + 500); k++)
      files.push({ path: pathOf(k), body: randomBytes(sizeOf(k)) });
    await repo.uploadMany("main", files, { concurrency: 16 });
  }
  await repo.commit("main", { message: `${COUNT} objects` });
  await close();
  const id = randomUUID();
  writeFileSync(join(BASE, "READY"), id);
  return id;
}

interface State {
  /** The build of the repository the backup location was made from. */
  base: string;
  firstMs: number;
  firstSnapshot: string;
  /** Objects and bytes of the first snapshot. */
  objects: number;
  bytes: number;
  /** `rclone copy` of the namespace folder to the bucket `rclone` of the same s3rver, right after. */
  rcloneMs: number;
  /** Where the first backup was timed: the `backup-first` run, or a set-up that needed one. */
  measuredIn: "run" | "setup";
}

const readState = (): State | undefined =>
  existsSync(STATE) ? (JSON.parse(readFileSync(STATE, "utf8")) as State) : undefined;

const testkit = createRequire(fileURLToPath(import.meta.resolve("@cairn/testkit/package.json")));

/**
 * An s3rver keeping its objects in `S3_DIR` after it stops (unlike testkit's `startS3rver`, whose folder goes
 * with it), so a backup location outlives the process of one case and the next cases find it.
 */
async function startBackupS3(): Promise<Remote> {
  mkdirSync(S3_DIR, { recursive: true });
  const port = await freePort();
  const server: TestServer = await startServer({
    name: "s3rver",
    script: join(dirname(testkit.resolve("s3rver/package.json")), "bin", "s3rver.js"),
    args: ["-d", S3_DIR, "-a", "127.0.0.1", "-p", String(port), "--silent"],
    // Without it, every truncated ListObjectsV2 page fails with 500 on Node 20.
    nodeOptions: ["--openssl-legacy-provider"],
    port,
  });
  return s3Remote(server, `http://127.0.0.1:${port}`);
}

async function withS3<T>(fn: (remote: Remote) => Promise<T>): Promise<T> {
  const remote = await startBackupS3();
  try {
    return await fn(remote);
  } finally {
    await remote.server.stop();
  }
}

/** One timed backup of the repository in `dir` (remapped when it is a clone) to the location. */
async function backupOnce(remote: Remote, dir: string): Promise<Timing & { result: BackupResult }> {
  const { cairn, close } = await openRepo(
    dir,
    dir === BASE ? undefined : { from: nsOf(BASE), to: nsOf(dir) },
  );
  const target = await remote.open(BUCKET, "cairn");
  try {
    const { value: result, ...timing } = await timed(() =>
      backupRepository(cairn, "bench", target, { parallel: PARALLEL }),
    );
    return { ...timing, result };
  } finally {
    await target.close();
    await close();
  }
}

/**
 * A fresh backup location holding one backup of the repository, and beside it (bucket `rclone`) rclone's copy of
 * the same namespace folder; the backup's time becomes the reference of the later ones.
 */
async function firstBackup(base: string, remote: Remote, measuredIn: State["measuredIn"]) {
  await remote.create(BUCKET);
  const timing = await backupOnce(remote, BASE);
  const { result } = timing;
  await remote.create("rclone");
  const rclone = await rcloneToBucket(remote, BASE);
  const state: State = {
    base,
    firstMs: timing.ms,
    firstSnapshot: result.snapshot.id,
    objects: result.snapshot.counts.objects,
    bytes: result.snapshot.counts.bytes,
    rcloneMs: rclone.ms,
    measuredIn,
  };
  writeFileSync(STATE, JSON.stringify(state, null, 2));
  return { timing, result, rclone, state };
}

/** `rclone copy` of the namespace folder of the repository in `dir` to the bucket `rclone`, as a user would sync it. */
function rcloneToBucket(remote: Remote, dir: string): Promise<Timing> {
  const to = remote.rclone("rclone", "namespace");
  return rcloneCopy(join(dir, "data"), to.path, to);
}

function wipeLocation(): void {
  rmSync(S3_DIR, { recursive: true, force: true });
  rmSync(STATE, { force: true });
}

/** The set-up of every case after the first: the repository, and a location holding its first backup. */
async function ensureFirst(): Promise<State> {
  ensureRclone();
  const base = await ensureBase();
  const state = readState();
  if (state?.base === base && state.rcloneMs !== undefined && existsSync(S3_DIR)) return state;
  wipeLocation();
  console.error("bench: no first backup yet; making one (its time becomes the reference)");
  return (await withS3((remote) => firstBackup(base, remote, "setup"))).state;
}

/** rclone's repeated copy against its first one: `rclone copy again 9.1 s = 14 % of its first`. */
const againRclone = (rclone: Timing, state: State) =>
  `rclone copy onto its first copy ${seconds(rclone.ms)} = ${((100 * rclone.ms) / state.rcloneMs).toFixed(1)} % of its first ${seconds(state.rcloneMs)}`;

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;

/** Against the first backup: `x % of the first (target ≤ 5 %)`. */
function againstFirst(ms: number, state: State): string {
  const share = (100 * ms) / state.firstMs;
  return `${share.toFixed(1)} % of the first backup's ${seconds(state.firstMs)}${state.measuredIn === "setup" ? " (timed in set-up)" : ""} (target ≤ 5 %, ≤ 256 MB)`;
}

/** A clone of the repository whose 1 % changed objects are committed, in `WORK/changed`. */
async function changedClone(): Promise<string> {
  const dir = join(WORK, "changed");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(BASE)) if (f.startsWith("meta.db")) cpSync(join(BASE, f), join(dir, f));
  // Objects are immutable files replaced by rename, so hard links share them safely and take no time.
  const cp = spawnSync("cp", ["-al", join(BASE, "data"), join(dir, "data")], { stdio: "inherit" });
  if (cp.status !== 0) throw new Error(`bench: cp -al of ${BASE}/data failed.`);
  const { cairn, close } = await openRepo(dir, { from: nsOf(BASE), to: nsOf(dir) });
  const repo = await cairn.repository("bench");
  // Half replaced in place, half new paths.
  const files = [];
  for (let k = 0; k < CHANGED; k++) {
    const i = k % 2 === 0 ? Math.floor((k * COUNT) / CHANGED) : COUNT + k;
    files.push({ path: pathOf(i), body: randomBytes(sizeOf(i)) });
  }
  await repo.uploadMany("main", files, { concurrency: 16 });
  await repo.commit("main", { message: `${CHANGED} objects changed` });
  await close();
  return dir;
}

export const BACKUP_CASES: Case[] = [
  {
    name: "backup-first-10k",
    async setup() {
      ensureRclone();
      await ensureBase();
    },
    async run() {
      const base = await ensureBase();
      wipeLocation();
      return withS3(async (remote) => {
        const { timing, result, rclone } = await firstBackup(base, remote, "run");
        const { objects, bytes } = result.snapshot.counts;
        return {
          name: "backup-first-10k",
          ms: timing.ms,
          items: objects,
          unit: "objects",
          bytes,
          copied: result.copied,
          ...figures(timing, rclone),
          note: `${objects} objects, ${gb(bytes)} folder → s3rver; rclone copy of the namespace folder ${seconds(rclone.ms)}; ratio ${(timing.ms / rclone.ms).toFixed(2)} (target ≤ 1.0, ≤ 256 MB); ${parallelNote}; ${cpuNote(timing, rclone, "s3rver")}${scaleNote}`,
        };
      });
    },
  },
  {
    name: "backup-again-10k",
    async setup() {
      await ensureFirst();
    },
    async run() {
      const state = await ensureFirst();
      return withS3(async (remote) => {
        const timing = await backupOnce(remote, BASE);
        const { ms, result } = timing;
        if (result.copied !== 0)
          throw new Error(`a backup with nothing changed copied ${result.copied} objects.`);
        // rclone's own "nothing changed": the same folder copied again onto its first copy.
        const rclone = await rcloneToBucket(remote, BASE);
        return {
          name: "backup-again-10k",
          ms,
          items: result.snapshot.counts.objects,
          unit: "objects",
          copied: result.copied,
          firstMs: state.firstMs,
          share: ms / state.firstMs,
          ...figures(timing, rclone),
          note: `nothing changed, 0 copied; ${againstFirst(ms, state)}; ${againRclone(rclone, state)}; ${parallelNote}; ${cpuNote(timing, rclone, "s3rver")}${scaleNote}`,
        };
      });
    },
  },
  {
    name: "backup-1pct-10k",
    async setup() {
      await ensureFirst();
      await changedClone();
    },
    async run() {
      const state = await ensureFirst();
      const dir = join(WORK, "changed");
      if (!existsSync(dir)) await changedClone();
      try {
        return await withS3(async (remote) => {
          const timing = await backupOnce(remote, dir);
          const { ms, result } = timing;
          // rclone's view of the same change: the clone's namespace folder copied onto the first copy.
          const rclone = await rcloneToBucket(remote, dir);
          return {
            name: "backup-1pct-10k",
            ms,
            items: result.snapshot.counts.objects,
            unit: "objects",
            copied: result.copied,
            copiedBytes: result.copiedBytes,
            firstMs: state.firstMs,
            share: ms / state.firstMs,
            note: `${CHANGED} objects new or replaced and committed: ${result.copied} copied (with the trees' new ranges), ${(result.copiedBytes / 1e6).toFixed(1)} MB; ${againstFirst(ms, state)}; ${againRclone(rclone, state)}; ${parallelNote}; ${cpuNote(timing, rclone, "s3rver")}${scaleNote}`,
            ...figures(timing, rclone),
          };
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
  {
    name: "restore-10k",
    async setup() {
      await ensureFirst();
    },
    async run() {
      const state = await ensureFirst();
      const dir = join(WORK, "restore");
      rmSync(dir, { recursive: true, force: true });
      try {
        return await withS3(async (remote) => {
          const { cairn, close } = await openRepo(dir);
          const backup = await remote.open(BUCKET, "cairn");
          let timing: Timing;
          let copied: number;
          try {
            const { value: result, ...t } = await timed(() =>
              restoreRepository(cairn, backup, {
                snapshot: state.firstSnapshot,
                namespace: nsOf(dir),
                parallel: PARALLEL,
              }),
            );
            timing = t;
            copied = result.copied;
          } finally {
            await backup.close();
            await close();
          }
          if (copied !== state.objects)
            throw new Error(`the restore copied ${copied} objects, not ${state.objects}.`);
          // Reference: rclone bringing the backup's objects down to a folder, the bulk of a restore's work.
          const from = remote.rclone(BUCKET, "cairn/objects");
          const rclone = await rcloneCopy(from.path, join(dir, "rclone"), from);
          return {
            name: "restore-10k",
            ms: timing.ms,
            items: copied,
            unit: "objects",
            bytes: state.bytes,
            ...figures(timing, rclone),
            note: `s3rver → new SQLite engine + folder, ${copied} objects, ${gb(state.bytes)}; rclone copy of the backup's objects/ to a folder ${seconds(rclone.ms)} (ratio ${(timing.ms / rclone.ms).toFixed(2)}); ≤ 256 MB; ${parallelNote}; ${cpuNote(timing, rclone, "s3rver")}${scaleNote}`,
          };
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];
