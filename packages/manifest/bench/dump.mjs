// Writes and reads 1,000,000 records of about 150 bytes through @cairn/manifest, in memory, plain,
// gzip (level 1) and gzip + AES-256-GCM. Run: pnpm build && node bench/dump.mjs
import { generateKeyPairSync } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { readDump, writeDump } from "../dist/index.js";

const COUNT = 1_000_000;
const { publicKey, privateKey } = generateKeyPairSync("rsa", {
  modulusLength: 3072,
  publicKeyEncoding: { type: "spki", format: "pem" },
  privateKeyEncoding: { type: "pkcs8", format: "pem" },
});

const record = (i) => ({
  type: "commit",
  id: `${i}`.padStart(40, "0"),
  parents: [i],
  message: `commit number ${i}`,
  time: "2026-11-25T12:00:00.000Z",
});

async function write(options) {
  const chunks = [];
  const output = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
  const writer = writeDump({
    output,
    sections: ["commit"],
    source: { engine: "bench" },
    tool: { name: "bench", version: "0" },
    ...options,
  });
  for (let i = 0; i < COUNT; i++) await writer.write(record(i));
  await writer.end();
  return Buffer.concat(chunks);
}

async function read(bytes) {
  const input = Readable.from(
    (function* () {
      for (let i = 0; i < bytes.length; i += 64 * 1024) yield bytes.subarray(i, i + 64 * 1024);
    })(),
  );
  let n = 0;
  for await (const _ of readDump(input, { decrypt: { privateKeyPem: privateKey } })) n++;
  if (n !== COUNT) throw new Error(`read ${n}`);
}

const median = async (fn) => {
  const times = [];
  let result;
  for (let run = 0; run < 3; run++) {
    const t = performance.now();
    result = await fn();
    times.push(performance.now() - t);
  }
  return [times.sort((a, b) => a - b)[1], result];
};

for (const [name, options] of [
  ["plain", {}],
  ["gzip level 1", { gzip: 1 }],
  ["gzip level 6", { gzip: true }],
  ["gzip 1 + aes256gcm", { gzip: 1, encrypt: { publicKeyPem: publicKey } }],
  ["aes256gcm", { encrypt: { publicKeyPem: publicKey } }],
  ["chacha20", { encrypt: { publicKeyPem: publicKey, algorithm: "chacha20-rsa" } }],
]) {
  const [writeMs, bytes] = await median(() => write(options));
  const [readMs] = await median(() => read(bytes));
  const rate = (ms) => `${Math.round((COUNT / ms) * 1000).toLocaleString("en")} rec/s`;
  console.log(
    `${name}: ${(bytes.length / 1e6).toFixed(1)} MB; write ${writeMs.toFixed(0)} ms (${rate(writeMs)}); read ${readMs.toFixed(0)} ms (${rate(readMs)})`,
  );
}
