import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { readDump, redactSecrets, writeDump } from "@cairn/manifest";
import pLimit from "p-limit";
import type { Cairn } from "../cairn.js";
import { sha256Hex } from "../codec.js";
import { DigestSet } from "../digest-set.js";
import { asCairnError, dumpEngine, ENGINE_DUMP_SCHEMAS, ENGINE_DUMP_SECTIONS } from "../dump.js";
import { CorruptError, hasCode, PreconditionFailedError } from "../errors.js";
import { fileStream } from "../files.js";
import type { ObjectInfo, ObjectStore } from "../store.js";
import { metarangeKey, parseMetarange, rangeKey } from "../tree/format.js";
import {
  BACKUP_VERSION,
  type BackupLock,
  INVENTORY_SCHEMAS,
  INVENTORY_SECTIONS,
  type InventoryObject,
  LOCK_REFRESH_MS,
  LOCK_STALE_MS,
  LOCKS_PREFIX,
  objectKey,
  SNAPSHOT_FORMAT,
  type SnapshotFile,
  type SnapshotRecord,
  snapshotInventoryKey,
  snapshotRecordKey,
  snapshotRefsKey,
} from "./layout.js";
import { copyVerified, ensureBackupLocation, HeldObjects, where } from "./objects.js";
import { listSnapshots, readInventory } from "./snapshots.js";

export interface BackupOptions {
  /** Objects copied at once. @default 8 */
  parallel?: number;
  /** Commit every branch's uncommitted changes first (as `author`); otherwise they are left out and named. */
  commitAll?: boolean;
  author?: string;
  /** Labels kept in the snapshot record. */
  tags?: string[];
  /** Name of the version of the tool writing the backup, for the documents' headers. */
  tool?: { name: string; version: string };
  onProgress?: (progress: BackupProgress) => void;
  now?: () => Date;
}

export interface BackupProgress {
  /** Objects the snapshot needs, found so far. */
  objects: number;
  /** Of those, copied in this run, and already in the backup. */
  copied: number;
  skipped: number;
  /** Bytes copied in this run. */
  copiedBytes: number;
}

export interface BackupResult {
  snapshot: SnapshotRecord;
  /** Branches whose uncommitted changes the snapshot leaves out (or, with `commitAll`, that were committed). */
  uncommitted: string[];
  copied: number;
  copiedBytes: number;
  skipped: number;
}

const TOOL = { name: "cairn", version: String(BACKUP_VERSION) };

/**
 * Backs up the committed state of repository `name` into the backup location `target` (see
 * `docs/backup-layout.md`): the refs at one point in time, then every object they reach that the location does
 * not hold yet (hashed on the way), then the inventory, and the snapshot record last — an interrupted backup
 * is never listed, and running it again copies only what is still missing.
 */
export async function backupRepository(
  cairn: Cairn,
  name: string,
  target: ObjectStore,
  options: BackupOptions = {},
): Promise<BackupResult> {
  const now = options.now ?? (() => new Date());
  const parallel = options.parallel ?? 8;
  const tool = options.tool ?? TOOL;
  const repo = await cairn.repository(name);
  if (repo.info.bare) {
    throw new PreconditionFailedError(`Repository "${name}" is bare: it has no commits to back up yet.`);
  }
  const uncommitted: string[] = [];
  for await (const branch of repo.listBranches()) {
    if (await repo.hasUncommitted(branch.name)) uncommitted.push(branch.name);
  }
  if (options.commitAll) {
    for (const branch of uncommitted) {
      await repo.commit(branch, { message: "Commit all before backup", author: options.author ?? "" });
    }
  }

  await ensureBackupLocation(target, now());
  const started = now();
  const id = `${started
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}-${randomBytes(4).toString("hex")}`;
  const lock = await holdLockBesidePrune(target, "backup", now);
  const dir = await mkdtemp(join(tmpdir(), "cairn-backup-"));
  try {
    // 1. The refs, at one point in time where the engine offers one.
    const refsFile = join(dir, "refs.json.gz");
    const refsWriter = writeDump({
      output: createWriteStream(refsFile),
      sections: ENGINE_DUMP_SECTIONS,
      source: { engine: cairn.engine.kind, repository: name },
      tool,
      consistency: cairn.engine.snapshot ? "snapshot" : "none",
      header: { kind: "refs" },
      gzip: true,
    });
    try {
      await dumpEngine(cairn.engine, refsWriter, { repository: name, staging: false, keepSecrets: false });
    } catch (error) {
      await refsWriter.abort(error as Error);
      throw error;
    }
    const refsFooter = await refsWriter.end();
    const metaranges = new Set<string>();
    for await (const record of readDump(createReadStream(refsFile), { schemas: ENGINE_DUMP_SCHEMAS })) {
      if (record.type === "commit") metaranges.add(record.metarangeId as string);
    }

    // 2. Every object the commits reach, each once; only those the location lacks are copied. What it holds is
    // known from the repository's previous snapshot when there is one (objects are immutable, and prune keeps
    // every object a listed snapshot needs), else from a listing of objects/; objects outside the previous
    // snapshot are looked up one by one before they are copied, so a rerun after an interruption copies nothing
    // twice either way. An object is held only at its size: a piece a cut upload left is copied again.
    const previous = (await listSnapshots(target, { repository: name, onBad: () => {} })).at(-1);
    const present = previous ? await inventoryObjects(target, previous, dir) : await HeldObjects.list(target);
    const lookUp = previous !== undefined;
    const inventoried = new DigestSet();
    const progress: BackupProgress = { objects: 0, copied: 0, skipped: 0, copiedBytes: 0 };
    const report = () => options.onProgress?.({ ...progress });
    const inventoryFile = join(dir, "inventory.json.gz");
    const inventory = writeDump({
      output: createWriteStream(inventoryFile),
      sections: INVENTORY_SECTIONS,
      schemas: INVENTORY_SCHEMAS,
      source: { engine: cairn.engine.kind, repository: name },
      tool,
      header: { kind: "inventory", snapshot: id },
      gzip: true,
    });
    let totalBytes = 0;
    const limit = pLimit(parallel);
    const copies = new Set<Promise<void>>();
    let failure: unknown;
    const need = async (object: Omit<InventoryObject, "type">, bytes?: Buffer): Promise<void> => {
      if (inventoried.has(object.sha256)) return;
      inventoried.add(object.sha256);
      await inventory.write({ type: "object", ...object });
      progress.objects++;
      totalBytes += object.size;
      if (present.has(object.sha256, object.size)) {
        progress.skipped++;
        report();
        return;
      }
      present.add(object.sha256, object.size);
      const copy = limit(async () => {
        if (lookUp && (await target.head(objectKey(object.sha256)))?.size === object.size) {
          progress.skipped++;
          report();
          return;
        }
        if (bytes) {
          await target.put(objectKey(object.sha256), bytes, { size: bytes.length });
        } else {
          await copyVerified(
            repo.store,
            object.path,
            target,
            objectKey(object.sha256),
            object,
            `${object.kind} ${object.path}`,
          );
        }
        progress.copied++;
        progress.copiedBytes += object.size;
        report();
      }).catch((error: unknown) => {
        failure ??= error;
      });
      copies.add(copy);
      void copy.finally(() => copies.delete(copy));
      // Bounded: reading ranges waits for copies, so memory holds a few ranges and `parallel` transfers.
      if (copies.size >= parallel * 4) await Promise.race(copies);
      if (failure !== undefined) throw failure;
    };
    try {
      for (const metarangeId of metaranges) {
        // Read once, for its ranges and to copy it; verified like every tree object.
        const metarangeBytes = await readAll(repo.store, metarangeKey(metarangeId));
        if (sha256Hex(metarangeBytes) !== metarangeId) {
          throw new CorruptError(
            `The metarange ${metarangeKey(metarangeId)} of repository "${name}" does not match its SHA-256.`,
          );
        }
        const ranges = parseMetarange(metarangeBytes.toString("utf8"), metarangeKey(metarangeId));
        await need(
          {
            sha256: metarangeId,
            size: metarangeBytes.length,
            kind: "metarange",
            path: metarangeKey(metarangeId),
          },
          metarangeBytes,
        );
        for (const ref of ranges) {
          if (inventoried.has(ref.id)) continue;
          const bytes = await repo.trees.fetchRange(ref.id);
          await need({ sha256: ref.id, size: bytes.length, kind: "range", path: rangeKey(ref.id) }, bytes);
          for (const entry of repo.trees.parseRange(ref.id, bytes)) {
            await need({ sha256: entry.sha256, size: entry.size, kind: "data", path: entry.address });
          }
        }
      }
      await Promise.all(copies);
      if (failure !== undefined) throw failure;
    } catch (error) {
      await Promise.allSettled(copies);
      await inventory.abort(error as Error);
      throw error;
    }
    await inventory.end();

    // 3. The two documents, then the record that makes the snapshot exist.
    const refs = await upload(target, refsFile, snapshotRefsKey(id));
    const inventoryRef = await upload(target, inventoryFile, snapshotInventoryKey(id));
    const info = repo.info;
    const record: SnapshotRecord = {
      format: SNAPSHOT_FORMAT,
      version: BACKUP_VERSION,
      id,
      time: started.toISOString(),
      completedAt: now().toISOString(),
      repository: {
        name,
        // Credentials in the namespace URL stay out of the backup, as they stay out of dumps.
        namespace: redactSecrets(info.namespace),
        defaultBranch: info.defaultBranch,
        engine: cairn.engine.kind,
        consistency: cairn.engine.snapshot ? "snapshot" : "none",
      },
      refs,
      inventory: inventoryRef,
      counts: {
        commits: refsFooter.counts.commit ?? 0,
        branches: refsFooter.counts.branch ?? 0,
        tags: refsFooter.counts.tag ?? 0,
        objects: progress.objects,
        bytes: totalBytes,
      },
      ...(options.tags?.length ? { tags: options.tags } : {}),
      host: hostname(),
    };
    await target.put(snapshotRecordKey(id), Buffer.from(`${JSON.stringify(record, null, 2)}\n`), {
      createOnly: true,
      contentType: "application/json",
    });
    return {
      snapshot: record,
      uncommitted,
      copied: progress.copied,
      copiedBytes: progress.copiedBytes,
      skipped: progress.skipped,
    };
  } catch (error) {
    throw asCairnError(error);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await lock.release();
  }
}

/** The objects a snapshot's inventory lists (the file is checked against the snapshot record first). */
async function inventoryObjects(
  store: ObjectStore,
  snapshot: SnapshotRecord,
  dir: string,
): Promise<HeldObjects> {
  // Beside the inventory this backup writes, under a name of its own.
  const file = join(dir, "previous-inventory.json.gz");
  const held = new HeldObjects();
  for await (const object of readInventory(store, snapshot, file)) held.add(object.sha256, object.size);
  await rm(file, { force: true });
  return held;
}

/** Uploads a local file and returns its size and SHA-256 as stored. */
async function upload(target: ObjectStore, file: string, key: string): Promise<SnapshotFile> {
  const { size } = await stat(file);
  const open = () => fileStream(file, size);
  const hash = createHash("sha256");
  for await (const chunk of open()) hash.update(chunk as Buffer);
  await target.put(key, open(), { size, contentType: "application/gzip", reopen: open });
  return { path: key, size, sha256: hash.digest("hex") };
}

async function readAll(store: ObjectStore, key: string): Promise<Buffer> {
  const reader = await store.get(key);
  const chunks: Buffer[] = [];
  for await (const chunk of reader.body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The lock at `info`, as far as it can be read: `undefined` when it was released meanwhile, `{}` when it is not
 * JSON (it is then judged by when it was written).
 */
export async function readLock(
  store: ObjectStore,
  info: ObjectInfo,
): Promise<Partial<BackupLock> | undefined> {
  try {
    const reader = await store.get(info.key);
    const chunks: Buffer[] = [];
    for await (const chunk of reader.body) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as Partial<BackupLock>;
  } catch (error) {
    if (hasCode(error, "NOT_FOUND")) return undefined;
    if (error instanceof SyntaxError) return {};
    throw error;
  }
}

/** Milliseconds since a lock was last refreshed; `NaN` when unknown (which callers treat as fresh). */
export function lockAge(lock: Partial<BackupLock>, info: ObjectInfo, now: () => Date): number {
  const refreshed = Date.parse(String(lock.refreshedAt ?? lock.createdAt ?? ""));
  const at = Number.isNaN(refreshed) ? (info.lastModified?.getTime() ?? Number.NaN) : refreshed;
  return now().getTime() - at;
}

/**
 * Takes a lock for work that may run beside backups and verifies but never beside a prune, which could delete
 * objects a backup finds present and does not copy, or that a verify is about to check: our own lock first,
 * then a look at the others', so that of a prune and this work starting at once one sees the other. Refuses
 * (with nothing left held) while a prune works on the location; prune, in turn, refuses while any other process
 * holds a lock.
 */
export async function holdLockBesidePrune(
  store: ObjectStore,
  operation: "backup" | "verify",
  now: () => Date,
): Promise<HeldLock> {
  const held = await holdLock(store, operation, now);
  try {
    await refuseDuringPrune(store, held.lock.id, now, operation === "backup" ? "back up" : "verify");
    return held;
  } catch (error) {
    await held.release();
    throw error;
  }
}

/** Refuses while another process's prune lock is fresh; `what` names the refused work in the message. */
async function refuseDuringPrune(
  store: ObjectStore,
  ownId: string,
  now: () => Date,
  what: string,
): Promise<void> {
  for await (const info of store.list(LOCKS_PREFIX)) {
    if (info.key === `${LOCKS_PREFIX}${ownId}.json`) continue;
    const lock = await readLock(store, info);
    if (lock?.operation !== "prune") continue;
    const age = lockAge(lock, info, now);
    if (!Number.isNaN(age) && age >= LOCK_STALE_MS) continue;
    throw new PreconditionFailedError(
      `${where(store)} is being pruned by host ${lock.host ?? "?"} (pid ${lock.pid ?? "?"}, ${info.key}); ${what} once the prune is done.`,
    );
  }
}

/** A lock file of the location, refreshed while held. */
export interface HeldLock {
  readonly lock: BackupLock;
  release(): Promise<void>;
}

/** Writes `locks/<id>.json` for `operation` and refreshes it every minute until released. */
export async function holdLock(
  store: ObjectStore,
  operation: BackupLock["operation"],
  now: () => Date = () => new Date(),
): Promise<HeldLock> {
  const created = now().toISOString();
  const lock: BackupLock = {
    id: `${created.replace(/[-:.]/g, "")}-${randomBytes(4).toString("hex")}`,
    operation,
    host: hostname(),
    pid: process.pid,
    createdAt: created,
    refreshedAt: created,
  };
  const key = `${LOCKS_PREFIX}${lock.id}.json`;
  const write = () =>
    store.put(key, Buffer.from(`${JSON.stringify(lock)}\n`), { contentType: "application/json" });
  await write();
  const timer = setInterval(() => {
    lock.refreshedAt = now().toISOString();
    write().catch(() => {});
  }, LOCK_REFRESH_MS);
  timer.unref();
  let released = false;
  return {
    lock,
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await store.delete(key).catch(() => {});
    },
  };
}
