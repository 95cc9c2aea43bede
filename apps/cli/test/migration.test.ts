import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { EMULATOR_CREDENTIALS } from "@cairn/testkit/servers";
import pLimit from "p-limit";
import { afterAll, beforeAll, describe, inject, it } from "vitest";
import { BIN, setupCli } from "./helpers.js";

// The migration matrix: a repository built through the CLI in each of the four engines, moved to each of the
// other three with `cairn dump <src> - | cairn load <dst> -`, then dumped again and used on the target.

const ENGINES = ["sqlite", "redis", "mysql", "dynamodb"] as const;
type Kind = (typeof ENGINES)[number];

const cli = setupCli();
const dynamo = inject("dynamoEndpoint");
// Unique per run, so runs can repeat and overlap on the shared Redis and MariaDB servers.
const run = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
const redisBase = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const mysqlBase = new URL(process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/");
const redisPrefix = `cairn-mig-${run}-`;
const mysqlPrefix = `cairn_mig_${run}_`;
const REPO = "cairn://mig";
const env = {
  ...process.env,
  CAIRN_META: "",
  CAIRN_AUTHOR: "tester",
  AWS_ACCESS_KEY_ID: EMULATOR_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: EMULATOR_CREDENTIALS.secretAccessKey,
  AWS_REGION: "us-east-1",
};

/** An empty, isolated engine of `kind`: its own file, key prefix, database or table. */
function engineUrl(kind: Kind, name: string): string {
  switch (kind) {
    case "sqlite":
      return `sqlite://${join(cli.dir, `${name}.db`)}`;
    case "redis":
      return `${redisBase}?prefix=${redisPrefix}${name}:`;
    case "mysql": {
      const url = new URL(mysqlBase.href);
      url.pathname = `/${mysqlPrefix}${name}`;
      return url.href;
    }
    case "dynamodb":
      return `dynamodb://cairn-mig-${run}-${name}?region=us-east-1&endpoint=${encodeURIComponent(dynamo)}`;
  }
}

/** Runs the CLI against `meta`; fails with the command's stderr unless it exits 0. */
const on = (meta: string) => {
  const ok = async (args: string[]) => {
    const r = await cli([...args, "--meta", meta], { meta: false, env });
    if (r.status !== 0)
      throw new Error(`cairn ${args.join(" ")} --meta ${meta} exited ${r.status}:\n${r.stderr}`);
    return r.stdout;
  };
  const json = async <T>(args: string[]) =>
    (await ok([...args, "--json"]))
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as T);
  return { ok, json };
};

/**
 * What a user sees of the repository on main: its listing, its log through both parents of the merge, and its
 * uncommitted changes. (Every other branch, tag and record is compared through the dumps.)
 */
async function view(meta: string): Promise<unknown> {
  const c = on(meta);
  return {
    files: await c.json(["fs", "ls", `${REPO}/main/`, "--recursive"]),
    log: await c.json(["log", `${REPO}/main`, "--all-parents"]),
    uncommitted: await c.json(["diff", `${REPO}/main`]),
  };
}

/**
 * A small repository with everything a dump carries: commits on two branches, a committed deletion, a tag, a
 * real merge commit (both sides moved), and on main a staged write and a staged deletion left uncommitted.
 */
async function build(kind: Kind, meta: string): Promise<void> {
  const c = on(meta);
  const dir = join(cli.dir, `files-${kind}`);
  mkdirSync(join(dir, "first", "docs"), { recursive: true });
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  file("first/a.txt", `alpha from ${kind}\n`);
  file("first/docs/b ü.txt", "beta ünïcode 😀\n");
  file("first/docs/c.txt", "gamma\n".repeat(100));
  await c.ok(["repo", "create", REPO, pathToFileURL(join(cli.dir, `ns-${kind}`)).href]);
  await c.ok(["fs", "upload", join(dir, "first"), `${REPO}/main/`, "--recursive"]);
  await c.ok(["commit", `${REPO}/main`, "-m", "first", "--meta", "ticket=1"]);
  await c.ok(["branch", "create", `${REPO}/dev`, "--source", "main"]);
  await c.ok(["fs", "upload", file("feature.txt", "feature\n"), `${REPO}/dev/feature.txt`]);
  await c.ok(["fs", "rm", `${REPO}/dev/docs/c.txt`]);
  await c.ok(["commit", `${REPO}/dev`, "-m", "feature, c.txt removed"]);
  await c.ok(["tag", "create", `${REPO}/v1`, "dev"]);
  await c.ok(["fs", "upload", file("notes.txt", "notes\n"), `${REPO}/main/notes.txt`]);
  await c.ok(["commit", `${REPO}/main`, "-m", "notes"]);
  await c.ok(["merge", `${REPO}/dev`, `${REPO}/main`, "-m", "merge dev"]);
  await c.ok(["fs", "upload", file("wip.txt", "work in progress\n"), `${REPO}/main/wip.txt`]);
  await c.ok(["fs", "rm", `${REPO}/main/a.txt`]);
}

interface Dump {
  header: { source: { engine: string }; consistency: string; format: string; sections: string[] };
  /** The record lines, exactly as written. */
  records: string[];
  footer: { counts: Record<string, number>; sha256: string };
}

function parseDump(text: string): Dump {
  const lines = text.split("\n").filter((l) => l !== "");
  return {
    header: JSON.parse(lines[0]!),
    records: lines.slice(1, -1),
    footer: JSON.parse(lines.at(-1)!),
  };
}

const exited = (p: ChildProcess) =>
  new Promise<number | null>((resolve, reject) => {
    p.on("error", reject);
    p.on("close", resolve);
  });

/** `cairn dump <from> - | cairn load <to> -` as two processes joined by a pipe; returns what went through it. */
async function pipe(from: string, to: string): Promise<string> {
  const dump = spawn(process.execPath, [BIN, "dump", from, "-"], { cwd: cli.dir, env });
  const load = spawn(process.execPath, [BIN, "load", to, "-"], { cwd: cli.dir, env });
  const through: Buffer[] = [];
  let errors = "";
  dump.stdout.on("data", (chunk: Buffer) => through.push(chunk));
  dump.stdout.pipe(load.stdin);
  for (const p of [dump, load]) p.stderr.on("data", (d: Buffer) => (errors += d));
  const [a, b] = await Promise.all([exited(dump), exited(load)]);
  if (a !== 0 || b !== 0) throw new Error(`dump exited ${a}, load exited ${b}:\n${errors}`);
  return Buffer.concat(through).toString("utf8");
}

const sources = new Map<Kind, { url: string; view: unknown }>();

beforeAll(async () => {
  // allSettled: the folder is removed after a failure, so no build may still be running then.
  const built = await Promise.allSettled(
    ENGINES.map(async (kind) => {
      const url = engineUrl(kind, "source");
      await build(kind, url);
      sources.set(kind, { url, view: await view(url) });
    }),
  );
  for (const b of built) if (b.status === "rejected") throw b.reason;
}, 240_000);

afterAll(() => {
  const redis = spawnSync("redis-cli", ["-u", redisBase, "--scan", "--pattern", `${redisPrefix}*`], {
    encoding: "utf8",
  });
  const keys = redis.stdout.split("\n").filter(Boolean);
  for (let i = 0; i < keys.length; i += 500)
    spawnSync("redis-cli", ["-u", redisBase, "del", ...keys.slice(i, i + 500)]);
  const mariadb = (sql: string) =>
    spawnSync(
      "mariadb",
      [
        "-h",
        mysqlBase.hostname || "127.0.0.1",
        "-P",
        mysqlBase.port || "3306",
        "-u",
        decodeURIComponent(mysqlBase.username) || "root",
        "-N",
        "-e",
        sql,
      ],
      {
        encoding: "utf8",
        env: {
          ...process.env,
          ...(mysqlBase.password ? { MYSQL_PWD: decodeURIComponent(mysqlBase.password) } : {}),
        },
      },
    );
  const databases = mariadb(`SHOW DATABASES LIKE '${mysqlPrefix.replaceAll("_", "\\_")}%'`)
    .stdout.split("\n")
    .filter(Boolean);
  for (const db of databases) mariadb(`DROP DATABASE \`${db}\``);
  // DynamoDB tables live in the emulator, which the global setup stops; SQLite files in cli.dir.
});

// Two pairs at a time: each pair runs nine CLI processes (two of them at once), and the machine has two cores.
const limit = pLimit(2);
const pairs = ENGINES.flatMap((from) => ENGINES.filter((to) => to !== from).map((to) => [from, to] as const));

describe.concurrent("migration between engines: dump | load, then the repository works on the target", () => {
  for (const [from, to] of pairs)
    it(`${from} → ${to}`, { timeout: 300_000 }, ({ expect }) =>
      limit(async () => {
        const source = sources.get(from)!;
        const target = engineUrl(to, `from-${from}`);
        const piped = parseDump(await pipe(source.url, target));
        // The source's dump, as it went through the pipe.
        expect(piped.header.source.engine).toBe(from);
        expect(piped.footer.counts).toMatchObject({ repository: 1, branch: 2, tag: 1, staged: 2 });

        // The target dumps the same records, in the same order, with the same counts and digest.
        const again = parseDump(await on(target).ok(["dump", target, "-"]));
        expect(again.header.source.engine).toBe(to);
        expect(again.header.format).toBe(piped.header.format);
        expect(again.header.sections).toEqual(piped.header.sections);
        expect(again.records).toEqual(piped.records);
        expect(again.footer).toEqual(piped.footer);

        // The repository works there: listing, log, the uncommitted changes and their bytes, then a commit of them.
        expect(await view(target)).toEqual(source.view);
        const c = on(target);
        expect(await c.ok(["fs", "cat", `${REPO}/main/wip.txt`])).toBe("work in progress\n");
        expect(await c.ok(["commit", `${REPO}/main`, "-m", `migrated to ${to}`])).toMatch(
          new RegExp(`^\\[main [0-9a-f]{12}\\] migrated to ${to}\n`),
        );
        const files = await c.json<{ path: string }>(["fs", "ls", `${REPO}/main/`, "--recursive"]);
        expect(files.map((f) => f.path).sort()).toEqual(
          ["docs/b ü.txt", "feature.txt", "notes.txt", "wip.txt"].sort(),
        );
      }),
    );
});
