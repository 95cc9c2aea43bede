import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeBody } from "../src/files.js";

const dir = await mkdtemp(join(tmpdir(), "cairn-files-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

async function* chunksOf(bytes: Buffer, sizes: number[]): AsyncGenerator<Uint8Array> {
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length]!;
    yield bytes.subarray(at, at + size);
    at += size;
  }
}

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
