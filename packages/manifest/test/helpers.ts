import { generateKeyPairSync } from "node:crypto";
import { Readable, Writable } from "node:stream";
import { expect } from "vitest";
import {
  type DumpFooter,
  type DumpHeader,
  type DumpRecord,
  type ManifestErrorCode,
  type ReadDumpOptions,
  readDump,
  type WriteDumpOptions,
  writeDump,
} from "../src/index.js";

export const SECTIONS = ["repository", "branch", "tag", "commit", "staged", "engine-record"] as const;

export const sampleRecords = (): DumpRecord[] => [
  { type: "repository", name: "photos", storageNamespace: "file:///srv/photos", defaultBranch: "main" },
  { type: "branch", repository: "photos", name: "main", commitId: "c2", stagingToken: "t1" },
  { type: "branch", repository: "photos", name: "dev", commitId: "c1", stagingToken: "t2" },
  { type: "tag", repository: "photos", name: "v1", commitId: "c1" },
  { type: "commit", repository: "photos", id: "c1", parents: [], message: "first", metadata: { a: "ü" } },
  { type: "commit", repository: "photos", id: "c2", parents: ["c1"], message: "line\nbreak", metadata: {} },
  { type: "staged", repository: "photos", token: "t1", path: "a/b.txt", size: 3 },
  { type: "engine-record", partition: "p", key: "k", value: "AAEC" },
];

export const keys = (() => {
  const passphrase = "correct horse";
  const a = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase },
  });
  const b = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return {
    publicKeyPem: a.publicKey,
    privateKeyPem: a.privateKey,
    passphrase,
    otherPrivateKeyPem: b.privateKey,
  };
})();

/** A Writable collecting everything written to it. */
export function sink(): { output: Writable; bytes(): Buffer } {
  const chunks: Buffer[] = [];
  const output = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
  return { output, bytes: () => Buffer.concat(chunks) };
}

export async function dump(
  records: Iterable<DumpRecord>,
  options: Partial<Omit<WriteDumpOptions, "output">> = {},
): Promise<Buffer> {
  const { output, bytes } = sink();
  const writer = writeDump({
    output,
    sections: SECTIONS,
    source: { engine: "sqlite" },
    tool: { name: "cairn", version: "0.1.0" },
    consistency: "snapshot",
    created: "2026-11-25T12:00:00.000Z",
    ...options,
  });
  for (const record of records) await writer.write(record);
  await writer.end();
  return bytes();
}

/** Feeds `bytes` in small chunks, so that lines and segments straddle chunk boundaries. */
export const chunked = (bytes: Buffer, size = 1000): Readable =>
  Readable.from(
    (function* () {
      for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
    })(),
  );

export async function read(
  bytes: Buffer,
  options: ReadDumpOptions = {},
): Promise<{ header: DumpHeader; records: DumpRecord[]; footer: DumpFooter | undefined }> {
  const reader = readDump(chunked(bytes), options);
  const header = await reader.header();
  const records: DumpRecord[] = [];
  for await (const record of reader) records.push(record);
  return { header, records, footer: reader.footer };
}

/** Asserts `promise` rejects with a ManifestError of `code` whose message matches `message`. */
export async function expectManifestError(
  promise: Promise<unknown>,
  code: ManifestErrorCode,
  message: RegExp,
): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected a ${code} error`).toBeInstanceOf(Error);
  expect((error as Error).name).toBe("ManifestError");
  expect((error as { code: string }).code).toBe(code);
  expect((error as Error).message).toMatch(message);
}

/** The JSONL text of a dump with `edit` applied to its lines. */
export const editLines = (bytes: Buffer, edit: (lines: string[]) => string[]): Buffer =>
  Buffer.from(edit(bytes.toString("utf8").split("\n")).join("\n"));
