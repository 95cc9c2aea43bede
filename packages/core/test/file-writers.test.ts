import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileWriterPool } from "../src/file-writers.js";
import { chunksOf } from "./chunks.js";

const root = await mkdtemp(join(tmpdir(), "cairn-writers-"));
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** A body that gives `bytes`, then fails with `error`. */
async function* failingAfter(bytes: Buffer, error: Error): AsyncGenerator<Uint8Array> {
  yield* chunksOf(bytes, [65536]);
  throw error;
}

const mismatch = (size: number, digest: string | undefined) =>
  new Error(`got ${size} bytes, ${digest?.slice(0, 8)}`);

// Every case runs twice: with every file on the pool's threads, and with every file whose size is known (given as
// `check.size`) written on the calling thread.
describe.each([
  { where: "on its threads", inlineBelow: 0 },
  { where: "on the calling thread", inlineBelow: Number.POSITIVE_INFINITY },
])("FileWriterPool, files written $where", ({ inlineBelow }) => {
  const pool = new FileWriterPool({ threads: 2, inlineBelow });
  const dir = join(root, inlineBelow === 0 ? "threads" : "here");
  beforeAll(() => mkdir(dir));
  afterAll(() => pool.close());

  it("writes a file in order across many batches, and gives its size and digest", async () => {
    const bytes = randomBytes(5 * 1024 * 1024 + 4321);
    const file = join(dir, "big");
    const out = await pool.write(file, chunksOf(bytes, [1, 65536, 700_000, 13, 3 * 1024 * 1024]), {
      algorithm: "sha256",
    });
    expect(out).toEqual({ size: bytes.length, digest: sha256(bytes) });
    expect((await readFile(file)).equals(bytes)).toBe(true);
  });

  it("takes plain Uint8Array chunks at any offset of their buffers", async () => {
    const bytes = randomBytes(2 * 1024 * 1024 + 77);
    async function* plain() {
      for await (const chunk of chunksOf(bytes, [65535, 3, 1024 * 1024 + 5])) {
        // Each chunk a view three bytes into a buffer of its own, as a socket's chunks sit after headers.
        const backing = new Uint8Array(chunk.length + 3);
        backing.set(chunk, 3);
        yield backing.subarray(3);
      }
    }
    const file = join(dir, "plain-views");
    expect(await pool.write(file, plain(), { algorithm: "sha256" })).toEqual({
      size: bytes.length,
      digest: sha256(bytes),
    });
    expect((await readFile(file)).equals(bytes)).toBe(true);
  });

  it("writes empty files, and files without a digest", async () => {
    expect(
      await pool.write(join(dir, "empty"), chunksOf(Buffer.alloc(0), [1]), { algorithm: "md5" }),
    ).toEqual({
      size: 0,
      digest: createHash("md5").digest("hex"),
    });
    expect((await readFile(join(dir, "empty"))).length).toBe(0);
    expect(await pool.write(join(dir, "plain"), chunksOf(Buffer.from("abc"), [1]))).toEqual({ size: 3 });
    expect(await readFile(join(dir, "plain"), "utf8")).toBe("abc");
  });

  it("leaves the caller's chunks as they were", async () => {
    const chunk = Buffer.from("kept whole");
    await pool.write(
      join(dir, "kept"),
      (async function* () {
        yield chunk;
        yield chunk;
      })(),
    );
    expect(chunk.toString()).toBe("kept whole");
    expect(await readFile(join(dir, "kept"), "utf8")).toBe("kept wholekept whole");
  });

  it("writes many files at once, each whole", async () => {
    const files = Array.from({ length: 200 }, (_, i) =>
      randomBytes(i % 50 === 0 ? 6 * 1024 * 1024 : 1 + ((i * 7919) % 200_000)),
    );
    await mkdir(join(dir, "many"));
    const out = await Promise.all(
      files.map((bytes, i) =>
        pool.write(join(dir, "many", `f${i}`), chunksOf(bytes, [16384]), {
          algorithm: "sha256",
          check: { size: bytes.length, mismatch },
        }),
      ),
    );
    for (const [i, bytes] of files.entries()) {
      expect(out[i]).toEqual({ size: bytes.length, digest: sha256(bytes) });
      expect((await readFile(join(dir, "many", `f${i}`))).equals(bytes)).toBe(true);
    }
  });

  it("renames a temporary file into place once it matches its check", async () => {
    const bytes = randomBytes(3 * 1024 * 1024);
    const target = join(dir, "placed");
    await writeFile(target, "old");
    const temp = join(dir, ".placed.partial");
    const out = await pool.write(target, chunksOf(bytes, [65536]), {
      algorithm: "sha256",
      temp,
      exclusive: true,
      check: { size: bytes.length, digest: sha256(bytes), mismatch },
    });
    expect(out.size).toBe(bytes.length);
    expect((await readFile(target)).equals(bytes)).toBe(true);
    expect(existsSync(temp)).toBe(false);
  });

  it("removes the temporary file and leaves the target as it was when the bytes do not match", async () => {
    const bytes = randomBytes(1024 * 1024 + 7);
    const target = join(dir, "unmatched");
    await writeFile(target, "old");
    const temp = join(dir, ".unmatched.partial");
    const wrong = {
      algorithm: "sha256",
      temp,
      check: { size: bytes.length, digest: "00".repeat(32), mismatch },
    };
    await expect(pool.write(target, chunksOf(bytes, [65536]), wrong)).rejects.toThrow(
      `got ${bytes.length} bytes, ${sha256(bytes).slice(0, 8)}`,
    );
    const short = {
      algorithm: "sha256",
      temp,
      check: { size: bytes.length + 1, digest: sha256(bytes), mismatch },
    };
    await expect(pool.write(target, chunksOf(bytes, [65536]), short)).rejects.toThrow(
      `got ${bytes.length} bytes`,
    );
    expect(await readFile(target, "utf8")).toBe("old");
    expect(existsSync(temp)).toBe(false);
  });

  it("removes what it wrote when the body fails, and fails with the body's error", async () => {
    const target = join(dir, "cut");
    const temp = join(dir, ".cut.partial");
    for (const size of [0, 100, 3 * 1024 * 1024]) {
      await expect(
        pool.write(target, failingAfter(randomBytes(size), new Error("connection reset")), { temp }),
      ).rejects.toThrow("connection reset");
      await expect(
        pool.write(target, failingAfter(randomBytes(size), new Error("connection reset")), {
          temp,
          check: { size: size + 1, mismatch },
        }),
      ).rejects.toThrow("connection reset");
      expect(existsSync(temp)).toBe(false);
      expect(existsSync(target)).toBe(false);
    }
  });

  it("refuses chunks that are not bytes, before it writes anything", async () => {
    const target = join(dir, "text");
    const text = () =>
      (async function* () {
        yield "not bytes";
      })() as AsyncIterable<unknown> as AsyncIterable<Uint8Array>;
    await expect(pool.write(target, text())).rejects.toThrow(/Uint8Array or Buffer chunks, not text/);
    await expect(pool.write(target, text(), { check: { size: 9, mismatch } })).rejects.toThrow(
      /Uint8Array or Buffer chunks, not text/,
    );
    expect(existsSync(target)).toBe(false);
  });

  it("fails with the file system's own error, code and path, and removes what it wrote", async () => {
    const missing = join(dir, "no-such-folder", "f");
    const error = await pool
      .write(missing, chunksOf(Buffer.from("x"), [1]), { check: { size: 1, mismatch } })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "ENOENT", syscall: "open", path: missing });
    expect((error as Error).message).toContain("no such file or directory");

    const existing = join(dir, "existing");
    await writeFile(existing, "old");
    await expect(
      pool.write(existing, chunksOf(Buffer.from("new"), [1]), {
        exclusive: true,
        check: { size: 3, mismatch },
      }),
    ).rejects.toMatchObject({
      code: "EEXIST",
    });
    expect(await readFile(existing, "utf8")).toBe("old");

    // A rename onto a folder fails after the bytes are written: the temporary file goes.
    const folder = join(dir, "a-folder");
    await mkdir(join(folder, "inside"), { recursive: true });
    const temp = join(dir, ".a-folder.partial");
    const bytes = randomBytes(2 * 1024 * 1024);
    await expect(
      pool.write(folder, chunksOf(bytes, [65536]), { temp, check: { size: bytes.length, mismatch } }),
    ).rejects.toMatchObject({
      syscall: "rename",
      path: temp,
      dest: folder,
    });
    expect(existsSync(temp)).toBe(false);
  });

  it.skipIf(process.getuid?.() === 0)("fails with EACCES in a folder it may not write", async () => {
    const locked = join(dir, "locked");
    await mkdir(locked);
    await chmod(locked, 0o500);
    await expect(
      pool.write(join(locked, "f"), chunksOf(Buffer.from("x"), [1]), { check: { size: 1, mismatch } }),
    ).rejects.toMatchObject({
      code: "EACCES",
    });
  });

  it("goes on writing other files after one fails", async () => {
    await mkdir(join(dir, "after"));
    const big = 2 * 1024 * 1024;
    const results = await Promise.allSettled([
      pool.write(join(dir, "after", "bad"), failingAfter(randomBytes(big), new Error("cut")), {
        check: { size: big + 1, mismatch },
      }),
      pool.write(join(dir, "after", "good"), chunksOf(randomBytes(big), [65536]), {
        check: { size: big, mismatch },
      }),
      pool.write(join(dir, "nowhere", "x"), chunksOf(Buffer.from("x"), [1]), {
        check: { size: 1, mismatch },
      }),
      pool.write(join(dir, "after", "good2"), chunksOf(Buffer.from("y"), [1])),
    ]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "fulfilled", "rejected", "fulfilled"]);
    expect((await readdir(join(dir, "after"))).sort()).toEqual(["good", "good2"]);
  });

  it("fails the writes under way when closed, and refuses new ones", async () => {
    const closing = new FileWriterPool({ threads: 1, inlineBelow });
    let release: (() => void) | undefined;
    const slow = (async function* () {
      yield randomBytes(2 * 1024 * 1024);
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      yield Buffer.from("end");
    })();
    const writing = closing.write(join(dir, "closed"), slow, {
      check: { size: 2 * 1024 * 1024 + 3, mismatch },
    });
    while (!release) await new Promise((r) => setTimeout(r, 5));
    await closing.close();
    release();
    await expect(writing).rejects.toThrow(/closed/);
    expect(existsSync(join(dir, "closed"))).toBe(false);
    await expect(closing.write(join(dir, "closed2"), chunksOf(Buffer.from("x"), [1]))).rejects.toThrow(
      /closed/,
    );
  });
});

describe("FileWriterPool", () => {
  const dir = join(root, "pool");
  beforeAll(() => mkdir(dir));

  it("writes small files of known size on the calling thread, and larger ones on threads", async () => {
    const pool = new FileWriterPool();
    try {
      for (const size of [0, 1, 65536, 256 * 1024 - 1]) {
        const bytes = randomBytes(size);
        const out = await pool.write(join(dir, `small-${size}`), chunksOf(bytes, [65536]), {
          algorithm: "sha256",
          check: { size, digest: sha256(bytes), mismatch },
        });
        expect(out).toEqual({ size, digest: sha256(bytes) });
        expect((await readFile(join(dir, `small-${size}`))).equals(bytes)).toBe(true);
      }
      // Neither a file under 256 KiB nor one of unknown size started a thread; one of 256 KiB does.
      expect(pool.threads).toBe(0);
      await pool.write(join(dir, "unknown"), chunksOf(randomBytes(10), [10]));
      expect(pool.threads).toBe(1);
      const bytes = randomBytes(256 * 1024);
      await pool.write(join(dir, "larger"), chunksOf(bytes, [65536]), {
        check: { size: bytes.length, mismatch },
      });
      expect((await readFile(join(dir, "larger"))).equals(bytes)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it("sends every later file to threads once a file written here took too long", async () => {
    // Any write takes longer than 0 ms: the first small file is written here, and the rest go to a thread.
    const pool = new FileWriterPool({ inlineSlowMs: 0 });
    try {
      const bytes = randomBytes(1000);
      const check = { size: bytes.length, digest: sha256(bytes), mismatch };
      await pool.write(join(dir, "slow-1"), chunksOf(bytes, [100]), { algorithm: "sha256", check });
      expect(pool.threads).toBe(0);
      await pool.write(join(dir, "slow-2"), chunksOf(bytes, [100]), { algorithm: "sha256", check });
      expect(pool.threads).toBe(1);
      expect((await readFile(join(dir, "slow-2"))).equals(bytes)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it("does not keep the process alive once its files are written", () => {
    // The built package, as a program imports it (the tests run after the build).
    const module = fileURLToPath(new URL("../dist/index.js", import.meta.url));
    const script = `
      const { FileWriterPool } = await import(${JSON.stringify(module)});
      const pool = new FileWriterPool();
      const out = await pool.write(${JSON.stringify(join(dir, "alive"))}, [Buffer.from("done")], { algorithm: "sha256" });
      console.log(out.size);
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("4");
    expect(r.status).toBe(0);
  });
});
