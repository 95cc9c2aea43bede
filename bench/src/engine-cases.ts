// Dump, load and list of a large engine on the server engines (Redis, MySQL/MariaDB, DynamoDB on dynalite), each
// next to the server's own tool or the raw API on the same data in the same run.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadEngine, type MetadataEngine } from "@cairn/core";
import { EMULATOR_CREDENTIALS, startDynalite } from "@cairn/testkit/servers";
import type { Case } from "./cases.js";
import {
  DATA,
  dumpFile,
  type EngineSet,
  engineDb,
  engineDump,
  engineSet,
  findPartition,
  writeEngineDump,
} from "./data.js";

/**
 * `CAIRN_BENCH_SCALE=0.01` runs the engine cases on 1 % of their data (10,000 staged entries instead of
 * 1,000,000): to check they work end to end before a full run. Names stay the same; notes say the scale.
 */
const SCALE = Number(process.env.CAIRN_BENCH_SCALE ?? "1");
if (!(SCALE > 0 && SCALE <= 1)) throw new Error(`CAIRN_BENCH_SCALE must be in (0, 1], not ${SCALE}.`);
const BIG = engineSet(Math.round(1_000_000 * SCALE));
/** dynalite is slow by itself (~10,000 items/s with 8 clients): a tenth of the size. */
const SMALL = engineSet(Math.round(100_000 * SCALE));
const scaled = SCALE === 1 ? "" : `; CAIRN_BENCH_SCALE=${SCALE}`;
const here = dirname(fileURLToPath(import.meta.url));

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const MYSQL_URL = new URL(process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/");

/** A server engine the cases run against: an isolated place on it per tag, and its own dump tool. */
interface Server {
  kind: "redis" | "mysql";
  /** The URL of an engine of its own for `tag` (key prefix, database). */
  url(tag: string): string;
  /** Removes everything the engine of `tag` wrote. */
  drop(tag: string): void;
  /** The server's own dump tool on the same data, written to `file`. */
  baseline(tag: string, file: string): { ms: number; note: string };
}

/** Runs a command; throws with its stderr when it fails. */
function exec(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 30, env: { ...process.env, ...env } });
  if (r.error) throw new Error(`${cmd} could not run: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

function timed<T>(fn: () => T): { ms: number; value: T } {
  const t0 = performance.now();
  const value = fn();
  return { ms: performance.now() - t0, value };
}

const count = (n: number) => n.toLocaleString("en-US");
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const mb = (file: string) => `${(statSync(file).size / 1e6).toFixed(0)} MB`;

const REDIS: Server = {
  kind: "redis",
  url(tag) {
    const url = new URL(REDIS_URL);
    url.searchParams.set("prefix", `cairn-bench-${tag}:`);
    return url.href;
  },
  drop(tag) {
    const keys = exec("redis-cli", ["-u", REDIS_URL, "--scan", "--pattern", `cairn-bench-${tag}:*`])
      .split("\n")
      .filter(Boolean);
    // The layout keeps a partition in two keys, so even 1,000,000 entries are a handful of keys.
    for (let i = 0; i < keys.length; i += 500)
      exec("redis-cli", ["-u", REDIS_URL, "unlink", ...keys.slice(i, i + 500)]);
  },
  baseline(_tag, file) {
    const { ms } = timed(() => exec("redis-cli", ["-u", REDIS_URL, "--rdb", file]));
    const keys = exec("redis-cli", ["-u", REDIS_URL, "dbsize"]).trim();
    const memory = /used_memory_human:(\S+)/.exec(
      exec("redis-cli", ["-u", REDIS_URL, "info", "memory"]),
    )?.[1];
    // --rdb saves the whole server, other applications' keys included: its size says how much that was.
    return {
      ms,
      note: `redis-cli --rdb ${seconds(ms)} (${mb(file)}; the whole server: ${keys} keys, ${memory} in use)`,
    };
  },
};

/** `mariadb`/`mariadb-dump` arguments naming MYSQL_URL's server and user; the password goes by MYSQL_PWD. */
const mysqlArgs = () => [
  "-h",
  MYSQL_URL.hostname || "127.0.0.1",
  "-P",
  MYSQL_URL.port || "3306",
  "-u",
  decodeURIComponent(MYSQL_URL.username) || "root",
];
const mysqlEnv = () => (MYSQL_URL.password ? { MYSQL_PWD: decodeURIComponent(MYSQL_URL.password) } : {});
const database = (tag: string) => `cairn_bench_${tag.replace(/-/g, "_")}`;

const MYSQL: Server = {
  kind: "mysql",
  url(tag) {
    const url = new URL(MYSQL_URL.href);
    url.pathname = `/${database(tag)}`;
    return url.href;
  },
  drop(tag) {
    exec("mariadb", [...mysqlArgs(), "-e", `DROP DATABASE IF EXISTS \`${database(tag)}\``], mysqlEnv());
  },
  baseline(tag, file) {
    // --single-transaction: one consistent snapshot without locking, as the engine's own dump reads.
    const { ms } = timed(() =>
      exec(
        "mariadb-dump",
        [...mysqlArgs(), "--single-transaction", `--result-file=${file}`, database(tag)],
        mysqlEnv(),
      ),
    );
    return { ms, note: `mariadb-dump --single-transaction ${seconds(ms)} (${mb(file)})` };
  },
};

/**
 * Engine packages are imported by the benchmark that uses them, so that each benchmark process loads its own
 * client library only and its peak RSS is its own.
 */
const factories = {
  redis: async () => (await import("@cairn/engine-redis")).factory,
  mysql: async () => (await import("@cairn/engine-mysql")).factory,
  dynamodb: async () => (await import("@cairn/engine-dynamodb")).factory,
};

const open = async (server: Server, tag: string): Promise<MetadataEngine> =>
  (await factories[server.kind]()).open(server.url(tag));

/** Loads the data set's dump into `engine`; returns the number of records. */
async function load(engine: MetadataEngine, set: EngineSet): Promise<number> {
  const result = await loadEngine(engine, { file: dumpFile(set) });
  return Object.values(result.counts).reduce((a, b) => a + b, 0);
}

/**
 * The tag of a case's data on a server, chosen by its setup and read by its runs and teardown (separate
 * processes): random, so benchmark runs on a shared server do not meet.
 */
const tagFile = (name: string) => join(DATA, `${name}.tag`);
const newTag = (name: string) => {
  const tag = `${name}-${randomBytes(4).toString("hex")}`;
  writeFileSync(tagFile(name), tag);
  return tag;
};
const tagOf = (name: string) => readFileSync(tagFile(name), "utf8");

/**
 * Counts the staged entries of the data set's branch with one `scan` of its repository's partition: the data
 * set's entries and the seed object its builder uploaded.
 */
async function listStaged(engine: MetadataEngine): Promise<{ ms: number; entries: number }> {
  const partition = await findPartition(engine);
  if (!partition) throw new Error("the loaded engine holds no repository partition");
  const branch = JSON.parse(Buffer.from((await engine.get(partition, "branch/main"))!).toString("utf8")) as {
    stagingToken: string;
  };
  const t0 = performance.now();
  let entries = 0;
  for await (const _ of engine.scan(partition, { prefix: `staged/${branch.stagingToken}/` })) entries++;
  return { ms: performance.now() - t0, entries };
}

const TARGET_DUMP = "target ≤ 5 s, within 2× of the server's tool, ≤ 256 MB";
const TARGET_LOAD = "target ≤ 10 s, ≤ 256 MB";

function serverCases(server: Server, set: EngineSet): Case[] {
  const loadName = `${server.kind}-load-1m`;
  const dumpName = `${server.kind}-dump-1m`;
  const listName = `${server.kind}-list-1m`;
  /** Loads the data set under a new tag of `name`, outside the measured run. */
  const loaded = async (name: string) => {
    await engineDump(set);
    if (existsSync(tagFile(name))) server.drop(tagOf(name));
    const engine = await open(server, newTag(name));
    try {
      await load(engine, set);
    } finally {
      await engine.close();
    }
  };
  const dropped = async (name: string) => {
    if (!existsSync(tagFile(name))) return;
    server.drop(tagOf(name));
    rmSync(tagFile(name));
  };
  return [
    {
      name: loadName,
      async setup() {
        await engineDump(set);
      },
      async run() {
        const tag = `${loadName}-${randomBytes(4).toString("hex")}`;
        const engine = await open(server, tag);
        try {
          const t0 = performance.now();
          const records = await load(engine, set);
          const ms = performance.now() - t0;
          return {
            name: loadName,
            ms,
            items: records,
            unit: "records",
            note: `loadEngine of ${count(set.staged)} staged + ${count(set.commits)} commits from a file; ${TARGET_LOAD}${scaled}`,
          };
        } finally {
          await engine.close();
          server.drop(tag);
        }
      },
    },
    {
      name: dumpName,
      repeat: 3,
      setup: () => loaded(dumpName),
      async run() {
        const tag = tagOf(dumpName);
        const file = join(DATA, `${dumpName}.dump.json`);
        const engine = await open(server, tag);
        let ms: number;
        let records: number;
        try {
          const t0 = performance.now();
          records = await writeEngineDump(engine, file);
          ms = performance.now() - t0;
        } finally {
          await engine.close();
        }
        const size = mb(file);
        rmSync(file);
        const own = join(DATA, `${dumpName}.baseline`);
        try {
          const baseline = server.baseline(tag, own);
          return {
            name: dumpName,
            ms,
            items: records,
            unit: "records",
            baselineMs: baseline.ms,
            note: `${size}; ${baseline.note}: ${(ms / baseline.ms).toFixed(1)}×; ${TARGET_DUMP}${scaled}`,
          };
        } finally {
          rmSync(own, { force: true });
        }
      },
      teardown: () => dropped(dumpName),
    },
    {
      name: listName,
      repeat: 3,
      setup: () => loaded(listName),
      async run() {
        const engine = await open(server, tagOf(listName));
        try {
          const { ms, entries } = await listStaged(engine);
          if (entries !== set.staged + 1)
            throw new Error(`listed ${entries} staged entries, expected ${set.staged + 1}`);
          return {
            name: listName,
            ms,
            items: entries,
            unit: "entries",
            note: `engine.scan of one partition's staging area (page ${server.kind === "redis" ? "1,000" : "2,000"})${scaled}`,
          };
        } finally {
          await engine.close();
        }
      },
      teardown: () => dropped(listName),
    },
  ];
}

/**
 * Runs `fn` against a fresh dynalite, stopped afterwards: it is in memory (nothing outlives a process, so each
 * DynamoDB case does its own loading) and slows as its heap fills, so every measured part gets a new one.
 */
async function withDynalite<T>(fn: (endpoint: string) => Promise<T>): Promise<T> {
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: EMULATOR_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: EMULATOR_CREDENTIALS.secretAccessKey,
    // The SDK's notice that its 2027 releases need Node 22, printed by every process that loads it.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
  });
  const server = await startDynalite();
  try {
    return await fn(server.endpoint);
  } finally {
    await server.stop();
  }
}

const dynamoUrl = (endpoint: string, table: string) =>
  `dynamodb://${table}?region=us-east-1&endpoint=${encodeURIComponent(endpoint)}`;

/**
 * The raw DynamoDB API on the same data (`write`, `scan`), or the engine loading a dump (`load`), in a process
 * of its own: its memory is not the case's.
 */
function raw(mode: "write" | "scan" | "load", endpoint: string, table: string, set: EngineSet) {
  const file = mode === "load" ? dumpFile(set) : engineDb(set);
  const out = exec(process.execPath, [join(here, "dynamo-raw.js"), mode, endpoint, table, file]);
  return JSON.parse(out.trim().split("\n").at(-1)!) as { ms: number; items: number; peakRssMb: number };
}

/** The data set loaded into a new table by another process; the engine open on it. */
async function preloaded(endpoint: string, set: EngineSet): Promise<MetadataEngine> {
  raw("load", endpoint, "cairn-bench", set);
  return (await factories.dynamodb()).open(dynamoUrl(endpoint, "cairn-bench"));
}

/** Opens a DynamoDB engine on a new table (created before the clock starts) and loads the data set. */
async function dynamoLoaded(endpoint: string, set: EngineSet) {
  const engine = await (await factories.dynamodb()).open(dynamoUrl(endpoint, "cairn-bench"));
  const t0 = performance.now();
  const records = await load(engine, set);
  return { engine, records, loadMs: performance.now() - t0 };
}

function dynamoCases(set: EngineSet): Case[] {
  const rate = (items: number, ms: number) => `${Math.round(items / (ms / 1000)).toLocaleString("en-US")}/s`;
  return [
    {
      name: "dynamodb-load-100k",
      async setup() {
        await engineDump(set);
      },
      async run() {
        const base = await withDynalite(async (endpoint) => raw("write", endpoint, "raw", set));
        return withDynalite(async (endpoint) => {
          const { engine, records, loadMs } = await dynamoLoaded(endpoint, set);
          await engine.close();
          const share = records / loadMs / (base.items / base.ms);
          return {
            name: "dynamodb-load-100k",
            ms: loadMs,
            items: records,
            unit: "records",
            rawMs: base.ms,
            rawItems: base.items,
            note: `loadEngine of ${count(set.staged)} staged + ${count(set.commits)} commits into dynalite; raw BatchWriteItem (8 × 25) of the same ${count(base.items)} items ${seconds(base.ms)} = ${rate(base.items, base.ms)}, peak RSS ${Math.round(base.peakRssMb)} MB; load at ${(100 * share).toFixed(0)}% of the raw rate, target ≥ 80%${scaled}`,
          };
        });
      },
    },
    {
      name: "dynamodb-dump-100k",
      async setup() {
        await engineDump(set);
      },
      run: () =>
        withDynalite(async (endpoint) => {
          const engine = await preloaded(endpoint, set);
          const file = join(DATA, "dynamodb-dump-100k.dump.json");
          let ms: number;
          let records: number;
          try {
            const t0 = performance.now();
            records = await writeEngineDump(engine, file);
            ms = performance.now() - t0;
          } finally {
            await engine.close();
          }
          const size = mb(file);
          rmSync(file);
          const scan = raw("scan", endpoint, "cairn-bench", set);
          return {
            name: "dynamodb-dump-100k",
            ms,
            items: records,
            unit: "records",
            rawMs: scan.ms,
            note: `${size}; raw Scan of the whole table (${count(scan.items)} items, one segment) ${seconds(scan.ms)}: ${(ms / scan.ms).toFixed(1)}×${scaled}`,
          };
        }),
    },
    {
      name: "dynamodb-list-100k",
      async setup() {
        await engineDump(set);
      },
      run: () =>
        withDynalite(async (endpoint) => {
          const engine = await preloaded(endpoint, set);
          try {
            const { ms, entries } = await listStaged(engine);
            if (entries !== set.staged + 1)
              throw new Error(`listed ${entries} staged entries, expected ${set.staged + 1}`);
            return {
              name: "dynamodb-list-100k",
              ms,
              items: entries,
              unit: "entries",
              note: `engine.scan of one partition's staging area (Query pages of 1,000)${scaled}`,
            };
          } finally {
            await engine.close();
          }
        }),
    },
  ];
}

/** Registered in cases.ts's CASES. */
export const ENGINE_CASES: Case[] = [
  ...serverCases(REDIS, BIG),
  ...serverCases(MYSQL, BIG),
  ...dynamoCases(SMALL),
];
