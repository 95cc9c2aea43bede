import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { describe, expect, test } from "vitest";
import {
  DUMP_FORMAT,
  ENVELOPE_MAGIC,
  isGzipPath,
  readDump,
  type WriteDumpOptions,
  writeDump,
} from "../src/index.js";
import { chunked, dump, expectManifestError, keys, read, SECTIONS, sampleRecords, sink } from "./helpers.js";

const decrypt = { privateKeyPem: keys.privateKeyPem, passphrase: keys.passphrase };

const variants: [string, Partial<WriteDumpOptions>][] = [
  ["plain", {}],
  ["gzip", { gzip: true }],
  ["aes256gcm-rsa", { encrypt: { publicKeyPem: keys.publicKeyPem } }],
  ["chacha20-rsa", { encrypt: { publicKeyPem: keys.publicKeyPem, algorithm: "chacha20-rsa" } }],
  [
    "gzip + aes256gcm-rsa",
    { gzip: 9, encrypt: { publicKeyPem: keys.publicKeyPem, algorithm: "aes256gcm-rsa" } },
  ],
  [
    "gzip + chacha20-rsa",
    { gzip: true, encrypt: { publicKeyPem: keys.publicKeyPem, algorithm: "chacha20-rsa" } },
  ],
];

describe("round trip", () => {
  test.each(variants)("%s", async (_name, options) => {
    const records = sampleRecords();
    const bytes = await dump(records, options);
    const { header, records: back, footer } = await read(bytes, { decrypt });
    expect(back).toEqual(records);
    expect(header).toMatchObject({
      type: "header",
      format: DUMP_FORMAT,
      version: 1,
      created: "2026-11-25T12:00:00.000Z",
      source: { engine: "sqlite" },
      tool: { name: "cairn", version: "0.1.0" },
      consistency: "snapshot",
      sections: [...SECTIONS],
    });
    expect(footer?.counts).toEqual({
      repository: 1,
      branch: 2,
      tag: 1,
      commit: 2,
      staged: 1,
      "engine-record": 1,
    });
  });

  test("the plain form is JSON Lines with a digest over the record lines", async () => {
    const bytes = await dump(sampleRecords());
    const lines = bytes.toString("utf8").split("\n");
    expect(lines.at(-1)).toBe("");
    const parsed = lines.slice(0, -1).map((line) => JSON.parse(line));
    expect(parsed[0].type).toBe("header");
    expect(parsed.at(-1).type).toBe("footer");
    const recordLines = lines.slice(1, -2).map((line) => `${line}\n`);
    expect(parsed.at(-1).sha256).toBe(createHash("sha256").update(recordLines.join("")).digest("hex"));
    expect(parsed.filter((r: { type: string }) => r.type === "branch")).toHaveLength(2);
  });

  test("gzip output is a standard gzip stream; encrypted output starts with the envelope magic", async () => {
    const gz = await dump(sampleRecords(), { gzip: true });
    expect(gz.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(gunzipSync(gz).toString("utf8")).toBe((await dump(sampleRecords())).toString("utf8"));
    const enc = await dump(sampleRecords(), { encrypt: { publicKeyPem: keys.publicKeyPem } });
    expect(enc.subarray(0, 8)).toEqual(ENVELOPE_MAGIC);
    expect(enc.includes(Buffer.from("photos"))).toBe(false);
  });

  test("an encrypted dump larger than one segment round-trips; an empty dump too", async () => {
    const many = Array.from({ length: 3000 }, (_, i) => ({
      type: "commit",
      id: `c${i}`,
      message: "x".repeat(50),
    }));
    const bytes = await dump(many, { encrypt: { publicKeyPem: keys.publicKeyPem } });
    expect((await read(bytes, { decrypt })).records).toEqual(many);
    const empty = await dump([], { encrypt: { publicKeyPem: keys.publicKeyPem }, gzip: true });
    const back = await read(empty, { decrypt });
    expect(back.records).toEqual([]);
    expect(back.footer?.counts.commit).toBe(0);
  });

  test("unknown header and record fields of the same major version are ignored", async () => {
    const bytes = await dump(sampleRecords(), { header: { comment: "hello", future: { x: 1 } } });
    const { header, records } = await read(bytes);
    expect(header.comment).toBe("hello");
    expect(records).toHaveLength(8);
  });

  test("header() can be read before iterating; iterating alone works too", async () => {
    const bytes = await dump(sampleRecords());
    const reader = readDump(chunked(bytes, 7));
    let n = 0;
    for await (const _ of reader) n++;
    expect(n).toBe(8);
    expect((await reader.header()).source.engine).toBe("sqlite");
  });

  test("linePages() gives each record with its line as written, across chunks and through gzip", async () => {
    const records = sampleRecords();
    for (const options of [{}, { gzip: true }]) {
      const bytes = await dump(records, options);
      const plain = "gzip" in options ? gunzipSync(bytes) : bytes;
      const written = plain.toString("utf8").split("\n").slice(1, -2);
      const reader = readDump(chunked(bytes, 7), { lines: true });
      const seen: [unknown, string][] = [];
      for await (const page of reader.linePages()) {
        for (const [i, r] of page.records.entries()) seen.push([r, page.lines[i]!.toString("utf8")]);
      }
      expect(seen.map(([r]) => r)).toEqual(records);
      expect(seen.map(([, line]) => line)).toEqual(written);
      expect(seen.every(([r, line]) => JSON.stringify(JSON.parse(line)) === JSON.stringify(r))).toBe(true);
    }
    await expectManifestError(
      (async () => {
        for await (const _ of readDump([await dump(records)]).linePages());
      })(),
      "INVALID_OPTIONS",
      /needs the reader.s `lines` option/,
    );
  });

  test("isGzipPath", () => {
    expect(isGzipPath("dump.jsonl.gz")).toBe(true);
    expect(isGzipPath("DUMP.JSONL.GZ")).toBe(true);
    expect(isGzipPath("dump.jsonl")).toBe(false);
    expect(isGzipPath("dump.gzip")).toBe(false);
  });
});

describe("stopping early", () => {
  test.each([
    ["plain", {}],
    ["gzip + encryption", { gzip: true, encrypt: { publicKeyPem: keys.publicKeyPem } }],
  ] as const)("closes the input (%s)", async (_name, options) => {
    const { mkdtemp, writeFile } = await import("node:fs/promises");
    const { createReadStream } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const many = Array.from({ length: 5000 }, (_, i) => ({
      type: "commit",
      id: `c${i}`,
      message: "x".repeat(100),
    }));
    const file = join(await mkdtemp(join(tmpdir(), "cairn-manifest-")), "dump");
    await writeFile(file, await dump(many, options));
    const input = createReadStream(file, { highWaterMark: 4096 });
    let n = 0;
    for await (const _ of readDump(input, { decrypt })) if (++n === 10) break;
    await new Promise((resolve) => setImmediate(resolve));
    expect(input.destroyed).toBe(true);
  });
});

describe("writeLine", () => {
  const base = {
    sections: SECTIONS,
    source: { engine: "sqlite" },
    tool: { name: "cairn", version: "0.1.0" },
    created: "2026-11-25T12:00:00.000Z",
  };

  test("writes serialized records byte for byte, counted and digested like written ones", async () => {
    const records = sampleRecords();
    const viaWrite = await dump(records);
    const { output, bytes } = sink();
    const writer = writeDump({ ...base, output, consistency: "snapshot" });
    for (const record of records) await writer.writeLine(record.type, JSON.stringify(record));
    await writer.end();
    expect(bytes()).toEqual(viaWrite);
    expect((await read(bytes())).records).toEqual(records);
  });

  test("checks the section order and refuses text that is not one JSON object on one line", async () => {
    const { output } = sink();
    const writer = writeDump({ ...base, output });
    await writer.writeLine("tag", '{"type":"tag","repository":"r","name":"v1","commitId":"c1"}');
    await expectManifestError(
      writer.writeLine("branch", '{"type":"branch"}'),
      "OUT_OF_ORDER",
      /record 2 of type "branch" comes after the "tag" section/,
    );
    await expectManifestError(
      writer.writeLine("nope", '{"type":"nope"}'),
      "INVALID_RECORD",
      /record 2 has type "nope", which is not one of the sections/,
    );
    await expectManifestError(
      writer.writeLine("commit", '["type","commit"]'),
      "INVALID_RECORD",
      /record 2 is not a JSON object on one line/,
    );
    await expectManifestError(
      writer.writeLine("commit", '{"type":"commit",\n"id":"c"}'),
      "INVALID_RECORD",
      /record 2 is not a JSON object on one line/,
    );
    const footer = await writer.end();
    expect(footer.counts).toMatchObject({ tag: 1, commit: 0 });
  });

  test("writeLines writes a page of one type as writeLine would, and refuses a page with a bad line whole", async () => {
    const records = sampleRecords();
    const viaWrite = await dump(records);
    const { output, bytes } = sink();
    const writer = writeDump({ ...base, output, consistency: "snapshot" });
    for (const type of SECTIONS) {
      const lines = records.filter((r) => r.type === type).map((r) => JSON.stringify(r));
      if (lines.length > 0) await writer.writeLines(type, lines);
    }
    await writer.end();
    expect(bytes()).toEqual(viaWrite);

    const second = sink();
    const refusing = writeDump({ ...base, output: second.output });
    const tag = (name: string) => `{"type":"tag","repository":"r","name":"${name}","commitId":"c1"}`;
    await refusing.writeLines("tag", [tag("v1")]);
    await expectManifestError(
      refusing.writeLines("tag", [tag("v2"), tag("v3"), '{"type":"tag",\n"name":"v4"}']),
      "INVALID_RECORD",
      /record 4 is not a JSON object on one line/,
    );
    expect((await refusing.end()).counts).toMatchObject({ tag: 1 });
    expect((await read(second.bytes())).records.map((r) => r.name)).toEqual(["v1"]);
  });
});
