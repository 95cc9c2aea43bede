import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, expect } from "vitest";

export const BIN = fileURLToPath(new URL("../dist/bin.js", import.meta.url));

export interface Result {
  status: number;
  stdout: string;
  stderr: string;
  bytes: Buffer;
}

interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** `false`: do not append `--meta sqlite://<dir>/meta.db`. */
  meta?: boolean;
}

export interface Cli {
  /** The temporary folder the commands run in. */
  dir: string;
  meta: string;
  /** Runs `cairn <args…> --meta sqlite://<dir>/meta.db` in `dir`, as a user would. */
  (args: string[], options?: RunOptions): Promise<Result>;
  /** Runs and expects exit status 0; returns stdout. */
  ok(args: string[]): Promise<string>;
  /** Runs with --json and parses every line of stdout. */
  json<T = Record<string, unknown>>(args: string[]): Promise<T[]>;
  /** Runs and expects a one-line error with `status`, no stack trace; returns stderr. */
  fails(args: string[], status: number, options?: RunOptions): Promise<string>;
}

/**
 * Runs the built binary without blocking: a synchronous spawn would stall the test worker's event loop for
 * as long as a test runs commands, and vitest reports that as a timeout.
 */
function runBin(argv: string[], cwd: string, options: RunOptions): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...argv], {
      cwd,
      env: { ...process.env, CAIRN_META: "", CAIRN_AUTHOR: "tester", ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const bytes = Buffer.concat(out);
      resolve({
        status: code ?? (signal ? 128 : -1),
        stdout: bytes.toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        bytes,
      });
    });
    child.stdin.end(options.input ?? "");
  });
}

/** A fresh folder and metadata database for one test file, removed afterwards. */
export function setupCli(): Cli {
  const dir = mkdtempSync(join(tmpdir(), "cairn-cli-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const meta = `sqlite://${dir}/meta.db`;
  const run = ((args: string[], options: RunOptions = {}) =>
    runBin(options.meta === false ? args : [...args, "--meta", meta], dir, options)) as Cli;
  run.dir = dir;
  run.meta = meta;
  run.ok = async (args) => {
    const r = await run(args);
    if (r.status !== 0) throw new Error(`cairn ${args.join(" ")} exited ${r.status}:\n${r.stderr}`);
    return r.stdout;
  };
  run.json = async <T>(args: string[]) => {
    const stdout = await run.ok([...args, "--json"]);
    return stdout
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => {
        try {
          return JSON.parse(l) as T;
        } catch (error) {
          // Names the line and the whole output, for a failure that shows only now and then.
          throw new Error(`cairn ${args.join(" ")} --json printed a line that is not JSON: ${l}\n${stdout}`, {
            cause: error,
          });
        }
      });
  };
  run.fails = async (args, status, options) => {
    const r = await run(args, options);
    expectOneLineError(r, status);
    return r.stderr;
  };
  return run;
}

/** A user's mistake: a non-zero status, one line `cairn: …` on stderr, no stack trace. */
export function expectOneLineError(r: Result, status: number): void {
  expect(r.stderr).toMatch(/^cairn: .+\n$/);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.status, r.stderr).toBe(status);
}

/** Everything a user can see of a repository, to check a failed command changed nothing. */
export async function snapshot(cli: Cli, repo: string): Promise<string> {
  const parts = [
    await cli.ok(["repo", "list", "--json"]),
    await cli.ok(["branch", "list", `cairn://${repo}`, "--json"]),
    await cli.ok(["tag", "list", `cairn://${repo}`, "--json"]),
  ];
  for (const b of await cli.json<{ name: string }>(["branch", "list", `cairn://${repo}`])) {
    parts.push(await cli.ok(["log", `cairn://${repo}/${b.name}`, "--json", "--all-parents"]));
    parts.push(await cli.ok(["fs", "ls", `cairn://${repo}/${b.name}/`, "--recursive", "--json"]));
    parts.push(await cli.ok(["diff", `cairn://${repo}/${b.name}`, "--json"]));
  }
  return parts.join("\n");
}

/** Exit statuses, as the README documents them. */
export const EXIT = {
  USAGE: 2,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 4,
  ALREADY_EXISTS: 5,
  CONFLICT: 6,
  PRECONDITION_FAILED: 7,
  CORRUPT: 8,
  UNSUPPORTED: 9,
  UNAVAILABLE: 10,
} as const;
