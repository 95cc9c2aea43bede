import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Change, type Entry, loadEngine, type Repository } from "@cairn/core";
import { factory as sqlite } from "@cairn/engine-sqlite";
import pLimit from "p-limit";
import { BACKUP_CASES } from "./backup-cases.js";
import {
  DATA,
  dumpFile,
  dumpTo,
  ENGINE_1M,
  type EngineSet,
  engineDb,
  engineDump,
  engineSet,
  open,
  pathOf,
} from "./data.js";
import { ENGINE_CASES } from "./engine-cases.js";
import { STORE_CASES } from "./store-cases.js";

export interface Result {
  name: string;
  ms: number;
  items?: number;
  unit?: string;
  peakRssMb: number;
  note?: string;
  [extra: string]: unknown;
}

export interface Case {
  name: string;
  /** Runs of the measured part; the median is reported. @default 1 */
  repeat?: number;
  /** Prepares data (not measured); may reuse what an earlier run left in bench/.data. */
  setup(): Promise<void>;
  /** The measured work; returns figures without peak RSS, which the child adds. */
  run(): Promise<Omit<Result, "peakRssMb">>;
  /** Removes what `setup` left outside bench/.data (a server's key prefix, database or table); after the runs. */
  teardown?(): Promise<void>;
}

/** `dump-1m` / `dump-100k`: the SQLite engine of `set` dumped to a file, beside `sqlite3 .dump` of the same file. */
function sqliteDumpCase(set: EngineSet): Case {
  const name = `dump-${sizeName(set)}`;
  return onEngineDump(set, name, async () => {
    const t0 = performance.now();
    const records = await dumpTo(dumpFile(set), set);
    const ms = performance.now() - t0;
    // Baseline in the same run: the sqlite3 shell's own text dump of the same file.
    const s0 = performance.now();
    const shell = spawnSync("sqlite3", [engineDb(set), ".dump"], {
      stdio: ["ignore", "ignore", "ignore"],
    });
    const shellMs = performance.now() - s0;
    const baseline =
      shell.status === 0 ? `sqlite3 .dump ${(shellMs / 1000).toFixed(2)} s` : "sqlite3 CLI not found";
    const mb = statSync(dumpFile(set)).size / 1e6;
    const target = set === ENGINE_1M ? "target ≤ 5 s, ≤ 256 MB" : "peak RSS compared with dump-1m's";
    return {
      name,
      ms,
      items: records,
      unit: "records",
      sqliteDumpMs: shell.status === 0 ? shellMs : undefined,
      note: `${mb.toFixed(0)} MB; ${baseline}; ${target}`,
    };
  });
}

/** `load-1m` / `load-100k`: that dump file loaded into a new SQLite engine. */
function sqliteLoadCase(set: EngineSet): Case {
  const name = `load-${sizeName(set)}`;
  return onEngineDump(set, name, async () => {
    const dir = join(DATA, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const engine = await sqlite.open(`sqlite://${join(dir, "meta.db")}`);
    const t0 = performance.now();
    const result = await loadEngine(engine, { file: dumpFile(set) });
    const ms = performance.now() - t0;
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
    const records = Object.values(result.counts).reduce((a, b) => a + b, 0);
    const note =
      set === ENGINE_1M
        ? "target ≤ 10 s, ≤ 256 MB"
        : "peak RSS compared with load-1m's (≤ 256 MB, not growing)";
    return { name, ms, items: records, unit: "records", note };
  });
}

/** A case run three times on the SQLite engine of `set` and its dump file, both made by its setup. */
function onEngineDump(set: EngineSet, name: string, run: Case["run"]): Case {
  return {
    name,
    repeat: 3,
    async setup() {
      await engineDump(set);
    },
    run,
  };
}

/** "1m" for 1,000,000 staged entries, "100k" for 100,000. */
const sizeName = (set: EngineSet) =>
  set.staged >= 1_000_000 ? `${set.staged / 1_000_000}m` : `${set.staged / 1000}k`;

const TREE_SIZE = 1_000_000;
const SMALL_COUNT = 100_000;
const BATCH = 500;

/** A repository whose `base` tag holds a 1,000,000-entry tree and whose `ten` tag changes 10 paths of it. */
async function bigTree(): Promise<void> {
  const dir = join(DATA, "tree-1m");
  if (existsSync(join(dir, "READY"))) return;
  rmSync(dir, { recursive: true, force: true });
  const { cairn, namespace, close } = await open(dir);
  const repo = await cairn.createRepository({ name: "bench", namespace });
  const seed = await repo.upload("main", "seed.bin", Buffer.from("cairn bench seed\n"));
  const entryAt = (i: number, v = "1"): Entry => ({
    ...seed,
    path: pathOf(i),
    metadata: { v },
  });
  async function* all(): AsyncGenerator<Change> {
    for (let i = 0; i < TREE_SIZE; i++) yield { path: pathOf(i), entry: entryAt(i) };
  }
  await repo.importChanges("main", all(), { message: "1,000,000 entries" });
  await repo.resetBranch("main");
  await repo.createTag("base", "main");
  async function* ten(): AsyncGenerator<Change> {
    for (const i of tenPaths()) yield { path: pathOf(i), entry: entryAt(i, "2") };
  }
  await repo.importChanges("main", ten(), { message: "10 paths changed" });
  await repo.createTag("ten", "main");
  await close();
  writeFileSync(join(dir, "READY"), "");
}

const tenPaths = () => Array.from({ length: 10 }, (_, k) => 7 + k * 99_991);

async function onBigTree<T>(fn: (repo: Repository) => Promise<T>): Promise<T> {
  const { cairn, close } = await open(join(DATA, "tree-1m"));
  try {
    return await fn(await cairn.repository("bench"));
  } finally {
    await close();
  }
}

export const CASES: Case[] = [
  {
    name: "commit-10-of-1m",
    repeat: 3,
    setup: bigTree,
    run: () =>
      onBigTree(async (repo) => {
        const branch = `bench-${Date.now()}`;
        await repo.createBranch(branch, "base");
        for (const i of tenPaths()) await repo.upload(branch, pathOf(i), Buffer.from(`changed ${i}\n`));
        const ranges = async () => {
          let n = 0;
          for await (const _ of repo.store.list("_cairn/ranges/")) n++;
          return n;
        };
        const before = await ranges();
        const t0 = performance.now();
        const commit = await repo.commit(branch, { message: "10 paths" });
        const ms = performance.now() - t0;
        const written = (await ranges()) - before;
        const total = (await repo.trees.readMetarange(commit.metarangeId)).ranges.length;
        await repo.deleteBranch(branch);
        return {
          name: "commit-10-of-1m",
          repeat: 3,
          ms,
          rangesWritten: written,
          rangesTotal: total,
          note: `${written} of ${total} ranges written (${((100 * written) / total).toFixed(2)}%); target ≤ 1 s, ≤ 1%`,
        };
      }),
  },
  {
    name: "list-1m",
    repeat: 3,
    setup: bigTree,
    run: () =>
      onBigTree(async (repo) => {
        const t0 = performance.now();
        let n = 0;
        for await (const _ of repo.walk("base")) n++;
        const ms = performance.now() - t0;
        if (n !== TREE_SIZE) throw new Error(`listed ${n} entries, expected ${TREE_SIZE}`);
        return {
          name: "list-1m",
          repeat: 3,
          ms,
          items: n,
          unit: "entries",
          note: "target ≥ 500,000 entries/s, ≤ 256 MB",
        };
      }),
  },
  {
    name: "diff-10-of-1m",
    repeat: 3,
    setup: bigTree,
    run: () =>
      onBigTree(async (repo) => {
        const t0 = performance.now();
        let n = 0;
        for await (const _ of repo.diff("base", "ten")) n++;
        const ms = performance.now() - t0;
        if (n !== 10) throw new Error(`diff found ${n} changes, expected 10`);
        return { name: "diff-10-of-1m", ms, items: n, unit: "changes", note: "target ≤ 0.5 s" };
      }),
  },
  ...[ENGINE_1M, engineSet(100_000)].flatMap((set) => [sqliteDumpCase(set), sqliteLoadCase(set)]),
  // Three times load-1m's records, once: a load's peak RSS levels off rather than following the dump's size.
  { ...sqliteLoadCase(engineSet(3_000_000)), repeat: 1 },
  {
    name: "upload-commit-100k",
    async setup() {
      rmSync(join(DATA, "upload-100k"), { recursive: true, force: true });
    },
    async run() {
      const { cairn, namespace, close } = await open(join(DATA, "upload-100k"));
      const repo = await cairn.createRepository({ name: "upload", namespace });
      // As `cairn fs upload --recursive` does: batches of files, their bytes written 16 at a time, each batch
      // staged in one engine write; two batches in flight.
      const limit = pLimit(2);
      const t0 = performance.now();
      const batches: Promise<unknown>[] = [];
      for (let i = 0; i < SMALL_COUNT; i += BATCH) {
        const files = Array.from({ length: Math.min(BATCH, SMALL_COUNT - i) }, (_, k) => ({
          path: pathOf(i + k),
          body: Buffer.from(`object ${i + k}\n`.repeat(8)),
        }));
        batches.push(limit(() => repo.uploadMany("main", files, { concurrency: 16 })));
      }
      await Promise.all(batches);
      const t1 = performance.now();
      await repo.commit("main", { message: "100k" });
      const t2 = performance.now();
      await close();
      rmSync(join(DATA, "upload-100k"), { recursive: true, force: true });
      return {
        name: "upload-commit-100k",
        ms: t2 - t0,
        items: SMALL_COUNT,
        unit: "objects",
        uploadMs: t1 - t0,
        commitMs: t2 - t1,
        note: `upload ${((t1 - t0) / 1000).toFixed(1)} s + commit ${((t2 - t1) / 1000).toFixed(1)} s; uploadMany, batches of ${BATCH}, 16 bodies at a time`,
      };
    },
  },
  ...ENGINE_CASES,
  ...STORE_CASES,
  ...BACKUP_CASES,
];
