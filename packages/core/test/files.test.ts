import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, describe, expect, it } from "vitest";
import { digestChecked, writeBody } from "../src/files.js";
import { chunksOf } from "./chunks.js";

const dir = await mkdtemp(join(tmpdir(), "cairn-files-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

async function written(name: string, body: AsyncIterable<Uint8Array>, each?: (c: Uint8Array) => void) {
  const file = join(dir, name);
  const handle = await open(file, "w");
  try {
    return {
      size: await writeBody(handle, body, each),
      bytes: await readFile(file).catch(() => Buffer.alloc(0)),
    };
  } finally {
    await handle.close();
  }
}

describe("writeBody", () => {
  it("writes every chunk in order, across gathered writes, and shows each chunk first", async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 12345);
    const hash = createHash("sha256");
    let seen = 0;
    const out = await written("mixed", chunksOf(bytes, [1, 65536, 700_000, 13, 2 * 1024 * 1024]), (c) => {
      hash.update(c);
      seen += c.length;
    });
    expect(out.size).toBe(bytes.length);
    expect(out.bytes.equals(bytes)).toBe(true);
    expect(seen).toBe(bytes.length);
    expect(hash.digest("hex")).toBe(createHash("sha256").update(bytes).digest("hex"));
  });

  it("writes nothing for an empty body", async () => {
    const out = await written("empty", chunksOf(Buffer.alloc(0), [1]));
    expect(out.size).toBe(0);
    expect(out.bytes.length).toBe(0);
  });

  it("stops at a failing body, having written only whole gathered writes", async () => {
    const bytes = randomBytes(1024 * 1024 + 10);
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield bytes.subarray(0, 1024 * 1024);
      yield bytes.subarray(1024 * 1024);
      throw new Error("the body failed on purpose");
    }
    const file = join(dir, "failing");
    const handle = await open(file, "w");
    try {
      await expect(writeBody(handle, failing())).rejects.toThrow("the body failed on purpose");
    } finally {
      await handle.close();
    }
    expect((await readFile(file)).equals(bytes.subarray(0, 1024 * 1024))).toBe(true);
  });

  it("stops when `each` throws, before writing that chunk", async () => {
    const file = join(dir, "refused");
    const handle = await open(file, "w");
    try {
      const body = chunksOf(Buffer.from("abcdef"), [2]);
      await expect(
        writeBody(handle, body, (c) => {
          if (Buffer.from(c).toString() === "cd") throw new Error("refused");
        }),
      ).rejects.toThrow("refused");
    } finally {
      await handle.close();
    }
    expect((await readFile(file)).length).toBe(0);
  });
});

describe("digestChecked", () => {
  const bytes = randomBytes(5 * 1024);
  const sha256 = createHash("sha256").update(bytes).digest("hex");

  async function through(body: Buffer, expected: string) {
    const check = digestChecked("sha256", expected, (actual, size) => new Error(`${size} bytes, ${actual}`));
    const got: Buffer[] = [];
    const done = pipeline(Readable.from(chunksOf(body, [1000])), check, async (source) => {
      for await (const chunk of source) got.push(chunk as Buffer);
    }).then(
      () => undefined,
      (error: Error) => error,
    );
    return { error: await done, got: Buffer.concat(got) };
  }

  it("passes every byte of a body that matches", async () => {
    const { error, got } = await through(bytes, sha256);
    expect(error).toBeUndefined();
    expect(got.equals(bytes)).toBe(true);
  });

  it("fails a body that does not match before its last chunk, with the digest and size it read", async () => {
    const wrong = Buffer.from(bytes);
    wrong[0] = (wrong[0]! + 1) % 256;
    const { error, got } = await through(wrong, sha256);
    const actual = createHash("sha256").update(wrong).digest("hex");
    expect(error?.message).toBe(`${bytes.length} bytes, ${actual}`);
    // A put streaming this body with its size never receives all of it.
    expect(got.length).toBeLessThan(bytes.length);
  });
});
