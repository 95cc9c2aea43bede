import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REDACTED, readDump } from "@cairn/manifest";
import pLimit from "p-limit";
import type { Cairn } from "../cairn.js";
import { asCairnError, ENGINE_DUMP_SCHEMAS, ENGINE_DUMP_SECTIONS } from "../dump.js";
import { hasCode, InvalidArgumentError, NotFoundError, PreconditionFailedError } from "../errors.js";
import type { RestoreResult } from "../refs-restore.js";
import type { ObjectStore } from "../store.js";
import { diffTrees } from "../tree/diff.js";
import type { Metarange } from "../tree/format.js";
import { TreeStore } from "../tree/tree-store.js";
import { redactUrl } from "../url.js";
import { objectKey, type SnapshotRecord } from "./layout.js";
import { copyVerified, where } from "./objects.js";
import { fetchSnapshotFile, listSnapshots, parseInventory, readSnapshot } from "./snapshots.js";

export interface RestoreBackupOptions {
  /** The repository to create; by default the name the snapshot was taken of. */
  name?: string;
  /** Its storage namespace; by default the one the snapshot was taken of. */
  namespace?: string;
  /** The snapshot to restore; by default the newest of the repository. */
  snapshot?: string;
  /** Objects copied at once. @default 8 */
  parallel?: number;
  onProgress?: (progress: { objects: number; copied: number; skipped: number; copiedBytes: number }) => void;
}

export interface RestoreBackupResult extends RestoreResult {
  snapshot: SnapshotRecord;
  name: string;
  namespace: string;
  copied: number;
  skipped: number;
  copiedBytes: number;
}

/**
 * Restores a snapshot of a backup location into a new repository: creates it bare, copies every object of the
 * snapshot into its namespace (checking each against its SHA-256), restores the refs, which checks that every
 * tree is present, and only then makes the repository usable. An interrupted restore leaves a bare repository
 * that nothing can use; running the same restore again completes it without copying twice.
 */
export async function restoreRepository(
  cairn: Cairn,
  backup: ObjectStore,
  options: RestoreBackupOptions = {},
): Promise<RestoreBackupResult> {
  const snapshot = await chooseSnapshot(backup, options);
  const name = options.name ?? snapshot.repository.name;
  const namespace = options.namespace ?? snapshot.repository.namespace;
  if (options.namespace === undefined && namespace.includes(REDACTED)) {
    throw new InvalidArgumentError(
      `The snapshot's storage namespace ${namespace} had its credentials removed; give the namespace to restore into with --namespace.`,
    );
  }
  const repo = await prepareTarget(cairn, name, namespace, snapshot.repository.defaultBranch);
  const dir = await mkdtemp(join(tmpdir(), "cairn-restore-"));
  try {
    const { refsFile, inventoryFile } = await fetchRefsAndInventory(backup, snapshot, dir);

    const progress = await copySnapshotObjects(backup, snapshot, inventoryFile, repo.store, options);

    const refs = readDump(createReadStream(refsFile), {
      schemas: ENGINE_DUMP_SCHEMAS,
      sections: ENGINE_DUMP_SECTIONS,
      label: snapshot.refs.path,
    });
    const restored = await cairn.restoreRefs(name, refs);
    return {
      ...restored,
      snapshot,
      name,
      namespace,
      copied: progress.copied,
      skipped: progress.skipped,
      copiedBytes: progress.copiedBytes,
    };
  } catch (error) {
    throw asCairnError(error);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

type Progress = { objects: number; copied: number; skipped: number; copiedBytes: number };

/**
 * Copies every object a snapshot's inventory lists into a namespace, checking each against its SHA-256; what
 * the namespace holds already is not copied again.
 */
async function copySnapshotObjects(
  backup: ObjectStore,
  snapshot: SnapshotRecord,
  inventoryFile: string,
  store: ObjectStore,
  options: Pick<RestoreBackupOptions, "parallel" | "onProgress">,
): Promise<Progress> {
  const present = new Set<string>();
  for await (const info of store.list("")) present.add(info.key);
  const progress: Progress = { objects: 0, copied: 0, skipped: 0, copiedBytes: 0 };
  const limit = pLimit(options.parallel ?? 8);
  const copies = new Set<Promise<void>>();
  let failure: unknown;
  for await (const object of parseInventory(inventoryFile, snapshot)) {
    progress.objects++;
    if (present.has(object.path)) {
      progress.skipped++;
      options.onProgress?.({ ...progress });
      continue;
    }
    const copy = limit(async () => {
      await copyVerified(
        backup,
        objectKey(object.sha256),
        store,
        object.path,
        object,
        `The ${object.kind} object ${object.sha256} of snapshot ${snapshot.id}`,
      );
      progress.copied++;
      progress.copiedBytes += object.size;
      options.onProgress?.({ ...progress });
    }).catch((error: unknown) => {
      failure ??= error;
    });
    copies.add(copy);
    void copy.finally(() => copies.delete(copy));
    if (copies.size >= (options.parallel ?? 8) * 4) await Promise.race(copies);
    if (failure !== undefined) break;
  }
  await Promise.all(copies);
  if (failure !== undefined) throw failure;
  return progress;
}

/** What restoring a snapshot over an existing repository does to one branch or tag. */
export interface OnTopChange {
  ref: "branch" | "tag";
  name: string;
  /** `revert`: moves back (or elsewhere) to the snapshot's commit; `add`: the repository lacks it; `keep`: same. */
  action: "revert" | "add" | "keep";
  from?: string;
  to: string;
  /** Paths the change adds, removes and changes in the ref's tree (branches only). */
  added: number;
  removed: number;
  changed: number;
}

export interface OnTopResult {
  snapshot: SnapshotRecord;
  name: string;
  changes: OnTopChange[];
  /** Branches of the repository that the snapshot does not have: left as they are. */
  kept: string[];
  /** Branches to revert that have uncommitted changes: the restore refuses to apply while there are any. */
  uncommitted: string[];
  applied: boolean;
  copied: number;
  copiedBytes: number;
  /** Commits of the snapshot the repository lacked. */
  commits: number;
}

/**
 * Restores a snapshot over an existing repository, explicitly: first works out what would be reverted, added and
 * kept — every branch and tag of the snapshot against the repository, with the paths each change adds, removes
 * and changes, read from the snapshot's trees in the backup without writing anything — and stops there with
 * `dryRun`. Otherwise it refuses while a branch to revert has uncommitted changes, copies the snapshot's objects
 * into the repository's namespace, adds the commits it lacks, and then moves the branches and tags. Branches the
 * snapshot does not have are kept.
 */
export async function restoreOnTop(
  cairn: Cairn,
  backup: ObjectStore,
  options: RestoreBackupOptions & { name: string; dryRun?: boolean },
): Promise<OnTopResult> {
  const snapshot = await chooseSnapshot(backup, options);
  const repo = await cairn.repository(options.name);
  if (repo.info.bare) {
    throw new PreconditionFailedError(
      `Repository "${options.name}" is bare; restore into it without --on-top.`,
    );
  }
  const dir = await mkdtemp(join(tmpdir(), "cairn-restore-"));
  try {
    const { refsFile, inventoryFile } = await fetchRefsAndInventory(backup, snapshot, dir);
    const commits = new Map<string, Record<string, unknown>>();
    const refs: { ref: "branch" | "tag"; name: string; commitId: string }[] = [];
    for await (const record of readDump(createReadStream(refsFile), {
      schemas: ENGINE_DUMP_SCHEMAS,
      sections: ENGINE_DUMP_SECTIONS,
      label: snapshot.refs.path,
    })) {
      if (record.type === "commit") commits.set(record.id as string, record);
      else if (record.type === "branch" || record.type === "tag") {
        refs.push({ ref: record.type, name: record.name as string, commitId: record.commitId as string });
      }
    }
    // The snapshot's trees are read from the namespace where it has them, else from the backup.
    const trees = new TreeStore(overlay(repo.store, backup));
    const metarangeOf = async (commitId: string): Promise<Metarange> => {
      const id =
        (commits.get(commitId)?.metarangeId as string) ?? (await repo.getCommit(commitId)).metarangeId;
      return trees.readMetarange(id);
    };
    const changes: OnTopChange[] = [];
    const uncommitted: string[] = [];
    for (const { ref, name, commitId } of refs) {
      let from: string | undefined;
      try {
        from = ref === "branch" ? (await repo.getBranch(name)).commitId : (await repo.getTag(name)).commitId;
      } catch (error) {
        if (!hasCode(error, "NOT_FOUND")) throw error;
      }
      const change: OnTopChange = {
        ref,
        name,
        action: from === undefined ? "add" : from === commitId ? "keep" : "revert",
        ...(from !== undefined ? { from } : {}),
        to: commitId,
        added: 0,
        removed: 0,
        changed: 0,
      };
      if (ref === "branch" && change.action !== "keep") {
        const left = from === undefined ? { id: "", ranges: [] } : await metarangeOf(from);
        for await (const d of diffTrees(trees, left, await metarangeOf(commitId))) {
          if (d.type === "added") change.added++;
          else if (d.type === "removed") change.removed++;
          else change.changed++;
        }
        if (change.action === "revert" && (await repo.hasUncommitted(name))) uncommitted.push(name);
      }
      changes.push(change);
    }
    const inSnapshot = new Set(refs.filter((r) => r.ref === "branch").map((r) => r.name));
    const kept: string[] = [];
    for await (const b of repo.listBranches()) if (!inSnapshot.has(b.name)) kept.push(b.name);
    const result: OnTopResult = {
      snapshot,
      name: options.name,
      changes,
      kept,
      uncommitted,
      applied: false,
      copied: 0,
      copiedBytes: 0,
      commits: 0,
    };
    if (options.dryRun) return result;
    if (uncommitted.length > 0) {
      throw new PreconditionFailedError(
        `Branch${uncommitted.length > 1 ? "es" : ""} ${uncommitted.join(", ")} of repository "${options.name}" ha${uncommitted.length > 1 ? "ve" : "s"} uncommitted changes that the restore would lose; commit or reset them first.`,
      );
    }
    const progress = await copySnapshotObjects(backup, snapshot, inventoryFile, repo.store, options);
    result.commits = await repo.importCommits(commits.values());
    for (const change of changes) {
      if (change.action === "keep") continue;
      if (change.ref === "tag") await repo.setTag(change.name, change.to);
      else if (change.action === "add") await repo.createBranchAt(change.name, change.to);
      else await repo.setBranchHead(change.name, change.to);
    }
    return { ...result, applied: true, copied: progress.copied, copiedBytes: progress.copiedBytes };
  } catch (error) {
    throw asCairnError(error);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The repository's namespace for reading trees, falling back to the backup's `objects/` for ranges and
 * metaranges the namespace does not hold yet. Read-only: writes go to the namespace.
 */
function overlay(namespace: ObjectStore, backup: ObjectStore): ObjectStore {
  return {
    kind: namespace.kind,
    url: namespace.url,
    async get(key, options) {
      try {
        return await namespace.get(key, options);
      } catch (error) {
        const m = /^_cairn\/(?:ranges|metaranges)\/([0-9a-f]{64})$/.exec(key);
        if (!m || !hasCode(error, "NOT_FOUND")) throw error;
        return backup.get(objectKey(m[1]!), options);
      }
    },
    head: (key) => namespace.head(key),
    list: (prefix, options) => namespace.list(prefix, options),
    put: (key, body, options) => namespace.put(key, body, options),
    delete: (key) => namespace.delete(key),
    copy: (source, target, options) => namespace.copy(source, target, options),
    close: async () => {},
  };
}

/** The snapshot named by `options.snapshot`, else the newest of the target repository (or of the only one). */
async function chooseSnapshot(backup: ObjectStore, options: RestoreBackupOptions): Promise<SnapshotRecord> {
  if (options.snapshot !== undefined) return readSnapshot(backup, options.snapshot);
  const all = await listSnapshots(backup);
  if (all.length === 0) throw new NotFoundError(`${where(backup)} holds no complete snapshot.`);
  const ofName = options.name === undefined ? [] : all.filter((s) => s.repository.name === options.name);
  if (ofName.length > 0) return ofName.at(-1)!;
  const repositories = [...new Set(all.map((s) => s.repository.name))];
  if (repositories.length === 1) return all.at(-1)!;
  throw new InvalidArgumentError(
    `${where(backup)} holds snapshots of repositories ${repositories.join(", ")}; choose one with --snapshot.`,
  );
}

/**
 * The bare repository to restore into: created, or — when an earlier restore into it was interrupted — the
 * bare, empty one that run created on the same namespace. Anything else is refused: a restore never overlays
 * a repository that holds refs.
 */
async function prepareTarget(cairn: Cairn, name: string, namespace: string, defaultBranch: string) {
  try {
    const info = await cairn.getRepository(name);
    const repo = await cairn.repository(name);
    let empty = true;
    for await (const _ of repo.listBranches()) {
      empty = false;
      break;
    }
    if (!info.bare || !empty) {
      throw new PreconditionFailedError(
        `Repository "${name}" already exists and holds data; restore into a new name, or delete it first.`,
      );
    }
    if (info.namespace !== namespace.replace(/\/+$/, "")) {
      throw new PreconditionFailedError(
        `Repository "${name}" exists (bare, from an interrupted restore) on another namespace ${redactUrl(info.namespace)}; delete it or restore onto that namespace.`,
      );
    }
    return repo;
  } catch (error) {
    if (!hasCode(error, "NOT_FOUND")) throw error;
  }
  return cairn.createBareRepository({ name, namespace, defaultBranch });
}

/** Downloads a snapshot's refs manifest and inventory into `dir`, each checked against the snapshot record. */
async function fetchRefsAndInventory(
  backup: ObjectStore,
  snapshot: SnapshotRecord,
  dir: string,
): Promise<{ refsFile: string; inventoryFile: string }> {
  const refsFile = join(dir, "refs.json.gz");
  const inventoryFile = join(dir, "inventory.json.gz");
  await fetchSnapshotFile(backup, snapshot, snapshot.refs, refsFile);
  await fetchSnapshotFile(backup, snapshot, snapshot.inventory, inventoryFile);
  return { refsFile, inventoryFile };
}
