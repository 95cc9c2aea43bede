import { randomBytes } from "node:crypto";
import { type AddressInfo, createServer, type Socket } from "node:net";
import {
  CreateTableCommand,
  DescribeTableCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
} from "@aws-sdk/client-dynamodb";
import { compareKeys } from "@cairn/core";
import { collect, expectCode } from "@cairn/testkit";
import { freePort, startDynalite } from "@cairn/testkit/servers";
import { afterAll, describe, expect, it } from "vitest";
import { createDynamodbEngine, type DynamodbEngine, factory, parseDynamodbUrl } from "../src/index.js";
import { CHUNKED_PK, INLINE_MAX, SEGMENT } from "../src/layout.js";
import { endpoint, rawClient, tableName, tableUrl } from "./helpers.js";

const utf8 = (s: string) => new TextEncoder().encode(s);
const raw = rawClient();
afterAll(() => raw.destroy());

/** One table for the tests that need no table of their own. */
const sharedUrl = tableUrl("cairn-pkg");
const open = (url = sharedUrl) => factory.open(url);

/** Every item of `table`, as [p, s] hex pairs and the raw item. */
async function items(table: string) {
  const out: Record<string, { B?: Uint8Array; N?: string }>[] = [];
  let start: Record<string, never> | undefined;
  do {
    const page = await raw.send(
      new ScanCommand({ TableName: table, ...(start ? { ExclusiveStartKey: start } : {}) }),
    );
    out.push(...((page.Items ?? []) as typeof out));
    start = page.LastEvaluatedKey as typeof start;
  } while (start);
  return out;
}

/** Number of chunk items (partition key kind 0x03) in `table`. */
async function chunkItems(table: string): Promise<number> {
  return (await items(table)).filter((i) => i.p?.B?.[0] === 0x03).length;
}

async function withEngine<T>(url: string, fn: (engine: DynamodbEngine) => Promise<T>): Promise<T> {
  const engine = await factory.open(url);
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}

describe("dynamodb URL", () => {
  it("reads the table and parameters", () => {
    expect(
      parseDynamodbUrl(
        "dynamodb://my.Table_1?region=eu-west-1&endpoint=http%3A%2F%2F127.0.0.1%3A8000&create=false&concurrency=4&pageSize=50&connectTimeout=700&requestTimeout=900&maxAttempts=2",
      ),
    ).toEqual({
      table: "my.Table_1",
      location:
        "dynamodb://my.Table_1?region=eu-west-1&endpoint=http%3A%2F%2F127.0.0.1%3A8000&create=false&concurrency=4&pageSize=50&connectTimeout=700&requestTimeout=900&maxAttempts=2",
      region: "eu-west-1",
      endpoint: "http://127.0.0.1:8000",
      create: false,
      concurrency: 4,
      pageSize: 50,
      connectTimeout: 700,
      requestTimeout: 900,
      maxAttempts: 2,
    });
    expect(parseDynamodbUrl("dynamodb://cairn-meta/")).toEqual({
      table: "cairn-meta",
      location: "dynamodb://cairn-meta/",
    });
    expect(factory.schemes).toEqual(["dynamodb"]);
  });

  it("rejects bad URLs with INVALID_ARGUMENT naming the URL and what is wrong", async () => {
    const cases: [string, RegExp][] = [
      ["dynamodb://", /names no table/],
      ["dynamodb://ab", /3 to 255 characters/],
      ["dynamodb://bad name?region=x", /3 to 255 characters/],
      ["dynamodb://table?colour=blue", /Unknown parameter "colour"/],
      ["dynamodb://table?create=maybe", /create=maybe/],
      ["dynamodb://table?concurrency=0", /concurrency=0/],
      ["dynamodb://table?pageSize=ten", /pageSize=ten/],
      ["dynamodb://table?endpoint=127.0.0.1:8000", /not a URL/],
      ["dynamodb://table?endpoint=ftp://host/", /http:\/\/ or https:\/\//],
      ["dynamodb://table?region=EU%20West", /not an AWS region/],
      ["redis://127.0.0.1:6379", /not a DynamoDB URL/],
    ];
    for (const [url, message] of cases) {
      const error = await expectCode(factory.open(url), "INVALID_ARGUMENT");
      expect(error.message, url).toMatch(message);
      expect(error.message.split("\n")).toHaveLength(1);
    }
    const error = await expectCode(factory.open("dynamodb://AKIA:s3cr3t@table"), "INVALID_ARGUMENT");
    expect(error.message).toMatch(/never from the URL/);
    expect(error.message).not.toContain("s3cr3t");
  });
});

describe("dynamodb table", () => {
  it("creates its table on first use, on-demand and active, with a schema version item", async () => {
    const table = tableName("cairn-create");
    const url = `dynamodb://${table}?endpoint=${endpoint}&region=us-east-1`;
    // Several processes opening a new table at once all succeed on the one table.
    const engines = await Promise.all([0, 1, 2, 3].map(() => factory.open(url)));
    const described = await raw.send(new DescribeTableCommand({ TableName: table }));
    expect(described.Table?.TableStatus).toBe("ACTIVE");
    expect(described.Table?.BillingModeSummary?.BillingMode).toBe("PAY_PER_REQUEST");
    await engines[0]!.set("p", "k", utf8("v"));
    expect(new TextDecoder().decode(await engines[3]!.get("p", "k"))).toBe("v");
    for (const engine of engines) await engine.close();
    const meta = (await items(table)).filter((i) => i.p?.B?.[0] === 0x00);
    expect(meta.some((i) => i.ver?.N === "1")).toBe(true);
  });

  it("with create=false refuses a missing table with NOT_FOUND naming it", async () => {
    const table = tableName("cairn-missing");
    const error = await expectCode(
      factory.open(`dynamodb://${table}?endpoint=${endpoint}&region=us-east-1&create=false`),
      "NOT_FOUND",
    );
    expect(error.message).toContain(table);
    await expect(raw.send(new DescribeTableCommand({ TableName: table }))).rejects.toThrow(/not found/i);
  });

  it("refuses a table written by a newer schema version", async () => {
    const url = tableUrl("cairn-newer");
    const engine = await factory.open(url);
    await engine.close();
    await raw.send(
      new PutItemCommand({
        TableName: engine.table,
        Item: { p: { B: utf8("\u0000meta") }, s: { B: utf8("schema-version") }, ver: { N: "2" } },
      }),
    );
    const error = await expectCode(factory.open(url), "UNSUPPORTED");
    expect(error.message).toContain(engine.table);
    expect(error.message).toContain("schema version 2");
  });

  it("refuses a table that is not laid out as cairn's", async () => {
    const table = tableName("cairn-foreign");
    await raw.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: "PAY_PER_REQUEST",
        AttributeDefinitions: [{ AttributeName: "id", AttributeType: "S" }],
        KeySchema: [{ AttributeName: "id", KeyType: "HASH" }],
      }),
    );
    const error = await expectCode(
      factory.open(`dynamodb://${table}?endpoint=${endpoint}&region=us-east-1`),
      "INVALID_ARGUMENT",
    );
    expect(error.message).toContain(table);
    expect(error.message).toMatch(/not a cairn table/);
  });
});

describe("dynamodb faults", () => {
  it("fails with one line of UNAVAILABLE naming the URL within seconds when nothing listens", async () => {
    const port = await freePort();
    const url = `dynamodb://cairn-down?endpoint=http://127.0.0.1:${port}&region=us-east-1`;
    const started = Date.now();
    const error = await expectCode(factory.open(url), "UNAVAILABLE");
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(error.message).toContain(url);
    expect(error.message).toMatch(/ECONNREFUSED/);
    expect(error.message.split("\n")).toHaveLength(1);
  });

  it("fails with UNAVAILABLE within seconds when the server goes away under an open engine", async () => {
    const server = await startDynalite();
    try {
      const url = `dynamodb://cairn-gone?endpoint=${server.endpoint}&region=us-east-1&maxAttempts=2`;
      const engine = await factory.open(url);
      await engine.set("p", "k", utf8("v"));
      await server.stop();
      const started = Date.now();
      for (const call of [
        () => engine.get("p", "k"),
        () => engine.set("p", "k", utf8("w")),
        () => engine.setIf("p", "k", utf8("w"), null),
        () =>
          engine.writeBatch(
            Array.from({ length: 30 }, (_, i) => ({ partition: "p", key: `${i}`, value: null })),
          ),
        () => collect(engine.scan("p")),
        () => collect(engine.partitions()),
      ]) {
        const error = await expectCode(call(), "UNAVAILABLE");
        expect(error.message).toContain(url);
      }
      expect(Date.now() - started).toBeLessThan(20_000);
      await engine.close();
    } finally {
      await server.stop();
    }
  });

  it("fails with UNAVAILABLE within seconds when the server accepts connections but never answers", async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = silent.address() as AddressInfo;
      const url = `dynamodb://cairn-hung?endpoint=http://127.0.0.1:${port}&region=us-east-1&requestTimeout=300&maxAttempts=2`;
      const started = Date.now();
      const error = await expectCode(factory.open(url), "UNAVAILABLE");
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(error.message).toContain(url);
      expect(error.message).toMatch(/did not answer in time/);
      expect(error.message.split("\n")).toHaveLength(1);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it("says which setting is missing when there is no region or no credentials", async () => {
    const saved = { ...process.env };
    try {
      delete process.env.AWS_REGION;
      delete process.env.AWS_DEFAULT_REGION;
      process.env.AWS_CONFIG_FILE = "/nonexistent/cairn-aws-config";
      process.env.AWS_SHARED_CREDENTIALS_FILE = "/nonexistent/cairn-aws-credentials";
      const noRegion = `dynamodb://cairn-noregion?endpoint=${endpoint}`;
      const error = await expectCode(factory.open(noRegion), "INVALID_ARGUMENT");
      expect(error.message).toContain(noRegion);
      expect(error.message).toMatch(/region/);

      delete process.env.AWS_ACCESS_KEY_ID;
      delete process.env.AWS_SECRET_ACCESS_KEY;
      delete process.env.AWS_PROFILE;
      process.env.AWS_EC2_METADATA_DISABLED = "true";
      const noCredentials = `dynamodb://cairn-nocreds?endpoint=${endpoint}&region=us-east-1`;
      const denied = await expectCode(factory.open(noCredentials), "PERMISSION_DENIED");
      expect(denied.message).toContain(noCredentials);
      expect(denied.message).toMatch(/credentials/);
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
  });

  it("is idempotent on close, and every later call rejects with UNAVAILABLE", async () => {
    const engine = await open();
    await engine.close();
    await engine.close();
    for (const call of [
      () => engine.get("p", "k"),
      () => engine.set("p", "k", utf8("v")),
      () => engine.setIf("p", "k", utf8("v"), null),
      () => engine.delete("p", "k"),
      () => engine.writeBatch([]),
      () => collect(engine.scan("p")),
      () => collect(engine.partitions()),
    ]) {
      const error = await expectCode(call(), "UNAVAILABLE");
      expect(error.message).toMatch(/closed/);
    }
  });

  it("rejects bad options and keys with INVALID_ARGUMENT", async () => {
    await expectCode(createDynamodbEngine({ table: "x" }), "INVALID_ARGUMENT");
    await expectCode(createDynamodbEngine({ table: "cairn-t", concurrency: 0 }), "INVALID_ARGUMENT");
    const engine = await open();
    try {
      await expectCode(engine.set("p", "", utf8("v")), "INVALID_ARGUMENT");
      await expectCode(engine.get("p", "x".repeat(4097)), "INVALID_ARGUMENT");
      await expectCode(engine.set("p".repeat(256), "k", utf8("v")), "INVALID_ARGUMENT");
      await expectCode(engine.set("p", "k", new Uint8Array(16 * 1024 * 1024 + 1)), "INVALID_ARGUMENT");
      await expectCode(
        engine.writeBatch([
          { partition: "bad-batch", key: "ok", value: utf8("v") },
          { partition: "bad-batch", key: "lone \ud800", value: utf8("v") },
        ]),
        "INVALID_ARGUMENT",
      );
      expect(await engine.get("bad-batch", "ok")).toBeUndefined();
    } finally {
      await engine.close();
    }
  });
});

/** Keys around the segment boundaries (1,023 and 2,046 bytes) whose byte order differs from their length order. */
function longKeys(): string[] {
  const a = "a".repeat(SEGMENT);
  const keys = new Set<string>([
    "a",
    "b",
    "a".repeat(SEGMENT - 1),
    a,
    `${a}\u0000`,
    `${a}a`,
    `${a}b`,
    `${a}é`,
    `${a}😀`,
    `${a}\uffff`,
    `${"a".repeat(SEGMENT - 1)}b`,
    `${"a".repeat(SEGMENT - 1)}é`, // é straddles the first segment boundary
    `${a}${"a".repeat(SEGMENT)}`,
    `${a}${"a".repeat(SEGMENT)}z`,
    `${a}${"a".repeat(SEGMENT - 1)}😀`, // 😀 straddles the second boundary
    `${a}${"a".repeat(SEGMENT + 5)}`,
    `${a}b${"x".repeat(3000)}`,
    "a".repeat(4096),
    "😀".repeat(1024),
    `${"é".repeat(2047)}x`,
    `${"é".repeat(2047)}`,
    "z".repeat(2000),
  ]);
  for (let i = 0; i < 20; i++) keys.add(`${a}${"m".repeat(i * 150)}${String.fromCharCode(97 + (i % 26))}`);
  return [...keys];
}

describe("dynamodb long keys", () => {
  it("keeps keys up to 4,096 bytes apart and in byte order across segment boundaries", async () => {
    const keys = longKeys();
    for (const key of keys) expect(Buffer.byteLength(key)).toBeLessThanOrEqual(4096);
    const sorted = [...keys].sort(compareKeys);
    const p = `long-${randomBytes(4).toString("hex")}`;
    await withEngine(sharedUrl, async (engine) => {
      // Half written one by one, half in one batch, in an order that is not the key order.
      const shuffled = [...keys].sort(() => Math.random() - 0.5);
      const half = Math.floor(shuffled.length / 2);
      for (const key of shuffled.slice(0, half)) await engine.set(p, key, utf8(`v:${key.length}`));
      await engine.writeBatch(
        shuffled.slice(half).map((key) => ({ partition: p, key, value: utf8(`v:${key.length}`) })),
      );
      const entries = await collect(engine.scan(p));
      expect(entries.map((e) => e.key)).toEqual(sorted);
      for (const e of entries) expect(new TextDecoder().decode(e.value)).toBe(`v:${e.key.length}`);
      for (const key of keys)
        expect(await engine.get(p, key), key.slice(-20)).toEqual(utf8(`v:${key.length}`));

      const a = "a".repeat(SEGMENT);
      for (const prefix of ["a", a, `${a}a`, `${a}${"a".repeat(SEGMENT)}`, `${a}m`, "é", "😀".repeat(300)]) {
        for (const after of [
          undefined,
          "a",
          a,
          `${a}a`,
          `${a}${"a".repeat(SEGMENT)}`,
          `${a}${"m".repeat(600)}`,
        ]) {
          const expected = sorted.filter(
            (k) => k.startsWith(prefix) && (after === undefined || compareKeys(k, after) > 0),
          );
          const got = (
            await collect(engine.scan(p, { prefix, ...(after !== undefined ? { after } : {}) }))
          ).map((e) => e.key);
          expect(got, `prefix ${prefix.length} after ${after?.length}`).toEqual(expected);
          const limited = await collect(engine.scan(p, { prefix, limit: 3, ...(after ? { after } : {}) }));
          expect(limited.map((e) => e.key)).toEqual(expected.slice(0, 3));
        }
      }

      // CAS on a long key, and deleting every long key leaves the partition unlisted (branches are never read
      // as keys).
      const long = "😀".repeat(1024);
      expect(await engine.setIf(p, long, utf8("cas"), utf8("v:2048"))).toBe(true);
      expect(await engine.setIf(p, long, utf8("cas2"), utf8("v:2048"))).toBe(false);
      await engine.writeBatch(keys.map((key) => ({ partition: p, key, value: null })));
      expect(await collect(engine.scan(p))).toEqual([]);
      expect(await collect(engine.partitions())).not.toContain(p);
    });
    // No sort key is longer than DynamoDB allows.
    const table = parseDynamodbUrl(sharedUrl).table;
    for (const item of await items(table)) expect(item.s!.B!.length).toBeLessThanOrEqual(1024);
  });
});

describe("dynamodb large values", () => {
  it("splits values over the item size into chunks, reads them back whole, and removes replaced chunks", async () => {
    const url = tableUrl("cairn-chunks");
    const table = parseDynamodbUrl(url).table;
    await withEngine(url, async (engine) => {
      const edge = randomBytes(INLINE_MAX);
      const over = randomBytes(INLINE_MAX + 1);
      const big = randomBytes(2 * 1024 * 1024 + 3);
      await engine.set("p", "edge", edge);
      await engine.set("p", "over", over);
      await engine.set("p", "big", big);
      expect(Buffer.from((await engine.get("p", "edge"))!).equals(edge)).toBe(true);
      expect(Buffer.from((await engine.get("p", "over"))!).equals(over)).toBe(true);
      expect(Buffer.from((await engine.get("p", "big"))!).equals(big)).toBe(true);
      expect(await chunkItems(table)).toBe(2 + 6);
      const scanned = await collect(engine.scan("p"));
      expect(scanned.map((e) => e.key)).toEqual(["big", "edge", "over"]);
      expect(Buffer.from(scanned[0]!.value).equals(big)).toBe(true);

      // Compare-and-swap against a chunked value compares every byte.
      const almost = Buffer.from(big);
      almost[almost.length - 1]! ^= 1;
      expect(await engine.setIf("p", "big", utf8("small"), almost)).toBe(false);
      expect(await engine.setIf("p", "big", over, big)).toBe(true);
      expect(Buffer.from((await engine.get("p", "big"))!).equals(over)).toBe(true);
      expect(await chunkItems(table)).toBe(2 + 2);

      // Replacing and deleting, one by one and in batches, removes the chunks of the old values.
      await engine.set("p", "over", utf8("small now"));
      expect(await chunkItems(table)).toBe(2);
      await engine.writeBatch([
        ...Array.from({ length: 10 }, (_, i) => ({ partition: "p", key: `filler${i}`, value: utf8("f") })),
        { partition: "p", key: "big", value: null },
      ]);
      expect(await chunkItems(table)).toBe(0);
      await engine.writeBatch(
        Array.from({ length: 10 }, (_, i) => ({ partition: "p", key: `batched${i}`, value: over })),
      );
      expect(await chunkItems(table)).toBe(20);
      await engine.writeBatch(
        Array.from({ length: 10 }, (_, i) => ({ partition: "p", key: `batched${i}`, value: utf8("x") })),
      );
      expect(await chunkItems(table)).toBe(0);
      await engine.set("p", "edge", over);
      await engine.delete("p", "edge");
      expect(await chunkItems(table)).toBe(0);
    });
    // A fresh connection knows about the mark: its batches remove replaced chunks too.
    await withEngine(url, async (engine) => {
      await engine.set("p", "again", largeValue());
      expect(await chunkItems(table)).toBe(2);
    });
    await withEngine(url, async (engine) => {
      await engine.writeBatch(
        Array.from({ length: 10 }, (_, i) => ({
          partition: "p",
          key: i === 0 ? "again" : `more${i}`,
          value: null,
        })),
      );
      expect(await chunkItems(table)).toBe(0);
      const marks = await raw.send(
        new QueryCommand({
          TableName: table,
          KeyConditionExpression: "p = :p",
          ExpressionAttributeValues: { ":p": { B: CHUNKED_PK } },
        }),
      );
      expect(marks.Items?.length).toBe(1);
    });
  });

  it("never shows half a value to a reader while it is replaced", async () => {
    const url = tableUrl("cairn-chunk-race");
    await withEngine(url, async (writer) => {
      const reader = await factory.open(url);
      try {
        const values = [0, 1, 2].map((i) => Buffer.alloc(INLINE_MAX * 2 + 10, i));
        await writer.set("p", "k", values[0]!);
        let done = false;
        const writes = (async () => {
          for (let i = 1; i < 7; i++) await writer.set("p", "k", values[i % 3]!);
          done = true;
        })();
        let reads = 0;
        while (!done) {
          const value = Buffer.from((await reader.get("p", "k"))!);
          expect(value.length).toBe(INLINE_MAX * 2 + 10);
          expect(value.every((byte) => byte === value[0])).toBe(true);
          reads++;
        }
        await writes;
        expect(reads).toBeGreaterThan(0);
      } finally {
        await reader.close();
      }
    });
  });
});

/** A value just over what one item holds: two chunks. */
function largeValue(): Buffer {
  return randomBytes(INLINE_MAX + 100);
}

describe("dynamodb batches", () => {
  it("applies the last of several ops on one key in one batch, across request groups", async () => {
    await withEngine(sharedUrl, async (engine) => {
      const p = `dups-${randomBytes(4).toString("hex")}`;
      const ops = [];
      // 200 ops on 20 keys: each key set, deleted and set again, spread over many groups of 25.
      for (let round = 0; round < 10; round++) {
        for (let k = 0; k < 20; k++) {
          const value = round === 9 && k % 2 === 0 ? null : utf8(`${k}:${round}`);
          ops.push({ partition: p, key: `k${String(k).padStart(2, "0")}`, value });
        }
      }
      await engine.writeBatch(ops);
      const entries = await collect(engine.scan(p));
      expect(entries.map((e) => e.key)).toEqual(
        Array.from({ length: 10 }, (_, i) => `k${String(2 * i + 1).padStart(2, "0")}`),
      );
      for (const e of entries) expect(new TextDecoder().decode(e.value)).toBe(`${Number(e.key.slice(1))}:9`);

      // And in a small batch, written key by key.
      await engine.writeBatch([
        { partition: p, key: "small", value: utf8("1") },
        { partition: p, key: "small", value: null },
        { partition: p, key: "small", value: utf8("3") },
      ]);
      expect(await engine.get(p, "small")).toEqual(utf8("3"));
    });
  });
});
