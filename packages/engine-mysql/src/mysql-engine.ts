import { Buffer } from "node:buffer";
import {
  CorruptError,
  checkExpected,
  checkValue,
  type EngineCapabilities,
  type EngineSnapshot,
  encodeKey,
  encodePartition,
  InvalidArgumentError,
  isCairnError,
  type KvEntry,
  type MetadataEngine,
  type ScanOptions,
  scanRange,
  UnavailableError,
  UnsupportedError,
  type WriteOp,
} from "@cairn/core";
import mysql, {
  type Connection,
  type Pool,
  type PoolConnection,
  type ResultSetHeader,
  type RowDataPacket,
} from "mysql2/promise";
import { driverCode, isRetryable, mapMysqlError } from "./errors.js";
import { HEAD_BYTES, quoteIdentifier, type StoredKey, splitKey, tableStatements } from "./layout.js";

/** The version of the tables this build writes. A database with a newer one is refused, never downgraded. */
export const MYSQL_SCHEMA_VERSION = 1;

export interface MysqlEngineOptions {
  /**
   * Host name or address of the server.
   * @default "127.0.0.1"
   */
  host?: string;
  /**
   * TCP port of the server.
   * @default 3306
   */
  port?: number;
  /**
   * User to log in as.
   * @default "root"
   */
  user?: string;
  /** Password of `user`; none when absent. */
  password?: string;
  /** The database holding cairn's tables; created when missing unless `createDatabase` is false. */
  database: string;
  /**
   * Start of the names of the two tables, `<prefix>kv` and `<prefix>meta`, so several cairn engines can share
   * one database. Letters, digits and `_`, at most 40 characters.
   * @default "cairn_"
   */
  tablePrefix?: string;
  /**
   * Most connections the engine keeps open at once (a snapshot takes one more of its own).
   * @default 4
   */
  poolSize?: number;
  /**
   * Milliseconds a connection attempt may take before failing with `UNAVAILABLE`.
   * @default 5000
   */
  connectTimeout?: number;
  /**
   * Most entries `scan` reads per query. Pages start at 500 entries and grow up to this while values stay small:
   * the values of one page come to at most 16 MiB, a larger value being read on its own. Larger pages save the
   * server a little work per entry but keep more rows alive in the client until the next page arrives: dumping
   * 1.1M entries took about a third less client CPU (mostly garbage collection) with 4,000 than with 10,000.
   * @default 4000
   */
  pageSize?: number;
  /**
   * Create `database` when it does not exist (needs the `CREATE` privilege).
   * @default true
   */
  createDatabase?: boolean;
  /**
   * A mysql2 promise pool to use instead of connecting with the options above (custom authentication, TLS).
   * It must keep mysql2's default `FOUND_ROWS` flag. The engine does not end it on close: its owner does.
   */
  pool?: Pool;
  /** How messages name the server; built from the options (without the password) when absent. */
  url?: string;
}

/** A {@link MetadataEngine} kept in a MySQL or MariaDB database. */
export interface MysqlEngine extends MetadataEngine {
  readonly kind: "mysql";
  /** The engine's URL with the password hidden, as error messages name it. */
  readonly url: string;
  /** The database holding the engine's tables. */
  readonly database: string;
  /** The names (unquoted) of the key-value table and of the table holding the schema version. */
  readonly tables: Readonly<{ kv: string; meta: string }>;
}

type Config = Readonly<
  Required<Omit<MysqlEngineOptions, "password" | "pool" | "url">> &
    Pick<MysqlEngineOptions, "password" | "pool"> & { url: string }
>;

const CAPABILITIES: EngineCapabilities = Object.freeze({ atomicBatch: true, consistency: "snapshot" });

/**
 * Most bytes of values one scan page holds. A page of `n` rows reads values of up to `PAGE_VALUE_BYTES / n`
 * bytes with the page, larger ones one by one when yielded; the page size adapts to the largest value seen.
 */
const PAGE_VALUE_BYTES = 16 * 1024 * 1024;
/** Rows of the first page of a scan: small enough that values of up to 32 KiB come with it. */
const FIRST_PAGE_ROWS = 500;
/** Sets with values up to this size go in multi-row statements; larger ones one by one as binary parameters. */
const BATCH_VALUE_BYTES = 1024 * 1024;
/** Most bytes of one multi-row statement: its SQL text (deletes send keys as hex), or its binary parameters. */
const STATEMENT_BYTES = 4 * 1024 * 1024;
/** Bytes a row's five parameters take in a prepared statement besides its partition, key and value. */
const ROW_PARAMETER_BYTES = 96;
/** Most rows of one multi-row statement. */
const STATEMENT_ROWS = 1000;
/** Room left in a packet for the statement around a value. */
const PACKET_SLACK = 16 * 1024;
/** How often a transaction the server rolled back (deadlock, lock wait) is run again. */
const TRANSACTION_ATTEMPTS = 8;

/** What a scan, `get` and `partitions` run their statements on: the pool, or a snapshot's connection. */
type Queryable = Pick<Connection, "query" | "execute">;

/**
 * Where the next page of a scan starts: after (or at) the key `(head, tail)`, or, when `tail` is null, after
 * every key whose head is `head`. `group` reads the keys sharing one long head, ordered by tail.
 */
interface Lower {
  head: Buffer;
  tail: Buffer | null;
  inclusive: boolean;
  group?: boolean;
}

/**
 * A row of a scan page as mysql2 returns it (`rowsAsArray`): the whole key (`head || tail`, one buffer rather
 * than two per row), and the value, or null when it is larger than the page reads with it and is read when
 * yielded.
 */
type PageRow = [key: Buffer, value: Buffer | null];

interface Page {
  rows: PageRow[];
  /** Where the next page starts; undefined when the range has no more keys. */
  next: Lower | undefined;
}

/** An op of a batch, checked and encoded: partition and key as UTF-8, the value as a Buffer (null: delete). */
interface EncodedOp {
  p: Buffer;
  key: Buffer;
  value: Buffer | null;
}

type EncodedSet = EncodedOp & { value: Buffer };

const EMPTY = Buffer.alloc(0);

/** A Buffer over the same memory as `bytes`, which mysql2 sends as binary (it needs a Buffer, not a Uint8Array). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Opens a MySQL / MariaDB metadata engine: connects (failing within `connectTimeout` when the server is down),
 * creates the database when missing, then the tables and the schema-version row on first use.
 *
 * @throws InvalidArgumentError when an option is invalid.
 * @throws UnavailableError when the server cannot be reached; PermissionDeniedError when it refuses the
 *   credentials or a privilege.
 * @throws UnsupportedError when the tables were written by a newer cairn (schema version).
 */
export async function createMysqlEngine(options: MysqlEngineOptions): Promise<MysqlEngine> {
  const config: Config = Object.freeze({
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 3306,
    user: options.user ?? "root",
    password: options.password,
    database: options.database,
    tablePrefix: options.tablePrefix ?? "cairn_",
    poolSize: options.poolSize ?? 4,
    connectTimeout: options.connectTimeout ?? 5000,
    pageSize: options.pageSize ?? 4000,
    createDatabase: options.createDatabase ?? true,
    pool: options.pool,
    url:
      options.url ??
      `mysql://${encodeURIComponent(options.user ?? "root")}${options.password ? ":***" : ""}@${
        (options.host ?? "127.0.0.1").includes(":") ? `[${options.host}]` : (options.host ?? "127.0.0.1")
      }:${options.port ?? 3306}/${encodeURIComponent(options.database ?? "")}`,
  });
  const positive = (name: string, n: number) => {
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new InvalidArgumentError(`${name} must be a positive whole number, got ${n} (${config.url}).`);
    }
  };
  positive("poolSize", config.poolSize);
  positive("connectTimeout", config.connectTimeout);
  positive("pageSize", config.pageSize);
  positive("port", config.port);
  if (typeof config.database !== "string" || config.database === "") {
    throw new InvalidArgumentError(`A MySQL engine needs a database name (${config.url}).`);
  }
  if (!/^[A-Za-z0-9_]{0,40}$/.test(config.tablePrefix)) {
    throw new InvalidArgumentError(
      `The table prefix "${config.tablePrefix}" of ${config.url} may only hold letters, digits and _ (at most 40).`,
    );
  }
  const engine = new MysqlEngineImpl(config);
  await engine.open();
  return engine;
}

class MysqlEngineImpl implements MysqlEngine {
  readonly kind = "mysql" as const;
  readonly capabilities = CAPABILITIES;
  readonly url: string;
  readonly database: string;
  readonly tables: Readonly<{ kv: string; meta: string }>;
  readonly #config: Config;
  readonly #pool: Pool;
  readonly #owned: boolean;
  readonly #sql: ReturnType<typeof statements>;
  readonly #snapshots = new Set<Connection>();
  readonly #inserts = new Map<number, string>();
  #closed = false;
  #maxPacket = 16 * 1024 * 1024;

  constructor(config: Config) {
    this.#config = config;
    this.url = config.url;
    this.database = config.database;
    this.tables = Object.freeze({ kv: `${config.tablePrefix}kv`, meta: `${config.tablePrefix}meta` });
    this.#sql = statements(quoteIdentifier(this.tables.kv), quoteIdentifier(this.tables.meta));
    this.#owned = config.pool === undefined;
    this.#pool =
      config.pool ?? mysql.createPool({ ...this.#connectionOptions(), connectionLimit: config.poolSize });
  }

  #connectionOptions(withDatabase = true): mysql.ConnectionOptions {
    const c = this.#config;
    return {
      host: c.host,
      port: c.port,
      user: c.user,
      password: c.password,
      ...(withDatabase ? { database: c.database } : {}),
      connectTimeout: c.connectTimeout,
      enableKeepAlive: true,
      // The engine never reads local files for the server (LOAD DATA LOCAL INFILE): it does not offer to.
      flags: ["-LOCAL_FILES"],
      multipleStatements: false,
      // Errors are mapped to core's with a sentence of their own; a stack captured per query costs for nothing.
      trace: false,
    };
  }

  #error(error: unknown, opening = false): unknown {
    // A query still running when the engine was closed fails with whatever mysql2 says about its ended pool.
    if (this.#closed && !opening && !isCairnError(error)) {
      return new UnavailableError(`The MySQL engine for ${this.url} is closed.`, { cause: error });
    }
    return mapMysqlError(error, {
      url: this.url,
      opening,
      connectTimeout: this.#config.connectTimeout,
      maxPacket: this.#maxPacket,
    });
  }

  /** Connects, creates the database and tables when missing, and checks the schema version. */
  async open(): Promise<void> {
    try {
      try {
        await this.#readServer();
      } catch (error) {
        if (driverCode(error) !== "ER_BAD_DB_ERROR" || !this.#config.createDatabase || !this.#owned)
          throw error;
        await this.#createDatabase();
        await this.#readServer();
      }
      await this.#prepareTables();
    } catch (error) {
      if (this.#owned) await this.#pool.end().catch(() => {});
      this.#closed = true;
      throw this.#error(error, true);
    }
  }

  async #readServer(): Promise<void> {
    const [rows] = await this.#pool.query<RowDataPacket[]>("SELECT @@max_allowed_packet AS m");
    const m = Number(rows[0]?.m);
    if (Number.isSafeInteger(m) && m > 0) this.#maxPacket = m;
  }

  async #createDatabase(): Promise<void> {
    const connection = await mysql.createConnection(this.#connectionOptions(false));
    try {
      await connection.query(`CREATE DATABASE IF NOT EXISTS ${quoteIdentifier(this.database)}`);
    } finally {
      await connection.end().catch(() => {});
    }
  }

  async #prepareTables(): Promise<void> {
    const { create } = this.#sql;
    await this.#pool.query(create.meta);
    let version = await this.#schemaVersion();
    if (version === MYSQL_SCHEMA_VERSION) return;
    if (version !== undefined && version > MYSQL_SCHEMA_VERSION) this.#refuseNewer(version);
    // DDL commits on its own in MySQL; IF NOT EXISTS and the upsert let several processes do this at once.
    await this.#pool.query(create.kv);
    await this.#pool.query(
      `INSERT INTO ${quoteIdentifier(this.tables.meta)} (name, value) VALUES ('schema_version', ?) ON DUPLICATE KEY UPDATE name = name`,
      [String(MYSQL_SCHEMA_VERSION)],
    );
    version = await this.#schemaVersion();
    if (version !== undefined && version > MYSQL_SCHEMA_VERSION) this.#refuseNewer(version);
  }

  async #schemaVersion(): Promise<number | undefined> {
    const [rows] = await this.#pool.query<RowDataPacket[]>(
      `SELECT value FROM ${quoteIdentifier(this.tables.meta)} WHERE name = 'schema_version'`,
    );
    if (rows.length === 0) return undefined;
    const raw = Buffer.isBuffer(rows[0]!.value) ? rows[0]!.value.toString("utf8") : String(rows[0]!.value);
    const version = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(version)) {
      throw new CorruptError(
        `The table ${this.tables.meta} of ${this.url} has a cairn schema version "${raw}" that is not a number.`,
      );
    }
    return version;
  }

  #refuseNewer(version: number): never {
    throw new UnsupportedError(
      `The tables of ${this.url} have cairn schema version ${version}, newer than the ${MYSQL_SCHEMA_VERSION} this build understands; upgrade cairn to open them.`,
    );
  }

  #checkOpen(): void {
    if (this.#closed) throw new UnavailableError(`The MySQL engine for ${this.url} is closed.`);
  }

  /** Runs `fn` on the open engine, mapping native errors to core's. */
  async #run<T>(fn: () => Promise<T>): Promise<T> {
    this.#checkOpen();
    try {
      return await fn();
    } catch (error) {
      throw this.#error(error);
    }
  }

  /**
   * Runs one autocommitted statement, again when the server rolled it back because of a deadlock or a lock
   * wait: it then changed nothing, so running it again is safe.
   */
  async #retrying<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (error) {
        if (!isRetryable(error) || attempt >= TRANSACTION_ATTEMPTS) throw error;
        await backoff(attempt);
      }
    }
  }

  /**
   * Runs `fn` in a transaction on one pooled connection, again from the start when the server rolled it back
   * because of a deadlock or a lock wait (each attempt sees the state anew, so CAS stays exact).
   */
  async #transaction<T>(fn: (connection: PoolConnection) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const connection = await this.#pool.getConnection();
      let healthy = true;
      try {
        await connection.query("START TRANSACTION");
        const result = await fn(connection);
        await connection.query("COMMIT");
        return result;
      } catch (error) {
        await connection.query("ROLLBACK").catch(() => {
          healthy = false;
        });
        if (!isRetryable(error) || attempt >= TRANSACTION_ATTEMPTS) throw error;
        await backoff(attempt);
      } finally {
        if (healthy) connection.release();
        else connection.destroy();
      }
    }
  }

  /** Refuses a value the server could not receive in one statement (its `max_allowed_packet`). */
  #checkFits(key: string, value: number, keyBytes: number): void {
    if (value + keyBytes + PACKET_SLACK > this.#maxPacket) {
      throw new InvalidArgumentError(
        `The value of key ${JSON.stringify(key.slice(0, 40))} is ${value} bytes, more than the MySQL server at ${this.url} accepts in one statement (max_allowed_packet is ${this.#maxPacket} bytes); raise max_allowed_packet on the server.`,
      );
    }
  }

  async get(partition: string, key: string): Promise<Uint8Array | undefined> {
    const p = encodePartition(partition);
    const k = splitKey(encodeKey(key));
    return this.#run(() => this.#get(this.#pool, p, k));
  }

  async #get(q: Queryable, p: Buffer, k: StoredKey): Promise<Buffer | undefined> {
    const [rows] = await q.execute<RowDataPacket[]>({ sql: this.#sql.get, rowsAsArray: true }, [
      p,
      k.head,
      k.hash,
    ]);
    return rows[0]?.[0] as Buffer | undefined;
  }

  async set(partition: string, key: string, value: Uint8Array): Promise<void> {
    const p = encodePartition(partition);
    const bytes = encodeKey(key);
    const v = asBuffer(checkValue(value, key));
    this.#checkFits(key, v.length, bytes.length + p.length);
    const k = splitKey(bytes);
    await this.#run(() =>
      this.#retrying(() => this.#pool.execute(this.#sql.upsert, [p, k.head, k.hash, k.tail, v])),
    );
  }

  async setIf(
    partition: string,
    key: string,
    value: Uint8Array,
    expected: Uint8Array | null,
  ): Promise<boolean> {
    const p = encodePartition(partition);
    const bytes = encodeKey(key);
    const v = asBuffer(checkValue(value, key));
    const e = checkExpected(expected, key);
    this.#checkFits(key, v.length, bytes.length + p.length);
    const k = splitKey(bytes);
    return this.#run(async () => {
      if (e === null) {
        try {
          await this.#retrying(() => this.#pool.execute(this.#sql.insert, [p, k.head, k.hash, k.tail, v]));
          return true;
        } catch (error) {
          if (driverCode(error) === "ER_DUP_ENTRY") return false;
          throw error;
        }
      }
      const want = asBuffer(e);
      if (v.length + want.length + bytes.length + p.length + PACKET_SLACK <= this.#maxPacket) {
        // One statement: the row lock of the UPDATE makes the comparison and the write atomic. With mysql2's
        // FOUND_ROWS flag, affectedRows counts matched rows, so writing an equal value also reports success.
        const [result] = await this.#retrying(() =>
          this.#pool.execute<ResultSetHeader>(this.#sql.swap, [v, p, k.head, k.hash, want]),
        );
        return result.affectedRows > 0;
      }
      // Both values would not fit in one packet: lock the row, compare here, write.
      return this.#transaction(async (c) => {
        const current = await this.#lock(c, p, k);
        if (current === undefined || !current.equals(want)) return false;
        await c.execute(this.#sql.upsert, [p, k.head, k.hash, k.tail, v]);
        return true;
      });
    });
  }

  async #lock(c: Queryable, p: Buffer, k: StoredKey): Promise<Buffer | undefined> {
    const [rows] = await c.execute<RowDataPacket[]>({ sql: this.#sql.lock, rowsAsArray: true }, [
      p,
      k.head,
      k.hash,
    ]);
    return rows[0]?.[0] as Buffer | undefined;
  }

  async delete(partition: string, key: string): Promise<void> {
    const p = encodePartition(partition);
    const k = splitKey(encodeKey(key));
    await this.#run(() => this.#retrying(() => this.#pool.execute(this.#sql.remove, [p, k.head, k.hash])));
  }

  async writeBatch(ops: readonly WriteOp[]): Promise<void> {
    this.#checkOpen();
    if (ops.length === 0) return;
    // Everything is checked before anything is written. The last op on a key decides its state, so the batch
    // becomes one set of deletes and one set of writes, whose order no longer matters.
    const encoded: EncodedOp[] = new Array(ops.length);
    let partitionName: unknown;
    let p: Buffer = EMPTY;
    let previous: Buffer = EMPTY;
    // A batch in ascending order of (partition, key), as loads write, has no key twice: no need to look.
    let ascending = true;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (i === 0 || op.partition !== partitionName) {
        const next = encodePartition(op.partition);
        if (i > 0 && Buffer.compare(p, next) >= 0) ascending = false;
        p = next;
        partitionName = op.partition;
        previous = EMPTY;
      }
      const bytes = encodeKey(op.key);
      if (ascending && Buffer.compare(previous, bytes) >= 0) ascending = false;
      previous = bytes;
      const value = op.value === null ? null : asBuffer(checkValue(op.value, op.key));
      if (value) this.#checkFits(op.key, value.length, bytes.length + p.length);
      encoded[i] = { p, key: bytes, value };
    }
    let kept: Iterable<EncodedOp> = encoded;
    if (!ascending) {
      const last = new Map<string, number>();
      for (let i = 0; i < ops.length; i++)
        last.set(`${ops[i]!.partition.length}:${ops[i]!.partition}${ops[i]!.key}`, i);
      if (last.size < ops.length) kept = [...last.values()].map((i) => encoded[i]!);
    }
    const deletes: EncodedOp[] = [];
    const sets: EncodedSet[] = [];
    const large: EncodedSet[] = [];
    for (const e of kept) {
      if (e.value === null) deletes.push(e);
      else if (e.value.length > BATCH_VALUE_BYTES) large.push(e as EncodedSet);
      else sets.push(e as EncodedSet);
    }
    const ends = this.#statementEnds(sets);
    if (deletes.length === 0 && large.length === 0 && ends.length === 1) {
      // One statement is atomic by itself: no transaction, and two round trips fewer for each of a load's batches.
      await this.#run(() => this.#retrying(() => this.#insertRows(this.#pool, sets, 0, sets.length)));
      return;
    }
    await this.#run(() =>
      this.#transaction(async (c) => {
        await this.#deleteRows(c, deletes);
        for (const { p, key, value } of large) {
          const k = splitKey(key);
          await c.execute(this.#sql.upsert, [p, k.head, k.hash, k.tail, value]);
        }
        let start = 0;
        for (const end of ends) {
          await this.#insertRows(c, sets, start, end);
          start = end;
        }
      }),
    );
  }

  async #deleteRows(c: PoolConnection, rows: readonly EncodedOp[]): Promise<void> {
    let i = 0;
    while (i < rows.length) {
      const conditions: string[] = [];
      const values: Buffer[] = [];
      let bytes = 0;
      while (i < rows.length && conditions.length < STATEMENT_ROWS && bytes < STATEMENT_BYTES) {
        const { p, key } = rows[i++]!;
        const k = splitKey(key);
        conditions.push("(?, ?, ?)");
        values.push(p, k.head, k.hash);
        bytes += 2 * (p.length + k.head.length + k.hash.length) + 16;
      }
      await c.query(`${this.#sql.removeMany}${conditions.join(", ")})`, values);
    }
  }

  /**
   * Where each multi-row `INSERT` of `rows` ends: at most STATEMENT_ROWS rows and STATEMENT_BYTES of parameters
   * (less than the server's packet), and, short of STATEMENT_ROWS, a power of two of rows, so that a connection
   * prepares a dozen statements at most however batches are cut.
   */
  #statementEnds(rows: readonly EncodedSet[]): number[] {
    const limit = Math.min(STATEMENT_BYTES, this.#maxPacket - PACKET_SLACK);
    const ends: number[] = [];
    for (let i = 0; i < rows.length; ) {
      let n = 0;
      let bytes = 0;
      while (i + n < rows.length && n < STATEMENT_ROWS) {
        const { p, key, value } = rows[i + n]!;
        const size = p.length + key.length + value.length + ROW_PARAMETER_BYTES;
        if (n > 0 && bytes + size > limit) break;
        bytes += size;
        n++;
      }
      if (n < STATEMENT_ROWS) n = 2 ** Math.floor(Math.log2(n));
      i += n;
      ends.push(i);
    }
    return ends;
  }

  /**
   * Upserts `rows[start..end)` in one prepared statement: values travel as binary parameters, which the server
   * stores as they are, where text would cost it a parse of every byte (hex literals, or `LOAD DATA` fields).
   */
  async #insertRows(q: Queryable, rows: readonly EncodedSet[], start: number, end: number): Promise<void> {
    const values: Buffer[] = new Array(5 * (end - start));
    let at = 0;
    for (let i = start; i < end; i++) {
      const { p, key, value } = rows[i]!;
      const k = splitKey(key);
      values[at++] = p;
      values[at++] = k.head;
      values[at++] = k.hash;
      values[at++] = k.tail;
      values[at++] = value;
    }
    await q.execute(this.#insertMany(end - start), values);
  }

  /** The statement upserting `n` rows, built once per `n`. */
  #insertMany(n: number): string {
    let sql = this.#inserts.get(n);
    if (sql === undefined) {
      sql = `${this.#sql.insertMany}${Array.from({ length: n }, () => "(?, ?, ?, ?, ?)").join(", ")}${this.#sql.onDuplicate}`;
      this.#inserts.set(n, sql);
    }
    return sql;
  }

  scan(partition: string, options: ScanOptions = {}): AsyncGenerator<KvEntry> {
    return entries(this.scanPages(partition, options));
  }

  scanPages(partition: string, options: ScanOptions = {}): AsyncGenerator<KvEntry[]> {
    return this.#scanPages(this.#pool, partition, options, () => this.#checkOpen());
  }

  async *#scanPages(
    q: Queryable,
    partition: string,
    options: ScanOptions,
    checkOpen: () => void,
  ): AsyncGenerator<KvEntry[]> {
    checkOpen();
    const p = encodePartition(partition);
    const range = scanRange(options);
    let remaining = range.limit;
    if (remaining <= 0) return;
    const upper = range.upper ? splitKey(range.upper) : undefined;
    const lower: Lower | undefined = range.lower
      ? { ...splitKey(range.lower), inclusive: range.inclusive }
      : undefined;
    const pageSize = this.#config.pageSize;
    // Pages double while values stay small, and shrink after a large one, so that a page's values never come to
    // more than PAGE_VALUE_BYTES while small entries go by in few queries.
    let largest = 0;
    let rows = Math.min(pageSize, FIRST_PAGE_ROWS);
    const nextRows = () => {
      rows = Math.max(1, Math.min(pageSize, 2 * rows, Math.floor(PAGE_VALUE_BYTES / Math.max(largest, 64))));
      return rows;
    };
    const fetch = (from: Lower | undefined, want: number) => {
      const inline = Math.floor(PAGE_VALUE_BYTES / want);
      const promise = this.#page(q, p, from, upper, want, inline).catch((error: unknown) => {
        throw this.#error(error);
      });
      // Read ahead; an abandoned scan must not leave an unhandled rejection behind.
      promise.catch(() => {});
      return promise;
    };

    // A page never holds more rows than the scan has left to yield, so the limit needs no check per entry.
    let pending: Promise<Page> | undefined = fetch(lower, Math.min(rows, remaining));
    while (pending) {
      const page: Page = await pending;
      pending = undefined;
      for (const row of page.rows) if (row[1] !== null && row[1].length > largest) largest = row[1].length;
      // The next page is asked for before this one is handed out, so the server works while the caller does.
      const left = remaining - page.rows.length;
      if (page.next && left > 0) pending = fetch(page.next, Math.min(nextRows(), left));
      let out: KvEntry[] = [];
      for (const row of page.rows) {
        let value = row[1];
        if (value === null) {
          // A value too large to come with the page is read when the caller asks for it, as `scan` always did:
          // one such value in memory at a time, and a key the caller deleted meanwhile is not yielded.
          if (out.length > 0) {
            remaining -= out.length;
            yield out;
            out = [];
          }
          checkOpen();
          try {
            value = (await this.#get(q, p, splitKey(row[0]))) ?? null;
          } catch (error) {
            throw this.#error(error);
          }
          // Deleted since the page was read: it was not there for the whole scan.
          if (value === null) continue;
          largest = Math.max(largest, value.length);
        }
        out.push({ key: row[0].toString("utf8"), value });
      }
      if (out.length > 0) {
        remaining -= out.length;
        yield out;
      }
      if (remaining <= 0) return;
      if (!pending && page.next) pending = fetch(page.next, Math.min(nextRows(), remaining));
    }
  }

  /**
   * One page of a scan, in byte order of key. Rows come from the primary key in order of `(head, tail_hash)`:
   * byte order, except among long keys sharing one head, which are sorted here by tail. A page that ends inside
   * such a group ends before it instead; a group larger than a page is read on its own, ordered by tail.
   */
  async #page(
    q: Queryable,
    p: Buffer,
    lower: Lower | undefined,
    upper: StoredKey | undefined,
    want: number,
    inline: number,
  ): Promise<Page> {
    if (lower?.group) return this.#groupPage(q, p, lower, upper, want, inline);
    const conditions = ["p = ?"];
    const values: unknown[] = [inline, p];
    if (lower) {
      if (
        lower.tail === null ||
        (lower.tail.length === 0 && !lower.inclusive && lower.head.length < HEAD_BYTES)
      ) {
        conditions.push("head > ?");
        values.push(lower.head);
      } else if (lower.tail.length === 0 && lower.inclusive) {
        conditions.push("head >= ?");
        values.push(lower.head);
      } else {
        conditions.push(`head >= ? AND (head > ? OR tail ${lower.inclusive ? ">=" : ">"} ?)`);
        values.push(lower.head, lower.head, lower.tail);
      }
    }
    if (upper) {
      if (upper.tail.length === 0) {
        conditions.push("head < ?");
        values.push(upper.head);
      } else {
        conditions.push("head <= ? AND (head < ? OR tail < ?)");
        values.push(upper.head, upper.head, upper.tail);
      }
    }
    values.push(want);
    const [raw] = await q.query<RowDataPacket[]>({
      sql: `${this.#sql.page} WHERE ${conditions.join(" AND ")} ORDER BY head, tail_hash LIMIT ?`,
      values,
      rowsAsArray: true,
    });
    let rows = raw as unknown as PageRow[];
    if (rows.length < want) return { rows: sortGroups(rows), next: undefined };
    const lastKey = rows[rows.length - 1]![0];
    if (lastKey.length >= HEAD_BYTES) {
      let start = rows.length - 1;
      while (start > 0 && sameHead(rows[start - 1]![0], lastKey)) start--;
      if (start === 0) {
        const lastHead = lastKey.subarray(0, HEAD_BYTES);
        // The whole page is one group of long keys: read the group by tail from where the scan is.
        const within = lower && lower.tail !== null && lower.head.equals(lastHead);
        return {
          rows: [],
          next: {
            head: lastHead,
            tail: within ? lower.tail : EMPTY,
            inclusive: within ? lower.inclusive : true,
            group: true,
          },
        };
      }
      // The page may have cut the last group short: leave all of it to the next page.
      rows = rows.slice(0, start);
    }
    rows = sortGroups(rows);
    const end = splitKey(rows[rows.length - 1]![0]);
    return { rows, next: { head: end.head, tail: end.tail, inclusive: false } };
  }

  async #groupPage(
    q: Queryable,
    p: Buffer,
    lower: Lower,
    upper: StoredKey | undefined,
    want: number,
    inline: number,
  ): Promise<Page> {
    const values: unknown[] = [inline, p, lower.head, lower.tail ?? EMPTY];
    let sql = `${this.#sql.page} WHERE p = ? AND head = ? AND tail ${lower.inclusive ? ">=" : ">"} ?`;
    if (upper?.head.equals(lower.head)) {
      sql += " AND tail < ?";
      values.push(upper.tail);
    }
    values.push(want);
    // Sorted by the server, but only this group's rows: no index orders by tail.
    const [raw] = await q.query<RowDataPacket[]>({
      sql: `${sql} ORDER BY tail LIMIT ?`,
      values,
      rowsAsArray: true,
    });
    const rows = raw as unknown as PageRow[];
    if (rows.length < want) return { rows, next: { head: lower.head, tail: null, inclusive: false } };
    return {
      rows,
      next: {
        head: lower.head,
        tail: rows[rows.length - 1]![0].subarray(HEAD_BYTES),
        inclusive: false,
        group: true,
      },
    };
  }

  partitions(): AsyncGenerator<string> {
    return this.#partitions(this.#pool, () => this.#checkOpen());
  }

  async *#partitions(q: Queryable, checkOpen: () => void): AsyncGenerator<string> {
    let previous: Buffer | undefined;
    for (;;) {
      checkOpen();
      let rows: RowDataPacket[];
      try {
        // One index seek per partition instead of DISTINCT, which would read every key of every partition.
        [rows] = await q.query<RowDataPacket[]>({
          sql: previous ? this.#sql.nextPartition : this.#sql.firstPartition,
          values: previous ? [previous] : [],
          rowsAsArray: true,
        });
      } catch (error) {
        throw this.#error(error);
      }
      const row = rows[0];
      if (!row) return;
      previous = row[0] as Buffer;
      yield previous.toString("utf8");
    }
  }

  /**
   * A connection of its own in a `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` transaction: InnoDB
   * reads everything as of its start, whatever other connections commit meanwhile.
   */
  async snapshot(): Promise<EngineSnapshot> {
    this.#checkOpen();
    let connection: Connection;
    try {
      connection = this.#owned
        ? await mysql.createConnection(this.#connectionOptions())
        : await this.#pool.getConnection();
    } catch (error) {
      throw this.#error(error);
    }
    // A connection of its own has no pool to take its errors: they reach the caller through the failing query.
    if (this.#owned) connection.on("error", () => {});
    const end = async () => {
      this.#snapshots.delete(connection);
      if (this.#owned) await connection.end().catch(() => connection.destroy());
      else (connection as PoolConnection).release();
    };
    this.#snapshots.add(connection);
    try {
      await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
      await connection.query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
    } catch (error) {
      await end();
      throw this.#error(error);
    }
    let released = false;
    const checkOpen = () => {
      if (released) throw new UnavailableError(`This snapshot of ${this.url} was released.`);
      this.#checkOpen();
    };
    return {
      get: async (partition, key) => {
        const p = encodePartition(partition);
        const k = splitKey(encodeKey(key));
        checkOpen();
        try {
          return await this.#get(connection, p, k);
        } catch (error) {
          throw this.#error(error);
        }
      },
      scan: (partition, options = {}) => entries(this.#scanPages(connection, partition, options, checkOpen)),
      scanPages: (partition, options = {}) => this.#scanPages(connection, partition, options, checkOpen),
      partitions: () => this.#partitions(connection, checkOpen),
      release: async () => {
        if (released) return;
        released = true;
        if (!this.#snapshots.has(connection)) return;
        await connection.query("COMMIT").catch(() => {});
        await end();
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const connection of this.#snapshots) {
      if (this.#owned) connection.destroy();
      else (connection as PoolConnection).release();
    }
    this.#snapshots.clear();
    if (this.#owned) {
      try {
        await this.#pool.end();
      } catch (error) {
        throw this.#error(error);
      }
    }
  }
}

/** The entries of `pages` one by one: `scan` is `scanPages` flattened, so both go through the same reads. */
async function* entries(pages: AsyncIterable<readonly KvEntry[]>): AsyncGenerator<KvEntry> {
  for await (const page of pages) yield* page;
}

/** A short random pause before retrying, longer with every attempt, so that racing writers spread out. */
function backoff(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
}

/** Whether two keys share a whole head: both are at least {@link HEAD_BYTES} long and start alike. */
function sameHead(a: Buffer, b: Buffer): boolean {
  return a.length >= HEAD_BYTES && b.length >= HEAD_BYTES && a.compare(b, 0, HEAD_BYTES, 0, HEAD_BYTES) === 0;
}

/**
 * Sorts each run of rows sharing one whole head by key (that is, by tail): rows arrive ordered by head, then by
 * the hash of the tail.
 */
function sortGroups(rows: PageRow[]): PageRow[] {
  for (let i = 0; i < rows.length; ) {
    let j = i + 1;
    if (rows[i]![0].length >= HEAD_BYTES) {
      while (j < rows.length && sameHead(rows[j]![0], rows[i]![0])) j++;
      if (j - i > 1) {
        const sorted = rows.slice(i, j).sort((a, b) => Buffer.compare(a[0], b[0]));
        rows.splice(i, j - i, ...sorted);
      }
    }
    i = j;
  }
  return rows;
}

function statements(kv: string, meta: string) {
  const columns = "(p, head, tail_hash, tail, value)";
  return {
    create: tableStatements(kv, meta),
    get: `SELECT value FROM ${kv} WHERE p = ? AND head = ? AND tail_hash = ?`,
    lock: `SELECT value FROM ${kv} WHERE p = ? AND head = ? AND tail_hash = ? FOR UPDATE`,
    // VALUES() is deprecated in MySQL 8.0.20+ but the only upsert syntax MariaDB shares with it.
    upsert: `INSERT INTO ${kv} ${columns} VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value)`,
    insert: `INSERT INTO ${kv} ${columns} VALUES (?, ?, ?, ?, ?)`,
    swap: `UPDATE ${kv} SET value = ? WHERE p = ? AND head = ? AND tail_hash = ? AND value = ?`,
    remove: `DELETE FROM ${kv} WHERE p = ? AND head = ? AND tail_hash = ?`,
    // A row-constructor IN list: MariaDB's range optimizer handles it ten times faster than a chain of ORs.
    removeMany: `DELETE FROM ${kv} WHERE (p, head, tail_hash) IN (`,
    insertMany: `INSERT INTO ${kv} ${columns} VALUES `,
    onDuplicate: " ON DUPLICATE KEY UPDATE value = VALUES(value)",
    page: `SELECT CONCAT(head, tail), IF(LENGTH(value) <= ?, value, NULL) FROM ${kv}`,
    firstPartition: `SELECT p FROM ${kv} ORDER BY p LIMIT 1`,
    nextPartition: `SELECT p FROM ${kv} WHERE p > ? ORDER BY p LIMIT 1`,
  };
}
