import { type ChildProcess, execFile, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/**
 * The emulators the engine and store suites run against — dynalite (DynamoDB), s3rver (S3) and Azurite (Azure
 * Blob) — started as child processes on free ports, each with its own data folder, and stopped with the test
 * run. They are dependencies of this package, so a fresh clone has them after `pnpm install`. Redis servers and
 * Redis Clusters are started the same way from the `redis-server` on the PATH (Debian's package `redis-server`,
 * which `scripts/services.mjs` installs).
 */

const require = createRequire(import.meta.url);

/** A server started for a test run. */
export interface TestServer {
  readonly name: string;
  readonly port: number;
  /** Stops the process and removes its data folder. Idempotent. */
  stop(): Promise<void>;
}

/** Credentials the emulators accept (s3rver insists on this access key; the others take any). */
export const EMULATOR_CREDENTIALS = Object.freeze({ accessKeyId: "S3RVER", secretAccessKey: "S3RVER" });

/** The well-known development account of Azurite (published in Microsoft's Azurite documentation). */
export const AZURITE_ACCOUNT = Object.freeze({
  name: "devstoreaccount1",
  key: "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
});

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on `host:port` within `timeoutMs`. */
export async function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("error", () => done(false));
    socket.connect(port, host, () => done(true));
  });
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export interface StartServerOptions {
  /** Shown in errors. */
  name: string;
  /** Node script to run with this Node, and its arguments. */
  script: string;
  args: readonly string[];
  /** Options for Node itself, e.g. `--openssl-legacy-provider`. */
  nodeOptions?: readonly string[];
  port: number;
  /** The server's working folder, removed on stop unless `keepDataDir`. */
  dataDir?: string;
  keepDataDir?: boolean;
  /** How long to wait for the port to accept connections. @default 30000 */
  timeoutMs?: number;
}

/** Starts a Node script as a server process and resolves once its port accepts connections. */
export async function startServer(options: StartServerOptions): Promise<TestServer> {
  return startProcess({
    ...options,
    command: process.execPath,
    args: [...(options.nodeOptions ?? []), options.script, ...options.args],
  });
}

/** Starts `command` as a server process and resolves once its port accepts connections. */
async function startProcess(
  options: Omit<StartServerOptions, "script" | "nodeOptions"> & { command: string },
): Promise<TestServer> {
  const { name, port, dataDir } = options;
  const child = spawn(options.command, options.args, {
    stdio: ["ignore", "ignore", "pipe"],
    // Servers that drop files in their working directory drop them in their own data folder.
    ...(dataDir ? { cwd: dataDir } : {}),
  });
  running.add(child);
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => {
    stderr = (stderr + s).slice(-4000);
  });
  let exited: number | null | undefined;
  let spawnError: Error | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once("exit", (code) => {
      exited = code;
      running.delete(child);
      resolve();
    });
    // A command that cannot be run at all (not installed) emits "error" and never "exit".
    child.once("error", (error) => {
      spawnError = error;
      exited = null;
      running.delete(child);
      resolve();
    });
  });
  const stop = async () => {
    if (exited === undefined) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exit;
      clearTimeout(timer);
    }
    // One entry at a time: the promise form removes a whole tree at once, and an emulator's folder after a
    // benchmark (60,000 files) then takes 50–75 MB of this process's memory.
    if (dataDir && !options.keepDataDir) rmSync(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  while (!(await canConnect("127.0.0.1", port, 500))) {
    if (exited !== undefined || Date.now() > deadline) {
      await stop();
      throw new Error(
        spawnError
          ? `${name} could not be started (${spawnError.message})`
          : exited !== undefined
            ? `${name} exited with status ${exited} before it listened on port ${port}: ${stderr.trim()}`
            : `${name} did not listen on port ${port} within ${options.timeoutMs ?? 30_000} ms: ${stderr.trim()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { name, port, stop };
}

function packageDir(name: string): string {
  return dirname(require.resolve(`${name}/package.json`));
}

/** dynalite, an in-memory DynamoDB. `endpoint` is `http://127.0.0.1:PORT`. */
export async function startDynalite(): Promise<TestServer & { endpoint: string }> {
  const port = await freePort();
  const server = await startServer({
    name: "dynalite",
    script: join(packageDir("dynalite"), "cli.js"),
    // Without the *Ms flags, tables stay CREATING for half a second.
    args: [
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--createTableMs",
      "0",
      "--deleteTableMs",
      "0",
    ].concat(["--updateTableMs", "0"]),
    port,
  });
  return { ...server, endpoint: `http://127.0.0.1:${port}` };
}

export interface S3rverOptions {
  /** Listen here instead of on a free port — to restart a stopped server where clients expect it. */
  port?: number;
  /** Keep objects in this folder, which the caller owns and removes; by default a temporary one removed on stop. */
  dataDir?: string;
}

/**
 * s3rver, an S3 emulator keeping objects in a temporary folder. Path-style addressing, access key `S3RVER`.
 * It does not enforce `If-None-Match` on PUT.
 */
export async function startS3rver(options: S3rverOptions = {}): Promise<TestServer & { endpoint: string }> {
  const port = options.port ?? (await freePort());
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "cairn-s3rver-")));
  if (options.dataDir) await dropUnfinishedPuts(dataDir);
  const server = await startServer({
    name: "s3rver",
    script: join(packageDir("s3rver"), "bin", "s3rver.js"),
    args: ["-d", dataDir, "-a", "127.0.0.1", "-p", String(port), "--silent"],
    // Without it, every truncated ListObjectsV2 page fails with 500 on Node 20.
    nodeOptions: ["--openssl-legacy-provider"],
    port,
    dataDir,
    // A folder the caller gave outlives the server, so that a restart finds the objects again.
    keepDataDir: options.dataDir !== undefined,
  });
  return { ...server, endpoint: `http://127.0.0.1:${port}` };
}

/**
 * S3 never shows a PUT that did not complete. s3rver writes an object's body, then its `.md5`, then its metadata
 * file; stopped in between, it leaves a body without metadata (listed, with whatever bytes arrived) or a truncated
 * metadata file (every listing of the bucket then fails with 500). Before a restart on a kept folder, drop
 * those, as S3 would never have stored them.
 */
async function dropUnfinishedPuts(dataDir: string): Promise<void> {
  const suffix = "._S3rver_object";
  const files = await readdir(dataDir, { recursive: true });
  for (const file of files) {
    if (!file.endsWith(suffix)) continue;
    const base = join(dataDir, file.slice(0, -suffix.length));
    const finished = await readFile(`${base}._S3rver_metadata.json`, "utf8").then(
      (text) => JSON.parse(text) !== undefined,
      () => false,
    );
    if (finished) continue;
    for (const leftover of [suffix, `${suffix}.md5`, "._S3rver_metadata.json"])
      await rm(`${base}${leftover}`, { force: true });
  }
}

/** Azurite's Blob service, with the well-known development account {@link AZURITE_ACCOUNT}. */
export async function startAzurite(): Promise<TestServer & { endpoint: string; connectionString: string }> {
  const port = await freePort();
  const server = await startServer({
    name: "azurite",
    script: join(packageDir("azurite"), "dist", "src", "blob", "main.js"),
    // In memory: it writes nothing to disk, and answers about a third faster than with its on-disk store.
    args: ["--blobHost", "127.0.0.1", "--blobPort", String(port), "--inMemoryPersistence"]
      // Without --skipApiVersionCheck every request of a newer SDK is refused.
      .concat(["--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]),
    port,
  });
  const endpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT.name}`;
  const connectionString = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT.name};AccountKey=${AZURITE_ACCOUNT.key};BlobEndpoint=${endpoint};`;
  return { ...server, endpoint, connectionString };
}

/** Creates a bucket on an S3 endpoint (s3rver) with the emulator's credentials. */
export async function createBucket(endpoint: string, bucket: string): Promise<void> {
  const { S3Client, CreateBucketCommand } = await import("@aws-sdk/client-s3");
  const client = new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    // A copy: the SDK marks the object it is given, and this one is frozen.
    credentials: { ...EMULATOR_CREDENTIALS },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

/** Creates a container on the Blob service of a connection string (Azurite). */
export async function createContainer(connectionString: string, container: string): Promise<void> {
  const { BlobServiceClient } = await import("@azure/storage-blob");
  await BlobServiceClient.fromConnectionString(connectionString)
    .getContainerClient(container)
    .createIfNotExists();
}

/** What `redis-server` and `redis-cli` are run as: the ones on the PATH. */
const REDIS_SERVER = "redis-server";
const REDIS_CLI = "redis-cli";
const MISSING_REDIS =
  "redis-server is not installed (Debian's package redis-server; `node scripts/services.mjs start` installs it)";

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /** More arguments for `redis-server`, after the helper's own (later ones win), e.g. `["--maxmemory", "10mb"]`. */
  args?: readonly string[];
}

/** Starts one redis-server in `dir` on `port`, without persistence. */
async function launchRedis(
  port: number,
  dir: string,
  args: readonly string[],
  removeDir: boolean,
): Promise<TestServer> {
  try {
    return await startProcess({
      name: `redis-server on port ${port}`,
      command: REDIS_SERVER,
      args: ["--bind", "127.0.0.1", "--port", String(port), "--dir", dir]
        .concat(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .concat(args),
      port,
      ...(removeDir ? { dataDir: dir } : {}),
    });
  } catch (error) {
    if (/ENOENT/.test((error as Error).message)) throw new Error(MISSING_REDIS, { cause: error });
    throw error;
  }
}

/**
 * A `redis-server` of its own on a free port, in a temporary folder, without persistence (`--save ""`,
 * `--appendonly no`). `url` is `redis://127.0.0.1:PORT`.
 */
export async function startRedisServer(
  options: RedisServerOptions = {},
): Promise<TestServer & { url: string }> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "cairn-redis-"));
  const server = await launchRedis(port, dir, options.args ?? [], true);
  return { ...server, url: `redis://127.0.0.1:${port}` };
}

/** Options of {@link startRedisCluster}. */
export interface RedisClusterOptions {
  /**
   * Number of master nodes (no replicas); Redis Cluster needs at least 3.
   * @default 3
   */
  masters?: number;
}

/** A Redis Cluster started for a test run. */
export interface RedisClusterServer extends TestServer {
  /** The port of every master; `port` is the first of them. */
  readonly ports: readonly number[];
  /** `redis://127.0.0.1:P1,127.0.0.1:P2,…`: every node as a seed, the form `@cairn/engine-redis` reads as a cluster. */
  readonly url: string;
}

function run(command: string, args: readonly string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs, encoding: "utf8" }, (error, stdout, stderr) => {
      if (error) {
        const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
        reject(
          new Error(
            missing ? MISSING_REDIS : `${command} ${args.join(" ")} failed: ${`${stderr}${stdout}`.trim()}`,
            { cause: error },
          ),
        );
      } else resolve(stdout);
    });
  });
}

/**
 * A Redis Cluster of `masters` nodes without replicas: each a `redis-server --cluster-enabled yes` on free ports
 * (client and cluster bus), in one temporary folder holding their `nodes-PORT.conf`, without persistence. The
 * slots are shared out by `redis-cli --cluster create`; the helper resolves once every node reports
 * `cluster_state:ok`. `stop()` stops every node and removes the folder.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterServer> {
  const masters = options.masters ?? 3;
  if (!Number.isSafeInteger(masters) || masters < 3) {
    throw new Error(`A Redis Cluster needs at least 3 masters, got ${masters}.`);
  }
  const dir = await mkdtemp(join(tmpdir(), "cairn-redis-cluster-"));
  const nodes: TestServer[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const ports: number[] = [];
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      // The bus port is given, not left at port + 10000, which may be taken or above 65535.
      const bus = await freePort();
      ports.push(port);
      nodes.push(
        await launchRedis(
          port,
          dir,
          ["--cluster-enabled", "yes", "--cluster-config-file", join(dir, `nodes-${port}.conf`)].concat([
            "--cluster-port",
            String(bus),
          ]),
          false,
        ),
      );
    }
    const addresses = ports.map((port) => `127.0.0.1:${port}`);
    await run(REDIS_CLI, ["--cluster", "create", ...addresses, "--cluster-replicas", "0", "--cluster-yes"]);
    const deadline = Date.now() + 30_000;
    for (const port of ports) {
      for (;;) {
        const info = await run(REDIS_CLI, ["-h", "127.0.0.1", "-p", String(port), "cluster", "info"]);
        if (/^cluster_state:ok\b/m.test(info)) break;
        if (Date.now() > deadline) {
          throw new Error(
            `The Redis Cluster on ports ${ports.join(", ")} did not reach cluster_state:ok: ${info}`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return {
      name: "redis-cluster",
      port: ports[0]!,
      ports,
      url: `redis://${addresses.join(",")}`,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
