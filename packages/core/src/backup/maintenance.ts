import { createHash, randomInt } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readDump } from "@cairn/manifest";
import { asCairnError, ENGINE_DUMP_SCHEMAS, ENGINE_DUMP_SECTIONS } from "../dump.js";
import {
  CorruptError,
  hasCode,
  InvalidArgumentError,
  isCairnError,
  PermissionDeniedError,
  PreconditionFailedError,
} from "../errors.js";
import type { ObjectStore } from "../store.js";
import { holdLock, holdLockBesidePrune, lockAge, readLock } from "./backup.js";
import {
  LOCK_STALE_MS,
  LOCKS_PREFIX,
  OBJECTS_PREFIX,
  objectDigest,
  objectKey,
  SNAPSHOT_ID,
  SNAPSHOTS_PREFIX,
  type SnapshotRecord,
  snapshotRecordKey,
} from "./layout.js";
import { requireBackup, where } from "./objects.js";
import { applyRetention, formatDuration, type RetentionPolicy } from "./retention.js";
import {
  fetchSnapshotFile,
  listSnapshots,
  parseInventory,
  readInventory,
  readSnapshot,
} from "./snapshots.js";

// ---------------------------------------------------------------------------------------------------------
// Prune
// ---------------------------------------------------------------------------------------------------------

export interface PruneOptions {
  /** Apply the policy to this repository's snapshots only; the others are all kept. */
  repository?: string;
  /** Decide and count, but change nothing (no lock is written, no stale lock removed). */
  dryRun?: boolean;
  /** Deletions at once. @default 8 */
  parallel?: number;
  onProgress?: (progress: PruneProgress) => void;
  /** The clock lock ages are measured with. @default () => new Date() */
  now?: () => Date;
}

export interface PruneProgress {
  phase: "inventories" | "snapshots" | "objects";
  /** Inventories read, snapshot files deleted, or objects looked at, so far in this phase. */
  done: number;
  /** What the phase works through, when known in advance. */
  total?: number;
}

export interface PruneResult {
  dryRun: boolean;
  /** Snapshots kept, oldest first, each with the rules that keep it (`"last"`, `"daily"`, `"within 2d"` …). */
  keep: { snapshot: SnapshotRecord; reasons: string[] }[];
  /** Snapshots removed (or, in a dry run, that would be), oldest first. */
  remove: SnapshotRecord[];
  /** Ids of interrupted backups (a `snapshots/<id>/` folder without a record) whose files were removed. */
  leftovers: string[];
  /** Files under `snapshots/` deleted: the removed snapshots' refs and inventories and the leftovers'. */
  files: number;
  /** Objects under `objects/` no remaining snapshot lists, deleted (or that would be), and their bytes. */
  objects: { deleted: number; bytes: number; kept: number };
  /** Lock files of processes that died, removed (or, in a dry run, that would be). */
  staleLocks: string[];
}

/**
 * Removes the snapshots of a backup location that `policy` does not keep (restic's rules, applied per
 * repository; see {@link applyRetention}) and every object no remaining snapshot lists, and cleans up what
 * interrupted backups left. The order keeps the location readable at every step: the remaining snapshots'
 * inventories are read (and checked) first, so a damaged one stops the prune before anything is deleted;
 * then the removed snapshots' records go, so they are no longer listed; then their files and those of
 * interrupted backups; then the unreferenced objects.
 *
 * A prune could delete an object a running backup has just found present, so it refuses (`PRECONDITION_FAILED`,
 * naming the lock's host, pid and age) while another process holds a lock refreshed within
 * {@link LOCK_STALE_MS}; older locks belong to processes that died and are removed. The prune holds its own
 * lock while it works. `INVALID_ARGUMENT` for an empty or malformed policy, `NOT_FOUND` for a location that
 * holds no backup.
 */
export async function pruneBackups(
  store: ObjectStore,
  policy: RetentionPolicy,
  options: PruneOptions = {},
): Promise<PruneResult> {
  const now = options.now ?? (() => new Date());
  const parallel = options.parallel ?? 8;
  const dryRun = options.dryRun === true;
  // Refuses an empty or malformed policy before anything is read.
  applyRetention([], policy);
  await requireBackup(store);

  // Our own lock first, then the others': a backup that starts now sees ours, or we see its.
  const own = dryRun ? undefined : await holdLock(store, "prune", now);
  const dir = await mkdtemp(join(tmpdir(), "cairn-prune-"));
  const deletes = new Bounded(parallel);
  try {
    const { stale } = await checkLocks(store, now, own?.lock.id);

    const snapshots = await listSnapshots(store, {
      onBad: (key, error) => {
        throw new CorruptError(
          `The snapshot record ${key} of ${store.url} cannot be read (${messageOf(error)}), so prune cannot tell which objects it needs; it deleted nothing.`,
          { cause: error },
        );
      },
    });
    const decision = decide(snapshots, policy, options.repository);
    const removed = new Set(decision.remove.map((s) => s.id));

    // The union of the remaining inventories, read and checked before anything is deleted.
    const keep = new DigestUnion();
    const remaining = snapshots.filter((s) => !removed.has(s.id));
    let read = 0;
    for (const snapshot of remaining) {
      try {
        for await (const object of readInventory(store, snapshot, join(dir, "inventory.json.gz")))
          keep.add(object.sha256);
        keep.flush();
      } catch (error) {
        const e = asCairnError(error);
        if (!isCairnError(e) || (e.code !== "CORRUPT" && e.code !== "UNSUPPORTED")) throw e;
        throw new CorruptError(
          `${messageOf(e).replace(/\.$/, "")}; prune cannot tell which objects snapshot ${snapshot.id} needs, so it deleted nothing (cairn verify lists what is damaged).`,
          { cause: e },
        );
      }
      options.onProgress?.({ phase: "inventories", done: ++read, total: remaining.length });
    }

    const result: PruneResult = {
      dryRun,
      keep: decision.keep,
      remove: decision.remove,
      leftovers: [],
      files: 0,
      objects: { deleted: 0, bytes: 0, kept: 0 },
      staleLocks: stale,
    };
    const del = (key: string) => (dryRun ? Promise.resolve() : deletes.run(() => deleteKey(store, key)));

    // 1. Records first: from here on the removed snapshots are no longer listed.
    for (const snapshot of decision.remove) await del(snapshotRecordKey(snapshot.id));
    await deletes.drain();
    for (const key of stale) await del(key);

    // 2. Their files, and the folders of backups that never wrote a record.
    const recorded = new Set(snapshots.map((s) => s.id));
    const leftovers = new Set<string>();
    for await (const info of store.list(SNAPSHOTS_PREFIX)) {
      const m = /^snapshots\/([^/]+)\/./.exec(info.key);
      if (!m || !SNAPSHOT_ID.test(m[1]!)) continue;
      const id = m[1]!;
      if (recorded.has(id) && !removed.has(id)) continue;
      if (!recorded.has(id)) leftovers.add(id);
      await del(info.key);
      result.files++;
      options.onProgress?.({ phase: "snapshots", done: result.files });
    }
    await deletes.drain();
    result.leftovers = [...leftovers].sort();

    // 3. Objects no remaining snapshot lists. A backup that started since the check above would be listing
    // objects as present that we are about to delete: look once more, just before.
    if (!dryRun) await checkLocks(store, now, own?.lock.id, "it removed the snapshots' records and files");
    let seen = 0;
    for await (const info of store.list(OBJECTS_PREFIX)) {
      const digest = objectDigest(info.key);
      // Anything else under objects/ is not cairn's: left alone.
      if (!digest) continue;
      if (keep.has(digest)) {
        result.objects.kept++;
      } else {
        await del(info.key);
        result.objects.deleted++;
        result.objects.bytes += info.size;
      }
      if (++seen % 256 === 0) options.onProgress?.({ phase: "objects", done: seen });
    }
    await deletes.drain();
    options.onProgress?.({ phase: "objects", done: seen });
    return result;
  } catch (error) {
    // Deletions under way finish before the lock goes.
    await deletes.settle();
    throw asCairnError(error);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await own?.release();
  }
}

/** The retention decision per repository, oldest first; snapshots of other repositories than `only` are kept. */
function decide(
  snapshots: readonly SnapshotRecord[],
  policy: RetentionPolicy,
  only: string | undefined,
): Pick<PruneResult, "keep" | "remove"> {
  const byRepository = new Map<string, SnapshotRecord[]>();
  for (const s of snapshots) {
    const list = byRepository.get(s.repository.name);
    if (list) list.push(s);
    else byRepository.set(s.repository.name, [s]);
  }
  const keep: PruneResult["keep"] = [];
  const remove: SnapshotRecord[] = [];
  for (const [name, list] of byRepository) {
    if (only !== undefined && name !== only) {
      for (const snapshot of list) keep.push({ snapshot, reasons: ["other repository"] });
      continue;
    }
    const decision = applyRetention(
      list.map((snapshot) => ({ id: snapshot.id, time: new Date(snapshot.time), snapshot })),
      policy,
    );
    for (const k of decision.keep) keep.push({ snapshot: k.item.snapshot, reasons: k.reasons });
    for (const r of decision.remove) remove.push(r.snapshot);
  }
  const order = new Map(snapshots.map((s, i) => [s.id, i]));
  const byTime = (a: SnapshotRecord, b: SnapshotRecord) => order.get(a.id)! - order.get(b.id)!;
  keep.sort((a, b) => byTime(a.snapshot, b.snapshot));
  remove.sort(byTime);
  return { keep, remove };
}

/**
 * The lock files of other processes: refuses when one was refreshed within {@link LOCK_STALE_MS}, and returns
 * the keys of the stale ones. `done` says, in the refusal, what this prune did already.
 */
async function checkLocks(
  store: ObjectStore,
  now: () => Date,
  ownId: string | undefined,
  done?: string,
): Promise<{ stale: string[] }> {
  const stale: string[] = [];
  for await (const info of store.list(LOCKS_PREFIX)) {
    const m = /^locks\/([^/]+)\.json$/.exec(info.key);
    if (!m || m[1] === ownId) continue;
    const lock = await readLock(store, info);
    // Released while we looked: no longer held.
    if (!lock) continue;
    const age = lockAge(lock, info, now);
    // An unknown age, or one from a clock ahead of ours, counts as fresh: deleting objects is not undone.
    if (Number.isNaN(age) || age < LOCK_STALE_MS) {
      const who = `${lock.operation ?? "a process"} on host ${lock.host ?? "?"} (pid ${lock.pid ?? "?"})`;
      const when = Number.isNaN(age) ? "at an unknown time" : `${formatDuration(Math.max(0, age))} ago`;
      throw new PreconditionFailedError(
        `${where(store)} is in use: ${who} holds ${info.key}, refreshed ${when}; prune ${done ? `stopped after ${done}, before deleting objects` : "changed nothing"} and can run once no lock is younger than ${formatDuration(LOCK_STALE_MS)} (delete the lock file if that process is gone).`,
      );
    }
    stale.push(info.key);
  }
  return { stale };
}

// ---------------------------------------------------------------------------------------------------------
// Verify
// ---------------------------------------------------------------------------------------------------------

/** Which objects `verifyBackup` re-hashes: a random share, or group `part` of `of` (restic's `n/m`). */
export type ReadDataSubset = { percent: number } | { part: number; of: number };

/** Parses `--read-data-subset`: `10%` (a random tenth), or `n/m` (the n-th of m fixed groups, 1 ≤ n ≤ m). */
export function parseReadDataSubset(text: string): ReadDataSubset {
  const percent = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text);
  if (percent) {
    const p = Number(percent[1]);
    if (p > 0 && p <= 100) return { percent: p };
  }
  const group = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (group) {
    const part = Number(group[1]);
    const of = Number(group[2]);
    if (part >= 1 && part <= of && Number.isSafeInteger(of)) return { part, of };
  }
  throw new InvalidArgumentError(
    `The read-data subset "${text}" is not a share of the objects; write it as a percentage above 0 and at most 100 (10%) or as n/m with 1 ≤ n ≤ m (2/5).`,
  );
}

export interface VerifyOptions {
  /** Check this snapshot only; `NOT_FOUND` when the location has no such snapshot. */
  snapshot?: string;
  /** Check this repository's snapshots only. */
  repository?: string;
  /** Re-hash objects' bytes too: all of them (`true`), or a subset. Otherwise sizes only. */
  readData?: boolean | ReadDataSubset;
  /** Objects read at once with `readData`. @default 8 */
  parallel?: number;
  /** Called with each problem as it is found. */
  onProblem?: (problem: VerifyProblem) => void;
  onProgress?: (progress: VerifyProgress) => void;
  /** Random integer below `n`, for the `percent` subset. @default node:crypto's randomInt */
  randomInt?: (n: number) => number;
  /**
   * Hold a lock (`locks/<id>.json`, operation `verify`) while checking, so that no prune starts meanwhile, and
   * refuse to start while a prune works: objects it deletes would show as missing. `false` for a location this
   * process may only read. @default true
   */
  lock?: boolean;
  /** The clock lock ages are measured with. @default () => new Date() */
  now?: () => Date;
}

export interface VerifyProgress {
  phase: "snapshots" | "data";
  done: number;
  total: number;
  /** Bytes re-hashed so far (phase `data`). */
  bytes?: number;
}

/**
 * One thing wrong with a backup location:
 * - `record`: a snapshot record that cannot be read;
 * - `file`: a snapshot's refs or inventory file missing or not matching its size and SHA-256 in the record;
 * - `refs`: a refs manifest that does not parse, or a commit whose metarange the inventory does not list;
 * - `inventory`: an inventory that does not parse, or lists an invalid digest;
 * - `missing`: an object an inventory lists that is not under `objects/`;
 * - `size`: an object whose size differs from the inventory's;
 * - `digest`: an object whose bytes do not hash to its name (found with `readData`).
 */
export interface VerifyProblem {
  kind: "record" | "file" | "refs" | "inventory" | "missing" | "size" | "digest";
  /** The key in the backup location that is wrong. */
  path: string;
  /** The snapshot concerned; for an object several snapshots share, the oldest that lists it. */
  snapshot?: string;
  /** One sentence naming the path, the snapshot and what is wrong. */
  message: string;
}

export interface VerifyResult {
  /** Snapshots checked. */
  snapshots: number;
  /** Distinct objects the checked snapshots list, and their bytes (as the inventories give them). */
  objects: number;
  bytes: number;
  /** Objects re-hashed, and their bytes. */
  readObjects: number;
  readBytes: number;
  /** Objects under `objects/` no snapshot lists (counted only when every snapshot was checked). */
  unreferenced?: number;
  /** Problems found (each was passed to `onProblem`). */
  problems: number;
  /** Ids of the snapshots a problem concerns, oldest first. */
  damaged: string[];
}

/**
 * Checks a backup location (restic's `check`): every snapshot's refs and inventory present with the size and
 * SHA-256 of its record, the refs manifest parses and every commit's metarange is in the inventory, and every
 * object an inventory lists is present under `objects/` with the right size — from one listing of
 * `objects/`, so a million objects cost a listing, not a million requests. With `readData`, every object's
 * bytes (or a subset's) are re-hashed. Objects shared by snapshots are checked once.
 *
 * Problems of the backup are reported through `onProblem` and counted in the result, never thrown; what is
 * thrown is what stopped the check: `NOT_FOUND` for a location without a backup or an unknown `snapshot`,
 * `UNAVAILABLE` and the like from the store.
 */
export async function verifyBackup(store: ObjectStore, options: VerifyOptions = {}): Promise<VerifyResult> {
  await requireBackup(store);
  if (options.lock === false) return check(store, options);
  const now = options.now ?? (() => new Date());
  let own: Awaited<ReturnType<typeof holdLock>>;
  try {
    own = await holdLockBesidePrune(store, "verify", now);
  } catch (error) {
    if (!hasCode(error, "PERMISSION_DENIED")) throw error;
    throw new PermissionDeniedError(
      `Cannot write a lock to ${where(store)} (${messageOf(error)}); to verify a location you may only read, do without the lock (--no-lock), and run no prune meanwhile.`,
      { cause: error },
    );
  }
  try {
    return await check(store, options);
  } finally {
    await own.release();
  }
}

/** {@link verifyBackup} once the location is known to hold a backup, and locked if it is to be. */
async function check(store: ObjectStore, options: VerifyOptions): Promise<VerifyResult> {
  const parallel = options.parallel ?? 8;
  const damaged = new Set<string>();
  let problems = 0;
  const report = (problem: VerifyProblem) => {
    problems++;
    if (problem.snapshot) damaged.add(problem.snapshot);
    options.onProblem?.(problem);
  };

  const snapshots =
    options.snapshot !== undefined
      ? [await readSnapshot(store, options.snapshot)]
      : await listSnapshots(store, {
          ...(options.repository !== undefined ? { repository: options.repository } : {}),
          onBad: (key, error) =>
            report({ kind: "record", path: key, message: `${key}: ${messageOf(error)}` }),
        });
  const listing = await ObjectListing.list(store);
  // Per object of the listing: the 1-based index of the first snapshot listing it (0: none yet), and
  // whether its size was wrong (so that snapshots sharing it are marked damaged, but it is reported once).
  const owner = new Uint32Array(listing.size);
  const badSize = new Uint8Array(listing.size);
  const missing = new Set<string>();
  let objects = 0;
  let bytes = 0;

  const dir = await mkdtemp(join(tmpdir(), "cairn-verify-"));
  try {
    for (const [n, snapshot] of snapshots.entries()) {
      const id = snapshot.id;
      const metaranges = await readRefsMetaranges(store, snapshot, dir, report);
      const listed = new Set<string>();
      const inventoryFile = join(dir, "inventory.json.gz");
      try {
        await fetchSnapshotFile(store, snapshot, snapshot.inventory, inventoryFile);
      } catch (error) {
        if (!hasCode(error, "CORRUPT")) throw error;
        report({ kind: "file", path: snapshot.inventory.path, snapshot: id, message: error.message });
        options.onProgress?.({ phase: "snapshots", done: n + 1, total: snapshots.length });
        continue;
      }
      try {
        for await (const object of parseInventory(inventoryFile, snapshot)) {
          if (!/^[0-9a-f]{64}$/.test(object.sha256)) {
            report({
              kind: "inventory",
              path: snapshot.inventory.path,
              snapshot: id,
              message: `${snapshot.inventory.path} of snapshot ${id} lists "${object.sha256}", which is not a SHA-256 digest.`,
            });
            continue;
          }
          if (object.kind === "metarange") listed.add(object.sha256);
          const key = objectKey(object.sha256);
          const i = listing.indexOf(object.sha256);
          if (i < 0) {
            if (missing.has(object.sha256)) {
              damaged.add(id);
              continue;
            }
            missing.add(object.sha256);
            objects++;
            bytes += object.size;
            report({
              kind: "missing",
              path: key,
              snapshot: id,
              message: `${key} (${object.kind} ${object.path} of snapshot ${id}) is missing.`,
            });
            continue;
          }
          if (owner[i] === 0) {
            owner[i] = n + 1;
            objects++;
            bytes += object.size;
            if (listing.sizeAt(i) !== object.size) {
              badSize[i] = 1;
              report({
                kind: "size",
                path: key,
                snapshot: id,
                message: `${key} (${object.kind} ${object.path} of snapshot ${id}) has ${listing.sizeAt(i)} bytes; the inventory says ${object.size}.`,
              });
            }
          } else if (badSize[i]) {
            damaged.add(id);
          }
        }
      } catch (error) {
        const e = asCairnError(error);
        if (!isCairnError(e) || (e.code !== "CORRUPT" && e.code !== "UNSUPPORTED")) throw e;
        report({
          kind: "inventory",
          path: snapshot.inventory.path,
          snapshot: id,
          message: `The inventory of snapshot ${id} does not parse: ${messageOf(e)}`,
        });
        options.onProgress?.({ phase: "snapshots", done: n + 1, total: snapshots.length });
        continue;
      }
      for (const [commit, metarange] of metaranges) {
        if (listed.has(metarange)) continue;
        report({
          kind: "refs",
          path: snapshot.inventory.path,
          snapshot: id,
          message: `${snapshot.inventory.path} of snapshot ${id} does not list the metarange ${metarange} of commit ${commit}.`,
        });
      }
      options.onProgress?.({ phase: "snapshots", done: n + 1, total: snapshots.length });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  // The bytes, once per object, of the objects that were found with the right size.
  let readObjects = 0;
  let readBytes = 0;
  if (options.readData) {
    const chosen = chooseObjects(listing, owner, badSize, options.readData, options.randomInt ?? randomInt);
    const reads = new Bounded(parallel);
    let done = 0;
    try {
      for (const i of chosen) {
        await reads.run(async () => {
          const sha256 = listing.digestAt(i);
          const snapshot = snapshots[owner[i]! - 1]!.id;
          const problem = await rehash(store, sha256, listing.sizeAt(i), snapshot);
          if (problem) report(problem);
          readObjects++;
          readBytes += listing.sizeAt(i);
          options.onProgress?.({ phase: "data", done: ++done, total: chosen.length, bytes: readBytes });
        });
      }
      await reads.drain();
    } finally {
      await reads.settle();
    }
  }

  let unreferenced: number | undefined;
  if (options.snapshot === undefined && options.repository === undefined) {
    unreferenced = 0;
    for (const o of owner) if (o === 0) unreferenced++;
  }
  const order = new Map(snapshots.map((s, i) => [s.id, i]));
  return {
    snapshots: snapshots.length,
    objects,
    bytes,
    readObjects,
    readBytes,
    ...(unreferenced !== undefined ? { unreferenced } : {}),
    problems,
    damaged: [...damaged].sort((a, b) => (order.get(a) ?? -1) - (order.get(b) ?? -1) || (a < b ? -1 : 1)),
  };
}

/**
 * The metarange of every commit of a snapshot's refs manifest; problems with the file or its content are
 * reported, and then no metarange is returned.
 */
async function readRefsMetaranges(
  store: ObjectStore,
  snapshot: SnapshotRecord,
  dir: string,
  report: (problem: VerifyProblem) => void,
): Promise<Map<string, string>> {
  const file = join(dir, "refs.json.gz");
  const metaranges = new Map<string, string>();
  try {
    await fetchSnapshotFile(store, snapshot, snapshot.refs, file);
  } catch (error) {
    if (!hasCode(error, "CORRUPT")) throw error;
    report({ kind: "file", path: snapshot.refs.path, snapshot: snapshot.id, message: error.message });
    return new Map();
  }
  try {
    const records = readDump(createReadStream(file), {
      schemas: ENGINE_DUMP_SCHEMAS,
      sections: ENGINE_DUMP_SECTIONS,
      label: snapshot.refs.path,
    });
    for await (const record of records) {
      if (record.type === "commit") metaranges.set(record.id as string, record.metarangeId as string);
    }
    return metaranges;
  } catch (error) {
    const e = asCairnError(error);
    if (!isCairnError(e) || (e.code !== "CORRUPT" && e.code !== "UNSUPPORTED")) throw e;
    report({
      kind: "refs",
      path: snapshot.refs.path,
      snapshot: snapshot.id,
      message: `The refs manifest of snapshot ${snapshot.id} does not parse: ${messageOf(e)}`,
    });
    return new Map();
  }
}

/** Indices of the listing to re-hash: referenced, of the right size, and in the subset. */
function chooseObjects(
  listing: ObjectListing,
  owner: Uint32Array,
  badSize: Uint8Array,
  readData: true | ReadDataSubset,
  random: (n: number) => number,
): Uint32Array {
  const candidates: number[] = [];
  const group = readData !== true && "of" in readData ? readData : undefined;
  for (let i = 0; i < listing.size; i++) {
    if (owner[i] === 0 || badSize[i]) continue;
    // Groups by the digest's first 32 bits: fixed, so n/m over runs 1..m checks every object once.
    if (group && listing.prefixAt(i) % group.of !== group.part - 1) continue;
    candidates.push(i);
  }
  const all = Uint32Array.from(candidates);
  if (readData === true || !("percent" in readData)) return all;
  // A uniform sample of the share asked for (partial Fisher–Yates), read in key order.
  const k = Math.min(all.length, Math.ceil((all.length * readData.percent) / 100));
  for (let j = 0; j < k; j++) {
    const r = j + random(all.length - j);
    const t = all[j]!;
    all[j] = all[r]!;
    all[r] = t;
  }
  return all.subarray(0, k).sort();
}

/** Reads an object and checks its bytes against its name; the problem found, or `undefined`. */
async function rehash(
  store: ObjectStore,
  sha256: string,
  size: number,
  snapshot: string,
): Promise<VerifyProblem | undefined> {
  const key = objectKey(sha256);
  const hash = createHash("sha256");
  let read = 0;
  try {
    const reader = await store.get(key);
    for await (const chunk of reader.body) {
      hash.update(chunk as Buffer);
      read += (chunk as Buffer).length;
    }
  } catch (error) {
    if (!hasCode(error, "NOT_FOUND")) throw error;
    return { kind: "missing", path: key, snapshot, message: `${key} of snapshot ${snapshot} is missing.` };
  }
  const digest = hash.digest("hex");
  if (digest === sha256 && read === size) return undefined;
  return {
    kind: "digest",
    path: key,
    snapshot,
    message: `${key} of snapshot ${snapshot} does not match its SHA-256: read ${read} bytes hashing to ${digest}.`,
  };
}

/**
 * Deletes `key`; one that is already gone is what was wanted. (A store may report a key whose folder a
 * concurrent delete just removed as `NOT_FOUND`, although deleting an absent key is no error by contract.)
 */
async function deleteKey(store: ObjectStore, key: string): Promise<void> {
  try {
    await store.delete(key);
  } catch (error) {
    if (!hasCode(error, "NOT_FOUND")) throw error;
  }
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

// ---------------------------------------------------------------------------------------------------------
// Compact digest sets: 32 bytes an object (and 4 for a copy of its first 32 bits, so that searches compare
// numbers, not buffers), so millions of objects take tens of MB, not hundreds.
// ---------------------------------------------------------------------------------------------------------

const headOf = (sha256: string): number => Number.parseInt(sha256.slice(0, 8), 16);

/** `count` digests in order, 32 bytes each in `bytes`, with their first 32 bits in `heads`. */
class SortedDigests {
  readonly bytes: Buffer;
  readonly heads: Uint32Array;
  readonly count: number;
  readonly #needle = Buffer.alloc(32);

  constructor(bytes: Buffer, heads: Uint32Array, count: number) {
    this.bytes = bytes;
    this.heads = heads;
    this.count = count;
  }

  /**
   * Sorts `count` digests of `buffer` (any order); `order[k]` is where the k-th smallest was in `buffer`. An
   * index sort on the first 32 bits, the rest of the digest breaking the rare ties.
   */
  static sort(buffer: Buffer, count: number): { sorted: SortedDigests; order: Uint32Array } {
    const head = new Uint32Array(count);
    const order = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      head[i] = buffer.readUInt32BE(i * 32);
      order[i] = i;
    }
    order.sort(
      (a, b) => head[a]! - head[b]! || buffer.compare(buffer, b * 32, b * 32 + 32, a * 32, a * 32 + 32),
    );
    const bytes = Buffer.allocUnsafe(count * 32);
    const heads = new Uint32Array(count);
    for (let k = 0; k < count; k++) {
      buffer.copy(bytes, k * 32, order[k]! * 32, order[k]! * 32 + 32);
      heads[k] = head[order[k]!]!;
    }
    return { sorted: new SortedDigests(bytes, heads, count), order };
  }

  /** Whether the digests are in strictly increasing order. */
  isSorted(): boolean {
    for (let k = 1; k < this.count; k++) {
      const h = this.heads[k - 1]!;
      if (h > this.heads[k]!) return false;
      if (
        h === this.heads[k]! &&
        this.bytes.compare(this.bytes, k * 32, k * 32 + 32, (k - 1) * 32, k * 32) >= 0
      )
        return false;
    }
    return true;
  }

  /** The index of `sha256`, or -1. */
  indexOf(sha256: string): number {
    const head = headOf(sha256);
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.heads[mid]! < head) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= this.count || this.heads[lo] !== head) return -1;
    this.#needle.write(sha256, 0, 32, "hex");
    for (let k = lo; k < this.count && this.heads[k] === head; k++) {
      if (this.bytes.compare(this.#needle, 0, 32, k * 32, k * 32 + 32) === 0) return k;
    }
    return -1;
  }

  /** The first index from `from` on whose digest is not below digest `j` of `other`. */
  lowerBound(other: SortedDigests, j: number, from: number): number {
    const head = other.heads[j]!;
    let lo = from;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const h = this.heads[mid]!;
      const below =
        h < head ||
        (h === head && this.bytes.compare(other.bytes, j * 32, j * 32 + 32, mid * 32, mid * 32 + 32) < 0);
      if (below) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  digestAt(k: number): string {
    return this.bytes.toString("hex", k * 32, k * 32 + 32);
  }
}

/**
 * A set of digests kept sorted. Snapshots of a repository share most of their objects, so each inventory
 * adds few new digests: they wait in a small `Set` and are merged in by the tens of thousands, at the cost of
 * a binary search per new digest and one copy per run of old ones — never a pass over every digest per
 * snapshot.
 */
class DigestUnion {
  #sorted = new SortedDigests(Buffer.alloc(0), new Uint32Array(0), 0);
  readonly #pending = new Set<string>();

  add(sha256: string): void {
    if (this.has(sha256)) return;
    this.#pending.add(sha256);
    if (this.#pending.size >= 1 << 16) this.flush();
  }

  has(sha256: string): boolean {
    return this.#pending.has(sha256) || this.#sorted.indexOf(sha256) >= 0;
  }

  /**
   * Merges the pending digests (none of which is among the sorted ones) in: at the end of each inventory, so
   * the `Set` stays small; the cost follows the number of new digests (and one copy of the buffer).
   */
  flush(): void {
    const n = this.#pending.size;
    if (n === 0) return;
    const batch = Buffer.allocUnsafe(n * 32);
    let k = 0;
    for (const digest of this.#pending) batch.write(digest, k++ * 32, 32, "hex");
    this.#pending.clear();
    const b = SortedDigests.sort(batch, n).sorted;
    const a = this.#sorted;
    const bytes = Buffer.allocUnsafe((a.count + n) * 32);
    const heads = new Uint32Array(a.count + n);
    let i = 0;
    let at = 0;
    for (let j = 0; j < n; j++) {
      const lo = a.lowerBound(b, j, i);
      a.bytes.copy(bytes, at * 32, i * 32, lo * 32);
      heads.set(a.heads.subarray(i, lo), at);
      at += lo - i;
      i = lo;
      b.bytes.copy(bytes, at * 32, j * 32, j * 32 + 32);
      heads[at++] = b.heads[j]!;
    }
    a.bytes.copy(bytes, at * 32, i * 32, a.count * 32);
    heads.set(a.heads.subarray(i, a.count), at);
    this.#sorted = new SortedDigests(bytes, heads, a.count + n);
  }
}

/** One listing of `objects/`: digests in order, with their sizes, found by binary search. */
class ObjectListing {
  readonly #digests: SortedDigests;
  readonly #sizes: Float64Array;
  readonly size: number;

  private constructor(digests: SortedDigests, sizes: Float64Array) {
    this.#digests = digests;
    this.#sizes = sizes;
    this.size = digests.count;
  }

  static async list(store: ObjectStore): Promise<ObjectListing> {
    let bytes = Buffer.allocUnsafe(32 * 4096);
    let heads = new Uint32Array(4096);
    let sizes = new Float64Array(4096);
    let count = 0;
    for await (const info of store.list(OBJECTS_PREFIX)) {
      const digest = objectDigest(info.key);
      if (!digest) continue;
      if (count === sizes.length) {
        const d = Buffer.allocUnsafe(bytes.length * 2);
        bytes.copy(d, 0, 0, count * 32);
        bytes = d;
        const h = new Uint32Array(heads.length * 2);
        h.set(heads);
        heads = h;
        const s = new Float64Array(sizes.length * 2);
        s.set(sizes);
        sizes = s;
      }
      bytes.write(digest, count * 32, 32, "hex");
      heads[count] = headOf(digest);
      sizes[count] = info.size;
      count++;
    }
    const listed = new SortedDigests(bytes, heads, count);
    if (listed.isSorted()) return new ObjectListing(listed, sizes);
    // A store that breaks the listing contract: put the entries in order ourselves.
    const { sorted, order } = SortedDigests.sort(bytes, count);
    return new ObjectListing(
      sorted,
      Float64Array.from(order, (i) => sizes[i]!),
    );
  }

  indexOf(sha256: string): number {
    return this.#digests.indexOf(sha256);
  }

  sizeAt(i: number): number {
    return this.#sizes[i]!;
  }

  digestAt(i: number): string {
    return this.#digests.digestAt(i);
  }

  /** The first 32 bits of the digest at `i`. */
  prefixAt(i: number): number {
    return this.#digests.heads[i]!;
  }
}

/** Runs tasks `limit` at a time; the first failure stops new ones and is thrown by `run` or `drain`. */
class Bounded {
  readonly #limit: number;
  readonly #running = new Set<Promise<void>>();
  #failure: { error: unknown } | undefined;

  constructor(limit: number) {
    this.#limit = Math.max(1, limit);
  }

  async run(task: () => Promise<void>): Promise<void> {
    this.#throwFailure();
    while (this.#running.size >= this.#limit) {
      await Promise.race(this.#running);
      this.#throwFailure();
    }
    const running: Promise<void> = task()
      .catch((error: unknown) => {
        this.#failure ??= { error };
      })
      .finally(() => this.#running.delete(running));
    this.#running.add(running);
  }

  async drain(): Promise<void> {
    await Promise.all(this.#running);
    this.#throwFailure();
  }

  /** Waits for the tasks under way, whatever their outcome. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#running);
  }

  #throwFailure(): void {
    if (this.#failure) throw this.#failure.error;
  }
}
