import { gzipSync } from "node:zlib";
import { describe, expect, test } from "vitest";
import { readDump, writeDump } from "../src/index.js";
import { dump, editLines, expectManifestError, read, SECTIONS, sampleRecords, sink } from "./helpers.js";

const branchSchema = { branch: { name: "string", commitId: "string", stagingToken: "string?" } } as const;

describe("reading bad input", () => {
  test("a dump without its footer is TRUNCATED", async () => {
    const bytes = editLines(await dump(sampleRecords()), (lines) => [...lines.slice(0, -2), ""]);
    await expectManifestError(read(bytes), "TRUNCATED", /ends after line 9 without a footer/);
  });

  test("a dump cut in the middle of a line is TRUNCATED, naming the line and offset", async () => {
    const bytes = await dump(sampleRecords());
    const cut = bytes.subarray(0, bytes.indexOf("stagingToken"));
    await expectManifestError(read(cut), "TRUNCATED", /^line 3 \(byte offset \d+\) is cut off/);
  });

  test("an empty input is TRUNCATED", async () => {
    await expectManifestError(read(Buffer.alloc(0)), "TRUNCATED", /no header line/);
  });

  test("bytes that are not a dump are CORRUPT", async () => {
    await expectManifestError(
      read(Buffer.from('{"hello":1}\n')),
      "CORRUPT",
      /line 1 is not a cairn\.dump header/,
    );
  });

  test("a corrupted gzip stream is CORRUPT, without a zlib stack", async () => {
    const gz = await dump(sampleRecords(), { gzip: true });
    const bad = Buffer.from(gz);
    for (let i = 20; i < 40; i++) bad[i]! ^= 0xff;
    await expectManifestError(
      read(bad),
      "CORRUPT",
      /^The gzip stream is corrupt after \d+ compressed bytes \(zlib: /,
    );
    const cut = gz.subarray(0, gz.length - 30);
    await expectManifestError(read(cut), "TRUNCATED", /gzip stream ends early/);
  });

  test("a JSON syntax error is CORRUPT with its line number and byte offset", async () => {
    const bytes = await dump(sampleRecords());
    const text = bytes.toString("utf8");
    const lines = text.split("\n");
    const offset = Buffer.byteLength(`${lines.slice(0, 4).join("\n")}\n`);
    lines[4] = lines[4]!.replace('"repository"', "repository");
    await expectManifestError(
      read(Buffer.from(lines.join("\n"))),
      "CORRUPT",
      new RegExp(`^line 5 \\(byte offset ${offset}\\) is not valid JSON \\(`),
    );
  });

  test("a missing or wrong-typed field is INVALID_RECORD naming the field path", async () => {
    const missing = editLines(await dump(sampleRecords()), (lines) => {
      const record = JSON.parse(lines[2]!);
      delete record.commitId;
      lines[2] = JSON.stringify(record);
      return lines;
    });
    await expectManifestError(
      read(missing, { schemas: branchSchema }),
      "INVALID_RECORD",
      /^line 3: branch\.commitId is missing \(must be a string\)\.$/,
    );
    const wrong = editLines(await dump(sampleRecords()), (lines) => {
      lines[2] = lines[2]!.replace('"commitId":"c2"', '"commitId":42');
      return lines;
    });
    await expectManifestError(
      read(wrong, { schemas: branchSchema, label: "refs.jsonl" }),
      "INVALID_RECORD",
      /^refs\.jsonl, line 3: branch\.commitId must be a string, not a number\.$/,
    );
    const noType = editLines(await dump(sampleRecords()), (lines) => {
      lines[2] = '{"name":"x"}';
      return lines;
    });
    await expectManifestError(read(noType), "INVALID_RECORD", /^line 3: record\.type must be a string\.$/);
  });

  test("a header missing a field is INVALID_RECORD", async () => {
    const bytes = editLines(await dump(sampleRecords()), (lines) => {
      const header = JSON.parse(lines[0]!);
      header.source = {};
      lines[0] = JSON.stringify(header);
      return lines;
    });
    await expectManifestError(read(bytes), "INVALID_RECORD", /^line 1: header\.source\.engine is missing/);
  });

  test("footer counts that do not match are COUNT_MISMATCH", async () => {
    const bytes = editLines(await dump(sampleRecords()), (lines) => {
      const footer = JSON.parse(lines.at(-2)!);
      footer.counts.branch = 3;
      lines[lines.length - 2] = JSON.stringify(footer);
      return lines;
    });
    await expectManifestError(
      read(bytes),
      "COUNT_MISMATCH",
      /footer counts 3 "branch" records but 2 were read/,
    );
    const dropped = editLines(await dump(sampleRecords()), (lines) => lines.filter((_, i) => i !== 4));
    await expectManifestError(
      read(dropped),
      "COUNT_MISMATCH",
      /footer counts 1 "tag" records but 0 were read/,
    );
  });

  test("one altered record is DIGEST_MISMATCH", async () => {
    const bytes = editLines(await dump(sampleRecords()), (lines) => {
      lines[5] = lines[5]!.replace('"first"', '"FIRST"');
      return lines;
    });
    await expectManifestError(
      read(bytes),
      "DIGEST_MISMATCH",
      /sha256 [0-9a-f]{64} does not match the records read/,
    );
  });

  test("a future major version is UNSUPPORTED_VERSION", async () => {
    const bytes = editLines(await dump(sampleRecords()), (lines) => {
      lines[0] = lines[0]!.replace('"version":1', '"version":2');
      return lines;
    });
    await expectManifestError(
      read(bytes),
      "UNSUPPORTED_VERSION",
      /format version 2, newer than the 1 this reader supports/,
    );
  });

  test("out-of-order sections are OUT_OF_ORDER", async () => {
    const bytes = editLines(await dump(sampleRecords()), (lines) => {
      [lines[3], lines[4]] = [lines[4]!, lines[3]!];
      return lines;
    });
    await expectManifestError(
      read(bytes),
      "OUT_OF_ORDER",
      /^line 5: a "branch" record comes after the "tag" section; sections must follow the order repository, branch, tag/,
    );
  });

  test("a record type outside the sections is INVALID_RECORD", async () => {
    const bytes = editLines(await dump(sampleRecords()), (lines) => {
      lines[3] = lines[3]!.replace('"type":"branch"', '"type":"lease"');
      return lines;
    });
    await expectManifestError(
      read(bytes),
      "INVALID_RECORD",
      /^line 4: record type "lease" is not one of the sections/,
    );
  });

  test("lines after the footer are CORRUPT", async () => {
    const bytes = Buffer.concat([await dump(sampleRecords()), Buffer.from('{"type":"branch"}\n')]);
    await expectManifestError(
      read(bytes),
      "CORRUPT",
      /^line 11 \(byte offset \d+\) comes after the footer\.$/,
    );
  });

  test("gzip detection uses the magic bytes, not a file name", async () => {
    const bytes = gzipSync(await dump(sampleRecords()));
    expect((await read(bytes)).records).toHaveLength(8);
  });
});

describe("writing", () => {
  const open = () =>
    writeDump({
      output: sink().output,
      sections: SECTIONS,
      source: { engine: "sqlite" },
      tool: { name: "cairn", version: "0.1.0" },
      schemas: branchSchema,
    });

  test("a record before the current section is refused with OUT_OF_ORDER", async () => {
    const writer = open();
    await writer.write({ type: "branch", name: "main", commitId: "c1" });
    await writer.write({ type: "commit", id: "c1" });
    await expectManifestError(
      writer.write({ type: "branch", name: "dev", commitId: "c1" }),
      "OUT_OF_ORDER",
      /^record 3 of type "branch" comes after the "commit" section/,
    );
    await writer.write({ type: "commit", id: "c2" });
    const footer = await writer.end();
    expect(footer.counts).toMatchObject({ branch: 1, commit: 2 });
  });

  test("unknown types, reserved types and records failing the schema are refused", async () => {
    const writer = open();
    await expectManifestError(writer.write({ type: "lease" }), "INVALID_RECORD", /record 1 has type "lease"/);
    await expectManifestError(
      writer.write({ type: "footer" }),
      "INVALID_RECORD",
      /record 1 has type "footer"/,
    );
    await expectManifestError(
      writer.write({ type: "branch", name: "main" }),
      "INVALID_RECORD",
      /^record 1: branch\.commitId is missing/,
    );
    await writer.end();
    await expectManifestError(writer.write({ type: "branch" }), "INVALID_OPTIONS", /after end/);
  });

  test("bad sections are refused", () => {
    expect(() =>
      writeDump({
        output: sink().output,
        sections: ["a", "a"],
        source: { engine: "x" },
        tool: { name: "t", version: "1" },
      }),
    ).toThrow(/sections\[1\] "a" is empty, reserved or repeated/);
  });

  test("abort leaves no footer, so the partial dump reads as TRUNCATED", async () => {
    const { output, bytes } = sink();
    const writer = writeDump({
      output,
      sections: SECTIONS,
      source: { engine: "x" },
      tool: { name: "t", version: "1" },
    });
    await writer.write({ type: "branch", name: "main" });
    await writer.abort();
    await expectManifestError(read(bytes()), "TRUNCATED", /./);
  });

  test("a reader iterates only once", async () => {
    const reader = readDump([await dump(sampleRecords())]);
    for await (const _ of reader) break;
    await expectManifestError(
      (async () => {
        for await (const _ of reader) break;
      })(),
      "INVALID_OPTIONS",
      /only once/,
    );
  });
});

describe("streams", () => {
  test("write waits while the output is slow, and endOutput: false leaves it open", async () => {
    const { Writable } = await import("node:stream");
    const chunks: Buffer[] = [];
    let release: (() => void) | undefined;
    const output = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        release = callback;
      },
    });
    const writer = writeDump({
      output,
      endOutput: false,
      sections: SECTIONS,
      source: { engine: "x" },
      tool: { name: "t", version: "1" },
    });
    // About 2.6 MB: more than the writer and the output buffer together, so that writes must wait.
    const total = 20_000;
    let written = 0;
    const writing = (async () => {
      for (let i = 0; i < total; i++) {
        await writer.write({ type: "commit", id: `c${i}`, message: "x".repeat(100) });
        written++;
      }
      await writer.end();
    })();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(written).toBeLessThan(total);
    let finished = false;
    void writing.then(() => {
      finished = true;
    });
    while (!finished) {
      const next = release;
      release = undefined;
      next?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await writing;
    expect(output.writableEnded).toBe(false);
    const { records } = await read(Buffer.concat(chunks));
    expect(records).toHaveLength(total);
  });

  test("an envelope of a newer version is UNSUPPORTED_VERSION", async () => {
    const { keys } = await import("./helpers.js");
    const bytes = Buffer.from(await dump(sampleRecords(), { encrypt: { publicKeyPem: keys.publicKeyPem } }));
    bytes[8] = 2;
    await expectManifestError(
      read(bytes, { decrypt: { privateKeyPem: keys.privateKeyPem, passphrase: keys.passphrase } }),
      "UNSUPPORTED_VERSION",
      /Encryption envelope version 2 is not supported/,
    );
  });
});
