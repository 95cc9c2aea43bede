import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import {
  type AttributeValue,
  BatchGetItemCommand,
  BatchWriteItemCommand,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  type QueryCommandOutput,
  type WriteRequest,
} from "@aws-sdk/client-dynamodb";
import {
  CorruptError,
  checkExpected,
  checkValue,
  type EngineCapabilities,
  encodeKey,
  encodePartition,
  InvalidArgumentError,
  type KvEntry,
  type MetadataEngine,
  NotFoundError,
  type ScanOptions,
  scanRange,
  UnavailableError,
  UnsupportedError,
  type WriteOp,
} from "@cairn/core";
import { mapDynamodbError } from "./errors.js";
import {
  ATTR,
  branchRange,
  CHUNK_BYTES,
  CHUNKED_PK,
  chunkSk,
  chunksPk,
  INLINE_MAX,
  type ItemKey,
  isBranch,
  type KeyPlace,
  leafInRange,
  level0Pk,
  levelPk,
  META_PK,
  PARTITIONS_PK,
  placeKey,
  type RelativeRange,
  SCHEMA_SK,
  SEGMENT,
  sortKeyBounds,
} from "./layout.js";

/** The version of the item layout this build writes. A table with a newer one is refused, never downgraded. */
export const DYNAMODB_SCHEMA_VERSION = 1;

export interface DynamodbEngineOptions {
  /** Name of the table (3–255 characters of `A-Z a-z 0-9 _ . -`). Required. */
  table: string;
  /** AWS region; when absent, the SDK's standard chain (`AWS_REGION`, profile). */
  region?: string;
  /** Endpoint URL, e.g. `http://127.0.0.1:8000` for DynamoDB Local or dynalite; when absent, AWS's. */
  endpoint?: string;
  /**
   * Create the table (on-demand billing) when it does not exist, and wait until it is active. When `false`, a
   * missing table is `NOT_FOUND`.
   * @default true
   */
  create?: boolean;
  /**
   * Most `BatchWriteItem` requests of one `writeBatch` in flight at once.
   * @default 8
   */
  concurrency?: number;
  /**
   * Most items a `Query` of `scan` or `partitions` reads per request (DynamoDB also stops a page at 1 MB).
   * @default 1000
   */
  pageSize?: number;
  /**
   * Milliseconds to wait for a connection before an attempt fails; with `maxAttempts`, a server that is down
   * or unreachable fails a call within seconds.
   * @default 3000
   */
  connectTimeout?: number;
  /**
   * Milliseconds a response may stay silent before an attempt fails (a hung server). Requests are at most
   * about 1 MiB, so this is generous.
   * @default 20000
   */
  requestTimeout?: number;
  /**
   * Attempts of each request, including the SDK's retries of throttling and network errors.
   * @default 3
   */
  maxAttempts?: number;
  /**
   * A ready client to use instead of creating one (tests, custom credentials or middleware). The engine does
   * not destroy it on close: its owner does. `region`, `endpoint`, `connectTimeout`, `requestTimeout` and `maxAttempts` are
   * then ignored.
   */
  client?: DynamoDBClient;
  /** How to name the table in messages, e.g. the URL it was opened from (secrets removed). */
  location?: string;
}

/** A {@link MetadataEngine} kept in one DynamoDB table. */
export interface DynamodbEngine extends MetadataEngine {
  readonly kind: "dynamodb";
  /** The table's name. */
  readonly table: string;
}

const CAPABILITIES: EngineCapabilities = Object.freeze({ atomicBatch: false, consistency: "none" });

/** Most items of one `BatchWriteItem` (DynamoDB's limit) and of one `BatchGetItem`. */
const WRITE_GROUP = 25;
const READ_GROUP = 100;
/**
 * Most bytes of values in one `BatchWriteItem`, far under DynamoDB's 16 MB per request: dynalite takes longer
 * per item for a few big requests than for more small ones, and smaller requests spread over `concurrency`.
 */
const WRITE_GROUP_BYTES = 1024 * 1024;
/**
 * A batch of at most this many distinct keys is written with one PutItem/DeleteItem per key (concurrently):
 * each returns the head it replaced, so no read of the chunked-partition marks is needed.
 */
const SMALL_BATCH = 4;
/** Rounds of `UnprocessedItems` retries before a batch gives up. */
const BATCH_ROUNDS = 12;
/** Most item keys remembered as existing (branch items, partition index items); they are never deleted. */
const KNOWN_MAX = 100_000;
const TABLE_NAME = /^[A-Za-z0-9_.-]{3,255}$/;
const EMPTY = Buffer.alloc(0);

type Item = Record<string, AttributeValue>;

const b = (bytes: Uint8Array): AttributeValue => ({ B: bytes });
const keyItem = ({ pk, sk }: ItemKey): Item => ({ [ATTR.pk]: b(pk), [ATTR.sk]: b(sk) });
const itemId = ({ pk, sk }: ItemKey): string =>
  `${pk.length}:${pk.toString("latin1")}${sk.toString("latin1")}`;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function bytesOf(item: Item | undefined, name: string): Uint8Array | undefined {
  const v = item?.[name];
  return v && "B" in v ? v.B : undefined;
}

function numberOf(item: Item, name: string): number | undefined {
  const v = item[name];
  return v && "N" in v && v.N !== undefined ? Number(v.N) : undefined;
}

/** What a head item says about its value. */
type Head = { inline: Uint8Array } | { gen: Uint8Array; chunks: number; size: number };

/**
 * Opens a DynamoDB metadata engine on one table: creates the table when it is missing (unless `create` is
 * false), waits until it is active, and checks its schema version.
 *
 * @throws InvalidArgumentError when an option is invalid, or the table is not laid out as cairn's.
 * @throws NotFoundError when the table does not exist and `create` is false.
 * @throws UnsupportedError when the table was written by a newer cairn (schema version).
 * @throws UnavailableError when DynamoDB cannot be reached.
 * @throws PermissionDeniedError when no credentials are found or they are refused.
 */
export async function createDynamodbEngine(options: DynamodbEngineOptions): Promise<DynamodbEngine> {
  const config = Object.freeze({
    table: options.table,
    region: options.region,
    endpoint: options.endpoint,
    create: options.create ?? true,
    concurrency: options.concurrency ?? 8,
    pageSize: options.pageSize ?? 1000,
    connectTimeout: options.connectTimeout ?? 3000,
    requestTimeout: options.requestTimeout ?? 20_000,
    maxAttempts: options.maxAttempts ?? 3,
    client: options.client,
    location: options.location ?? `dynamodb://${options.table}`,
  });
  if (typeof config.table !== "string" || !TABLE_NAME.test(config.table)) {
    throw new InvalidArgumentError(
      `The DynamoDB table name ${JSON.stringify(config.table)} of ${config.location} must be 3 to 255 characters of A-Z, a-z, 0-9, "_", "." and "-".`,
    );
  }
  for (const [name, value, min] of [
    ["concurrency", config.concurrency, 1],
    ["pageSize", config.pageSize, 1],
    ["connectTimeout", config.connectTimeout, 1],
    ["requestTimeout", config.requestTimeout, 1],
    ["maxAttempts", config.maxAttempts, 1],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < min) {
      throw new InvalidArgumentError(
        `${name} of ${config.location} must be a whole number ≥ ${min}, got ${value}.`,
      );
    }
  }
  const engine = new DynamodbEngineImpl(config);
  try {
    await engine.prepare();
  } catch (error) {
    await engine.close();
    throw error;
  }
  return engine;
}

type Config = Readonly<
  Required<Omit<DynamodbEngineOptions, "region" | "endpoint" | "client">> &
    Pick<DynamodbEngineOptions, "region" | "endpoint" | "client">
>;

class DynamodbEngineImpl implements DynamodbEngine {
  readonly kind = "dynamodb" as const;
  readonly capabilities = CAPABILITIES;
  readonly table: string;
  readonly #config: Config;
  readonly #client: DynamoDBClient;
  readonly #owned: boolean;
  readonly #where: string;
  #closed = false;
  /** Branch and partition index items known to exist: they are never deleted, so this stays true. */
  readonly #known = new Set<string>();
  /** Partitions known to have held a chunked value (their mark is never deleted either). */
  readonly #chunked = new Set<string>();

  constructor(config: Config) {
    this.#config = config;
    this.table = config.table;
    this.#where = config.location;
    if (config.client) {
      this.#client = config.client;
      this.#owned = false;
    } else {
      this.#client = new DynamoDBClient({
        ...(config.region ? { region: config.region } : {}),
        ...(config.endpoint ? { endpoint: config.endpoint } : {}),
        maxAttempts: config.maxAttempts,
        // Resolve each command's middleware once per command class instead of on every request, where it
        // costs more CPU than signing and parsing together. No command here adds middleware of its own.
        cacheMiddleware: true,
        // socketTimeout fails an attempt after that much silence; the handler's requestTimeout would only warn.
        requestHandler: { connectionTimeout: config.connectTimeout, socketTimeout: config.requestTimeout },
      });
      this.#owned = true;
    }
  }

  // ---- plumbing ----

  #check(): void {
    if (this.#closed) throw new UnavailableError(`The DynamoDB engine for ${this.#where} is closed.`);
  }

  /** Sends `command`, mapping failures to core's errors with a sentence saying `what` was being done. */
  async #send<T>(command: object, what: string): Promise<T> {
    this.#check();
    try {
      // The client's send() is typed per command through overloads a generic helper cannot name; callers
      // state the output type they read.
      return (await this.#client.send(command as never)) as T;
    } catch (error) {
      throw mapDynamodbError(error, this.#where, what);
    }
  }

  #remember(id: string, into: Set<string>): void {
    if (into.size >= KNOWN_MAX) into.clear();
    into.add(id);
  }

  /** Runs `task` on every item with at most `concurrency` at once; waits for all started ones before rejecting. */
  async #pool<T>(items: readonly T[], task: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    let failure: { error: unknown } | undefined;
    const worker = async () => {
      while (!failure && next < items.length) {
        const item = items[next++]!;
        try {
          await task(item);
        } catch (error) {
          failure ??= { error };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#config.concurrency, items.length) }, worker));
    if (failure) throw failure.error;
  }

  /**
   * Writes `requests` with `BatchWriteItem`: groups of at most 25 items and 4 MB, several in flight, and the
   * `UnprocessedItems` of each retried with exponential backoff and full jitter. Not atomic.
   */
  async #batchWrite(requests: readonly WriteRequest[], what: string): Promise<void> {
    const groups: WriteRequest[][] = [];
    let group: WriteRequest[] = [];
    let bytes = 0;
    for (const request of requests) {
      const size = request.PutRequest ? (bytesOf(request.PutRequest.Item, ATTR.value)?.length ?? 0) : 0;
      if (group.length === WRITE_GROUP || (group.length > 0 && bytes + size > WRITE_GROUP_BYTES)) {
        groups.push(group);
        group = [];
        bytes = 0;
      }
      group.push(request);
      bytes += size;
    }
    if (group.length > 0) groups.push(group);
    await this.#pool(groups, async (first) => {
      let pending = first;
      for (let round = 1; ; round++) {
        const out = await this.#send<{ UnprocessedItems?: Record<string, WriteRequest[]> }>(
          new BatchWriteItemCommand({ RequestItems: { [this.table]: pending } }),
          what,
        );
        pending = out.UnprocessedItems?.[this.table] ?? [];
        if (pending.length === 0) return;
        if (round >= BATCH_ROUNDS) {
          throw new UnavailableError(
            `DynamoDB for ${this.#where} left ${pending.length} items unprocessed after ${round} attempts to ${what}.`,
          );
        }
        await sleep(Math.random() * Math.min(2000, 25 * 2 ** round));
      }
    });
  }

  /** `GetItem` of `keys` with `BatchGetItem` (100 per request, unprocessed keys retried), consistent reads. */
  async #batchGet(keys: readonly ItemKey[], projection: string[], what: string): Promise<Item[]> {
    const found: Item[] = [];
    const groups: ItemKey[][] = [];
    for (let i = 0; i < keys.length; i += READ_GROUP) groups.push(keys.slice(i, i + READ_GROUP));
    const names = Object.fromEntries(projection.map((name, i) => [`#a${i}`, name]));
    await this.#pool(groups, async (group) => {
      let pending: Item[] = group.map(keyItem);
      for (let round = 1; pending.length > 0; round++) {
        const out = await this.#send<{
          Responses?: Record<string, Item[]>;
          UnprocessedKeys?: Record<string, { Keys?: Item[] }>;
        }>(
          new BatchGetItemCommand({
            RequestItems: {
              [this.table]: {
                Keys: pending,
                ConsistentRead: true,
                ProjectionExpression: Object.keys(names).join(", "),
                ExpressionAttributeNames: names,
              },
            },
          }),
          what,
        );
        found.push(...(out.Responses?.[this.table] ?? []));
        pending = out.UnprocessedKeys?.[this.table]?.Keys ?? [];
        if (pending.length > 0) {
          if (round >= BATCH_ROUNDS) {
            throw new UnavailableError(
              `DynamoDB for ${this.#where} left ${pending.length} keys unread after ${round} attempts to ${what}.`,
            );
          }
          await sleep(Math.random() * Math.min(2000, 25 * 2 ** round));
        }
      }
    });
    return found;
  }

  // ---- table and schema ----

  async prepare(): Promise<void> {
    await this.#ensureTable();
    await this.#checkSchema();
  }

  async #ensureTable(): Promise<void> {
    let status: string | undefined;
    try {
      status = await this.#describe();
    } catch (error) {
      if ((error as { code?: string }).code !== "NOT_FOUND") throw error;
      if (!this.#config.create) {
        throw new NotFoundError(
          `The DynamoDB table "${this.table}" of ${this.#where} does not exist (and create=false).`,
          { cause: error },
        );
      }
      await this.#createTable();
      status = await this.#describe();
    }
    // A table being created (by us or another process) becomes ACTIVE within seconds on AWS.
    const deadline = Date.now() + 120_000;
    for (let wait = 50; status !== "ACTIVE" && status !== "UPDATING"; wait = Math.min(1000, wait * 2)) {
      if (Date.now() > deadline) {
        throw new UnavailableError(
          `The DynamoDB table "${this.table}" of ${this.#where} did not become active within 2 minutes (it is ${status}).`,
        );
      }
      await sleep(wait);
      status = await this.#describe();
    }
  }

  /** The table's status, after checking that its keys are laid out as this engine's. */
  async #describe(): Promise<string | undefined> {
    const out = await this.#send<{
      Table?: {
        TableStatus?: string;
        KeySchema?: { AttributeName?: string; KeyType?: string }[];
        AttributeDefinitions?: { AttributeName?: string; AttributeType?: string }[];
      };
    }>(new DescribeTableCommand({ TableName: this.table }), `describe the table "${this.table}"`);
    const table = out.Table ?? {};
    const types = new Map((table.AttributeDefinitions ?? []).map((d) => [d.AttributeName, d.AttributeType]));
    const schema = (table.KeySchema ?? []).map(
      (k) => `${k.AttributeName}:${k.KeyType}:${types.get(k.AttributeName)}`,
    );
    if (schema.join(",") !== `${ATTR.pk}:HASH:B,${ATTR.sk}:RANGE:B`) {
      throw new InvalidArgumentError(
        `The DynamoDB table "${this.table}" of ${this.#where} is not a cairn table: its key is (${schema.join(", ")}), not a binary "${ATTR.pk}" and "${ATTR.sk}".`,
      );
    }
    return table.TableStatus;
  }

  async #createTable(): Promise<void> {
    try {
      await this.#send(
        new CreateTableCommand({
          TableName: this.table,
          BillingMode: "PAY_PER_REQUEST",
          AttributeDefinitions: [
            { AttributeName: ATTR.pk, AttributeType: "B" },
            { AttributeName: ATTR.sk, AttributeType: "B" },
          ],
          KeySchema: [
            { AttributeName: ATTR.pk, KeyType: "HASH" },
            { AttributeName: ATTR.sk, KeyType: "RANGE" },
          ],
        }),
        `create the table "${this.table}"`,
      );
    } catch (error) {
      // Another process created it first: fine, it is waited for like ours.
      const cause = (error as { cause?: { name?: string } }).cause;
      if (cause?.name !== "ResourceInUseException") throw error;
    }
  }

  async #checkSchema(): Promise<void> {
    const what = "read the schema version";
    const key = { pk: META_PK, sk: SCHEMA_SK };
    for (let attempt = 0; attempt < 3; attempt++) {
      const out = await this.#send<{ Item?: Item }>(
        new GetItemCommand({ TableName: this.table, Key: keyItem(key), ConsistentRead: true }),
        what,
      );
      if (out.Item) {
        const version = numberOf(out.Item, ATTR.version);
        if (version === undefined || !Number.isInteger(version)) {
          throw new InvalidArgumentError(
            `The DynamoDB table "${this.table}" of ${this.#where} has a schema version item that is not a number.`,
          );
        }
        if (version > DYNAMODB_SCHEMA_VERSION) {
          throw new UnsupportedError(
            `The DynamoDB table "${this.table}" of ${this.#where} has cairn schema version ${version}, newer than the ${DYNAMODB_SCHEMA_VERSION} this build understands; upgrade cairn to open it.`,
          );
        }
        return;
      }
      try {
        await this.#client.send(
          new PutItemCommand({
            TableName: this.table,
            Item: { ...keyItem(key), [ATTR.version]: { N: String(DYNAMODB_SCHEMA_VERSION) } },
            ConditionExpression: "attribute_not_exists(#s)",
            ExpressionAttributeNames: { "#s": ATTR.sk },
          }),
        );
        return;
      } catch (error) {
        // Another process wrote it first: read what it wrote.
        if ((error as { name?: string }).name !== "ConditionalCheckFailedException") {
          throw mapDynamodbError(error, this.#where, "write the schema version");
        }
      }
    }
  }

  // ---- values ----

  /** What `item` (a head) holds. */
  #head(item: Item): Head {
    const gen = bytesOf(item, ATTR.gen);
    if (gen) {
      return { gen, chunks: numberOf(item, ATTR.chunks) ?? 0, size: numberOf(item, ATTR.size) ?? 0 };
    }
    return { inline: bytesOf(item, ATTR.value) ?? new Uint8Array(0) };
  }

  /** The bytes of a chunked value, or `undefined` when chunks are missing (the head was replaced meanwhile). */
  async #readChunks(gen: Uint8Array, chunks: number, size: number): Promise<Uint8Array | undefined> {
    const out = Buffer.allocUnsafe(size);
    let offset = 0;
    let count = 0;
    let start: Item | undefined;
    do {
      const page = await this.#send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: "#p = :p",
          ExpressionAttributeNames: { "#p": ATTR.pk },
          ExpressionAttributeValues: { ":p": b(chunksPk(gen)) },
          ConsistentRead: true,
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
        "read the chunks of a large value",
      );
      for (const item of page.Items ?? []) {
        const bytes = bytesOf(item, ATTR.value) ?? EMPTY;
        if (offset + bytes.length > size) return undefined;
        out.set(bytes, offset);
        offset += bytes.length;
        count++;
      }
      start = page.LastEvaluatedKey;
    } while (start);
    return count === chunks && offset === size ? out : undefined;
  }

  /**
   * The value held by the head `item` of the leaf at `leaf`, with the head it was read from; `undefined` when
   * the key is absent. A chunked value is read whole from one generation: when its chunks are gone (another
   * connection replaced the value and removed them), the head is read again.
   */
  async #value(
    item: Item | undefined,
    leaf: ItemKey,
    key: string,
  ): Promise<{ value: Uint8Array; head: Head } | undefined> {
    for (let attempt = 0; ; attempt++) {
      if (!item) return undefined;
      const head = this.#head(item);
      if ("inline" in head) return { value: head.inline, head };
      const value = await this.#readChunks(head.gen, head.chunks, head.size);
      if (value) return { value, head };
      const again = await this.#getItem(leaf);
      const gen = bytesOf(again, ATTR.gen);
      if ((gen && Buffer.compare(gen, head.gen) === 0) || attempt >= 100) {
        throw new CorruptError(
          `The value of key ${JSON.stringify(key.slice(0, 80))} in ${this.#where} is missing chunks of its generation ${Buffer.from(head.gen).toString("hex")}.`,
        );
      }
      item = again;
    }
  }

  async #getItem(key: ItemKey): Promise<Item | undefined> {
    const out = await this.#send<{ Item?: Item }>(
      new GetItemCommand({ TableName: this.table, Key: keyItem(key), ConsistentRead: true }),
      "read a key",
    );
    return out.Item;
  }

  /**
   * The head item to write for `value` at `leaf`, and the chunk items to write before it (values over
   * {@link INLINE_MAX} bytes, split under a new random generation).
   */
  #headFor(leaf: ItemKey, value: Uint8Array): { head: Item; chunks: WriteRequest[] } {
    if (value.length <= INLINE_MAX) return { head: { ...keyItem(leaf), [ATTR.value]: b(value) }, chunks: [] };
    const gen = randomBytes(16);
    const pk = chunksPk(gen);
    const chunks: WriteRequest[] = [];
    for (let i = 0, offset = 0; offset < value.length; i++, offset += CHUNK_BYTES) {
      chunks.push({
        PutRequest: {
          Item: {
            [ATTR.pk]: b(pk),
            [ATTR.sk]: b(chunkSk(i)),
            [ATTR.value]: b(value.subarray(offset, offset + CHUNK_BYTES)),
          },
        },
      });
    }
    return {
      head: {
        ...keyItem(leaf),
        [ATTR.gen]: b(gen),
        [ATTR.chunks]: { N: String(chunks.length) },
        [ATTR.size]: { N: String(value.length) },
      },
      chunks,
    };
  }

  /** Removes the chunk items of the heads in `heads` that were chunked (they were replaced or deleted). */
  async #dropChunks(heads: readonly (Item | undefined)[]): Promise<void> {
    const deletes: WriteRequest[] = [];
    for (const item of heads) {
      if (!item) continue;
      const head = this.#head(item);
      if ("inline" in head) continue;
      const pk = chunksPk(head.gen);
      for (let i = 0; i < head.chunks; i++)
        deletes.push({ DeleteRequest: { Key: keyItem({ pk, sk: chunkSk(i) }) } });
    }
    if (deletes.length > 0) await this.#batchWrite(deletes, "remove the chunks of a replaced value");
  }

  /** Items that must exist before a head of `partition` at `place` is written (index entry, branches). */
  #prerequisites(partition: Buffer, partitionName: string, place: KeyPlace, chunked: boolean): ItemKey[] {
    const needed: ItemKey[] = [];
    const index = { pk: PARTITIONS_PK, sk: partition };
    if (!this.#known.has(itemId(index))) needed.push(index);
    if (chunked && !this.#chunked.has(partitionName)) needed.push({ pk: CHUNKED_PK, sk: partition });
    for (const branch of place.branches) if (!this.#known.has(itemId(branch))) needed.push(branch);
    return needed;
  }

  async #ensure(items: readonly ItemKey[], what: string): Promise<void> {
    if (items.length === 0) return;
    if (items.length === 1) {
      await this.#send(new PutItemCommand({ TableName: this.table, Item: keyItem(items[0]!) }), what);
    } else {
      await this.#batchWrite(
        items.map((k) => ({ PutRequest: { Item: keyItem(k) } })),
        what,
      );
    }
    for (const item of items) {
      if (item.pk === CHUNKED_PK) this.#remember(item.sk.toString("utf8"), this.#chunked);
      else this.#remember(itemId(item), this.#known);
    }
  }

  // ---- the contract ----

  async get(partition: string, key: string): Promise<Uint8Array | undefined> {
    const p = encodePartition(partition);
    const k = encodeKey(key);
    this.#check();
    const { leaf } = placeKey(p, k);
    return (await this.#value(await this.#getItem(leaf), leaf, key))?.value;
  }

  async set(partition: string, key: string, value: Uint8Array): Promise<void> {
    const p = encodePartition(partition);
    const k = encodeKey(key);
    const v = checkValue(value, key);
    this.#check();
    await this.#put(partition, p, k, v);
  }

  /** Writes one key (validated): index items, then chunks, then the head; then drops the chunks it replaced. */
  async #put(partition: string, p: Buffer, k: Buffer, v: Uint8Array): Promise<void> {
    const place = placeKey(p, k);
    const { head, chunks } = this.#headFor(place.leaf, v);
    await this.#ensure(
      this.#prerequisites(p, partition, place, chunks.length > 0),
      "write a key's index items",
    );
    if (chunks.length > 0) await this.#batchWrite(chunks, "write the chunks of a large value");
    const out = await this.#send<{ Attributes?: Item }>(
      new PutItemCommand({ TableName: this.table, Item: head, ReturnValues: "ALL_OLD" }),
      "write a key",
    );
    await this.#dropChunks([out.Attributes]);
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
    this.#check();
    const place = placeKey(p, k);
    const names: Record<string, string> = {};
    const values: Record<string, AttributeValue> = {};
    let condition: string;
    if (expected === null) {
      condition = "attribute_not_exists(#s)";
      names["#s"] = ATTR.sk;
    } else if (expected.length <= INLINE_MAX) {
      // A value this small is always kept whole in its head, so the comparison is DynamoDB's own.
      condition = "#v = :v";
      names["#v"] = ATTR.value;
      values[":v"] = b(expected);
    } else {
      // A chunked value is compared here, then the swap is conditioned on the generation that was compared:
      // generations are random and never reused, so an unchanged generation means an unchanged value.
      const current = await this.#value(await this.#getItem(place.leaf), place.leaf, key);
      if (!current || "inline" in current.head || Buffer.compare(current.value, expected) !== 0) return false;
      condition = "#g = :g";
      names["#g"] = ATTR.gen;
      values[":g"] = b(current.head.gen);
    }
    const { head, chunks } = this.#headFor(place.leaf, v);
    await this.#ensure(
      this.#prerequisites(p, partition, place, chunks.length > 0),
      "write a key's index items",
    );
    if (chunks.length > 0) await this.#batchWrite(chunks, "write the chunks of a large value");
    let old: Item | undefined;
    try {
      const out = await this.#client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: head,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ...(Object.keys(values).length > 0 ? { ExpressionAttributeValues: values } : {}),
          ReturnValues: "ALL_OLD",
        }),
      );
      old = out.Attributes;
    } catch (error) {
      if ((error as { name?: string }).name === "ConditionalCheckFailedException") {
        await this.#dropChunks([head]);
        return false;
      }
      throw mapDynamodbError(error, this.#where, "compare-and-swap a key");
    }
    await this.#dropChunks([old]);
    return true;
  }

  async delete(partition: string, key: string): Promise<void> {
    const p = encodePartition(partition);
    const k = encodeKey(key);
    this.#check();
    await this.#remove(p, k);
  }

  /** Deletes one key (validated), then the chunks of the value it held. */
  async #remove(p: Buffer, k: Buffer): Promise<void> {
    const { leaf } = placeKey(p, k);
    const out = await this.#send<{ Attributes?: Item }>(
      new DeleteItemCommand({ TableName: this.table, Key: keyItem(leaf), ReturnValues: "ALL_OLD" }),
      "delete a key",
    );
    await this.#dropChunks([out.Attributes]);
  }

  /**
   * Leaf items of the collection below `prefix` whose keys are in `range`, in byte order of key, descending
   * into branches as they come: a depth-first walk that holds one page per level (at most five).
   */
  async *#walk(
    partition: Buffer,
    prefix: Buffer,
    range: RelativeRange,
    budget: { remaining: number },
  ): AsyncGenerator<{ key: Buffer; item: Item }> {
    const bounds = sortKeyBounds(range);
    if (!bounds) return;
    const names: Record<string, string> = { "#p": ATTR.pk };
    const values: Record<string, AttributeValue> = { ":p": b(levelPk(partition, prefix)) };
    let condition = "#p = :p";
    if (bounds.from || bounds.to) names["#s"] = ATTR.sk;
    if (bounds.from) values[":from"] = b(bounds.from);
    if (bounds.to) values[":to"] = b(bounds.to);
    if (bounds.from && bounds.to) condition += " AND #s BETWEEN :from AND :to";
    else if (bounds.from) condition += " AND #s >= :from";
    else if (bounds.to) condition += " AND #s <= :to";
    let start: Item | undefined;
    do {
      const page = await this.#send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: condition,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ConsistentRead: true,
          // One more than needed, so that a leaf just outside the range does not cost another round trip.
          Limit: Math.max(1, Math.min(this.#config.pageSize, budget.remaining + 1)),
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
        "scan a partition",
      );
      for (const item of page.Items ?? []) {
        const sk = Buffer.from(bytesOf(item, ATTR.sk) ?? EMPTY);
        if (isBranch(sk)) {
          const segment = sk.subarray(0, SEGMENT);
          const inner = branchRange(segment, range);
          if (inner) yield* this.#walk(partition, Buffer.concat([prefix, segment]), inner, budget);
        } else if (leafInRange(sk, range)) {
          yield { key: prefix.length === 0 ? sk : Buffer.concat([prefix, sk]), item };
        }
        if (budget.remaining <= 0) return;
      }
      start = page.LastEvaluatedKey;
    } while (start);
  }

  async *scan(partition: string, options: ScanOptions = {}): AsyncGenerator<KvEntry> {
    const p = encodePartition(partition);
    const { lower, inclusive, upper, limit } = scanRange(options);
    this.#check();
    const budget = { remaining: limit };
    if (budget.remaining <= 0) return;
    for await (const { key, item } of this.#walk(p, EMPTY, { lower, inclusive, upper }, budget)) {
      const text = key.toString("utf8");
      const head = this.#head(item);
      // A chunked value is read now; when it was deleted since the page was read, the key is not yielded.
      const value =
        "inline" in head ? head.inline : (await this.#value(item, placeKey(p, key).leaf, text))?.value;
      if (!value) continue;
      budget.remaining--;
      yield { key: text, value };
      if (budget.remaining <= 0) return;
    }
  }

  async writeBatch(ops: readonly WriteOp[]): Promise<void> {
    this.#check();
    if (ops.length === 0) return;
    // Validate everything before writing anything; an op on the same key as a later one is dropped (the
    // last wins), because one BatchWriteItem may not name an item twice and groups run concurrently.
    const partitions = new Map<string, Buffer>();
    const latest = new Map<
      string,
      { partition: string; p: Buffer; key: string; k: Buffer; value: Uint8Array | null }
    >();
    for (const op of ops) {
      let p = partitions.get(op.partition);
      if (!p) {
        p = encodePartition(op.partition);
        partitions.set(op.partition, p);
      }
      const k = encodeKey(op.key);
      const value = op.value === null ? null : checkValue(op.value, op.key);
      const id = `${op.partition.length}:${op.partition}${op.key}`;
      latest.delete(id);
      latest.set(id, { partition: op.partition, p, key: op.key, k, value });
    }

    if (latest.size <= SMALL_BATCH) {
      await this.#pool([...latest.values()], ({ partition, p, k, value }) =>
        value === null ? this.#remove(p, k) : this.#put(partition, p, k, value),
      );
      return;
    }

    const level0 = new Map<string, Buffer>();
    const before = new Map<string, ItemKey>();
    const indexed = new Set<string>();
    const chunkWrites: WriteRequest[] = [];
    const headWrites: WriteRequest[] = [];
    const leaves: { partition: string; leaf: ItemKey }[] = [];
    for (const { partition, p, k, value } of latest.values()) {
      let place: KeyPlace;
      if (k.length <= SEGMENT) {
        let pk = level0.get(partition);
        if (!pk) {
          pk = level0Pk(p);
          level0.set(partition, pk);
        }
        place = { leaf: { pk, sk: k }, branches: [] };
      } else {
        place = placeKey(p, k);
      }
      leaves.push({ partition, leaf: place.leaf });
      if (value === null) {
        headWrites.push({ DeleteRequest: { Key: keyItem(place.leaf) } });
        continue;
      }
      const { head, chunks } = this.#headFor(place.leaf, value);
      // Most ops of a batch are short keys with small values in a partition already seen in this batch:
      // they need nothing written before them.
      if (!indexed.has(partition) || place.branches.length > 0 || chunks.length > 0) {
        indexed.add(partition);
        for (const item of this.#prerequisites(p, partition, place, chunks.length > 0)) {
          before.set(itemId(item), item);
        }
      }
      chunkWrites.push(...chunks);
      headWrites.push({ PutRequest: { Item: head } });
    }

    const replaced = await this.#oldHeads(leaves, partitions);
    await this.#ensure([...before.values()], "write the index items of a batch");
    if (chunkWrites.length > 0) await this.#batchWrite(chunkWrites, "write the chunks of large values");
    await this.#batchWrite(headWrites, "write a batch");
    await this.#dropChunks(replaced);
  }

  /**
   * The current heads of `leaves` that may be chunked, so that their chunks can be removed once the batch
   * has replaced them. Only partitions marked as having held chunked values are read: in the others (the
   * common case, and every load into an empty engine) no old head can have chunks.
   */
  async #oldHeads(
    leaves: readonly { partition: string; leaf: ItemKey }[],
    partitions: ReadonlyMap<string, Buffer>,
  ): Promise<Item[]> {
    const unknown = [...partitions].filter(([name]) => !this.#chunked.has(name));
    if (unknown.length > 0) {
      const marks = await this.#batchGet(
        unknown.map(([, p]) => ({ pk: CHUNKED_PK, sk: p })),
        [ATTR.sk],
        "read which partitions hold large values",
      );
      for (const mark of marks) {
        this.#remember(Buffer.from(bytesOf(mark, ATTR.sk) ?? EMPTY).toString("utf8"), this.#chunked);
      }
    }
    const suspects = leaves.filter(({ partition }) => this.#chunked.has(partition)).map(({ leaf }) => leaf);
    if (suspects.length === 0) return [];
    const heads = await this.#batchGet(
      suspects,
      [ATTR.pk, ATTR.sk, ATTR.gen, ATTR.chunks, ATTR.size],
      "read the values a batch replaces",
    );
    return heads.filter((item) => bytesOf(item, ATTR.gen) !== undefined);
  }

  async *partitions(): AsyncGenerator<string> {
    this.#check();
    let start: Item | undefined;
    do {
      const page = await this.#send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: "#p = :p",
          ExpressionAttributeNames: { "#p": ATTR.pk },
          ExpressionAttributeValues: { ":p": b(PARTITIONS_PK) },
          ConsistentRead: true,
          Limit: this.#config.pageSize,
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
        "list partitions",
      );
      for (const item of page.Items ?? []) {
        // The index keeps every partition ever written; list only those that still hold a key.
        const p = Buffer.from(bytesOf(item, ATTR.sk) ?? EMPTY);
        const full: RelativeRange = { lower: undefined, inclusive: false, upper: undefined };
        for await (const _ of this.#walk(p, EMPTY, full, { remaining: 1 })) {
          yield p.toString("utf8");
          break;
        }
      }
      start = page.LastEvaluatedKey;
    } while (start);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#known.clear();
    this.#chunked.clear();
    if (this.#owned) this.#client.destroy();
  }
}
