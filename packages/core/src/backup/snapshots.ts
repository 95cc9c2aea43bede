import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { readDump } from "@cairn/manifest";
import { CorruptError, hasCode, InvalidArgumentError, NotFoundError, UnsupportedError } from "../errors.js";
import type { ObjectStore } from "../store.js";
import {
  BACKUP_VERSION,
  INVENTORY_SCHEMAS,
  INVENTORY_SECTIONS,
  type InventoryObject,
  SNAPSHOT_FORMAT,
  SNAPSHOT_ID,
  SNAPSHOTS_PREFIX,
  type SnapshotFile,
  type SnapshotRecord,
  snapshotRecordKey,
} from "./layout.js";
import { requireBackup, where } from "./objects.js";

/**
 * The complete snapshots of a backup location, oldest first: those whose record exists. A record that cannot
 * be read is reported through `onBad` (and skipped) rather than hiding the others.
 */
export async function listSnapshots(
  store: ObjectStore,
  options: { repository?: string; onBad?: (key: string, error: unknown) => void } = {},
): Promise<SnapshotRecord[]> {
  await requireBackup(store);
  const records: SnapshotRecord[] = [];
  for await (const info of store.list(SNAPSHOTS_PREFIX)) {
    const m = /^snapshots\/([^/]+)\.json$/.exec(info.key);
    if (!m || !SNAPSHOT_ID.test(m[1]!)) continue;
    try {
      const record = await readSnapshot(store, m[1]!);
      if (options.repository === undefined || record.repository.name === options.repository)
        records.push(record);
    } catch (error) {
      if (!options.onBad) throw error;
      options.onBad(info.key, error);
    }
  }
  return records.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.id < b.id ? -1 : 1));
}

/** The record of snapshot `id`; `NOT_FOUND` naming it when the location has no such snapshot. */
export async function readSnapshot(store: ObjectStore, id: string): Promise<SnapshotRecord> {
  if (!SNAPSHOT_ID.test(id)) {
    throw new InvalidArgumentError(`"${id}" is not a snapshot id; ids look like 20261125T231500Z-3f9a1c2b.`);
  }
  const key = snapshotRecordKey(id);
  let text: string;
  try {
    const reader = await store.get(key);
    const chunks: Buffer[] = [];
    for await (const chunk of reader.body) chunks.push(chunk as Buffer);
    text = Buffer.concat(chunks).toString("utf8");
  } catch (error) {
    if (hasCode(error, "NOT_FOUND")) {
      throw new NotFoundError(`${where(store)} has no snapshot ${id}.`, { cause: error });
    }
    throw error;
  }
  let record: SnapshotRecord;
  try {
    record = JSON.parse(text) as SnapshotRecord;
  } catch (cause) {
    throw new CorruptError(`The snapshot record ${key} of ${store.url} is not JSON.`, { cause });
  }
  if (record.format !== SNAPSHOT_FORMAT || record.id !== id) {
    throw new CorruptError(
      `The snapshot record ${key} of ${store.url} is not a cairn snapshot record for ${id}.`,
    );
  }
  if (typeof record.version !== "number" || record.version > BACKUP_VERSION) {
    throw new UnsupportedError(
      `The snapshot ${id} of ${store.url} was written by a newer cairn (version ${String(record.version)}).`,
    );
  }
  if (!isFile(record.refs) || !isFile(record.inventory) || typeof record.repository?.name !== "string") {
    throw new CorruptError(`The snapshot record ${key} of ${store.url} lacks its refs or inventory.`);
  }
  return record;
}

function isFile(file: SnapshotFile | undefined): boolean {
  return (
    typeof file?.path === "string" &&
    file.path.startsWith(SNAPSHOTS_PREFIX) &&
    typeof file.size === "number" &&
    typeof file.sha256 === "string"
  );
}

/**
 * Downloads a file of a snapshot to `localPath`, checking its size and SHA-256 against the record; a missing
 * or altered file is `CORRUPT`, naming it and the snapshot.
 */
export async function fetchSnapshotFile(
  store: ObjectStore,
  snapshot: SnapshotRecord,
  file: SnapshotFile,
  localPath: string,
): Promise<void> {
  let reader: Awaited<ReturnType<ObjectStore["get"]>>;
  try {
    reader = await store.get(file.path);
  } catch (error) {
    if (hasCode(error, "NOT_FOUND")) {
      throw new CorruptError(`${file.path} of snapshot ${snapshot.id} is missing from ${store.url}.`, {
        cause: error,
      });
    }
    throw error;
  }
  const hash = createHash("sha256");
  let size = 0;
  reader.body.on("data", (chunk: Buffer) => {
    hash.update(chunk);
    size += chunk.length;
  });
  await pipeline(reader.body, createWriteStream(localPath));
  const digest = hash.digest("hex");
  if (size !== file.size || digest !== file.sha256) {
    throw new CorruptError(
      `${file.path} of snapshot ${snapshot.id} in ${store.url} does not match its record (${size} bytes with SHA-256 ${digest}; expected ${file.size} bytes with ${file.sha256}).`,
    );
  }
}

/** The objects a snapshot's inventory lists, read from `file` (fetched already), each checked by its schema. */
export async function* parseInventory(
  file: string,
  snapshot: SnapshotRecord,
): AsyncGenerator<InventoryObject> {
  const records = readDump(createReadStream(file), {
    schemas: INVENTORY_SCHEMAS,
    sections: INVENTORY_SECTIONS,
    label: snapshot.inventory.path,
  });
  for await (const record of records) yield record as unknown as InventoryObject;
}

/** Fetches a snapshot's inventory to `file`, checking it against the snapshot record, and reads its objects. */
export async function* readInventory(
  store: ObjectStore,
  snapshot: SnapshotRecord,
  file: string,
): AsyncGenerator<InventoryObject> {
  await fetchSnapshotFile(store, snapshot, snapshot.inventory, file);
  yield* parseInventory(file, snapshot);
}
