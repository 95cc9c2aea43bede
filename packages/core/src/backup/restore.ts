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
import { redactUrl } from "../url.js";
import {
  INVENTORY_SCHEMAS,
  INVENTORY_SECTIONS,
  type InventoryObject,
  objectKey,
  type SnapshotRecord,
} from "./layout.js";
import { copyVerified, where } from "./objects.js";
import { fetchSnapshotFile, listSnapshots, readSnapshot } from "./snapshots.js";

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
    const refsFile = join(dir, "refs.json.gz");
    const inventoryFile = join(dir, "inventory.json.gz");
    await fetchSnapshotFile(backup, snapshot, snapshot.refs, refsFile);
    await fetchSnapshotFile(backup, snapshot, snapshot.inventory, inventoryFile);

    // What an interrupted run already put in place is not copied again.
    const present = new Set<string>();
    for await (const info of repo.store.list("")) present.add(info.key);
    const progress = { objects: 0, copied: 0, skipped: 0, copiedBytes: 0 };
    const limit = pLimit(options.parallel ?? 8);
    const copies = new Set<Promise<void>>();
    let failure: unknown;
    const objects = readDump(createReadStream(inventoryFile), {
      schemas: INVENTORY_SCHEMAS,
      sections: INVENTORY_SECTIONS,
      label: snapshot.inventory.path,
    });
    for await (const record of objects) {
      const object = record as unknown as InventoryObject;
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
          repo.store,
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
