/**
 * The layout of a backup location, as `docs/backup-layout.md` describes it for people who read a backup
 * without cairn. One location may hold snapshots of several repositories; objects are shared between them.
 *
 * ```
 * cairn-backup.json                          the marker: this location is a cairn backup (format, version)
 * objects/<aa>/<bb>/<sha256>                 every object, named by the SHA-256 of its bytes, immutable
 * snapshots/<id>/refs.json.gz                the repository's refs manifest (commits, branches, tags)
 * snapshots/<id>/inventory.json.gz           every object the snapshot needs: digest, size, kind, path
 * snapshots/<id>.json                        the snapshot record, written last: digests of the two files
 * locks/<id>.json                            a backup or prune at work (refreshed while it runs)
 * meta/dump-YYYY-MM-DD-HHMMSS.json.gz        scheduled dumps of the whole metadata engine
 * ```
 */

export const BACKUP_FORMAT = "cairn.backup";
export const SNAPSHOT_FORMAT = "cairn.backup.snapshot";
export const INVENTORY_FORMAT = "cairn.backup.inventory";
export const BACKUP_VERSION = 1;

export const BACKUP_MARKER = "cairn-backup.json";
export const OBJECTS_PREFIX = "objects/";
export const SNAPSHOTS_PREFIX = "snapshots/";
export const LOCKS_PREFIX = "locks/";
export const META_PREFIX = "meta/";

/** Where an object with this SHA-256 lives in a backup location. */
export function objectKey(sha256: string): string {
  return `${OBJECTS_PREFIX}${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
}

/** The digest of an object key of a backup location, or undefined when `key` is not one. */
export function objectDigest(key: string): string | undefined {
  const m = /^objects\/([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key);
  return m && m[3]!.startsWith(m[1]! + m[2]!) ? m[3] : undefined;
}

export const snapshotRecordKey = (id: string): string => `${SNAPSHOTS_PREFIX}${id}.json`;
export const snapshotRefsKey = (id: string): string => `${SNAPSHOTS_PREFIX}${id}/refs.json.gz`;
export const snapshotInventoryKey = (id: string): string => `${SNAPSHOTS_PREFIX}${id}/inventory.json.gz`;

/** Snapshot ids sort by time: `20261125T231500Z-3f9a1c2b`. */
export const SNAPSHOT_ID = /^\d{8}T\d{6}Z-[0-9a-f]{8}$/;

/** `cairn-backup.json`. */
export interface BackupMarker {
  format: typeof BACKUP_FORMAT;
  version: number;
  createdAt: string;
}

/** A file of a snapshot, as its record names it. */
export interface SnapshotFile {
  path: string;
  size: number;
  sha256: string;
}

/** `snapshots/<id>.json`: written last, so a snapshot that is listed is whole. */
export interface SnapshotRecord {
  format: typeof SNAPSHOT_FORMAT;
  version: number;
  id: string;
  /** When the refs were read (the snapshot's point in time), ISO 8601. */
  time: string;
  /** When the record was written, ISO 8601. */
  completedAt: string;
  repository: {
    name: string;
    namespace: string;
    defaultBranch: string;
    /** Kind of the engine the refs were read from, and how consistent that read was. */
    engine: string;
    consistency: "snapshot" | "none";
  };
  refs: SnapshotFile;
  inventory: SnapshotFile;
  counts: { commits: number; branches: number; tags: number; objects: number; bytes: number };
  /** Free-form labels given at backup time. */
  tags?: string[];
  host?: string;
}

/** Kinds of object a snapshot holds. */
export type ObjectKind = "data" | "range" | "metarange";

/** One line of an inventory (a record of type `object` of the dump format). */
export interface InventoryObject {
  type: "object";
  sha256: string;
  size: number;
  kind: ObjectKind;
  /** Key of the object in the repository's storage namespace. */
  path: string;
}

/** The record types of an inventory document, in section order. */
export const INVENTORY_SECTIONS = ["object"] as const;

export const INVENTORY_SCHEMAS = {
  object: { sha256: "string", size: "integer", kind: "string", path: "string" },
} as const;

/** `locks/<id>.json`: a process at work on the location. */
export interface BackupLock {
  id: string;
  /**
   * What holds it: backups and verifies may run beside each other, but never beside a prune, which could delete
   * what they read.
   */
  operation: "backup" | "prune" | "verify";
  host: string;
  pid: number;
  createdAt: string;
  /** Refreshed while the process works; a lock not refreshed for this long is stale. */
  refreshedAt: string;
}

/** A lock older than this without refresh belongs to a process that died. */
export const LOCK_STALE_MS = 10 * 60 * 1000;
/** How often a working process refreshes its lock. */
export const LOCK_REFRESH_MS = 60 * 1000;
