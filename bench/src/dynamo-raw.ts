// The floor for the DynamoDB engine's bulk paths, in a process of its own:
//   node dynamo-raw.js write <endpoint> <table> <sqlite-db>  creates <table> and writes every key/value of the
//     SQLite engine as the DynamoDB engine lays out a short key (p = 0x01 ‖ partition, s = key, v = value), with
//     BatchWriteItem: 8 requests in flight, 25 items each, unprocessed items sent again;
//   node dynamo-raw.js scan <endpoint> <table>  reads the whole table with one Scan after another;
//   node dynamo-raw.js load <endpoint> <table> <dump-file>  loads the dump with the engine (the set-up of the dump
//     and list cases, kept out of their process so that their peak RSS is their own).
// Prints one JSON line: { ms, items, peakRssMb }. Only the writing, scanning or loading is timed.

import {
  BatchWriteItemCommand,
  CreateTableCommand,
  DynamoDBClient,
  ScanCommand,
  type WriteRequest,
} from "@aws-sdk/client-dynamodb";
import { loadEngine } from "@cairn/core";
import { factory as dynamodb } from "@cairn/engine-dynamodb";
import { factory as sqlite } from "@cairn/engine-sqlite";
import { EMULATOR_CREDENTIALS } from "@cairn/testkit/servers";

const [mode, endpoint, table, file] = process.argv.slice(2);
if (!["write", "scan", "load"].includes(mode!) || !endpoint || !table || (mode !== "scan" && !file)) {
  console.error(
    "usage: dynamo-raw.js write <endpoint> <table> <sqlite-db> | scan <endpoint> <table> | load <endpoint> <table> <dump-file>",
  );
  process.exit(2);
}
const client = new DynamoDBClient({
  endpoint,
  region: "us-east-1",
  // A copy: the SDK marks on the object where its credentials came from, and the shared one is frozen.
  credentials: { ...EMULATOR_CREDENTIALS },
});

async function write(): Promise<{ ms: number; items: number }> {
  await client.send(
    new CreateTableCommand({
      TableName: table,
      BillingMode: "PAY_PER_REQUEST",
      AttributeDefinitions: [
        { AttributeName: "p", AttributeType: "B" },
        { AttributeName: "s", AttributeType: "B" },
      ],
      KeySchema: [
        { AttributeName: "p", KeyType: "HASH" },
        { AttributeName: "s", KeyType: "RANGE" },
      ],
    }),
  );
  const engine = await sqlite.open(`sqlite://${file}`);
  const items: WriteRequest[] = [];
  for await (const partition of engine.partitions()) {
    const p = Buffer.concat([Buffer.from([1]), Buffer.from(partition, "utf8")]);
    for await (const { key, value } of engine.scan(partition))
      items.push({
        PutRequest: { Item: { p: { B: p }, s: { B: Buffer.from(key, "utf8") }, v: { B: value } } },
      });
  }
  await engine.close();
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      let pending = items.slice(next, next + 25);
      next += 25;
      for (let round = 1; pending.length > 0; round++) {
        const out = await client.send(new BatchWriteItemCommand({ RequestItems: { [table!]: pending } }));
        pending = out.UnprocessedItems?.[table!] ?? [];
        if (pending.length > 0) await new Promise((r) => setTimeout(r, Math.random() * 25 * 2 ** round));
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { ms: performance.now() - t0, items: items.length };
}

async function scan(): Promise<{ ms: number; items: number }> {
  const t0 = performance.now();
  let items = 0;
  let start: Record<string, never> | undefined;
  do {
    const out = await client.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
    items += out.Count ?? 0;
    start = out.LastEvaluatedKey as typeof start;
  } while (start);
  return { ms: performance.now() - t0, items };
}

async function load(): Promise<{ ms: number; items: number }> {
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: EMULATOR_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: EMULATOR_CREDENTIALS.secretAccessKey,
  });
  const engine = await dynamodb.open(
    `dynamodb://${table}?region=us-east-1&endpoint=${encodeURIComponent(endpoint!)}`,
  );
  try {
    const t0 = performance.now();
    const result = await loadEngine(engine, { file: file! });
    const items = Object.values(result.counts).reduce((a, b) => a + b, 0);
    return { ms: performance.now() - t0, items };
  } finally {
    await engine.close();
  }
}

const result = mode === "write" ? await write() : mode === "scan" ? await scan() : await load();
client.destroy();
process.stdout.write(`${JSON.stringify({ ...result, peakRssMb: process.resourceUsage().maxRSS / 1024 })}\n`);
