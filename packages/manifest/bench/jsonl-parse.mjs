// Compares stream-json's JSONL parser with a hand-rolled line splitter + JSON.parse on
// 1,000,000 records of about 150 bytes. Run: node bench/jsonl-parse.mjs (after `pnpm build`).
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import jsonlParser from "stream-json/jsonl/parser.js";

const COUNT = 1_000_000;
const CHUNK = 64 * 1024;

function makeBytes() {
  const parts = [];
  for (let i = 0; i < COUNT; i++) {
    parts.push(
      `${JSON.stringify({
        type: "commit",
        id: createHash("sha1").update(String(i)).digest("hex"),
        parents: [i],
        message: `commit number ${i}`,
        time: "2026-11-25T12:00:00.000Z",
      })}\n`,
    );
  }
  return Buffer.from(parts.join(""));
}

function* chunks(bytes) {
  for (let i = 0; i < bytes.length; i += CHUNK) yield bytes.subarray(i, i + CHUNK);
}

async function viaStreamJson(bytes) {
  let n = 0;
  await pipeline(Readable.from(chunks(bytes)), jsonlParser.asStream(), async (items) => {
    for await (const item of items) if (item.value.type === "commit") n++;
  });
  return n;
}

async function viaSplitter(bytes) {
  let n = 0;
  let carry;
  for await (const chunk of Readable.from(chunks(bytes))) {
    let buf = carry ? Buffer.concat([carry, chunk]) : chunk;
    carry = undefined;
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      if (JSON.parse(buf.toString("utf8", start, nl)).type === "commit") n++;
      start = nl + 1;
    }
    if (start < buf.length) carry = buf.subarray(start);
    buf = undefined;
  }
  return n;
}

const bytes = makeBytes();
console.log(
  `${COUNT} records, ${(bytes.length / COUNT).toFixed(0)} bytes each, ${(bytes.length / 1e6).toFixed(1)} MB`,
);
for (const [name, fn] of [
  ["stream-json jsonl/parser", viaStreamJson],
  ["line splitter + JSON.parse", viaSplitter],
]) {
  const times = [];
  for (let run = 0; run < 3; run++) {
    const t = performance.now();
    const n = await fn(bytes);
    times.push(performance.now() - t);
    if (n !== COUNT) throw new Error(`${name} counted ${n}`);
  }
  times.sort((a, b) => a - b);
  const ms = times[1];
  console.log(
    `${name}: median ${ms.toFixed(0)} ms, ${((COUNT / ms) * 1000).toFixed(0)} records/s, ${(bytes.length / 1e3 / ms).toFixed(0)} MB/s`,
  );
}
