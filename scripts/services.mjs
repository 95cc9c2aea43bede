#!/usr/bin/env node
// Makes sure the servers the engine tests talk to are up: Redis on 127.0.0.1:6379 and MariaDB on
// 127.0.0.1:3306. A server that is not listening is started; one that is not installed is installed from
// Debian's packages first. Prints the URLs the tests use (REDIS_URL, MYSQL_URL) as `NAME=value` lines.
// The emulators (dynalite, s3rver, Azurite) are npm packages that the tests start themselves.
//
//   node scripts/services.mjs start      # start what is missing, print the URLs
//   node scripts/services.mjs env        # only print the URLs
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { Socket } from "node:net";

const REDIS = { host: "127.0.0.1", port: 6379 };
const MYSQL = { host: "127.0.0.1", port: 3306 };
// Used where root may only log in over the unix socket (a fresh Debian install).
const TEST_USER = { name: "cairn_test", password: "cairn_test" };

function log(message) {
  console.error(`cairn services: ${message}`);
}

function sh(cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { encoding: "utf8", ...options });
  return {
    status: result.error ? 127 : (result.status ?? 1),
    stdout: result.stdout ?? "",
    stderr: result.stderr ?? "",
  };
}

function listening({ host, port }, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("error", () => done(false));
    socket.connect(port, host, () => done(true));
  });
}

async function waitFor(what, address, seconds) {
  for (let i = 0; i < seconds * 10; i++) {
    if (await listening(address, 300)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not start listening on ${address.host}:${address.port} within ${seconds} s`);
}

let aptUpdated = false;
function aptInstall(pkg, binary) {
  if (existsSync(binary)) return;
  log(`installing ${pkg} from Debian's packages`);
  const asRoot = process.getuid?.() === 0 ? [] : ["sudo", "-n"];
  const run = (args) => {
    const [cmd, ...rest] = [...asRoot, ...args];
    const r = spawnSync(cmd, rest, {
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    return r.status ?? 1;
  };
  if (!aptUpdated) {
    run(["apt-get", "update", "-q"]);
    aptUpdated = true;
  }
  if (run(["apt-get", "install", "-y", "-q", "--no-install-recommends", pkg]) !== 0 || !existsSync(binary)) {
    throw new Error(`could not install ${pkg} (apt-get install ${pkg} failed)`);
  }
}

async function ensureRedis() {
  if (await listening(REDIS)) return;
  aptInstall("redis-server", "/usr/bin/redis-server");
  log("starting redis-server on 127.0.0.1:6379");
  const r = sh(
    "redis-server",
    ["--daemonize", "yes", "--bind", "127.0.0.1", "--port", String(REDIS.port)].concat([
      "--save",
      "",
      "--appendonly",
      "no",
    ]),
  );
  if (r.status !== 0) throw new Error(`redis-server did not start: ${r.stderr.trim() || r.stdout.trim()}`);
  await waitFor("redis-server", REDIS, 20);
}

function mariadb(args, input) {
  return sh("mariadb", ["--protocol=socket", "-u", "root", ...args], { input });
}

async function ensureMariadb() {
  if (!(await listening(MYSQL))) {
    aptInstall("mariadb-server", "/usr/sbin/mariadbd");
    log("starting mariadbd on 127.0.0.1:3306");
    mkdirSync("/run/mysqld", { recursive: true });
    sh("chown", ["mysql:mysql", "/run/mysqld"]);
    // mariadbd refuses to run as root, and start-stop-daemon --background would hide that.
    const r = sh(
      "start-stop-daemon",
      ["--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd", "--"].concat([
        "--user=mysql",
        "--bind-address=127.0.0.1",
        `--port=${MYSQL.port}`,
      ]),
    );
    if (r.status !== 0) throw new Error(`mariadbd did not start: ${r.stderr.trim()}`);
    await waitFor("mariadbd", MYSQL, 60);
  }
}

/** The MySQL URL tests use: root without password where it works over TCP, else a test user made for them. */
async function mysqlUrl() {
  if (process.env.MYSQL_URL) return process.env.MYSQL_URL;
  const probe = sh("mariadb", ["-h", MYSQL.host, "-P", String(MYSQL.port), "-u", "root", "-e", "SELECT 1"]);
  if (probe.status === 0) return `mysql://root@${MYSQL.host}:${MYSQL.port}/`;
  const sql = `CREATE USER IF NOT EXISTS '${TEST_USER.name}'@'127.0.0.1' IDENTIFIED BY '${TEST_USER.password}';
GRANT ALL PRIVILEGES ON *.* TO '${TEST_USER.name}'@'127.0.0.1';
FLUSH PRIVILEGES;`;
  const r = mariadb([], sql);
  if (r.status !== 0) throw new Error(`could not create the MariaDB test user: ${r.stderr.trim()}`);
  return `mysql://${TEST_USER.name}:${TEST_USER.password}@${MYSQL.host}:${MYSQL.port}/`;
}

async function main() {
  const task = process.argv[2] ?? "start";
  if (task !== "start" && task !== "env") {
    console.error("usage: node scripts/services.mjs start|env");
    process.exit(2);
  }
  try {
    if (task === "start") {
      await ensureRedis();
      await ensureMariadb();
    }
    console.log(`REDIS_URL=${process.env.REDIS_URL ?? `redis://${REDIS.host}:${REDIS.port}`}`);
    console.log(`MYSQL_URL=${await mysqlUrl()}`);
  } catch (error) {
    log(error instanceof Error ? error.message : String(error));
    process.exit(1);
  }
}

await main();
