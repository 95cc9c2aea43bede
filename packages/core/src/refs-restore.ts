import type { DumpRecord } from "@cairn/manifest";
import { encodeJson } from "./codec.js";
import { asCairnError } from "./dump.js";
import { clearKeys, type MetadataEngine, type WriteOp } from "./engine.js";
import { CorruptError, InvalidArgumentError, PreconditionFailedError } from "./errors.js";
import type { RepositoryInfo } from "./model.js";
import { metarangeKey, rangeKey } from "./tree/format.js";
import type { TreeStore } from "./tree/tree-store.js";

export interface RestoreResult {
  commits: number;
  branches: number;
  tags: number;
}

const MISSING_SHOWN = 5;

/**
 * The work of `Cairn.restoreRefs`: checks and writes the records into the bare repository's partition.
 * Commits are written as they come; branches and tags, which make them reachable, only after every commit
 * and every tree they need proved present.
 */
export async function restoreRefRecords(
  engine: MetadataEngine,
  partition: string,
  trees: TreeStore,
  target: RepositoryInfo,
  records: AsyncIterable<DumpRecord>,
): Promise<RestoreResult> {
  const commits = new Set<string>();
  const parents = new Set<string>();
  const metaranges = new Set<string>();
  const refs: WriteOp[] = [];
  const batch: WriteOp[] = [];
  let seenRepository = false;
  const result: RestoreResult = { commits: 0, branches: 0, tags: 0 };
  const flush = async () => {
    if (batch.length > 0) await engine.writeBatch(batch.splice(0));
  };
  try {
    for await (const record of records) {
      switch (record.type) {
        case "repository": {
          if (seenRepository)
            throw new InvalidArgumentError("The refs manifest holds more than one repository.");
          seenRepository = true;
          if (record.defaultBranch !== target.defaultBranch) {
            throw new PreconditionFailedError(
              `The manifest's default branch is "${String(record.defaultBranch)}" but repository "${target.name}" has "${target.defaultBranch}"; create the bare repository with --default-branch ${String(record.defaultBranch)}.`,
            );
          }
          break;
        }
        case "commit": {
          const { type: _t, repository: _r, id, ...commit } = record as Record<string, unknown>;
          commits.add(id as string);
          for (const p of commit.parents as string[]) parents.add(p);
          metaranges.add(commit.metarangeId as string);
          batch.push({ partition, key: `commit/${id as string}`, value: encodeJson(commit) });
          result.commits++;
          if (batch.length >= 1000) await flush();
          break;
        }
        case "branch":
        case "tag": {
          const { type, repository: _r, name, ...value } = record as Record<string, unknown>;
          if (!commits.has(value.commitId as string)) {
            throw new CorruptError(
              `The manifest's ${type} "${String(name)}" points at commit ${String(value.commitId)}, which it does not hold.`,
            );
          }
          const stored = type === "branch" ? { ...value, sealedTokens: [] } : value;
          refs.push({ partition, key: `${type}/${String(name)}`, value: encodeJson(stored) });
          if (type === "branch") result.branches++;
          else result.tags++;
          break;
        }
        case "staged":
          break; // A refs restore brings committed state only.
        default:
          throw new InvalidArgumentError(
            `The refs manifest has a record of type "${record.type}", which it may not hold.`,
          );
      }
    }
    if (!seenRepository) throw new InvalidArgumentError("The refs manifest holds no repository.");
    for (const p of parents) {
      if (!commits.has(p))
        throw new CorruptError(`The manifest holds a commit whose parent ${p} it does not hold.`);
    }
    if (!refs.some((r) => r.key === `branch/${target.defaultBranch}`)) {
      throw new CorruptError(
        `The manifest has no branch "${target.defaultBranch}", the repository's default branch.`,
      );
    }
    // Every tree must be in the namespace, or the restored repository would fail on first read.
    const missing: string[] = [];
    const checkedRanges = new Set<string>();
    for (const id of metaranges) {
      if (!(await trees.store.head(metarangeKey(id)))) {
        missing.push(metarangeKey(id));
        continue;
      }
      for (const r of (await trees.readMetarange(id)).ranges) {
        if (checkedRanges.has(r.id)) continue;
        checkedRanges.add(r.id);
        if (!(await trees.store.head(rangeKey(r.id)))) missing.push(rangeKey(r.id));
      }
      if (missing.length > 100) break;
    }
    if (missing.length > 0) {
      const shown = missing.slice(0, MISSING_SHOWN).join(", ");
      throw new PreconditionFailedError(
        `The storage namespace ${trees.store.url} lacks ${missing.length}${missing.length > 100 ? "+" : ""} tree object(s) the manifest's commits need (${shown}${missing.length > MISSING_SHOWN ? ", …" : ""}); copy the source namespace into it first.`,
      );
    }
    await flush();
    for (let i = 0; i < refs.length; i += 1000) await engine.writeBatch(refs.slice(i, i + 1000));
    return result;
  } catch (error) {
    // Nothing of a failed restore stays: the partition was empty before.
    await clearKeys(engine, partition).catch(() => {
      // Left invisible: the repository is still bare.
    });
    throw asCairnError(error);
  }
}
