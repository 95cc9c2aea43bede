import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { PassThrough } from "node:stream";
import { type EncryptOptions, writeDump } from "@cairn/manifest";
import { decodeJson, encodeJson, sha256Hex } from "../codec.js";
import { asCairnError, dumpEngine, ENGINE_DUMP_SECTIONS } from "../dump.js";
import type { MetadataEngine } from "../engine.js";
import { ConflictError, InvalidArgumentError } from "../errors.js";
import { acquireLease, holdsLease, type Lease, readLease, releaseLease, renewLease } from "../lease.js";
import { GLOBAL_PARTITION } from "../records.js";
import type { ObjectInfo, ObjectStore } from "../store.js";
import { redactUrl } from "../url.js";
import { META_PREFIX } from "./layout.js";
import { applyRetention, DEFAULT_META_RETENTION, type RetentionPolicy } from "./retention.js";

/**
 * Scheduled metadata backups, as JuiceFS's automatic backup: a dump of the whole engine every interval to
 * `<target>/meta/dump-YYYY-MM-DD-HHMMSS.json.gz`, by one process at a time across every host that shares the
 * engine, with retention rules applied after each dump.
 *
 * In the engine (global partition `cairn`, carried by dumps as `engine-record` lines):
 * - `lease/backup-meta/<target-id>`: the lease (see `lease.ts`) whose holder runs this target's backups;
 * - `backup-meta/<target-id>`: the {@link MetaBackupState} of the last successful dump.
 *
 * `<target-id>` is the first 16 hex digits of the SHA-256 of the target's URL with secrets removed, so every
 * process that backs up to the same place shares one lease and one state, whatever its own interval.
 *
 * A process decides that a dump is due when `now - state.time >= every`, reading the state only *after* it
 * took the lease; the state is written before the lease is released. So dumps of one target never overlap,
 * two processes with the same interval make one dump per interval between them, and with different
 * intervals the shortest wins.
 */

/** Name of a scheduled dump: `meta/dump-2026-11-25-231500.json.gz` (UTC). */
export const META_DUMP_NAME = /^meta\/dump-(\d{4})-(\d{2})-(\d{2})-(\d{2})(\d{2})(\d{2})\.json\.gz$/;

/** The key of the scheduled dump started at `time` (UTC, to the second). */
export function metaDumpKey(time: Date): string {
  const iso = time.toISOString(); // 2026-11-25T23:15:00.412Z
  return `${META_PREFIX}dump-${iso.slice(0, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}.json.gz`;
}

/** The time in the name of a scheduled dump, or `undefined` when `key` is not one (such keys are left alone). */
export function metaDumpTime(key: string): Date | undefined {
  const m = META_DUMP_NAME.exec(key);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  const time = new Date(Date.UTC(y!, mo! - 1, d!, h!, mi!, s!));
  // 2026-02-31 would roll over into March: not a name this module writes.
  return metaDumpKey(time) === key ? time : undefined;
}

/** Identifies a backup target: the first 16 hex digits of the SHA-256 of its URL with secrets removed. */
export const metaBackupTargetId = (storeUrl: string): string => sha256Hex(redactUrl(storeUrl)).slice(0, 16);
/** Engine key (global partition) of a target's {@link MetaBackupState}. */
export const metaBackupStateKey = (targetId: string): string => `backup-meta/${targetId}`;
/** Name of a target's lease; its record is `lease/backup-meta/<target-id>`. */
export const metaBackupLeaseName = (targetId: string): string => `backup-meta/${targetId}`;

/** The last successful scheduled dump of a target, as stored under `backup-meta/<target-id>`. */
export interface MetaBackupState {
  /** The target's URL, secrets removed. */
  target: string;
  /** When the dump started (ISO 8601); the time in its name, and what the next due time counts from. */
  time: string;
  completedAt: string;
  /** Key of the dump in the target, e.g. `meta/dump-2026-11-25-231500.json.gz`. */
  file: string;
  /** Bytes stored (compressed, and encrypted when a key was given). */
  size: number;
  /** Records in the dump, header and footer not counted. */
  records: number;
  durationMs: number;
  /** Kind of the engine dumped, and whether the dump is one point in time. */
  engine: string;
  consistency: "snapshot" | "none";
  encrypted: boolean;
  /** Who wrote it, and the fencing token of its lease: the state never goes back to a smaller token. */
  holder: string;
  token: number;
}

export interface MetaBackupOptions {
  /** Milliseconds between dumps: one is due when the last successful one started at least this long ago. */
  every: number;
  /** What to keep after each dump. An empty policy is refused. @default DEFAULT_META_RETENTION */
  retention?: RetentionPolicy;
  /** Encrypt the dumps for this RSA public key (the envelope of `@cairn/manifest`). */
  encrypt?: EncryptOptions;
  /** Keep credentials of repository settings in the dumps instead of writing `"removed"`. @default false */
  keepSecrets?: boolean;
  /** Unique name of this process for the lease. @default `<host>:<pid>:<8 random hex digits>` */
  holder?: string;
  /**
   * How long the lease lasts without renewal; a holder renews it every third of this while it dumps, and
   * stops (leaving no dump) when it cannot. Another process may take over a lease this long after its
   * holder stopped renewing it (a crash). @default 60000
   */
  leaseTtlMs?: number;
  /** The engine's URL, for the dump's header; secrets are removed. */
  engineUrl?: string;
  /** Program writing the dumps, for their headers. @default { name: "cairn", version: "unknown" } */
  tool?: { name: string; version: string };
  /** Stops a run: a dump in progress is abandoned (no object is left) and the lease released. */
  signal?: AbortSignal;
  /** The clock. @default () => new Date() */
  now?: () => Date;
  /** Called every so many records of a dump, for progress. */
  onRecord?: (count: number) => void;
}

/** What one due-check and run did. */
export type MetaBackupOutcome =
  /** A dump was written and recorded; `removed` are the dumps retention deleted afterwards. */
  | { status: "done"; state: MetaBackupState; removed: string[]; warnings: string[] }
  /** The last dump is recent enough. */
  | { status: "not-due"; last: MetaBackupState; nextDue: Date }
  /** Another process holds the lease (it is running this backup right now). */
  | { status: "busy"; lease: Lease }
  /**
   * This process lost its lease during the run (it paused longer than the lease's TTL and another process
   * took over): the state was left to the newer holder. A dump it had completed is deleted again (`deleted`),
   * so only dumps that the state recorded in turn stay; a dump it had not completed was never visible.
   */
  | { status: "fenced"; file: string; written: boolean; deleted: boolean; token: number };

const DEFAULT_TOOL = Object.freeze({ name: "cairn", version: "unknown" });
const DEFAULT_LEASE_TTL_MS = 60_000;

/** A holder name unique to this process: `host:pid:random`. */
export const defaultLeaseHolder = (): string =>
  `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;

/** Refuses options that cannot work, with one sentence naming the option; returns the retention policy. */
function checkOptions(options: MetaBackupOptions): RetentionPolicy {
  if (!Number.isFinite(options.every) || options.every <= 0) {
    throw new InvalidArgumentError(
      `The interval of scheduled metadata backups must be a positive duration, got ${options.every} ms.`,
    );
  }
  const ttl = options.leaseTtlMs;
  if (ttl !== undefined && (!Number.isFinite(ttl) || ttl <= 0)) {
    throw new InvalidArgumentError(`The lease TTL must be a positive duration, got ${ttl} ms.`);
  }
  const policy = options.retention ?? DEFAULT_META_RETENTION;
  // Checks the rules (and refuses an empty policy) before anything is written, not after the first dump.
  applyRetention([], policy);
  return policy;
}

async function readState(
  engine: MetadataEngine,
  targetId: string,
): Promise<{ bytes: Uint8Array; state: MetaBackupState } | undefined> {
  const key = metaBackupStateKey(targetId);
  const bytes = await engine.get(GLOBAL_PARTITION, key);
  return bytes && { bytes, state: decodeJson<MetaBackupState>(bytes, `${GLOBAL_PARTITION}/${key}`) };
}

/** Thrown into a run whose lease was taken over, to stop its dump. */
class LeaseLost extends Error {}

/**
 * One due-check and, when due, one dump of the whole engine to `store`, then retention. Safe to call from
 * any number of processes at once: one takes the target's lease, the others return `busy`, and whoever
 * takes it next finds the new state and returns `not-due`. A failure (the store or the engine unavailable)
 * rejects with a cairn error and leaves no dump and the state unchanged, so the next run simply tries again.
 */
export async function runMetaBackup(
  engine: MetadataEngine,
  store: ObjectStore,
  options: MetaBackupOptions,
): Promise<MetaBackupOutcome> {
  const policy = checkOptions(options);
  const now = options.now ?? (() => new Date());
  const ttl = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  const holder = options.holder ?? defaultLeaseHolder();
  const target = redactUrl(store.url);
  const targetId = metaBackupTargetId(store.url);
  options.signal?.throwIfAborted();

  let lease = await acquireLease(engine, metaBackupLeaseName(targetId), holder, ttl, { now });
  if (!lease) {
    const current = await readLease(engine, metaBackupLeaseName(targetId));
    if (current) return { status: "busy", lease: current };
    // Released between our attempt and the read: the caller looks again at its next check.
    throw new ConflictError(`The lease of ${target} changed hands too often to be taken; try again.`);
  }
  const held = lease;
  const lost = new AbortController();
  // Renews the lease while the dump runs, so a long dump is not taken over; a lease that cannot be renewed
  // stops the dump (the put is aborted, so no object is left).
  let renewing = false;
  const renewal = setInterval(
    () => {
      if (renewing || lost.signal.aborted) return;
      renewing = true;
      renewLease(engine, lease!, ttl, { now })
        .then((renewed) => {
          if (renewed) lease = renewed;
          else lost.abort(new LeaseLost(`The lease of ${target} was taken over by another process.`));
        })
        .catch(() => {
          // The engine did not answer: keep dumping while the lease lasts, stop when it has run out.
          if (now().getTime() >= lease!.expiresAt.getTime())
            lost.abort(new LeaseLost(`The lease of ${target} ran out: the engine did not answer renewals.`));
        })
        .finally(() => {
          renewing = false;
        });
    },
    Math.max(1, Math.floor(ttl / 3)),
  );
  renewal.unref();

  try {
    const previous = await readState(engine, targetId);
    const start = now();
    if (previous) {
      const last = Date.parse(previous.state.time);
      if (start.getTime() - last < options.every) {
        return { status: "not-due", last: previous.state, nextDue: new Date(last + options.every) };
      }
    }

    const file = metaDumpKey(start);
    const signal = options.signal ? AbortSignal.any([options.signal, lost.signal]) : lost.signal;
    let written: { info: ObjectInfo; records: number };
    try {
      written = await streamDump(engine, store, file, start, options, signal);
    } catch (error) {
      if (lost.signal.aborted && !options.signal?.aborted) {
        return { status: "fenced", file, written: false, deleted: false, token: held.token };
      }
      throw error;
    }
    clearInterval(renewal);
    const completed = now();
    const state: MetaBackupState = {
      target,
      time: start.toISOString(),
      completedAt: completed.toISOString(),
      file,
      size: written.info.size,
      records: written.records,
      durationMs: completed.getTime() - start.getTime(),
      engine: engine.kind,
      consistency: engine.snapshot ? "snapshot" : "none",
      encrypted: options.encrypt !== undefined,
      holder,
      token: held.token,
    };

    if (!(await recordState(engine, targetId, state, held))) {
      // Another holder took over while this one was paused; its state stands. Our dump is whole but no state
      // names it, so it goes (unless the name now holds another object: the etag says whether it is ours).
      let deleted = false;
      const present = await store.head(file);
      if (present && present.etag === written.info.etag) {
        await store.delete(file);
        deleted = true;
      }
      return { status: "fenced", file, written: true, deleted, token: held.token };
    }

    const warnings: string[] = [];
    const removed = await applyMetaRetention(store, policy).catch((error: unknown) => {
      // The dump is done and recorded; a failed clean-up is retried after the next dump.
      warnings.push(`Removing old dumps failed: ${(error as Error).message}`);
      return [] as string[];
    });
    return { status: "done", state, removed, warnings };
  } finally {
    clearInterval(renewal);
    // Best effort: a lease that cannot be released expires by itself.
    await releaseLease(engine, lease).catch(() => {});
  }
}

/**
 * Writes `state` unless the lease was taken over: the write is a compare-and-swap against the state read
 * just before, and is refused when that state carries a newer token or the lease no longer holds ours, so the
 * state's token never goes back (fencing). Returns whether it wrote.
 */
async function recordState(
  engine: MetadataEngine,
  targetId: string,
  state: MetaBackupState,
  lease: Lease,
): Promise<boolean> {
  const key = metaBackupStateKey(targetId);
  for (let attempt = 0; attempt < 10; attempt++) {
    const current = await readState(engine, targetId);
    if (current && current.state.token > lease.token) return false;
    if (!(await holdsLease(engine, lease))) return false;
    if (await engine.setIf(GLOBAL_PARTITION, key, encodeJson(state), current?.bytes ?? null)) return true;
  }
  return false;
}

/**
 * Streams the dump into `store.put(file, …)`. The ObjectStore contract makes a put all-or-nothing — the
 * object becomes visible whole, and a failed or aborted put leaves none — so this *is* the "temporary name,
 * renamed when complete" of the layout: the folder store writes under `.cairn-tmp/` and renames, S3 completes
 * a multipart upload, Azure commits its blocks. No partial dump is ever visible under `meta/`, and memory
 * stays constant whatever the engine's size.
 */
async function streamDump(
  engine: MetadataEngine,
  store: ObjectStore,
  file: string,
  start: Date,
  options: MetaBackupOptions,
  signal: AbortSignal,
): Promise<{ info: ObjectInfo; records: number }> {
  signal.throwIfAborted();
  const body = new PassThrough();
  // Its errors reach us through the put and the writer; a stream destroyed before the store reads it would
  // otherwise raise an uncaught 'error'.
  body.on("error", () => {});
  const writer = writeDump({
    output: body,
    sections: ENGINE_DUMP_SECTIONS,
    source: {
      engine: engine.kind,
      ...(options.engineUrl !== undefined ? { url: redactUrl(options.engineUrl) } : {}),
    },
    tool: options.tool ?? DEFAULT_TOOL,
    consistency: engine.snapshot ? "snapshot" : "none",
    created: start,
    gzip: true,
    ...(options.encrypt ? { encrypt: options.encrypt } : {}),
  });
  // createOnly: two runs never replace each other's dump, even with clocks that disagree.
  const put = store.put(file, body, {
    createOnly: true,
    contentType: options.encrypt ? "application/octet-stream" : "application/gzip",
  });
  let stop: unknown;
  const halt = (reason: unknown) => {
    stop ??= reason;
    const error = reason instanceof Error ? reason : new Error(String(reason));
    void writer.abort(error);
    // The dump may be written whole already and only wait in the pipe: the put must fail all the same.
    body.destroy(error);
  };
  // A store that fails stops the dump at once instead of letting it fill a pipe nobody reads.
  put.catch(halt);
  const onAbort = () => halt(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await dumpEngine(engine, writer, {
      keepSecrets: options.keepSecrets === true,
      ...(options.onRecord ? { onRecord: options.onRecord } : {}),
    });
    const footer = await writer.end();
    const info = await put;
    return { info, records: Object.values(footer.counts).reduce((a, b) => a + b, 0) };
  } catch (error) {
    stop ??= error;
    await writer.abort(error instanceof Error ? error : new Error(String(error))).catch(() => {});
    await put.catch(() => {});
    throw asCairnError(stop);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** A scheduled dump present in a target. */
export interface MetaDumpInfo {
  file: string;
  time: Date;
  size: number;
}

/** The scheduled dumps in `store`, oldest first; other objects under `meta/` are not listed. */
export async function listMetaDumps(store: ObjectStore): Promise<MetaDumpInfo[]> {
  const dumps: MetaDumpInfo[] = [];
  for await (const object of store.list(META_PREFIX)) {
    const time = metaDumpTime(object.key);
    if (time) dumps.push({ file: object.key, time, size: object.size });
  }
  return dumps;
}

/**
 * Deletes the scheduled dumps of `store` that `policy` does not keep; returns their keys. Only objects named
 * like a scheduled dump are considered: anything else under `meta/` is left alone.
 */
export async function applyMetaRetention(store: ObjectStore, policy: RetentionPolicy): Promise<string[]> {
  const dumps = await listMetaDumps(store);
  const { remove } = applyRetention(
    dumps.map((d) => ({ id: d.file, time: d.time })),
    policy,
  );
  const removed: string[] = [];
  for (const { id } of remove) {
    await store.delete(id);
    removed.push(id);
  }
  return removed;
}

/** What `cairn backup-meta status` shows. */
export interface MetaBackupStatus {
  target: string;
  targetId: string;
  /** The last successful dump, or `undefined` when there was none yet. */
  last?: MetaBackupState;
  /** The target's lease, when it was ever taken; it is held when `expiresAt` is in the future. */
  lease?: Lease;
  /** The scheduled dumps present in the target, oldest first. */
  dumps: MetaDumpInfo[];
}

/** The state of a target's scheduled backups, from the engine, and the dumps present in the target. */
export async function metaBackupStatus(
  engine: MetadataEngine,
  store: ObjectStore,
): Promise<MetaBackupStatus> {
  const targetId = metaBackupTargetId(store.url);
  const [state, lease, dumps] = await Promise.all([
    readState(engine, targetId),
    readLease(engine, metaBackupLeaseName(targetId)),
    listMetaDumps(store),
  ]);
  return {
    target: redactUrl(store.url),
    targetId,
    ...(state ? { last: state.state } : {}),
    ...(lease ? { lease } : {}),
    dumps,
  };
}

export interface MetaBackupSchedulerOptions extends Omit<MetaBackupOptions, "signal"> {
  /** Called after every check with what it did. */
  onOutcome?: (outcome: MetaBackupOutcome) => void;
  /** Called when a run fails; the scheduler tries again after `retryMs`. */
  onError?: (error: unknown) => void;
  /** How long to wait after a failed run, or while another process holds the lease. @default min(every, 60000) */
  retryMs?: number;
}

/**
 * Runs {@link runMetaBackup} whenever a dump is due, until stopped. Failures are reported to `onError` and
 * retried, never fatal: a store that is down for a while only delays the next dump.
 */
export class MetaBackupScheduler {
  readonly #engine: MetadataEngine;
  readonly #store: ObjectStore;
  readonly #options: MetaBackupSchedulerOptions;
  readonly #holder: string;

  constructor(engine: MetadataEngine, store: ObjectStore, options: MetaBackupSchedulerOptions) {
    checkOptions(options);
    this.#engine = engine;
    this.#store = store;
    this.#options = Object.freeze({ ...options });
    // One holder name for the life of the scheduler, so its runs are recognisably the same process.
    this.#holder = options.holder ?? defaultLeaseHolder();
  }

  /** This scheduler's name in the lease. */
  get holder(): string {
    return this.#holder;
  }

  /** One due-check and, when due, one run. */
  runOnce(signal?: AbortSignal): Promise<MetaBackupOutcome> {
    return runMetaBackup(this.#engine, this.#store, {
      ...this.#options,
      holder: this.#holder,
      ...(signal ? { signal } : {}),
    });
  }

  /**
   * Checks and runs until `signal` aborts, then resolves once the run in progress has stopped (its dump
   * abandoned, its lease released).
   */
  async run(signal: AbortSignal): Promise<void> {
    const { every } = this.#options;
    const now = this.#options.now ?? (() => new Date());
    const retry = Math.min(every, this.#options.retryMs ?? 60_000);
    while (!signal.aborted) {
      let wait: number;
      try {
        const outcome = await this.runOnce(signal);
        this.#options.onOutcome?.(outcome);
        const t = now().getTime();
        switch (outcome.status) {
          case "done":
            wait = Date.parse(outcome.state.time) + every - t;
            break;
          case "not-due":
            wait = outcome.nextDue.getTime() - t;
            break;
          case "busy":
            // The holder is dumping now; look again when it should be done, or at the latest when it expires.
            wait = Math.min(retry, Math.max(outcome.lease.expiresAt.getTime() - t, 0));
            break;
          case "fenced":
            wait = retry;
            break;
        }
      } catch (error) {
        if (signal.aborted) break;
        this.#options.onError?.(error);
        wait = retry;
      }
      await sleep(Math.max(wait, 10), signal);
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
