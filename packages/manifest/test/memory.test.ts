import { PassThrough } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { expect, test } from "vitest";
import { readDump, type WriteDumpOptions, writeDump } from "../src/index.js";
import { keys, SECTIONS } from "./helpers.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const heap = (): number => {
  gc();
  return process.memoryUsage().heapUsed;
};

const COUNT = 200_000;

async function streamThrough(options: Partial<WriteDumpOptions>): Promise<number> {
  const pipe = new PassThrough();
  const writer = writeDump({
    output: pipe,
    sections: SECTIONS,
    source: { engine: "sqlite" },
    tool: { name: "cairn", version: "0.1.0" },
    ...options,
  });
  const before = heap();
  let peak = 0;
  const writing = (async () => {
    for (let i = 0; i < COUNT; i++) {
      await writer.write({
        type: "commit",
        id: `${i}`.padStart(64, "0"),
        parents: [i - 1],
        message: `commit ${i}`,
      });
    }
    await writer.end();
  })();
  let n = 0;
  const reader = readDump(pipe, {
    decrypt: { privateKeyPem: keys.privateKeyPem, passphrase: keys.passphrase },
  });
  for await (const record of reader) {
    if (record.type === "commit") n++;
    if (n % 50_000 === 0) peak = Math.max(peak, heap() - before);
  }
  await writing;
  expect(n).toBe(COUNT);
  expect(reader.footer?.counts.commit).toBe(COUNT);
  return peak;
}

// About 30 MB of JSONL pass through; holding the records would take well over 100 MB of heap.
test("writing and reading 200,000 records keeps the heap flat (plain)", async () => {
  expect(await streamThrough({})).toBeLessThan(16 * 1024 * 1024);
}, 30_000);

test("writing and reading 200,000 records keeps the heap flat (gzip + encryption)", async () => {
  expect(await streamThrough({ gzip: 1, encrypt: { publicKeyPem: keys.publicKeyPem } })).toBeLessThan(
    16 * 1024 * 1024,
  );
}, 30_000);
