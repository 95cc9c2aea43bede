import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { collect, describeEngine, expectCode, randomName, tempDir } from "@cairn/testkit";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { createSqliteEngine, factory, parseSqliteUrl } from "../src/index.js";

const dir = await tempDir("cairn-sqlite-");
const shared = join(dir, "shared", "meta.db");
const utf8 = (s: string) => new TextEncoder().encode(s);
const hex = (bytes: Uint8Array | undefined) => (bytes ? Buffer.from(bytes).toString("hex") : bytes);

describeEngine("sqlite", { open: () => factory.open(`sqlite://${shared}`) });

/**
 * Runs `test/fixtures/<name>` in a process of its own with the built engine module and `args`; resolves to its
 * exit status and everything it printed.
 */
async function runFixture(
  name: string,
  ...args: string[]
): Promise<{ status: number | null; output: string }> {
  const script = fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
  const engineModule = new URL("../dist/index.js", import.meta.url);
  if (!existsSync(engineModule))
    expect.fail("dist/index.js is missing: run `pnpm --filter @cairn/engine-sqlite build` first");
  const child = spawn(process.execPath, [script, engineModule.href, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr.on("data", (chunk) => {
    output += chunk;
  });
  const status = await new Promise<number | null>((resolve) => child.once("close", resolve));
  return { status, output };
}

describe("sqlite engine", () => {
  it("refuses a file that is not a SQLite database, naming it and leaving it alone", async () => {
    const file = join(await tempDir("cairn-sqlite-"), "notes.txt");
    const text = "These are my notes, not a database.\n".repeat(100);
    await writeFile(file, text);
    const error = await expectCode(factory.open(`sqlite://${file}`), "INVALID_ARGUMENT");
    expect(error.message).toContain(file);
    expect(error.message).toMatch(/not a SQLite database/);
    expect(error.cause).toBeDefined();
    expect(await readFile(file, "utf8")).toBe(text);
  });

  it("refuses a database written by a newer schema version", async () => {
    const file = join(await tempDir("cairn-sqlite-"), "meta.db");
    const engine = await factory.open(`sqlite://${file}`);
    await engine.set("p", "k", utf8("v"));
    await engine.close();
    const raw = new Database(file);
    raw.prepare("UPDATE cairn_meta SET value = '2' WHERE name = 'schema_version'").run();
    raw.close();
    const error = await expectCode(factory.open(`sqlite://${file}`), "UNSUPPORTED");
    expect(error.message).toContain(file);
    expect(error.message).toContain("schema version 2");
  });

  it("lets two processes count by compare-and-swap on one file to the exact total", {
    timeout: 60_000,
  }, async () => {
    const script = fileURLToPath(new URL("./fixtures/increment.mjs", import.meta.url));
    const engineModule = new URL("../dist/index.js", import.meta.url);
    if (!existsSync(engineModule))
      expect.fail("dist/index.js is missing: run `pnpm --filter @cairn/engine-sqlite build` first");
    const partition = randomName("counters");
    const perProcess = 250;
    const children = [0, 1].map(() => {
      const child = spawn(
        process.execPath,
        [script, engineModule.href, `sqlite://${shared}`, partition, String(perProcess)],
        {
          stdio: ["pipe", "pipe", "pipe"],
        },
      );
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (s: string) => {
        stdout += s;
      });
      child.stderr.setEncoding("utf8").on("data", (s: string) => {
        stderr += s;
      });
      const ready = new Promise<void>((resolve, reject) => {
        const poll = setInterval(() => {
          if (stdout.startsWith("ready\n")) {
            clearInterval(poll);
            resolve();
          }
        }, 5);
        child.once("exit", () => {
          clearInterval(poll);
          reject(new Error(`child exited before it was ready: ${stderr}`));
        });
      });
      const done = new Promise<{ attempts: number }>((resolve, reject) => {
        child.once("exit", (code) => {
          if (code !== 0) reject(new Error(`child exited with ${code}: ${stderr}`));
          else resolve(JSON.parse(stdout.split("\n")[1]!));
        });
      });
      ready.catch(() => {});
      return { child, ready, done };
    });
    await Promise.all(children.map((c) => c.ready));
    for (const { child } of children) child.stdin.end("go\n");
    const results = await Promise.all(children.map((c) => c.done));
    for (const r of results) expect(r.attempts).toBeGreaterThanOrEqual(perProcess);

    const engine = await factory.open(`sqlite://${shared}`);
    try {
      expect(new TextDecoder().decode(await engine.get(partition, "counter"))).toBe(String(2 * perProcess));
    } finally {
      await engine.close();
    }
  });

  it("fails with UNAVAILABLE naming the file when another connection holds the write lock too long", async () => {
    const file = join(await tempDir("cairn-sqlite-"), "busy.db");
    const engine = await factory.open(`sqlite://${file}?busyTimeout=50`);
    const blocker = new Database(file);
    blocker.exec("BEGIN IMMEDIATE");
    try {
      const error = await expectCode(engine.set("p", "k", utf8("v")), "UNAVAILABLE");
      expect(error.message).toContain(file);
      expect(await engine.get("p", "k")).toBeUndefined();
    } finally {
      blocker.exec("ROLLBACK");
      blocker.close();
    }
    await engine.set("p", "k", utf8("v"));
    await engine.close();
  });

  it("writes large batches on its writer thread: committed when the promise settles, in the order sent, refused whole when locked", async () => {
    const file = join(await tempDir("cairn-sqlite-"), "thread.db");
    const engine = await factory.open(`sqlite://${file}?busyTimeout=50`);
    const ops = (n: number, value: string) =>
      Array.from({ length: n }, (_, i) => ({
        partition: "p",
        key: `k${String(i).padStart(5, "0")}`,
        value: utf8(value),
      }));
    // Two batches sent at once, the second overwriting and deleting some of the first's keys.
    const first = engine.writeBatch(ops(2000, "one"));
    const second = engine.writeBatch([
      ...ops(600, "two"),
      ...ops(10, "").map((op) => ({ ...op, value: null })),
    ]);
    await Promise.all([first, second]);
    const other = new Database(file, { readonly: true });
    try {
      const count = other.prepare("SELECT count(*) AS n FROM cairn_kv").get() as { n: number };
      expect(count.n).toBe(1990);
    } finally {
      other.close();
    }
    expect(await engine.get("p", "k00005")).toBeUndefined();
    expect(Buffer.from((await engine.get("p", "k00100"))!).toString()).toBe("two");
    expect(Buffer.from((await engine.get("p", "k01000"))!).toString()).toBe("one");

    const blocker = new Database(file);
    blocker.exec("BEGIN IMMEDIATE");
    try {
      const error = await expectCode(engine.writeBatch(ops(1000, "three")), "UNAVAILABLE");
      expect(error.message).toContain(file);
    } finally {
      blocker.exec("ROLLBACK");
      blocker.close();
    }
    expect(Buffer.from((await engine.get("p", "k00100"))!).toString()).toBe("two");

    // Closing waits for a batch in flight.
    const last = engine.writeBatch(ops(1000, "four"));
    await engine.close();
    await last;
    const again = await factory.open(`sqlite://${file}`);
    expect(Buffer.from((await again.get("p", "k00999"))!).toString()).toBe("four");
    await again.close();
  });

  it("lets a process end normally after closing an engine whose writer thread ran", async () => {
    const file = join(await tempDir("cairn-sqlite-"), "exit.db");
    // 13 would be Node's "unsettled top-level await": the loop emptied while close() waited for the thread.
    expect(await runFixture("big-batch.mjs", `sqlite://${file}`)).toEqual({ status: 0, output: "closed\n" });
    const engine = await factory.open(`sqlite://${file}`);
    expect((await collect(engine.scan("p"))).length).toBe(1000);
    await engine.close();
  });

  it("lets a process end normally after reading part of a scan through a snapshot, released or not", async () => {
    for (const mode of ["release", "forget"]) {
      const file = join(await tempDir("cairn-sqlite-"), `${mode}.db`);
      const result = await runFixture("snapshot.mjs", `sqlite://${file}`, mode);
      // The first pages grow 64, 128, 256, 512 rows: the scan stops after 960, with the next page asked for.
      expect({ mode, ...result }).toEqual({ mode, status: 0, output: "read 960\n" });
    }
  });

  it("reads a snapshot on its own thread exactly as the engine reads: text, bytes that are not UTF-8, large values", async () => {
    const file = join(await tempDir("cairn-sqlite-"), "snapshot.db");
    const engine = await factory.open(`sqlite://${file}?pageSize=100`);
    try {
      const values = new Map<string, Uint8Array>();
      for (let i = 0; i < 1000; i++) {
        const key = `k${String(i).padStart(4, "0")}-ü`;
        // Mostly JSON text; every 7th value holds bytes that are not UTF-8, every 250th is larger than a page's share.
        const value =
          i % 250 === 0
            ? new Uint8Array(200_000).fill(i % 256)
            : i % 7 === 0
              ? Uint8Array.of(0xff, 0xfe, i % 256, 0xc3)
              : utf8(JSON.stringify({ i, s: "é".repeat(i % 13) }));
        values.set(key, value);
      }
      await engine.writeBatch([...values].map(([key, value]) => ({ partition: "p", key, value })));
      const snapshot = await engine.snapshot!();
      try {
        await engine.set("p", "k0001-ü", utf8("changed after the snapshot"));
        const pages = await collect(snapshot.scanPages!("p", { from: "k0003", limit: 990 }));
        expect(pages.map((page) => page.length)).toEqual([
          64, 100, 100, 100, 100, 100, 100, 100, 100, 100, 26,
        ]);
        const read = pages.flat();
        const expected = [...values].filter(([key]) => key >= "k0003").slice(0, 990);
        expect(read.map((e) => e.key)).toEqual(expected.map(([key]) => key));
        expect(read.map((e) => hex(e.value))).toEqual(expected.map(([, value]) => hex(value)));
        expect(hex(await snapshot.get("p", "k0001-ü"))).toBe(hex(values.get("k0001-ü")));
        expect(hex(await snapshot.get("p", "k0250-ü"))).toBe(hex(values.get("k0250-ü")));
        expect(await snapshot.get("p", "nothing")).toBeUndefined();
        expect(await collect(snapshot.partitions())).toEqual(["p"]);
      } finally {
        await snapshot.release();
      }
      const error = await expectCode(snapshot.get("p", "k0001-ü"), "UNAVAILABLE");
      expect(error.message).toContain(file);
      await expectCode(collect(snapshot.scan("p")), "UNAVAILABLE");
    } finally {
      await engine.close();
    }
  });

  it("resolves a relative path against the working directory and creates parent folders", async () => {
    const base = await tempDir("cairn-sqlite-");
    const target = join(base, "a", "b", "c", "meta.db");
    const engine = await factory.open(`sqlite://./${relative(process.cwd(), target)}`);
    expect(engine.filename).toBe(target);
    await engine.set("p", "k", utf8("v"));
    await engine.close();
    expect(existsSync(target)).toBe(true);
  });

  it("fails with UNAVAILABLE naming the file when its folder cannot be created", async () => {
    const base = await tempDir("cairn-sqlite-");
    await writeFile(join(base, "file"), "x");
    const error = await expectCode(
      factory.open(`sqlite://${join(base, "file", "sub", "meta.db")}`),
      "UNAVAILABLE",
    );
    expect(error.message).toContain(join(base, "file", "sub", "meta.db"));
  });

  it("reads URL parameters and rejects unknown ones and bad values", async () => {
    expect(parseSqliteUrl("sqlite:///abs/meta.db?busyTimeout=25&synchronous=normal&pageSize=7")).toEqual({
      filename: "/abs/meta.db",
      busyTimeout: 25,
      synchronous: "normal",
      pageSize: 7,
    });
    expect(parseSqliteUrl("sqlite:///with%20space/m%25.db").filename).toBe("/with space/m%.db");
    expect(parseSqliteUrl("sqlite://./rel/meta.db").filename).toBe("./rel/meta.db");
    for (const url of [
      "sqlite:///abs/meta.db?cache=shared",
      "sqlite:///abs/meta.db?busyTimeout=-1",
      "sqlite:///abs/meta.db?busyTimeout=soon",
      "sqlite:///abs/meta.db?pageSize=0",
      "sqlite:///abs/meta.db?synchronous=off",
      "sqlite://",
      "sqlite:///abs/",
      "mysql://localhost/db",
    ]) {
      await expectCode(factory.open(url), "INVALID_ARGUMENT");
    }
    expect(factory.schemes).toEqual(["sqlite"]);
  });

  it("pages a scan by size when values are large", async () => {
    const file = join(await tempDir("cairn-sqlite-"), "pages.db");
    const engine = await factory.open(`sqlite://${file}?pageSize=3&synchronous=normal`);
    const big = new Uint8Array(6 * 1024 * 1024).fill(7);
    await engine.writeBatch(
      ["a", "b", "c", "d", "e", "f", "g"].map((key) => ({ partition: "p", key, value: big })),
    );
    const seen: string[] = [];
    for await (const entry of engine.scan("p")) {
      seen.push(entry.key);
      if (entry.key === "c") await engine.delete("p", "d");
    }
    expect(seen).toEqual(["a", "b", "c", "e", "f", "g"]);
    await engine.close();
  });

  it("opens a private in-memory database", async () => {
    const a = await factory.open("sqlite://:memory:");
    const b = await factory.open("sqlite://:memory:");
    await a.set("p", "k", utf8("v"));
    expect(await b.get("p", "k")).toBeUndefined();
    expect(await collect(a.partitions())).toEqual(["p"]);
    await a.close();
    await b.close();
  });

  it("uses an injected database and leaves it open on close", async () => {
    const file = join(await tempDir("cairn-sqlite-"), "injected.db");
    const db = new Database(file);
    const engine = createSqliteEngine({ database: db });
    expect(engine.filename).toBe(file);
    await engine.set("p", "k", utf8("v"));
    await engine.close();
    expect(db.open).toBe(true);
    const row = db
      .prepare("SELECT value FROM cairn_kv WHERE partition = ? AND key = ?")
      .get(Buffer.from("p"), Buffer.from("k")) as {
      value: Buffer;
    };
    expect(row.value.toString()).toBe("v");
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    db.close();
  });

  it("copies and freezes its options", async () => {
    const options = { filename: ":memory:", pageSize: 2 };
    const engine = createSqliteEngine(options);
    options.pageSize = 0;
    await engine.writeBatch(["a", "b", "c"].map((key) => ({ partition: "p", key, value: utf8(key) })));
    expect((await collect(engine.scan("p"))).map((e) => e.key)).toEqual(["a", "b", "c"]);
    await engine.close();
  });

  it("rejects keys and partitions outside the contract with INVALID_ARGUMENT", async () => {
    const engine = await factory.open("sqlite://:memory:");
    await expectCode(engine.set("p", "", utf8("v")), "INVALID_ARGUMENT");
    await expectCode(engine.set("", "k", utf8("v")), "INVALID_ARGUMENT");
    await expectCode(engine.set("p", "lone \ud800 surrogate", utf8("v")), "INVALID_ARGUMENT");
    await expectCode(engine.get("p", "x".repeat(4097)), "INVALID_ARGUMENT");
    await expectCode(engine.set("p".repeat(256), "k", utf8("v")), "INVALID_ARGUMENT");
    await expectCode(collect(engine.scan("p", { limit: -1 })), "INVALID_ARGUMENT");
    await expectCode(
      engine.writeBatch([
        { partition: "p", key: "ok", value: utf8("v") },
        { partition: "p", key: "", value: utf8("v") },
      ]),
      "INVALID_ARGUMENT",
    );
    expect(await engine.get("p", "ok")).toBeUndefined();
    await engine.close();
    await expectCode(engine.get("p", "k"), "UNAVAILABLE");
  });

  it("keeps its file readable by other SQLite tools", async () => {
    const base = await tempDir("cairn-sqlite-");
    await mkdir(join(base, "x"));
    const file = join(base, "x", "meta.db");
    const engine = await factory.open(`sqlite://${file}`);
    await engine.set("p", "😀", utf8("v"));
    await engine.set("p", "\uffff", utf8("v"));
    await engine.close();
    const db = new Database(file, { readonly: true });
    const keys = (db.prepare("SELECT key FROM cairn_kv ORDER BY key").all() as { key: Buffer }[]).map((r) =>
      r.key.toString(),
    );
    db.close();
    expect(keys).toEqual(["\uffff", "😀"]);
  });
});
