#!/usr/bin/env node
// The two commands of the README, `npm start` and `npm test`, on a machine that has only Node 20 and
// npm: bootstrap the pinned pnpm, install, build, start the services the tests need, run, and end a
// test run with one line `tests: N passed, N failed` that CI reads.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(import.meta.url), "../..");
const { packageManager } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const pnpmVersion = packageManager.split("@")[1];
const task = process.argv[2];

const env = { ...process.env, TURBO_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" };
// better-sqlite3 compiles from source here; Node's own headers avoid a download.
if (!env.npm_config_nodedir && existsSync("/usr/include/node/node.h")) env.npm_config_nodedir = "/usr";

function run(cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env, ...options });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function must(cmd, args, what) {
  const status = run(cmd, args);
  if (status !== 0) {
    console.error(`cairn setup: ${what} failed (exit ${status}).`);
    process.exit(status);
  }
}

function findPnpm() {
  const probe = spawnSync("pnpm", ["--version"], { encoding: "utf8", env });
  if (probe.status === 0 && probe.stdout.trim() === pnpmVersion) return "pnpm";
  const local = join(root, ".tools", "node_modules", ".bin", "pnpm");
  const localProbe = existsSync(local) ? spawnSync(local, ["--version"], { encoding: "utf8", env }) : null;
  if (localProbe?.status === 0 && localProbe.stdout.trim() === pnpmVersion) return local;
  console.error(`cairn setup: installing pnpm ${pnpmVersion} into .tools/`);
  mkdirSync(join(root, ".tools"), { recursive: true });
  must(
    "npm",
    [
      "install",
      "--no-save",
      "--no-audit",
      "--no-fund",
      "--prefix",
      join(root, ".tools"),
      `pnpm@${pnpmVersion}`,
    ],
    "installing pnpm",
  );
  return local;
}

const pnpm = findPnpm();
env.PATH = `${join(root, ".tools", "node_modules", ".bin")}:${join(root, "node_modules", ".bin")}:${env.PATH}`;

const lockfile = existsSync(join(root, "pnpm-lock.yaml"));
must(
  pnpm,
  ["install", lockfile ? "--frozen-lockfile" : "--no-frozen-lockfile", "--reporter=append-only"],
  "pnpm install",
);

if (task === "start") {
  must(
    pnpm,
    ["exec", "turbo", "run", "build", "--filter=@cairn/cli...", "--output-logs=errors-only"],
    "build",
  );
  process.exit(
    run("node", [
      join(root, "apps/cli/dist/bin.js"),
      ...(process.argv.slice(3).length ? process.argv.slice(3) : ["tour"]),
    ]),
  );
}

if (task === "bench") {
  must(
    pnpm,
    ["exec", "turbo", "run", "build", "--filter=@cairn/bench...", "--output-logs=errors-only"],
    "build",
  );
  process.exit(run("node", [join(root, "bench/dist/run.js"), ...process.argv.slice(3)]));
}

/** Starts Redis and MariaDB where they are not running, and passes their URLs to the tests. */
function startServices() {
  const result = spawnSync("node", [join(root, "scripts", "services.mjs"), "start"], {
    cwd: root,
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  if (result.status !== 0) {
    console.error(`cairn setup: starting test services failed (exit ${result.status}).`);
    process.exit(result.status ?? 1);
  }
  for (const line of result.stdout.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
}

if (task === "test") {
  const started = Date.now();
  must(pnpm, ["exec", "turbo", "run", "build", "--output-logs=errors-only"], "build");
  startServices();
  for (const dir of workspaceDirs()) rmSync(join(dir, ".test-results.json"), { force: true });
  const lint = run(pnpm, ["exec", "biome", "check", "."]);
  const typecheck = run(pnpm, ["exec", "turbo", "run", "typecheck", "--output-logs=errors-only"]);
  const tests = run(pnpm, ["exec", "turbo", "run", "test", "--concurrency=1", "--continue"]);
  const { passed, failed, files } = collectResults();
  const minutes = ((Date.now() - started) / 60000).toFixed(1);
  if (lint !== 0) console.error("cairn setup: lint (biome check) failed.");
  if (typecheck !== 0) console.error("cairn setup: typecheck failed.");
  console.log(`test files: ${files}, time: ${minutes} min`);
  console.log(`tests: ${passed} passed, ${failed} failed`);
  const ok = lint === 0 && typecheck === 0 && tests === 0 && failed === 0 && passed > 0;
  process.exit(ok ? 0 : 1);
}

if (task !== "install") {
  console.error(`cairn setup: unknown task "${task}" (expected start, test, bench or install).`);
  process.exit(2);
}

function workspaceDirs() {
  const dirs = [];
  for (const group of ["packages", "apps", "bench"]) {
    const base = join(root, group);
    if (!existsSync(base)) continue;
    if (existsSync(join(base, "package.json"))) dirs.push(base);
    for (const name of readdirSync(base)) {
      if (existsSync(join(base, name, "package.json"))) dirs.push(join(base, name));
    }
  }
  return dirs;
}

function collectResults() {
  let passed = 0;
  let failed = 0;
  let files = 0;
  for (const dir of workspaceDirs()) {
    const file = join(dir, ".test-results.json");
    if (!existsSync(file)) continue;
    const report = JSON.parse(readFileSync(file, "utf8"));
    passed += report.numPassedTests ?? 0;
    failed += report.numFailedTests ?? 0;
    files += report.testResults?.length ?? 0;
    // A file that failed to load (syntax error, failed import) has no tests but must fail the run.
    for (const suite of report.testResults ?? []) {
      if (suite.status === "failed" && (suite.assertionResults ?? []).length === 0) failed += 1;
    }
  }
  return { passed, failed, files };
}
