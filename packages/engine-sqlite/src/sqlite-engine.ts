import { accessSync, constants, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import {
  checkExpected,
  checkValue,
  type EngineCapabilities,
  type EngineSnapshot,
  encodeKey,
  encodePartition,
  InvalidArgumentError,
  type KvEntry,
  type MetadataEngine,
  PermissionDeniedError,
  type ScanOptions,
  scanRange,
  UnavailableError,
  UnsupportedError,
  type WriteOp,
} from "@cairn/core";
import Database from "better-sqlite3";
import { applyOps } from "./batch-ops.js";
import { BatchThread } from "./batch-thread-client.js";
import { mapSqliteError } from "./errors.js";
import { asBuffer, readPages } from "./pages.js";
import { readPage } from "./scan-page.js";
import { SnapshotThread } from "./snapshot-thread-client.js";

/** The version of the tables this build writes. A database with a newer one is refused, never downgraded. */
export const SQLITE_SCHEMA_VERSION = 1;

/** The part of a better-sqlite3 prepared statement the engine uses. */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  iterate(...params: unknown[]): IterableIterator<unknown>;
  raw(toggle?: boolean): this;
}

/** The part of a better-sqlite3 `Database` the engine uses, so callers can inject one without a type dependency. */
export interface SqliteDatabase {
  /** The file name the database was opened with. */
  readonly name: string;
  readonly open: boolean;
  readonly inTransaction: boolean;
  readonly memory: boolean;
  prepare(sql: string): SqliteStatement;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  exec(sql: string): unknown;
  close(): unknown;
}

export interface SqliteEngineOptions {
  /**
   * Path of the database file, absolute or relative to the working directory; its parent folders are created.
   * `":memory:"` opens a private in-memory database that disappears on close. Required unless `database` is
   * given.
   */
  filename?: string;
  /**
   * An open better-sqlite3 database to use instead of opening `filename` (tests, custom builds, encryption
   * extensions). The engine sets its pragmas and creates its tables in it, and does not close it: its owner does.
   */
  database?: SqliteDatabase;
  /**
   * How long, in milliseconds, a call waits for another connection or process to release its write lock before
   * failing with `UNAVAILABLE`. Only applies when the engine opens the file itself.
   * @default 10000
   */
  busyTimeout?: number;
  /**
   * `"full"` makes every commit durable across power loss; `"normal"` syncs at WAL checkpoints only, so a
   * power loss may undo the last commits (never corrupt the file), for more write speed.
   * @default "full"
   */
  synchronous?: "full" | "normal";
  /**
   * Most entries `scan` reads per query. Pages also stop at 16 MiB of values, so memory stays bounded.
   * @default 1000
   */
  pageSize?: number;
}

/** A {@link MetadataEngine} kept in one SQLite file. */
export interface SqliteEngine extends MetadataEngine {
  readonly kind: "sqlite";
  /** Absolute path of the database file, or `":memory:"`. */
  readonly filename: string;
}

/**
 * Batches of at least this many ops are written by the engine's writer thread, on a second connection, so that
 * the caller's thread is free meanwhile; smaller ones are written at once on the engine's own connection, where
 * a round trip to the thread would cost more than it frees. A load writes batches of 1,000.
 */
const THREAD_BATCH_OPS = 512;

const CAPABILITIES: EngineCapabilities = Object.freeze({ atomicBatch: true, consistency: "snapshot" });

interface Row {
  key: Buffer;
  value: Buffer;
}

/**
 * Opens a SQLite metadata engine: one `WITHOUT ROWID` table keyed by (partition, key) as UTF-8 BLOBs, so SQLite
 * orders keys by their bytes, in WAL mode so readers never block the writer and several processes can share
 * the file.
 *
 * @throws InvalidArgumentError when the file is not a SQLite database or an option is invalid.
 * @throws UnsupportedError when the database was written by a newer cairn (schema version).
 * @throws UnavailableError or PermissionDeniedError when the file cannot be opened or created.
 */
export function createSqliteEngine(options: SqliteEngineOptions): SqliteEngine {
  const config = Object.freeze({
    filename: options.filename,
    database: options.database,
    busyTimeout: options.busyTimeout ?? 10_000,
    synchronous: options.synchronous ?? "full",
    pageSize: options.pageSize ?? 1000,
  });
  if (!Number.isInteger(config.busyTimeout) || config.busyTimeout < 0) {
    throw new InvalidArgumentError(
      `busyTimeout must be a whole number of milliseconds, got ${config.busyTimeout}.`,
    );
  }
  if (!Number.isInteger(config.pageSize) || config.pageSize < 1) {
    throw new InvalidArgumentError(`pageSize must be a positive whole number, got ${config.pageSize}.`);
  }
  if (config.synchronous !== "full" && config.synchronous !== "normal") {
    throw new InvalidArgumentError(
      `synchronous must be "full" or "normal", got ${JSON.stringify(config.synchronous)}.`,
    );
  }
  if (!config.database && !config.filename) {
    throw new InvalidArgumentError("A SQLite engine needs a filename or an open database.");
  }
  return new SqliteEngineImpl(config);
}

type Config = Readonly<Required<Pick<SqliteEngineOptions, "busyTimeout" | "synchronous" | "pageSize">>> &
  Readonly<Pick<SqliteEngineOptions, "filename" | "database">>;

class SqliteEngineImpl implements SqliteEngine {
  readonly kind = "sqlite" as const;
  readonly capabilities = CAPABILITIES;
  readonly filename: string;
  readonly #config: Config;
  readonly #db: SqliteDatabase;
  readonly #owned: boolean;
  #closed = false;
  readonly #statements = new Map<string, SqliteStatement>();
  /** Writes large batches; started on the first one. */
  #thread: BatchThread | undefined;

  constructor(config: Config) {
    this.#config = config;
    if (config.database) {
      this.#db = config.database;
      this.#owned = false;
      this.filename = config.database.memory ? ":memory:" : config.database.name;
    } else {
      const raw = config.filename!;
      this.filename = raw === ":memory:" ? raw : resolve(raw);
      this.#db = openDatabase(this.filename, config.busyTimeout);
      this.#owned = true;
    }
    try {
      this.#prepareDatabase();
    } catch (error) {
      if (this.#owned) this.#db.close();
      throw mapSqliteError(error, this.filename, { opening: true, busyTimeout: config.busyTimeout });
    }
  }

  #prepareDatabase(): void {
    const db = this.#db;
    if (!this.#owned) db.pragma(`busy_timeout = ${this.#config.busyTimeout}`);
    if (this.filename !== ":memory:") db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${this.#config.synchronous.toUpperCase()}`);
    const version = this.#schemaVersion();
    if (version === SQLITE_SCHEMA_VERSION) return;
    if (version !== undefined && version > SQLITE_SCHEMA_VERSION) this.#refuseNewer(version);
    // Created in one write transaction so that processes opening a new file at once agree on one schema.
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(`CREATE TABLE IF NOT EXISTS cairn_meta (
        name TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
      ) WITHOUT ROWID`);
      const current = this.#schemaVersion();
      if (current === undefined) {
        db.exec(`CREATE TABLE IF NOT EXISTS cairn_kv (
          partition BLOB NOT NULL,
          key BLOB NOT NULL,
          value BLOB NOT NULL,
          PRIMARY KEY (partition, key)
        ) WITHOUT ROWID`);
        db.prepare("INSERT INTO cairn_meta (name, value) VALUES ('schema_version', ?)").run(
          String(SQLITE_SCHEMA_VERSION),
        );
      } else if (current > SQLITE_SCHEMA_VERSION) {
        this.#refuseNewer(current);
      }
      db.exec("COMMIT");
    } catch (error) {
      if (db.inTransaction) db.exec("ROLLBACK");
      throw error;
    }
  }

  #schemaVersion(): number | undefined {
    const table = this.#db
      .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cairn_meta'")
      .get();
    if (!table) return undefined;
    const row = this.#db.prepare("SELECT value FROM cairn_meta WHERE name = 'schema_version'").get() as
      | { value: string }
      | undefined;
    if (!row) return undefined;
    const version = Number(row.value);
    if (!Number.isInteger(version)) {
      throw new InvalidArgumentError(
        `${this.filename} has a cairn schema version "${row.value}" that is not a number.`,
      );
    }
    return version;
  }

  #refuseNewer(version: number): never {
    throw new UnsupportedError(
      `${this.filename} has cairn schema version ${version}, newer than the ${SQLITE_SCHEMA_VERSION} this build understands; upgrade cairn to open it.`,
    );
  }

  #statement(sql: string): SqliteStatement {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /** A cached statement, in better-sqlite3's raw (array) mode when `raw`, cached apart from object-mode ones. */
  #cached(sql: string, raw: boolean): SqliteStatement {
    if (!raw) return this.#statement(sql);
    const key = `raw:${sql}`;
    let statement = this.#statements.get(key);
    if (!statement) {
      statement = this.#db.prepare(sql);
      statement.raw(true);
      this.#statements.set(key, statement);
    }
    return statement;
  }

  /** Runs `fn` against the open database, mapping native errors to core's. */
  #run<T>(fn: () => T): T {
    if (this.#closed) throw new UnavailableError(`The SQLite engine for ${this.filename} is closed.`);
    try {
      return fn();
    } catch (error) {
      throw mapSqliteError(error, this.filename, { busyTimeout: this.#config.busyTimeout });
    }
  }

  /** Runs `fn` in a `BEGIN IMMEDIATE` transaction: the write lock is taken before reading, so no other writer interleaves. */
  #write<T>(fn: () => T): T {
    return this.#run(() => {
      this.#statement("BEGIN IMMEDIATE").run();
      try {
        const result = fn();
        this.#statement("COMMIT").run();
        return result;
      } catch (error) {
        if (this.#db.inTransaction) this.#statement("ROLLBACK").run();
        throw error;
      }
    });
  }

  async get(partition: string, key: string): Promise<Uint8Array | undefined> {
    const p = encodePartition(partition);
    const k = encodeKey(key);
    const row = this.#run(
      () =>
        this.#statement("SELECT value FROM cairn_kv WHERE partition = ? AND key = ?").get(p, k) as
          | Row
          | undefined,
    );
    return row?.value;
  }

  async set(partition: string, key: string, value: Uint8Array): Promise<void> {
    const p = encodePartition(partition);
    const k = encodeKey(key);
    const v = checkValue(value, key);
    this.#run(() => this.#upsert(p, k, v));
  }

  #upsert(p: Buffer, k: Buffer, v: Uint8Array): void {
    this.#statement(
      "INSERT INTO cairn_kv (partition, key, value) VALUES (?, ?, ?) ON CONFLICT (partition, key) DO UPDATE SET value = excluded.value",
    ).run(p, k, v);
  }

  #remove(p: Buffer, k: Buffer): void {
    this.#statement("DELETE FROM cairn_kv WHERE partition = ? AND key = ?").run(p, k);
  }

  async setIf(
    partition: string,
    key: string,
    value: Uint8Array,
    expected: Uint8Array | null,
  ): Promise<boolean> {
    const p = encodePartition(partition);
    const k = encodeKey(key);
    const v = checkValue(value, key);
    checkExpected(expected, key);
    return this.#write(() => {
      const row = this.#statement("SELECT value FROM cairn_kv WHERE partition = ? AND key = ?").get(p, k) as
        | Row
        | undefined;
      const matches =
        expected === null
          ? row === undefined
          : row !== undefined && Buffer.compare(row.value, expected) === 0;
      if (matches) this.#upsert(p, k, v);
      return matches;
    });
  }

  async delete(partition: string, key: string): Promise<void> {
    const p = encodePartition(partition);
    const k = encodeKey(key);
    this.#run(() => this.#remove(p, k));
  }

  async *scan(partition: string, options: ScanOptions = {}): AsyncGenerator<KvEntry> {
    for await (const page of this.scanPages(partition, options)) yield* page;
  }

  async *scanPages(partition: string, options: ScanOptions = {}): AsyncGenerator<readonly KvEntry[]> {
    const p = encodePartition(partition);
    const range = scanRange(options);
    const read = (lower: Buffer | undefined, inclusive: boolean, want: number) =>
      this.#run(() => readPage((sql, raw) => this.#cached(sql, raw), p, lower, inclusive, range.upper, want));
    yield* readPages(read, range, this.#config.pageSize, false);
  }

  async writeBatch(ops: readonly WriteOp[]): Promise<void> {
    this.#run(() => undefined);
    if (ops.length === 0) return;
    const encoded = ops.map((op) => ({
      p: encodePartition(op.partition),
      k: encodeKey(op.key),
      v: op.value === null ? null : checkValue(op.value, op.key),
    }));
    if (encoded.length >= THREAD_BATCH_OPS && this.filename !== ":memory:") {
      this.#thread ??= new BatchThread({
        filename: this.filename,
        busyTimeout: this.#config.busyTimeout,
        synchronous: this.#config.synchronous.toUpperCase(),
      });
      try {
        return await this.#thread.write(encoded);
      } catch (error) {
        throw mapSqliteError(error, this.filename, { busyTimeout: this.#config.busyTimeout });
      }
    }
    this.#write(() =>
      applyOps(
        (sql) => this.#statement(sql),
        encoded.length,
        (i) => {
          const { p, k, v } = encoded[i]!;
          return [p, k, v];
        },
      ),
    );
  }

  async *partitions(): AsyncGenerator<string> {
    let last = this.#run(
      () =>
        this.#statement("SELECT partition FROM cairn_kv ORDER BY partition LIMIT 1").get() as
          | { partition: Buffer }
          | undefined,
    );
    while (last) {
      yield last.partition.toString("utf8");
      const previous = last.partition;
      // One index seek per partition instead of DISTINCT, which would read every key of every partition.
      last = this.#run(
        () =>
          this.#statement(
            "SELECT partition FROM cairn_kv WHERE partition > ? ORDER BY partition LIMIT 1",
          ).get(previous) as { partition: Buffer } | undefined,
      );
    }
  }

  /**
   * A second connection in a read transaction, on a thread of its own: in WAL mode its reads see the database as
   * of its first read, whatever other connections commit meanwhile, and a long scan's next page is read on that
   * thread while the caller works on the last one (a dump of 1.1M records spent 40 % of its time in SQLite's reads
   * on the caller's thread).
   */
  async snapshot(): Promise<EngineSnapshot> {
    this.#run(() => undefined);
    if (this.filename === ":memory:") {
      throw new UnsupportedError(
        "An in-memory SQLite database cannot give a snapshot: it has one connection.",
      );
    }
    const { filename } = this;
    const { busyTimeout, pageSize } = this.#config;
    const mapped = (error: unknown) => mapSqliteError(error, filename, { busyTimeout });
    let thread: SnapshotThread;
    try {
      thread = await SnapshotThread.open({ filename, busyTimeout });
    } catch (error) {
      throw mapped(error);
    }
    let released = false;
    /** Asks the thread, once the snapshot is known to be live, mapping SQLite's errors to core's. */
    const ask = async <T>(question: () => Promise<T>): Promise<T> => {
      if (released) throw new UnavailableError(`This snapshot of ${filename} has been released.`);
      try {
        return await question();
      } catch (error) {
        throw mapped(error);
      }
    };
    // Arguments are checked when the scan starts, as the engine's own scans do.
    const scanPages = async function* (partition: string, options: ScanOptions = {}) {
      const p = encodePartition(partition);
      const range = scanRange(options);
      const read = (lower: Buffer | undefined, inclusive: boolean, want: number) =>
        ask(() => thread.page(p, lower, inclusive, range.upper, want));
      yield* readPages(read, range, pageSize, true);
    };
    return {
      get: async (partition, key) => {
        const p = encodePartition(partition);
        const k = encodeKey(key);
        const value = await ask(() => thread.get(p, k));
        return value === undefined ? undefined : asBuffer(value);
      },
      scan: async function* (partition, options) {
        for await (const page of scanPages(partition, options)) yield* page;
      },
      scanPages,
      partitions: async function* () {
        let last = await ask(() => thread.partitionAfter(undefined));
        while (last !== undefined) {
          yield asBuffer(last).toString("utf8");
          const previous = last;
          last = await ask(() => thread.partitionAfter(previous));
        }
      },
      release: async () => {
        if (released) return;
        released = true;
        try {
          await thread.release();
        } catch (error) {
          throw mapped(error);
        }
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#thread?.close();
    this.#statements.clear();
    if (this.#owned) {
      try {
        this.#db.close();
      } catch (error) {
        throw mapSqliteError(error, this.filename, { busyTimeout: this.#config.busyTimeout });
      }
    }
  }
}

function openDatabase(filename: string, busyTimeout: number): SqliteDatabase {
  if (filename !== ":memory:") {
    try {
      mkdirSync(dirname(filename), { recursive: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") {
        throw new PermissionDeniedError(
          `Cannot create the folder of the SQLite database ${filename}: permission denied.`,
          {
            cause: error,
          },
        );
      }
      throw new UnavailableError(
        `Cannot create the folder of the SQLite database ${filename} (${code ?? error}).`,
        {
          cause: error,
        },
      );
    }
  }
  try {
    return new Database(filename, { timeout: busyTimeout });
  } catch (error) {
    if (filename !== ":memory:" && deniedAccess(filename)) {
      throw new PermissionDeniedError(`Cannot open the SQLite database ${filename}: permission denied.`, {
        cause: error,
      });
    }
    throw mapSqliteError(error, filename, { opening: true, busyTimeout });
  }
}

function deniedAccess(filename: string): boolean {
  for (const [path, mode] of [
    [filename, constants.R_OK | constants.W_OK],
    [dirname(filename), constants.W_OK | constants.X_OK],
  ] as const) {
    try {
      accessSync(path, mode);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") return true;
    }
  }
  return false;
}
