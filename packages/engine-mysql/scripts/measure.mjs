#!/usr/bin/env node
// Measures the bulk paths of the MySQL engine on a real server: one writeBatch of N small entries (keys ~60
// bytes, values 150 bytes), the same load in batches of 1,000 (as `cairn load` writes), and a full scan.
// Not a test: run it by hand after `pnpm build`.
//
//   node scripts/measure.mjs [entries] [server URL without database]
//   MYSQL_URL=mysql://root@127.0.0.1:3306/ node scripts/measure.mjs 1000000
import { randomBytes } from "node:crypto";
import { cpus, loadavg } from "node:os";
import mysql from "mysql2/promise";
import { factory } from "../dist/index.js";

const n = Number(process.argv[2] ?? 1_000_000);
const server = process.argv[3] ?? process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/";
const base = server.endsWith("/") ? server : `${server}/`;
const database = `cairn_measure_${randomBytes(4).toString("hex")}`;
const admin = await mysql.createConnection({ uri: base });
await admin.query(`CREATE DATABASE \`${database}\``);

const value = randomBytes(150);
const key = (i) => `staging/0123456789abcdef/data/object-${String(i).padStart(9, "0")}.parquet`;
const ops = Array.from({ length: n }, (_, i) => ({ partition: "bench", key: key(i), value }));
const load = () => `load average ${loadavg()[0].toFixed(1)}`;
const rate = (count, ms) => `${Math.round(count / (ms / 1000)).toLocaleString("en")}/s`;
const line = (label, count, ms) =>
  console.log(`${label.padEnd(34)} ${(ms / 1000).toFixed(2).padStart(7)} s  ${rate(count, ms)}`);

console.log(
  `${n.toLocaleString("en")} entries, key ${key(0).length} bytes, value 150 bytes;` +
    ` ${cpus().length} cores, ${load()}`,
);
try {
  const url = `${base}${database}`;
  const engine = await factory.open(url);
  const table = `\`${database}\`.\`cairn_kv\``;
  // The floor under any load: the same rows in prepared multi-row INSERTs of 1,000, without the engine.
  const p = Buffer.from("bench");
  const empty = Buffer.alloc(0);
  const keys = ops.map((op) => Buffer.from(op.key));
  let t = performance.now();
  await admin.query("START TRANSACTION");
  for (let i = 0; i < n; i += 1000) {
    const rows = keys.slice(i, i + 1000);
    await admin.execute(
      `INSERT INTO ${table} (p, head, tail_hash, tail, value) VALUES ${rows.map(() => "(?, ?, ?, ?, ?)").join(", ")} ON DUPLICATE KEY UPDATE value = VALUES(value)`,
      rows.flatMap((key) => [p, key, empty, empty, value]),
    );
  }
  await admin.query("COMMIT");
  line("  (baseline: prepared INSERTs of 1,000)", n, performance.now() - t);
  await admin.query(`TRUNCATE TABLE ${table}`);

  t = performance.now();
  await engine.writeBatch(ops);
  line("writeBatch × 1", n, performance.now() - t);

  t = performance.now();
  let count = 0;
  for await (const _ of engine.scan("bench")) count++;
  if (count !== n) throw new Error(`scanned ${count} of ${n}`);
  line("scan", n, performance.now() - t);

  // The floor under any scan: one streamed SELECT of the whole table with mysql2, no engine.
  t = performance.now();
  count = 0;
  for await (const _ of admin.connection
    .query({ sql: `SELECT head, tail, value FROM ${table} ORDER BY p, head, tail_hash`, rowsAsArray: true })
    .stream())
    count++;
  line("  (baseline: one streamed SELECT)", count, performance.now() - t);

  await admin.query(`TRUNCATE TABLE ${table}`);
  t = performance.now();
  for (let i = 0; i < n; i += 1000) await engine.writeBatch(ops.slice(i, i + 1000));
  line(`writeBatch × ${Math.ceil(n / 1000)} of 1,000`, n, performance.now() - t);
  await engine.close();
  console.log(`(${load()} at the end)`);
} finally {
  await admin.query(`DROP DATABASE \`${database}\``);
  await admin.end();
}
