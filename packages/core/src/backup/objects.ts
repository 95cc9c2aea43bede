import type { Transform } from "node:stream";
import { DigestSet, HEX_DIGEST } from "../digest-set.js";
import { CorruptError, hasCode, InvalidArgumentError, NotFoundError, UnsupportedError } from "../errors.js";
import { digestChecked } from "../files.js";
import type { ObjectStore } from "../store.js";
import {
  BACKUP_FORMAT,
  BACKUP_MARKER,
  BACKUP_VERSION,
  type BackupMarker,
  OBJECTS_PREFIX,
  objectDigest,
} from "./layout.js";

/**
 * A pass-through that hashes what flows through it and fails at the end when the bytes are not the expected
 * ones, so that a store's `put` — which is all or nothing — never makes wrong bytes visible.
 */
export function verifying(expected: { sha256: string; size: number }, where: string): Transform {
  return digestChecked(
    "sha256",
    expected.sha256,
    (digest, size) =>
      new CorruptError(
        `${where} does not match its digest: expected ${expected.size} bytes with SHA-256 ${expected.sha256}, read ${size} bytes with ${digest}.`,
      ),
  );
}

/**
 * Copies one object between stores, checking every byte against its SHA-256 on the way. `NOT_FOUND` and
 * `CORRUPT` errors name `from` as the user knows it.
 *
 * The source is opened when the target first reads the body, not before: a target that makes a put wait its
 * turn (an object store bounding its upload buffers across puts) would otherwise hold the source's connection
 * open and unread, and a source that times out idle connections would fail the copy.
 */
export async function copyVerified(
  source: ObjectStore,
  sourceKey: string,
  target: ObjectStore,
  targetKey: string,
  expected: { sha256: string; size: number },
  what: string,
): Promise<void> {
  const from = `${source.url.replace(/\/$/, "")}/${sourceKey}`;
  async function* body(): AsyncGenerator<Uint8Array> {
    let reader: Awaited<ReturnType<ObjectStore["get"]>>;
    try {
      // Checked against its SHA-256 below, so the store need not check it too.
      reader = await source.get(sourceKey, { verify: false });
    } catch (error) {
      if (hasCode(error, "NOT_FOUND"))
        throw new CorruptError(`${what} is missing (${from}).`, { cause: error });
      throw error;
    }
    // A mismatch fails the body the target reads, which makes its put fail and leave nothing.
    const check = verifying(expected, `${what} (${from})`);
    reader.body.on("error", (error) => check.destroy(error));
    reader.body.pipe(check);
    try {
      for await (const chunk of check) yield chunk as Uint8Array;
    } finally {
      reader.body.destroy();
      check.destroy();
    }
  }
  // Each call reads the source again: a target may send the body again after a failed request.
  await target.put(targetKey, body(), { size: expected.size, reopen: body });
}

/**
 * The objects a backup location holds, each known by its SHA-256 and its size, in a {@link DigestSet}'s room.
 * An object whose size is not the one expected is not taken as held: a store that does not keep uploads whole
 * (s3rver keeps the bytes of a cut PUT; a service may too) leaves a piece behind under the object's name, and a
 * rerun must copy that object again rather than skip it. A digest is kept with the size folded into its last
 * 8 bytes (XOR): two pairs share a key only if two SHA-256 digests agree in their first 24 bytes.
 */
export class HeldObjects {
  readonly #set = new DigestSet();

  /** The objects under `objects/` of a backup location, with their listed sizes. */
  static async list(store: ObjectStore): Promise<HeldObjects> {
    const held = new HeldObjects();
    for await (const info of store.list(OBJECTS_PREFIX)) {
      const digest = objectDigest(info.key);
      if (digest) held.add(digest, info.size);
    }
    return held;
  }

  has(sha256: string, size: number): boolean {
    return this.#set.has(sized(sha256, size));
  }

  add(sha256: string, size: number): void {
    this.#set.add(sized(sha256, size));
  }
}

/** An object's key in {@link HeldObjects}: its digest with the size folded in (anything else: both as text). */
function sized(sha256: string, size: number): string {
  if (!HEX_DIGEST.test(sha256)) return `${sha256} ${size}`;
  const bytes = Buffer.from(sha256, "hex");
  bytes.writeBigUInt64BE(bytes.readBigUInt64BE(24) ^ BigInt(size), 24);
  return bytes.toString("hex");
}

/** Reads `cairn-backup.json`; `undefined` when absent. Refuses a marker that is not cairn's or is newer. */
export async function readBackupMarker(store: ObjectStore): Promise<BackupMarker | undefined> {
  let text: string;
  try {
    const reader = await store.get(BACKUP_MARKER);
    const chunks: Buffer[] = [];
    for await (const chunk of reader.body) chunks.push(chunk as Buffer);
    text = Buffer.concat(chunks).toString("utf8");
  } catch (error) {
    if (hasCode(error, "NOT_FOUND")) return undefined;
    throw error;
  }
  let marker: BackupMarker;
  try {
    marker = JSON.parse(text) as BackupMarker;
  } catch (cause) {
    throw new CorruptError(`${where(store)} has a ${BACKUP_MARKER} that is not JSON.`, { cause });
  }
  if (marker.format !== BACKUP_FORMAT) {
    throw new InvalidArgumentError(`${where(store)} has a ${BACKUP_MARKER} that is not a cairn backup's.`);
  }
  if (typeof marker.version !== "number" || marker.version > BACKUP_VERSION) {
    throw new UnsupportedError(
      `${where(store)} was written by a newer cairn (backup format version ${String(marker.version)}); upgrade cairn to use it.`,
    );
  }
  return marker;
}

/** The marker of a location that must hold a backup: `NOT_FOUND` saying so when it does not. */
export async function requireBackup(store: ObjectStore): Promise<BackupMarker> {
  const marker = await readBackupMarker(store);
  if (!marker)
    throw new NotFoundError(`${where(store)} holds no cairn backup (there is no ${BACKUP_MARKER}).`);
  return marker;
}

/** Makes `store` a backup location: writes the marker, or refuses a location that holds something else. */
export async function ensureBackupLocation(store: ObjectStore, now: Date): Promise<void> {
  if (await readBackupMarker(store)) return;
  for await (const info of store.list("")) {
    throw new InvalidArgumentError(
      `${where(store)} is not empty (it holds ${info.key}) and is not a cairn backup; back up into an empty location or an existing backup.`,
    );
  }
  const marker: BackupMarker = {
    format: BACKUP_FORMAT,
    version: BACKUP_VERSION,
    createdAt: now.toISOString(),
  };
  try {
    await store.put(BACKUP_MARKER, Buffer.from(`${JSON.stringify(marker)}\n`), {
      createOnly: true,
      contentType: "application/json",
    });
  } catch (error) {
    // Another backup created it first.
    if (!hasCode(error, "ALREADY_EXISTS")) throw error;
  }
}

export const where = (store: ObjectStore): string => `The backup location ${store.url}`;
