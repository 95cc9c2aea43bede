import { bytesEqual, decodeJson, encodeJson } from "./codec.js";
import type { MetadataEngine } from "./engine.js";
import { InvalidArgumentError } from "./errors.js";
import { GLOBAL_PARTITION } from "./records.js";

/**
 * Leases: at most one holder of a named lease at a time, across every process and host that shares the
 * engine, built on the engine's compare-and-swap only (so every engine behaves the same).
 *
 * A lease is the record `lease/<name>` in the engine's global partition `cairn`:
 *
 * ```json
 * {"holder":"backup-01:4242:9f3a1c2b","token":7,"acquiredAt":"2026-11-25T23:15:00.000Z","expiresAt":"2026-11-25T23:16:00.000Z"}
 * ```
 *
 * Every acquisition increments `token`, and the record is never deleted (a release only sets `expiresAt` to
 * the epoch), so tokens of one name grow strictly for the whole life of the engine — and across a dump and
 * load, which carries the record as an `engine-record`. The token is a *fencing token*: whatever the holder
 * guards should refuse a write that carries a smaller token than one it has already accepted, because a holder
 * can lose its lease without noticing (a long pause, a clock jump) while another holder takes it over.
 *
 * Expiry compares the record's `expiresAt` with the reading process's clock, so hosts' clocks must agree to
 * well within the TTL; fencing keeps what the lease guards correct when they do not.
 */

/** The engine key of the lease `name`, in {@link GLOBAL_PARTITION}. */
export const leaseKey = (name: string): string => `lease/${name}`;

/** A lease as stored, and as returned to its holder. */
export interface Lease {
  readonly name: string;
  /** Who holds it: a string unique to one process, e.g. `host:pid:random`. */
  readonly holder: string;
  /** Fencing token: strictly greater than the token of every earlier acquisition of this name. */
  readonly token: number;
  readonly acquiredAt: Date;
  /** After this time any other holder may take the lease; `new Date(0)` once released. */
  readonly expiresAt: Date;
}

export interface LeaseOptions {
  /** The clock; tests give their own. @default () => new Date() */
  now?: () => Date;
}

interface LeaseRecord {
  holder: string;
  token: number;
  acquiredAt: string;
  expiresAt: string;
}

/** How often an acquire, renew or release retries when another process changed the record in between. */
const CAS_ATTEMPTS = 10;

function checkTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new InvalidArgumentError(
      `A lease's time to live must be a positive number of milliseconds, got ${ttlMs}.`,
    );
  }
}

function checkName(name: string): void {
  if (typeof name !== "string" || name === "")
    throw new InvalidArgumentError("A lease needs a non-empty name.");
}

function toLease(name: string, r: LeaseRecord): Lease {
  return {
    name,
    holder: r.holder,
    token: r.token,
    acquiredAt: new Date(r.acquiredAt),
    expiresAt: new Date(r.expiresAt),
  };
}

async function readRecord(
  engine: MetadataEngine,
  name: string,
): Promise<{ bytes: Uint8Array; record: LeaseRecord } | undefined> {
  const key = leaseKey(name);
  const bytes = await engine.get(GLOBAL_PARTITION, key);
  if (!bytes) return undefined;
  const record = decodeJson<LeaseRecord>(bytes, `${GLOBAL_PARTITION}/${key}`);
  return { bytes, record };
}

/**
 * The lease `name` as stored (held, expired or released), or `undefined` when it was never taken. Whether it
 * is held is `lease.expiresAt > now`.
 */
export async function readLease(engine: MetadataEngine, name: string): Promise<Lease | undefined> {
  checkName(name);
  const current = await readRecord(engine, name);
  return current && toLease(name, current.record);
}

/**
 * Takes the lease `name` for `holder` for `ttlMs`, when no other holder has it (absent, released or expired).
 * Returns the lease with its new fencing token, or `undefined` when another holder has it. Taking a lease the
 * same `holder` still has also succeeds, with a new token.
 */
export async function acquireLease(
  engine: MetadataEngine,
  name: string,
  holder: string,
  ttlMs: number,
  options: LeaseOptions = {},
): Promise<Lease | undefined> {
  checkName(name);
  checkTtl(ttlMs);
  if (typeof holder !== "string" || holder === "") throw new InvalidArgumentError("A lease needs a holder.");
  const now = options.now ?? (() => new Date());
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const current = await readRecord(engine, name);
    const t = now();
    if (current && current.record.holder !== holder && Date.parse(current.record.expiresAt) > t.getTime()) {
      return undefined;
    }
    const record: LeaseRecord = {
      holder,
      token: (current?.record.token ?? 0) + 1,
      acquiredAt: t.toISOString(),
      expiresAt: new Date(t.getTime() + ttlMs).toISOString(),
    };
    if (await engine.setIf(GLOBAL_PARTITION, leaseKey(name), encodeJson(record), current?.bytes ?? null)) {
      return toLease(name, record);
    }
    // Another process wrote the record between our read and our swap: look again.
  }
  return undefined;
}

/**
 * Extends `lease` to `ttlMs` from now, if it is still the current lease of its name (same token and holder:
 * nobody took it over, even if it expired in the meantime). Returns the renewed lease, or `undefined` when it
 * was lost: the holder must then stop what the lease guards.
 */
export async function renewLease(
  engine: MetadataEngine,
  lease: Lease,
  ttlMs: number,
  options: LeaseOptions = {},
): Promise<Lease | undefined> {
  checkTtl(ttlMs);
  const now = options.now ?? (() => new Date());
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const current = await readRecord(engine, lease.name);
    if (!current || current.record.token !== lease.token || current.record.holder !== lease.holder) {
      return undefined;
    }
    const record: LeaseRecord = {
      ...current.record,
      expiresAt: new Date(now().getTime() + ttlMs).toISOString(),
    };
    const bytes = encodeJson(record);
    if (bytesEqual(bytes, current.bytes)) return toLease(lease.name, record);
    if (await engine.setIf(GLOBAL_PARTITION, leaseKey(lease.name), bytes, current.bytes)) {
      return toLease(lease.name, record);
    }
  }
  return undefined;
}

/**
 * Gives `lease` up, so another holder can take it at once instead of waiting for it to expire. The record
 * stays (released, with its token), so tokens keep growing. Returns whether it released; `false` when the
 * lease had been taken over already, which is not an error.
 */
export async function releaseLease(engine: MetadataEngine, lease: Lease): Promise<boolean> {
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const current = await readRecord(engine, lease.name);
    if (!current || current.record.token !== lease.token || current.record.holder !== lease.holder) {
      return false;
    }
    const record: LeaseRecord = { ...current.record, expiresAt: new Date(0).toISOString() };
    if (await engine.setIf(GLOBAL_PARTITION, leaseKey(lease.name), encodeJson(record), current.bytes)) {
      return true;
    }
  }
  return false;
}

/** Whether `lease` is still the current lease of its name: nobody took it over since it was acquired. */
export async function holdsLease(engine: MetadataEngine, lease: Lease): Promise<boolean> {
  const current = await readRecord(engine, lease.name);
  return (
    current !== undefined && current.record.token === lease.token && current.record.holder === lease.holder
  );
}
