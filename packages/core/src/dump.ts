import {
  type DumpRecord,
  type DumpWriter,
  isManifestError,
  type RecordSchemas,
  redactSecrets,
} from "@cairn/manifest";
import { decodeJson } from "./codec.js";
import { commitLineStart, lineHead, stagedLineStart } from "./dump-lines.js";
import {
  compareKeys,
  type EngineSnapshot,
  entryText,
  type KvEntry,
  type MetadataEngine,
  type ScanOptions,
  scanPages,
} from "./engine.js";
import { type CairnError, CorruptError, InvalidArgumentError, UnsupportedError } from "./errors.js";
import {
  GLOBAL_PARTITION,
  NAMESPACE_PREFIX,
  partitionOf,
  REPO_PREFIX,
  type RepositoryRecord,
} from "./records.js";

/**
 * The record types of an engine dump, in the order their sections appear. Commits come before the branches and
 * tags that point at them, so a loader checks references as it streams.
 */
export const ENGINE_DUMP_SECTIONS = [
  "repository",
  "commit",
  "branch",
  "tag",
  "staged",
  "engine-record",
] as const;

/** Fields every record of each type must have; the manifest reader checks them line by line. */
export const ENGINE_DUMP_SCHEMAS: RecordSchemas = {
  repository: {
    name: "string",
    id: "string",
    namespace: "string",
    defaultBranch: "string",
    createdAt: "string",
    bare: "boolean",
  },
  commit: {
    repository: "string",
    id: "string",
    parents: "array",
    metarangeId: "string",
    message: "string",
    author: "string",
    metadata: "object",
    createdAt: "string",
    generation: "integer",
  },
  branch: {
    repository: "string",
    name: "string",
    commitId: "string",
    stagingToken: "string",
    sealedTokens: "array",
  },
  tag: { repository: "string", name: "string", commitId: "string" },
  staged: { repository: "string", token: "string", path: "string", entry: "object?", deleted: "boolean?" },
  "engine-record": { partition: "string", key: "string", value: "string" },
};

export interface DumpEngineOptions {
  /** Only this repository (and no engine records). */
  repository?: string;
  /** Leave out staged (uncommitted) entries. */
  staging?: boolean;
  /**
   * Keep credentials in repository settings (a password or a SAS token in a namespace URL). By default they
   * are written as `"removed"`, and must be given again after a load.
   * @default false
   */
  keepSecrets?: boolean;
  /** Called every so many records, for progress. */
  onRecord?: (count: number) => void;
}

type Reader = Pick<EngineSnapshot, "get" | "scan" | "scanPages" | "partitions">;

/**
 * Writes the whole engine — or one repository — as records of the uniform dump format, which any engine can
 * load. Reads through a snapshot when the engine offers one, so the dump is one point in time; the writer's
 * header should say so (`consistency`). Returns nothing; the caller ends the writer.
 */
export async function dumpEngine(
  engine: MetadataEngine,
  writer: Pick<DumpWriter, "write" | "writeLines">,
  options: DumpEngineOptions = {},
): Promise<void> {
  const snapshot = engine.snapshot ? await engine.snapshot() : undefined;
  const source: Reader = snapshot ?? engine;
  let count = 0;
  const counted = (n: number) => {
    const before = count;
    count += n;
    if (Math.floor(count / 10_000) > Math.floor(before / 10_000)) options.onRecord?.(count);
  };
  const out: Output = {
    async record(record) {
      await writer.write(record);
      counted(1);
    },
    async lines(type, lines) {
      await writer.writeLines(type, lines);
      counted(lines.length);
    },
  };
  try {
    await dumpRecords(source, out, options);
    options.onRecord?.(count);
  } catch (error) {
    throw asCairnError(error);
  } finally {
    await snapshot?.release();
  }
}

interface Output {
  record(record: DumpRecord): Promise<void>;
  lines(type: string, lines: readonly string[]): Promise<void>;
}

/**
 * The dump line of a record whose first fields are `head` — a JSON object's text without its closing brace — and
 * whose other fields are the JSON object stored as `value`, spliced as text: commits and staged entries are most
 * of a dump, and parsing and re-serializing each costs more than reading it. `undefined` when `value` is not a
 * one-line, non-empty JSON object (or does not start with `lead`), so the caller takes the parsing path, which
 * reports what is wrong.
 */
function spliceLine(head: string, entry: KvEntry, lead = "{"): string | undefined {
  const text = entryText(entry);
  if (!text.startsWith(lead) || !text.endsWith("}") || text.length < 3 || text.includes("\n"))
    return undefined;
  return `${head},${text.slice(1)}`;
}

async function dumpRecords(source: Reader, out: Output, options: DumpEngineOptions): Promise<void> {
  const repos: RepositoryRecord[] = [];
  for await (const { key, value } of source.scan(GLOBAL_PARTITION, { prefix: REPO_PREFIX })) {
    const r = decodeJson<RepositoryRecord>(value, `${GLOBAL_PARTITION}/${key}`);
    if (options.repository !== undefined && r.name !== options.repository) continue;
    repos.push(r);
  }
  if (options.repository !== undefined && repos.length === 0) {
    throw new InvalidArgumentError(`Repository "${options.repository}" not found in the engine.`);
  }
  for (const r of repos) {
    await out.record({
      type: "repository",
      name: r.name,
      id: r.instanceId,
      namespace: options.keepSecrets ? r.namespace : redactSecrets(r.namespace),
      defaultBranch: r.defaultBranch,
      createdAt: r.createdAt,
      bare: r.bare,
    });
  }
  /** Writes a section: each repository's entries under `prefix`, a page at a time, as lines or records. */
  const section = async (
    prefix: string,
    toRecord: (repo: string, head: string, e: KvEntry) => DumpRecord | string,
  ) => {
    const type = prefix.slice(0, -1);
    for (const r of repos) {
      // The start of every line of this repository's section, serialized once.
      const head = lineHead(type, r.name);
      for await (const page of scanPages(source, partitionOf(r.instanceId), { prefix })) {
        let lines: string[] = [];
        for (const e of page) {
          const record = toRecord(r.name, head, e);
          if (typeof record === "string") {
            lines.push(record);
            continue;
          }
          if (lines.length > 0) await out.lines(type, lines);
          lines = [];
          await out.record(record);
        }
        if (lines.length > 0) await out.lines(type, lines);
      }
    }
  };
  await section("commit/", (repository, head, entry) => {
    const { key } = entry;
    const id = key.slice("commit/".length);
    return (
      spliceLine(`${commitLineStart(head)}${JSON.stringify(id)}`, entry) ?? {
        type: "commit",
        repository,
        id,
        ...decodeJson<Record<string, unknown>>(entry.value, key),
      }
    );
  });
  await section("branch/", (repository, _head, { key, value }) => ({
    type: "branch",
    repository,
    name: key.slice("branch/".length),
    ...decodeJson<Record<string, unknown>>(value, key),
  }));
  await section("tag/", (repository, _head, { key, value }) => ({
    type: "tag",
    repository,
    name: key.slice("tag/".length),
    ...decodeJson<Record<string, unknown>>(value, key),
  }));
  if (options.staging !== false) {
    // A staging area's entries share their token: the start of their lines up to the path is made once.
    let lineStart = { head: "", token: "", text: "" };
    await section("staged/", (repository, head, entry) => {
      const { key } = entry;
      const rest = "staged/".length;
      const slash = key.indexOf("/", rest);
      const token = key.slice(rest, slash);
      const path = key.slice(slash < 0 ? rest : slash + 1);
      if (lineStart.token !== token || lineStart.head !== head) {
        lineStart = { head, token, text: stagedLineStart(head, token) };
      }
      const line = spliceLine(`${lineStart.text}${JSON.stringify(path)}`, entry, '{"entry":{');
      if (line) return line;
      const v = decodeJson<{ entry?: unknown; deleted?: boolean }>(entry.value, key);
      return {
        type: "staged",
        repository,
        token,
        path,
        ...(v.entry ? { entry: v.entry } : { deleted: true }),
      };
    });
  }
  if (options.repository === undefined) {
    // Everything else the engine holds, byte for byte: leases, export and backup state, future records. The
    // key ranges written above are skipped by the scans, not read twice.
    const repoPartitions = new Set(repos.map((r) => partitionOf(r.instanceId)));
    for await (const partition of source.partitions()) {
      const written =
        partition === GLOBAL_PARTITION
          ? [NAMESPACE_PREFIX, REPO_PREFIX]
          : repoPartitions.has(partition)
            ? REPO_SECTION_PREFIXES
            : [];
      for (const range of rangesOutside(written)) {
        for await (const { key, value } of source.scan(partition, range)) {
          await out.record({
            type: "engine-record",
            partition,
            key,
            value: Buffer.from(value).toString("base64"),
          });
        }
      }
    }
  }
}

/** The key prefixes of a repository's partition that have sections of their own in a dump. */
const REPO_SECTION_PREFIXES = ["commit/", "branch/", "tag/", "staged/"];

/**
 * Scan ranges that together cover every key that starts with none of `prefixes`, in key order. The prefixes are
 * ASCII and none starts another, so the key after each prefix's range is the prefix with its last byte raised.
 */
function rangesOutside(prefixes: readonly string[]): ScanOptions[] {
  const ranges: ScanOptions[] = [];
  let from: string | undefined;
  for (const prefix of [...prefixes].sort(compareKeys)) {
    ranges.push(from === undefined ? { before: prefix } : { from, before: prefix });
    from = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  }
  ranges.push(from === undefined ? {} : { from });
  return ranges;
}

/** A dump format error as the cairn error a user sees (one sentence, stable code); others unchanged. */
export function asCairnError(error: unknown): unknown {
  if (error instanceof Error && error.name === "LoadCheckError") {
    // A dump whose records do not hold together, found by a load (load-records.js).
    return (error as Error & { code?: string }).code === "INVALID_ARGUMENT"
      ? new InvalidArgumentError(error.message, { cause: error })
      : new CorruptError(error.message, { cause: error });
  }
  if (!isManifestError(error)) return error;
  let mapped: CairnError;
  switch (error.code) {
    case "UNSUPPORTED_VERSION":
      mapped = new UnsupportedError(error.message, { cause: error });
      break;
    case "ENCRYPTED":
    case "WRONG_KEY":
    case "BAD_PASSPHRASE":
    case "INVALID_OPTIONS":
      mapped = new InvalidArgumentError(error.message, { cause: error });
      break;
    default:
      mapped = new CorruptError(error.message, { cause: error });
  }
  return mapped;
}
