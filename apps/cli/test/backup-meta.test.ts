import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ENGINE_DUMP_SECTIONS } from "@cairn/core";
import { writeDump } from "@cairn/manifest";
import { beforeAll, describe, expect, it } from "vitest";
import { BIN, EXIT, expectOneLineError, setupCli } from "./helpers.js";

const cli = setupCli();
const CONFLICT = 6;
const INTERRUPTED = 130;

let n = 0;
/** A new target folder and its URL. */
function newTarget(): { dir: string; url: string } {
  const dir = join(cli.dir, `target-${++n}`);
  return { dir, url: pathToFileURL(dir).href };
}

/** The files of a target's meta/ folder, sorted. */
const metaFiles = (dir: string): string[] =>
  existsSync(join(dir, "meta")) ? readdirSync(join(dir, "meta")).sort() : [];

/** Files left in the folder store's temporary folder: there must be none after any run. */
const tempFiles = (dir: string): string[] =>
  existsSync(join(dir, ".cairn-tmp")) ? readdirSync(join(dir, ".cairn-tmp")) : [];

interface Status {
  last: { file: string; records: number; size: number; time: string; token: number } | null;
  lease: { held: boolean; token: number } | null;
  dumps: { file: string; time: string; size: number }[];
}

const status = async (url: string, meta = cli.meta): Promise<Status> => {
  const r = await cli(["backup-meta", "status", "--to", url, "--json", "--meta", meta], { meta: false });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Status;
};

/** A long-running `cairn` process whose stderr can be awaited line by line. */
interface Running {
  child: ChildProcess;
  stderr(): string;
  /** Resolves when stderr matches `pattern` (rejects after `ms`). */
  waitFor(pattern: RegExp, ms?: number): Promise<void>;
  exited: Promise<number>;
}

function start(args: string[], meta = cli.meta): Running {
  const child = spawn(process.execPath, [BIN, ...args, "--meta", meta], {
    cwd: cli.dir,
    env: { ...process.env, CAIRN_META: "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  const waiters = new Set<() => void>();
  child.stderr!.on("data", (c: Buffer) => {
    err += c.toString("utf8");
    for (const w of waiters) w();
  });
  child.stdout!.resume();
  const exited = new Promise<number>((resolve) => {
    child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : -1)));
  });
  return {
    child,
    stderr: () => err,
    exited,
    waitFor: (pattern, ms = 30_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!pattern.test(err)) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`stderr never matched ${pattern}:\n${err}`));
        }, ms);
        waiters.add(check);
        check();
      }),
  };
}

beforeAll(async () => {
  await cli.ok(["repo", "create", "cairn://photos"]);
  writeFileSync(join(cli.dir, "a.txt"), "alpha\n");
  await cli.ok(["fs", "upload", join(cli.dir, "a.txt"), "cairn://photos/main/a.txt"]);
  await cli.ok(["commit", "cairn://photos/main", "-m", "first"]);
});

describe("cairn backup-meta run --once", () => {
  it("dumps the engine to meta/, which loads into a new engine; status shows it; a second run is not due", async () => {
    const { dir, url } = newTarget();
    const r = await cli(["backup-meta", "run", "--to", url, "--once"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /^backup-meta: dumped \d+ records \(.+\) to file:\/\/.+\/meta\/dump-\d{4}-\d\d-\d\d-\d{6}\.json\.gz in \d+\.\d s\n$/,
    );
    const files = metaFiles(dir);
    expect(files).toHaveLength(1);
    expect(tempFiles(dir)).toEqual([]);

    const restored = `sqlite://${join(cli.dir, "restored.db")}`;
    await cli.ok(["load", restored, join(dir, "meta", files[0]!)]);
    const cat = await cli(["fs", "cat", "cairn://photos/main/a.txt", "--meta", restored], { meta: false });
    expect(cat.stdout).toBe("alpha\n");

    const s = await status(url);
    expect(s.last!.file).toBe(`meta/${files[0]}`);
    expect(s.lease!.held).toBe(false);
    expect(s.dumps.map((d) => d.file)).toEqual([`meta/${files[0]}`]);
    const text = await cli.ok(["backup-meta", "status", "--to", url]);
    expect(text).toContain(`last backup:  `);
    expect(text).toContain(files[0]);
    expect(text).toMatch(/lease: +free/);

    const again = await cli(["backup-meta", "run", "--to", url, "--once"]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/^backup-meta: not due: the last dump .+ the next is due at .+\n$/);
    expect(metaFiles(dir)).toHaveLength(1);
  });

  it("lets the shortest interval win: a 1s process dumps again where a 1h process finds nothing due", async () => {
    const { dir, url } = newTarget();
    await cli.ok(["backup-meta", "run", "--to", url, "--once", "--every", "1h"]);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await cli(["backup-meta", "run", "--to", url, "--once", "--every", "1h"])).stderr).toMatch(
      /not due/,
    );
    expect((await cli(["backup-meta", "run", "--to", url, "--once", "--every", "1s"])).stderr).toMatch(
      /dumped/,
    );
    expect(metaFiles(dir)).toHaveLength(2);
  });

  it("makes exactly one dump when two processes run at once", async () => {
    const { dir, url } = newTarget();
    const results = await Promise.all(
      [1, 2, 3].map(() => cli(["backup-meta", "run", "--to", url, "--once", "--every", "1h", "--json"])),
    );
    for (const r of results) expect(r.status, r.stderr).toBe(0);
    const events = results.map((r) => JSON.parse(r.stderr) as { event: string });
    expect(events.filter((e) => e.event === "done")).toHaveLength(1);
    for (const e of events) expect(["done", "busy", "not-due"]).toContain(e.event);
    expect(metaFiles(dir)).toHaveLength(1);
  });

  it("reports duration, size and records as one JSON line with --json", async () => {
    const { url } = newTarget();
    const r = await cli(["backup-meta", "run", "--to", url, "--once", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    const event = JSON.parse(r.stderr) as Record<string, unknown>;
    expect(event).toMatchObject({ event: "done", engine: "sqlite", consistency: "snapshot", removed: [] });
    for (const field of ["durationMs", "size", "records", "token"])
      expect(typeof event[field]).toBe("number");
  });

  it("encrypts with --encrypt-rsa-key; cairn load reads the dump with the private key", async () => {
    const { dir, url } = newTarget();
    const { publicKey, privateKey } = generateKeyPairSync("rsa", {
      modulusLength: 2048,
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
    });
    writeFileSync(join(cli.dir, "meta-pub.pem"), publicKey);
    writeFileSync(join(cli.dir, "meta-priv.pem"), privateKey);
    await cli.ok(["backup-meta", "run", "--to", url, "--once", "--encrypt-rsa-key", "meta-pub.pem"]);
    const [file] = metaFiles(dir);
    const bytes = readFileSync(join(dir, "meta", file!));
    expect(bytes.subarray(0, 8).toString()).toBe("CAIRNENC");
    const meta = `sqlite://${join(cli.dir, "restored-enc.db")}`;
    await cli.ok(["load", meta, join(dir, "meta", file!), "--encrypt-rsa-key", "meta-priv.pem"]);
  });

  it("applies --keep-* rules to dumps only", async () => {
    const { dir, url } = newTarget();
    mkdirSync(join(dir, "meta"), { recursive: true });
    for (const day of ["01", "02", "03"])
      writeFileSync(join(dir, "meta", `dump-2026-01-${day}-000000.json.gz`), "x");
    writeFileSync(join(dir, "meta", "README.txt"), "not a dump");
    const r = await cli(["backup-meta", "run", "--to", url, "--once", "--keep-last", "2"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/; removed 2 old dumps\n$/);
    const files = metaFiles(dir);
    expect(files).toHaveLength(3);
    expect(files).toContain("README.txt");
    expect(files).toContain("dump-2026-01-03-000000.json.gz");
  });

  it("reports a target it cannot write in one line, leaves nothing, and the next run works", async () => {
    const { dir, url } = newTarget();
    mkdirSync(dir);
    writeFileSync(join(dir, "meta"), "a file where the dumps' folder should be");
    const error = await cli.fails(["backup-meta", "run", "--to", url, "--once"], CONFLICT);
    expect(error).toContain(url);
    expect(error).toContain("meta/dump-");
    expect(tempFiles(dir)).toEqual([]);
    const s = await status(url);
    expect(s.last).toBeNull();
    expect(s.lease!.held).toBe(false);
    rmSync(join(dir, "meta"));
    await cli.ok(["backup-meta", "run", "--to", url, "--once"]);
    expect(metaFiles(dir)).toHaveLength(1);
  });

  describe("bad input: one line, non-zero, nothing written", () => {
    const cases: [string[], number, RegExp][] = [
      [["--every", "abc"], EXIT.INVALID_ARGUMENT, /--every interval "abc" is not a duration/],
      [["--every", "0s"], EXIT.INVALID_ARGUMENT, /--every interval "0s" is zero/],
      [["--every", "-5m"], EXIT.INVALID_ARGUMENT, /--every interval "-5m" is not a duration/],
      [["--keep-last", "x"], EXIT.INVALID_ARGUMENT, /--keep-last must be a whole number/],
      [["--keep-daily", "1.5"], EXIT.INVALID_ARGUMENT, /--keep-daily must be a whole number/],
      [["--keep-within", "3q"], EXIT.INVALID_ARGUMENT, /--keep-within "3q"/],
      [["--keep-last", "0", "--keep-daily", "0"], EXIT.INVALID_ARGUMENT, /retention policy is empty/],
      [["--lease-ttl", "soon"], EXIT.INVALID_ARGUMENT, /--lease-ttl duration "soon"/],
      [["--encrypt-rsa-key", "missing.pem"], EXIT.INVALID_ARGUMENT, /public key missing\.pem/],
      [["--encrypt-algo", "rot13"], EXIT.USAGE, /rot13/],
    ];
    it("each refused before anything is written", async () => {
      // Concurrently: each is a process start and a check, nothing more.
      await Promise.all(
        cases.map(async ([flags, code, message]) => {
          const { dir, url } = newTarget();
          const r = await cli(["backup-meta", "run", "--to", url, "--once", ...flags]);
          expectOneLineError(r, code);
          expect(r.stderr, flags.join(" ")).toMatch(message);
          expect(metaFiles(dir)).toEqual([]);
        }),
      );
    });

    it("no --to", async () => {
      expect(await cli.fails(["backup-meta", "run", "--once"], EXIT.USAGE)).toMatch(/--to/);
    });

    it("an unknown store scheme", async () => {
      expect(await cli.fails(["backup-meta", "status", "--to", "nope://x"], EXIT.UNSUPPORTED)).toMatch(
        /Unknown object store scheme "nope:"/,
      );
    });
  });
});

describe("cairn backup-meta run (long-running)", () => {
  it("two processes with the same interval make one dump per interval; SIGTERM stops them with status 0", async () => {
    const { dir, url } = newTarget();
    const a = start(["backup-meta", "run", "--to", url, "--every", "1s"]);
    const b = start(["backup-meta", "run", "--to", url, "--every", "1s"]);
    await Promise.all([a.waitFor(/every 1s/), b.waitFor(/every 1s/)]);
    const began = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    a.child.kill("SIGTERM");
    b.child.kill("SIGTERM");
    expect(await a.exited, a.stderr()).toBe(0);
    expect(await b.exited, b.stderr()).toBe(0);
    const elapsed = Date.now() - began;
    for (const p of [a, b]) {
      expect(p.stderr()).toMatch(/backup-meta: stopped \(SIGTERM\); the lease is released\n$/);
      expect(p.stderr()).not.toMatch(/failed|fenced/);
    }
    const dumped = (a.stderr() + b.stderr()).match(/dumped/g) ?? [];
    const times = metaFiles(dir).map((f) => {
      const m = /^dump-(\d{4})-(\d\d)-(\d\d)-(\d\d)(\d\d)(\d\d)\.json\.gz$/.exec(f)!;
      return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
    });
    expect(times.length).toBe(dumped.length);
    expect(times.length).toBeGreaterThanOrEqual(2);
    // At most one dump per second-long interval: distinct seconds, no more than the time allowed.
    expect(new Set(times).size).toBe(times.length);
    expect(times.length).toBeLessThanOrEqual(Math.ceil(elapsed / 1000) + 2);
    expect((await status(url)).lease!.held).toBe(false);
    expect(tempFiles(dir)).toEqual([]);
  });

  it("keeps running when a run fails, and dumps once the target works again", async () => {
    const { dir, url } = newTarget();
    mkdirSync(dir);
    writeFileSync(join(dir, "meta"), "blocked");
    const p = start(["backup-meta", "run", "--to", url, "--every", "1s"]);
    await p.waitFor(/backup-meta: failed: .*meta\/dump-/);
    rmSync(join(dir, "meta"));
    await p.waitFor(/backup-meta: dumped/);
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    expect(metaFiles(dir).length).toBeGreaterThanOrEqual(1);
  });

  it("stops on Ctrl-C in the middle of a dump: status 130, no dump, no temporary file, lease released", async () => {
    // An engine big enough that its dump takes a while: 60,000 records, loaded from a generated dump.
    const source = join(cli.dir, "big.json");
    const writer = writeDump({
      output: createWriteStream(source),
      sections: ENGINE_DUMP_SECTIONS,
      source: { engine: "test" },
      tool: { name: "test", version: "1" },
    });
    for (let i = 0; i < 60_000; i++) {
      await writer.write({
        type: "engine-record",
        partition: "data",
        key: `k/${String(i).padStart(8, "0")}`,
        value: Buffer.from(`value number ${i} `.repeat(4)).toString("base64"),
      });
    }
    await writer.end();
    const meta = `sqlite://${join(cli.dir, "big.db")}`;
    await cli.ok(["load", meta, source]);

    const { dir, url } = newTarget();
    const p = start(["backup-meta", "run", "--to", url, "--every", "1h"], meta);
    await p.waitFor(/every 1h/);
    await new Promise((r) => setTimeout(r, 50));
    p.child.kill("SIGINT");
    expect(await p.exited, p.stderr()).toBe(INTERRUPTED);
    expect(p.stderr()).not.toMatch(/dumped/);
    expect(p.stderr()).toMatch(/stopped \(SIGINT\); the lease is released\ncairn: interrupted\n$/);
    expect(metaFiles(dir)).toEqual([]);
    expect(tempFiles(dir)).toEqual([]);
    const s = await status(url, meta);
    expect(s.last).toBeNull();
    expect(s.lease!.held).toBe(false);
  }, 120_000);
});

describe("cairn backup-meta status", () => {
  it("says never before the first dump", async () => {
    const { url } = newTarget();
    const text = await cli.ok(["backup-meta", "status", "--to", url]);
    expect(text).toMatch(/last backup: +never/);
    expect(text).toMatch(/dumps: +0/);
    expect(await status(url)).toMatchObject({ last: null, lease: null, dumps: [] });
  });

  it("is one line of error for a target that is not a folder", () => {
    return cli(["backup-meta", "status", "--to", "file:///etc/passwd/x"]).then((r) =>
      expectOneLineError(r, EXIT.INVALID_ARGUMENT),
    );
  });
});
