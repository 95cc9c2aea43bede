// Data sets shared by the benchmarks, generated under bench/.data/ and reused between runs.
import { createWriteStream, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  Cairn,
  commitId,
  dumpEngine,
  ENGINE_DUMP_SECTIONS,
  encodeJson,
  type MetadataEngine,
} from "@cairn/core";
import { factory as sqlite } from "@cairn/engine-sqlite";
import { writeDump } from "@cairn/manifest";
import { factory as fs } from "@cairn/store-fs";

export const DATA = join(dirname(fileURLToPath(import.meta.url)), "..", ".data");

/** A SQLite engine and a folder store under `dir`, as the embedded default installation has them. */
export async function open(dir: string) {
  mkdirSync(dir, { recursive: true });
  const engine = await sqlite.open(`sqlite://${join(dir, "meta.db")}`);
  const cairn = new Cairn({ engine, openStore: (url) => fs.open(url) });
  return {
    cairn,
    namespace: pathToFileURL(join(dir, "data")).href,
    close: async () => {
      await cairn.close();
      await engine.close();
    },
  };
}

export const pathOf = (i: number) =>
  `dir-${String(Math.floor(i / 1000)).padStart(4, "0")}/file-${String(i).padStart(7, "0")}.bin`;

/** The size of an engine data set: one repository with `commits` commits and `staged` staged entries. */
export interface EngineSet {
  /** Folder under bench/.data holding its SQLite engine; the dump file is `<name>.dump.json` beside it. */
  name: string;
  staged: number;
  commits: number;
}

/** The data set of `dump-1m` and `load-1m`: 1,000,000 staged entries and 100,000 commits. */
export const ENGINE_1M: EngineSet = { name: "engine-1m", staged: 1_000_000, commits: 100_000 };

/** A data set of `staged` entries and a tenth as many commits (`engine-1m`'s proportions). */
export function engineSet(staged: number): EngineSet {
  if (staged === ENGINE_1M.staged) return ENGINE_1M;
  const name = staged === 100_000 ? "engine-100k" : `engine-${staged}`;
  return { name, staged, commits: Math.max(1, Math.round(staged / 10)) };
}

export const engineDb = (set: EngineSet = ENGINE_1M) => join(DATA, set.name, "meta.db");

/** An engine holding one repository with `set.commits` commits and `set.staged` staged entries (engine records only). */
export async function bigEngine(set: EngineSet = ENGINE_1M): Promise<void> {
  const dir = join(DATA, set.name);
  if (existsSync(join(dir, "READY"))) return;
  rmSync(dir, { recursive: true, force: true });
  const { cairn, namespace, close } = await open(dir);
  const repo = await cairn.createRepository({ name: "meta", namespace });
  const seed = await repo.upload("main", "seed.bin", Buffer.from("seed\n"));
  const root = await repo.getCommit((await repo.getBranch("main")).commitId);
  const engine = cairn.engine;
  const partition = (await findPartition(engine))!;
  let parent = root;
  const ops: { partition: string; key: string; value: Uint8Array }[] = [];
  for (let i = 1; i <= set.commits; i++) {
    const record = {
      version: 1 as const,
      parents: [parent.id],
      metarangeId: root.metarangeId,
      message: `commit ${i}`,
      author: "bench",
      metadata: { i: String(i) },
      createdAt: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
      generation: parent.generation + 1,
    };
    const id = commitId(record);
    ops.push({ partition, key: `commit/${id}`, value: encodeJson(record) });
    parent = { ...root, id, generation: record.generation };
    if (ops.length >= 5000) await engine.writeBatch(ops.splice(0));
  }
  const branch = JSON.parse(Buffer.from((await engine.get(partition, "branch/main"))!).toString("utf8"));
  await engine.set(partition, "branch/main", encodeJson({ ...branch, commitId: parent.id }));
  for (let i = 0; i < set.staged; i++) {
    const entry = { ...seed, path: pathOf(i), metadata: { n: String(i) } };
    ops.push({ partition, key: `staged/${branch.stagingToken}/${entry.path}`, value: encodeJson({ entry }) });
    if (ops.length >= 5000) await engine.writeBatch(ops.splice(0));
  }
  await engine.writeBatch(ops);
  await close();
  writeFileSync(join(dir, "READY"), "");
}

/** The partition of the data set's one repository. */
export async function findPartition(engine: MetadataEngine): Promise<string | undefined> {
  for await (const p of engine.partitions()) if (p.startsWith("repo-")) return p;
  return undefined;
}

export const dumpFile = (set: EngineSet = ENGINE_1M) => join(DATA, `${set.name}.dump.json`);

/** `dumpEngine` of `engine` to `file`, as `cairn dump` writes it; returns the number of records. */
export async function writeEngineDump(engine: MetadataEngine, file: string): Promise<number> {
  const writer = writeDump({
    output: createWriteStream(file),
    sections: ENGINE_DUMP_SECTIONS,
    source: { engine: engine.kind },
    tool: { name: "cairn-bench", version: "0" },
    consistency: engine.snapshot ? "snapshot" : "none",
  });
  await dumpEngine(engine, writer);
  const footer = await writer.end();
  return Object.values(footer.counts).reduce((a, b) => a + b, 0);
}

/** Dumps the data set's SQLite engine to `file`. */
export async function dumpTo(file: string, set: EngineSet = ENGINE_1M): Promise<number> {
  const engine = await sqlite.open(`sqlite://${engineDb(set)}`);
  try {
    return await writeEngineDump(engine, file);
  } finally {
    await engine.close();
  }
}

/** Builds the data set and its dump file when missing. */
export async function engineDump(set: EngineSet = ENGINE_1M): Promise<string> {
  await bigEngine(set);
  if (!existsSync(dumpFile(set))) await dumpTo(dumpFile(set), set);
  return dumpFile(set);
}
