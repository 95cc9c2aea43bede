import { createServer, type Socket } from "node:net";
import { ENGINE_LIMITS, type WriteOp } from "@cairn/core";
import { collect, expectCode, randomName } from "@cairn/testkit";
import { freePort } from "@cairn/testkit/servers";
import mysql from "mysql2/promise";
import { afterAll, describe, expect, inject, it, onTestFinished } from "vitest";
import {
  createMysqlEngine,
  factory,
  hideMysqlPassword,
  type MysqlEngine,
  parseMysqlUrl,
} from "../src/index.js";

const server = inject("mysqlServer");
const database = inject("mysqlDatabase");
const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString("utf8"));
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

const admin = await mysql.createConnection({ uri: `${server}${database}` });
afterAll(() => admin.end());

/** A table prefix of its own for one test, so tests never see each other's keys. */
const prefix = () => `${randomName("t").replaceAll("-", "_")}_`;

/** The URL of the tables with prefix `p` in the run's database. */
const urlOf = (p: string, params = "") => `${server}${database}?prefix=${p}${params ? `&${params}` : ""}`;

/** Opens an engine on new tables of the run's database, closed (and its tables dropped) after the test. */
async function open(params = "", p = prefix()): Promise<MysqlEngine> {
  const engine = await factory.open(urlOf(p, params));
  onTestFinished(async () => {
    await engine.close();
    await admin.query(`DROP TABLE IF EXISTS \`${p}kv\`, \`${p}meta\``);
  });
  return engine;
}

/** `server` with its user and password replaced. */
function withCredentials(user: string, password: string): string {
  const url = new URL(server);
  url.username = user;
  url.password = password;
  return url.href;
}

describe("mysql URLs", () => {
  it("reads the usual form, with defaults, IPv6 and percent-decoding", () => {
    expect(parseMysqlUrl("mysql://alice:s3cret@db.example:3307/meta")).toEqual({
      host: "db.example",
      port: 3307,
      user: "alice",
      password: "s3cret",
      database: "meta",
      url: "mysql://alice:***@db.example:3307/meta",
    });
    expect(parseMysqlUrl("mysql://db.example/meta")).toMatchObject({ host: "db.example", port: 3306 });
    expect(parseMysqlUrl("mysql:///meta")).toMatchObject({ host: "127.0.0.1", port: 3306 });
    expect(parseMysqlUrl("mysql://bob@[::1]:3310/meta")).toMatchObject({
      host: "::1",
      port: 3310,
      user: "bob",
    });
    expect(parseMysqlUrl("mysql://a%40b:p%25w%3F@h/my%20db")).toMatchObject({
      user: "a@b",
      password: "p%w?",
      database: "my db",
    });
  });

  it("reads JuiceFS's form, where the address is in parentheses and the password is not escaped", () => {
    expect(parseMysqlUrl("mysql://juice:pa@ss/w:rd@(10.0.0.5:3306)/juicefs")).toEqual({
      host: "10.0.0.5",
      port: 3306,
      user: "juice",
      password: "pa@ss/w:rd",
      database: "juicefs",
      url: "mysql://juice:***@(10.0.0.5:3306)/juicefs",
    });
    expect(parseMysqlUrl("mysql://root@tcp(db:3307)/meta")).toMatchObject({ host: "db", port: 3307 });
    expect(parseMysqlUrl("mysql://root@()/meta")).toMatchObject({ host: "127.0.0.1", port: 3306 });
  });

  it("reads its parameters", () => {
    expect(
      parseMysqlUrl(
        "mysql://root@h/db?prefix=app_&poolSize=9&connectTimeout=250&pageSize=50&createDatabase=false",
      ),
    ).toMatchObject({
      tablePrefix: "app_",
      poolSize: 9,
      connectTimeout: 250,
      pageSize: 50,
      createDatabase: false,
    });
  });

  it("refuses bad URLs and parameters with one sentence naming the URL, password hidden", async () => {
    for (const [url, why] of [
      ["mysql://root:hunter2@h/db?ssl=true", /Unknown parameter "ssl"/],
      ["mysql://root:hunter2@h/db?poolSize=0", /poolSize=0/],
      ["mysql://root:hunter2@h/db?poolSize=many", /poolSize=many/],
      ["mysql://root:hunter2@h/db?connectTimeout=-1", /connectTimeout=-1/],
      ["mysql://root:hunter2@h/db?createDatabase=yes", /createDatabase=yes/],
      ["mysql://root:hunter2@h/db?localInfile=true", /Unknown parameter "localInfile"/],
      ["mysql://root:hunter2@h/db?prefix=bad-prefix", /prefix "bad-prefix"/],
      ["mysql://root:hunter2@h:99999/db", /port "99999"/],
      ["mysql://root:hunter2@h:3306/", /names no database/],
      ["mysql://root:hunter2@h:3306", /names no database/],
      ["mysql://root:hunter2@(h:3306)", /names no database/],
      ["mysql://root:hunter2@h/a/b", /does not allow/],
      ["mysql://root:hunter2@h/%zz", /malformed percent-escape/],
      ["postgres://root:hunter2@h/db", /not a MySQL URL/],
    ] as const) {
      const error = await expectCode(factory.open(url), "INVALID_ARGUMENT");
      expect(error.message, url).toMatch(why);
      expect(error.message, url).not.toContain("hunter2");
      expect(error.message, url).toContain(
        url.startsWith("postgres") ? "postgres://root:***@h" : "root:***@",
      );
    }
    expect(factory.schemes).toEqual(["mysql"]);
  });

  it("hides passwords that hold @, / or :", () => {
    expect(hideMysqlPassword("mysql://u:a@b/c:d@(h:1)/db?prefix=x_")).toBe(
      "mysql://u:***@(h:1)/db?prefix=x_",
    );
    expect(hideMysqlPassword("mysql://u@h/db")).toBe("mysql://u@h/db");
  });
});

describe("mysql engine", () => {
  it("opens through JuiceFS's URL form against the server", async () => {
    const url = new URL(server);
    const auth = url.password ? `${url.username}:${url.password}` : url.username;
    const p = prefix();
    const engine = await factory.open(
      `mysql://${auth}@(${url.hostname}:${url.port || 3306})/${database}?prefix=${p}`,
    );
    try {
      await engine.set("p", "k", utf8("v"));
      expect(text(await engine.get("p", "k"))).toBe("v");
    } finally {
      await engine.close();
      await admin.query(`DROP TABLE IF EXISTS \`${p}kv\`, \`${p}meta\``);
    }
  });

  it("creates a missing database, or says it is missing when asked not to create it", async () => {
    // Named after the run's database, so the run's teardown drops it whatever happens here.
    const name = `${database}_new`;
    const missing = await expectCode(factory.open(`${server}${name}?createDatabase=false`), "NOT_FOUND");
    expect(missing.message).toContain(name);
    const engine = await factory.open(`${server}${name}`);
    try {
      await engine.set("p", "k", utf8("v"));
      const [rows] = await admin.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE ?", [name]);
      expect(rows).toHaveLength(1);
    } finally {
      await engine.close();
      await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
    }
  });

  it("keeps engines with different table prefixes apart in one database", async () => {
    const a = await open();
    const b = await open();
    await a.set("p", "k", utf8("a"));
    expect(await b.get("p", "k")).toBeUndefined();
    expect(await collect(b.partitions())).toEqual([]);
    expect(a.tables.kv).not.toBe(b.tables.kv);
  });

  it("refuses tables written by a newer schema version, naming the URL", async () => {
    const p = prefix();
    const url = `${server}${database}?prefix=${p}`;
    const engine = await factory.open(url);
    await engine.set("p", "k", utf8("v"));
    await engine.close();
    await admin.query(`UPDATE \`${p}meta\` SET value = '2' WHERE name = 'schema_version'`);
    try {
      const error = await expectCode(factory.open(url), "UNSUPPORTED");
      expect(error.message).toContain(`${database}?prefix=${p}`);
      expect(error.message).toContain("schema version 2");
      const [rows] = await admin.query<mysql.RowDataPacket[]>(`SELECT COUNT(*) AS n FROM \`${p}kv\``);
      expect(Number(rows[0]!.n)).toBe(1);
    } finally {
      await admin.query(`DROP TABLE IF EXISTS \`${p}kv\`, \`${p}meta\``);
    }
  });

  it("fails fast with UNAVAILABLE naming the URL when no server listens", async () => {
    const port = await freePort();
    const started = Date.now();
    const error = await expectCode(
      factory.open(`mysql://root:hunter2@127.0.0.1:${port}/${database}`),
      "UNAVAILABLE",
    );
    expect(Date.now() - started).toBeLessThan(5000);
    expect(error.message).toContain(`mysql://root:***@127.0.0.1:${port}/${database}`);
    expect(error.message).toMatch(/connection refused/);
    expect(error.message).not.toContain("hunter2");
    expect(error.message.split("\n")).toHaveLength(1);
  });

  it("gives up after connectTimeout when the server accepts but never answers", async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as { port: number };
    try {
      const started = Date.now();
      const error = await expectCode(
        factory.open(`mysql://root@127.0.0.1:${port}/${database}?connectTimeout=300`),
        "UNAVAILABLE",
      );
      expect(Date.now() - started).toBeLessThan(3000);
      expect(error.message).toContain(`127.0.0.1:${port}/${database}`);
      expect(error.message).toMatch(/no answer within 300 ms/);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });

  it("fails with PERMISSION_DENIED naming the URL when the server refuses the password", async () => {
    const url = new URL(withCredentials(new URL(server).username || "root", "wrong-password"));
    url.pathname = `/${database}`;
    const error = await expectCode(factory.open(url.href), "PERMISSION_DENIED");
    expect(error.message).toContain(`${url.username}:***@`);
    expect(error.message).toMatch(/refused the credentials/);
    expect(error.message).not.toContain("wrong-password");
  });

  it("keeps long keys apart and in byte order when they share the indexed head", async () => {
    // pageSize=3 makes every group of keys sharing a 2,048-byte head cross page boundaries.
    const engine = await open("pageSize=3");
    const head = "h".repeat(2046);
    const keys = [
      head,
      `${head}x`,
      `${head}xy`, // exactly 2,048 bytes: no tail
      `${head}xy\u0000`,
      `${head}xya`,
      `${head}xyb`,
      `${head}xyé`, // the split falls inside "é"
      `${head}xé`,
      `${head}xy😀`,
      `${head}xy\uffff`,
      `${head}xy${"z".repeat(2048)}`, // 4,096 bytes
      `${head}xz`,
      `${head}xza`,
      `${head}é${"é".repeat(1000)}`,
      `${"h".repeat(2047)}i${"q".repeat(100)}`,
      `${"h".repeat(2047)}i${"p".repeat(100)}`,
      "a",
      "z",
    ];
    for (const [i, key] of [...keys].reverse().entries()) await engine.set("p", key, utf8(String(i)));
    const sorted = [...keys].sort(byteOrder);
    expect((await collect(engine.scan("p"))).map((e) => e.key)).toEqual(sorted);
    for (const key of keys) expect(text(await engine.get("p", key)), key.slice(2040)).toBeDefined();
    expect(await engine.get("p", `${head}xyc`)).toBeUndefined();

    for (const after of [`${head}xy`, `${head}xya`, `${head}xy\u0000`, `${head}xyé`, head, `${head}xy😀`]) {
      expect(
        (await collect(engine.scan("p", { after }))).map((e) => e.key),
        after.slice(2040),
      ).toEqual(sorted.filter((k) => byteOrder(k, after) > 0));
    }
    for (const prefix of [`${head}xy`, `${head}xy${"z".repeat(100)}`, `${head}x`, "h".repeat(2047)]) {
      for (const after of [undefined, `${head}xya`]) {
        expect(
          (await collect(engine.scan("p", { prefix, after }))).map((e) => e.key),
          `${prefix.slice(2040)} after ${after?.slice(2040)}`,
        ).toEqual(
          sorted.filter((k) => k.startsWith(prefix) && (after === undefined || byteOrder(k, after) > 0)),
        );
      }
    }
    expect((await collect(engine.scan("p", { prefix: `${head}xy`, limit: 4 }))).map((e) => e.key)).toEqual(
      sorted.filter((k) => k.startsWith(`${head}xy`)).slice(0, 4),
    );

    expect(await engine.setIf("p", `${head}xyb`, utf8("new"), null)).toBe(false);
    expect(await engine.setIf("p", `${head}xyc`, utf8("new"), null)).toBe(true);
    expect(await engine.setIf("p", `${head}xyc`, utf8("newer"), utf8("new"))).toBe(true);
    await engine.delete("p", `${head}xyb`);
    await engine.writeBatch([
      { partition: "p", key: `${head}xyd`, value: utf8("d") },
      { partition: "p", key: `${head}xya`, value: null },
    ]);
    const now = sorted.filter((k) => k !== `${head}xyb` && k !== `${head}xya`);
    now.push(`${head}xyc`, `${head}xyd`);
    expect((await collect(engine.scan("p"))).map((e) => e.key)).toEqual(now.sort(byteOrder));
    expect(text(await engine.get("p", `${head}xyc`))).toBe("newer");
  });

  it("reads a group of long keys larger than a page in order, also while it is deleted", async () => {
    const engine = await open("pageSize=4");
    const head = "g".repeat(2048);
    const keys = Array.from({ length: 23 }, (_, i) => `${head}${String((i * 7) % 23).padStart(3, "0")}`);
    await engine.writeBatch(keys.map((key) => ({ partition: "p", key, value: utf8(key.slice(2048)) })));
    await engine.writeBatch(["a", "b", "zz"].map((key) => ({ partition: "p", key, value: utf8(key) })));
    const expected = ["a", "b", ...[...keys].sort(byteOrder), "zz"];
    expect((await collect(engine.scan("p"))).map((e) => e.key)).toEqual(expected);
    expect((await collect(engine.scan("p", { limit: 9 }))).map((e) => e.key)).toEqual(expected.slice(0, 9));
    const seen: string[] = [];
    for await (const entry of engine.scan("p")) {
      seen.push(entry.key);
      expect(text(entry.value)).toBe(entry.key.length > 2048 ? entry.key.slice(2048) : entry.key);
      await engine.delete("p", entry.key);
    }
    expect(seen).toEqual(expected);
    expect(await collect(engine.scan("p"))).toEqual([]);
  });

  it("loads large batches byte for byte, with every byte value in keys' neighbours and values", async () => {
    const engine = await open();
    const special = Uint8Array.from([0x00, 0x09, 0x0a, 0x0d, 0x5c, 0x4e, 0x5c, 0x4e, 0x27, 0x22, 0xff]);
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const keys = Array.from({ length: 1200 }, (_, i) => `k\t${String(i).padStart(5, "0")}\\N\n`);
    const value = (i: number) => (i % 3 === 0 ? special : i % 3 === 1 ? all : new Uint8Array(0));
    // Out of order, with keys set twice and deleted, so the batch is not simply appended.
    const ops: WriteOp[] = keys.flatMap((key, i) => [
      { partition: "bulk\t\\", key, value: utf8("first") },
      { partition: "other", key, value: value(i) },
    ]);
    ops.reverse();
    for (let i = 0; i < keys.length; i += 2)
      ops.push({ partition: "bulk\t\\", key: keys[i]!, value: value(i) });
    for (let i = 1; i < keys.length; i += 4) ops.push({ partition: "bulk\t\\", key: keys[i]!, value: null });
    await engine.writeBatch(ops);
    const bulk = await collect(engine.scan("bulk\t\\"));
    const expected = keys.filter((_, i) => i % 4 !== 1);
    expect(bulk.map((e) => e.key)).toEqual(expected);
    for (const entry of bulk) {
      const i = keys.indexOf(entry.key);
      expect(Buffer.from(entry.value)).toEqual(Buffer.from(i % 2 === 0 ? value(i) : utf8("first")));
    }
    const other = await collect(engine.scan("other"));
    expect(other).toHaveLength(keys.length);
    for (const entry of other)
      expect(Buffer.from(entry.value)).toEqual(Buffer.from(value(keys.indexOf(entry.key))));
    expect(await collect(engine.partitions())).toEqual(["bulk\t\\", "other"]);
  });

  it("loads batches that take several statements, cut by rows and by bytes, whole", async () => {
    const engine = await open();
    // 2,345 small rows: two statements of 1,000 and the rest in smaller ones.
    const small = Array.from({ length: 2345 }, (_, i) => ({
      partition: "p",
      key: `k${String(i).padStart(5, "0")}`,
      value: utf8(`v${i}`),
    }));
    await engine.writeBatch(small);
    // Values of 1 MiB (the largest sent with others): a few per statement.
    const mib = (i: number) => new Uint8Array(1024 * 1024).fill(i);
    const large = Array.from({ length: 9 }, (_, i) => ({ partition: "q", key: `m${i}`, value: mib(i) }));
    await engine.writeBatch([...large, { partition: "p", key: "k00000", value: null }]);
    const p = await collect(engine.scan("p"));
    expect(p.map((e) => e.key)).toEqual(small.slice(1).map((op) => op.key));
    for (const entry of p) expect(text(entry.value)).toBe(`v${Number(entry.key.slice(1))}`);
    const q = await collect(engine.scan("q"));
    expect(q.map((e) => e.key)).toEqual(large.map((op) => op.key));
    for (const [i, entry] of q.entries()) expect(Buffer.from(entry.value).equals(mib(i))).toBe(true);
    // A batch of one statement overwrites as any other.
    await engine.writeBatch(small.slice(0, 10).map((op) => ({ ...op, value: utf8("again") })));
    expect((await collect(engine.scan("p", { limit: 9 }))).map((e) => text(e.value))).toEqual(
      Array(9).fill("again"),
    );
  });

  it("hands out a scan's entries in non-empty pages that hold exactly what scan yields", async () => {
    const p = prefix();
    const engine = await open("pageSize=7", p);
    const keys = Array.from({ length: 40 }, (_, i) => `k${String(i).padStart(2, "0")}`);
    const big = new Set(["k05", "k06", "k30"]);
    // pageSize=7 reads values of up to 16 MiB / 7 with a page; larger ones are read on their own.
    const value = (key: string) => (big.has(key) ? new Uint8Array(3 * 1024 * 1024).fill(1) : utf8(key));
    for (const key of keys) await engine.set("p", key, value(key));
    const flat = async (pages: AsyncIterable<readonly { key: string; value: Uint8Array }[]>) => {
      const out: string[] = [];
      for await (const page of pages) {
        expect(page.length).toBeGreaterThan(0);
        expect(page.length).toBeLessThanOrEqual(7);
        for (const e of page) {
          expect(Buffer.from(e.value).equals(Buffer.from(value(e.key)))).toBe(true);
          out.push(e.key);
        }
      }
      return out;
    };
    for (const options of [
      {},
      { limit: 13 },
      { prefix: "k1" },
      { after: "k05", before: "k31" },
      { limit: 0 },
    ]) {
      const scanned = (await collect(engine.scan("p", options))).map((e) => e.key);
      expect(await flat(engine.scanPages!("p", options)), JSON.stringify(options)).toEqual(scanned);
    }
    expect(await flat(engine.scanPages!("p"))).toEqual(keys);
    const snap = await engine.snapshot!();
    try {
      await engine.delete("p", "k00");
      expect(await flat(snap.scanPages!("p"))).toEqual(keys);
      expect(await flat(engine.scanPages!("p"))).toEqual(keys.slice(1));
    } finally {
      await snap.release();
    }
  });

  it("loads through a pool whose client refuses LOAD DATA LOCAL INFILE, and leaves the pool open", async () => {
    // Servers with local_infile off (MySQL 8's default) load as fast: the engine never asks for it.
    const pool = mysql.createPool({
      uri: `${server}${database}`,
      connectionLimit: 2,
      flags: ["-LOCAL_FILES"],
    });
    const p = prefix();
    const engine = await createMysqlEngine({ pool, database, tablePrefix: p });
    try {
      const ops = Array.from({ length: 500 }, (_, i) => ({
        partition: "p",
        key: `k${i}`,
        value: utf8(`v${i}`),
      }));
      await engine.writeBatch(ops);
      await engine.writeBatch(ops.map((op) => ({ ...op, value: utf8("again") })));
      const entries = await collect(engine.scan("p"));
      expect(entries).toHaveLength(500);
      for (const entry of entries) expect(text(entry.value)).toBe("again");
      await engine.close();
      // The engine leaves an injected pool open for its owner.
      const [rows] = await pool.query<mysql.RowDataPacket[]>("SELECT 1 AS one");
      expect(rows[0]!.one).toBe(1);
    } finally {
      await engine.close();
      await pool.end();
      await admin.query(`DROP TABLE IF EXISTS \`${p}kv\`, \`${p}meta\``);
    }
  });

  it("applies a batch whole or not at all when one of its ops is invalid", async () => {
    const engine = await open();
    await engine.set("p", "keep", utf8("old"));
    const ops = Array.from({ length: 300 }, (_, i) => ({ partition: "p", key: `k${i}`, value: utf8("v") }));
    await expectCode(
      engine.writeBatch([
        ...ops,
        { partition: "p", key: "keep", value: null },
        { partition: "p", key: "", value: null },
      ]),
      "INVALID_ARGUMENT",
    );
    expect((await collect(engine.scan("p"))).map((e) => e.key)).toEqual(["keep"]);
  });

  it("reads values larger than a scan page holds one by one, skipping those deleted meanwhile", async () => {
    // The first page of a scan has 500 rows and reads values of up to 32 KiB with it.
    const engine = await open();
    const big = (n: number) => new Uint8Array(40 * 1024).fill(n);
    await engine.writeBatch(
      ["a", "b", "c", "d", "e"].map((key, i) => ({ partition: "p", key, value: big(i) })),
    );
    await engine.set("p", "c2", utf8("small"));
    const seen: string[] = [];
    for await (const entry of engine.scan("p")) {
      seen.push(entry.key);
      if (entry.key === "a") await engine.delete("p", "b");
      if (entry.key !== "c2") {
        expect(Buffer.from(entry.value).equals(big(["a", "b", "c", "d", "e"].indexOf(entry.key)))).toBe(true);
      }
    }
    // "b" was read with the first page, but deleted before its value was: it was not there the whole scan.
    expect(seen).toEqual(["a", "c", "c2", "d", "e"]);
  });

  it("scans small entries in growing pages and still returns large values met late", async () => {
    const engine = await open();
    const keys = Array.from({ length: 6000 }, (_, i) => `k${String(i).padStart(5, "0")}`);
    const big = new Set(["k04000", "k04001", "k05999"]);
    const value = (key: string) =>
      big.has(key) ? new Uint8Array(300 * 1024).fill(key.charCodeAt(5)) : utf8(key);
    await engine.writeBatch(keys.map((key) => ({ partition: "p", key, value: value(key) })));
    const entries = await collect(engine.scan("p"));
    expect(entries.map((e) => e.key)).toEqual(keys);
    for (const entry of entries)
      expect(Buffer.from(entry.value).equals(Buffer.from(value(entry.key)))).toBe(true);
  });

  it("refuses a value larger than the server's max_allowed_packet with INVALID_ARGUMENT", async () => {
    const engine = await open();
    const [rows] = await admin.query<mysql.RowDataPacket[]>("SELECT @@max_allowed_packet AS m");
    const maxPacket = Number(rows[0]!.m);
    if (maxPacket > ENGINE_LIMITS.valueBytes + 64 * 1024) return; // this server takes every value the contract allows
    const value = new Uint8Array(ENGINE_LIMITS.valueBytes);
    const error = await expectCode(engine.set("p", "huge", value), "INVALID_ARGUMENT");
    expect(error.message).toMatch(/max_allowed_packet/);
    expect(error.message).toContain(database);
    await expectCode(engine.writeBatch([{ partition: "p", key: "huge", value }]), "INVALID_ARGUMENT");
    expect(await engine.get("p", "huge")).toBeUndefined();
  });

  it("compares and swaps values too large to send both in one statement", async () => {
    const engine = await open();
    const a = new Uint8Array(9 * 1024 * 1024).fill(1);
    const b = new Uint8Array(9 * 1024 * 1024).fill(2);
    await engine.set("p", "k", a);
    expect(await engine.setIf("p", "k", b, b)).toBe(false);
    expect(await engine.setIf("p", "k", b, a)).toBe(true);
    expect(Buffer.from((await engine.get("p", "k"))!).equals(Buffer.from(b))).toBe(true);
  });

  it("keeps a snapshot's view while other connections write, across pages, until released", async () => {
    const p = prefix();
    const engine = await open("pageSize=2", p);
    const writer = await factory.open(urlOf(p));
    onTestFinished(() => writer.close());
    const keys = ["a", "b", "c", "d", "e", "f", "g"];
    await engine.writeBatch(keys.map((key) => ({ partition: "p", key, value: utf8(`v:${key}`) })));
    const snap = await engine.snapshot!();
    const seen: string[] = [];
    for await (const entry of snap.scan("p")) {
      seen.push(`${entry.key}=${text(entry.value)}`);
      // Ahead of the scan: deleted, overwritten and inserted keys, and a new partition.
      await writer.delete("p", "f");
      await writer.set("p", "e", utf8("changed"));
      await writer.set("p", "ee", utf8("new"));
      await writer.set("q", "x", utf8("new"));
    }
    expect(seen).toEqual(keys.map((k) => `${k}=v:${k}`));
    expect(await collect(snap.partitions())).toEqual(["p"]);
    expect(text(await snap.get("p", "e"))).toBe("v:e");
    expect(text(await engine.get("p", "e"))).toBe("changed");
    await snap.release();
    await snap.release();
    await expectCode(snap.get("p", "e"), "UNAVAILABLE");
    await expectCode(collect(snap.scan("p")), "UNAVAILABLE");

    const open2 = await engine.snapshot!();
    await engine.close();
    await expectCode(open2.get("p", "a"), "UNAVAILABLE");
    await open2.release();
  });

  it("is closed for good after close(), which is idempotent", async () => {
    const engine = await open();
    await engine.close();
    await engine.close();
    const error = await expectCode(engine.get("p", "k"), "UNAVAILABLE");
    expect(error.message).toContain(database);
    await expectCode(engine.writeBatch([{ partition: "p", key: "k", value: null }]), "UNAVAILABLE");
    await expectCode(engine.snapshot!(), "UNAVAILABLE");
  });

  it("stores the documented layout, readable with any MySQL client", async () => {
    const engine = await open();
    await engine.set("p", "short", utf8("v"));
    await engine.set("p", `${"x".repeat(2048)}tail`, utf8("w"));
    const [rows] = await admin.query<mysql.RowDataPacket[]>(
      `SELECT p, head, tail, LENGTH(tail_hash) AS hashed, value FROM \`${engine.tables.kv}\` ORDER BY head`,
    );
    expect(
      rows.map((r) => [
        String(r.p),
        String(r.head).length,
        String(r.tail),
        Number(r.hashed),
        String(r.value),
      ]),
    ).toEqual([
      ["p", 5, "", 0, "v"],
      ["p", 2048, "tail", 32, "w"],
    ]);
    const [meta] = await admin.query<mysql.RowDataPacket[]>(
      `SELECT name, value FROM \`${engine.tables.meta}\``,
    );
    expect(meta.map((r) => [String(r.name), String(r.value)])).toEqual([["schema_version", "1"]]);
  });
});
