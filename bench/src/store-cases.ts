// Transfers between a local folder and the object stores on their emulators (S3 on s3rver, Azure Blob on Azurite):
// cairn's store drivers next to `rclone copy` of the same files to the same emulator in the same run.
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { FileWriterPool, fileStream, type ObjectStore } from "@cairn/core";
import type { AzureStore } from "@cairn/store-azure";
import {
  createBucket,
  createContainer,
  EMULATOR_CREDENTIALS,
  startAzurite,
  startS3rver,
  type TestServer,
} from "@cairn/testkit/servers";
import pLimit from "p-limit";
import type { Case } from "./cases.js";

/** Store packages are imported by the benchmark that uses them, so each process's peak RSS is its own. */
const s3 = async () => (await import("@cairn/store-s3")).factory;
const azure = async () => (await import("@cairn/store-azure")).factory;

/** Where generated data sets live (bench/.data, shared with the other cases, not committed). */
export const BENCH_DATA = join(dirname(fileURLToPath(import.meta.url)), "..", ".data");

/**
 * `CAIRN_BENCH_SCALE=0.05` moves 5 % of the files (100 × 64 KiB, 1 × 64 MiB) and backs up 5 % of the objects:
 * to check the cases work end to end before a full run. Names stay the same; notes say the scale.
 */
export const SCALE = Number(process.env.CAIRN_BENCH_SCALE ?? "1");
if (!(SCALE > 0 && SCALE <= 1)) throw new Error(`CAIRN_BENCH_SCALE must be in (0, 1], not ${SCALE}.`);
export const scaleNote = SCALE === 1 ? "" : `; CAIRN_BENCH_SCALE=${SCALE}`;

const KiB = 1024;
const MiB = 1024 * KiB;
/** Measured transfers per side and case, taken in turn with rclone's; each side's median is reported. */
const ROUNDS = Number(process.env.CAIRN_BENCH_ROUNDS ?? "3");
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1)) {
  throw new Error(`CAIRN_BENCH_ROUNDS must be a whole number ≥ 1, not ${process.env.CAIRN_BENCH_ROUNDS}.`);
}

/** The timing of median wall time among `rounds` (the later of the two middle ones for an even count). */
const median = (rounds: Timing[]): Timing => [...rounds].sort((a, b) => a.ms - b.ms)[rounds.length >> 1]!;

/** Files moved at once by cairn, as `cairn fs upload --recursive` does by default. */
const PARALLEL = Number(process.env.CAIRN_BENCH_PARALLEL ?? "16");

export const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

// ---------------------------------------------------------------------------------------------------------------
// rclone, the baseline

/**
 * Makes sure Debian's rclone is there: installs it with apt-get when missing and running as root, otherwise
 * says how to. Called by every set-up that compares with it.
 */
export function ensureRclone(): void {
  if (spawnSync("rclone", ["version"], { stdio: "ignore" }).status === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error("bench: rclone is not installed; run `apt-get install -y rclone` as root, then again.");
  }
  console.error("bench: installing rclone (apt-get install -y rclone)");
  const r = spawnSync("apt-get", ["install", "-y", "rclone"], { stdio: ["ignore", "ignore", "inherit"] });
  if (r.status !== 0) throw new Error(`bench: apt-get install -y rclone exited ${r.status}.`);
}

/**
 * An rclone remote named by environment variables only (no config file). `AWS_CA_BUNDLE`, which this kind of
 * machine sets, breaks rclone's S3 backend even for plain http, so it is left out.
 */
export function rcloneEnv(name: string, options: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, RCLONE_CONFIG: "/dev/null" };
  delete env.AWS_CA_BUNDLE;
  for (const [k, v] of Object.entries(options))
    env[`RCLONE_CONFIG_${name.toUpperCase()}_${k.toUpperCase()}`] = v;
  return env;
}

/** Wall time of a piece of work, and the CPU time it and the emulator spent on it. */
export interface Timing {
  ms: number;
  /** CPU (user + system) of the process doing the work: this one for cairn, rclone's own for rclone. */
  cpuMs: number;
  /** The part of `cpuMs` spent in the kernel (creating and writing files, sockets). */
  sysMs?: number;
  /** CPU of the emulator meanwhile (Linux; the child processes of this one named `node`). */
  emulatorCpuMs?: number;
  /** rclone's peak RSS, from `/usr/bin/time`. */
  rssMb?: number;
}

/**
 * CPU time so far of this process's children named `node` (the emulators; rclone is not one), from /proc:
 * on a 2-core machine an emulator and its client share the CPU, so where the time goes explains a ratio.
 */
function emulatorCpuMs(): number | undefined {
  if (!existsSync("/proc/self/stat")) return undefined;
  let ticks = 0;
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue;
    }
    const close = stat.lastIndexOf(")");
    // After the command: state, ppid, … utime and stime are the 12th and 13th fields from there.
    const fields = stat.slice(close + 2).split(" ");
    if (Number(fields[1]) !== process.pid || stat.slice(stat.indexOf("(") + 1, close) !== "node") continue;
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks * 10; // USER_HZ is 100 on Linux.
}

/** Times `fn` run in this process: wall time, this process's CPU and the emulator's. */
export async function timed<T>(fn: () => Promise<T>): Promise<Timing & { value: T }> {
  const e0 = emulatorCpuMs();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const e1 = emulatorCpuMs();
  return {
    value,
    ms,
    cpuMs: (c.user + c.system) / 1000,
    sysMs: c.system / 1000,
    emulatorCpuMs: e0 === undefined || e1 === undefined ? undefined : e1 - e0,
  };
}

const TIME = "/usr/bin/time";

/**
 * `rclone copy from to` with rclone's defaults (4 transfers, 8 checkers) and the remote's flags, in its own process, so none of its
 * memory counts in the benchmark process's peak RSS; under `/usr/bin/time` where present for its CPU and RSS.
 */
export async function rcloneCopy(
  from: string,
  to: string,
  remote: { env: NodeJS.ProcessEnv; flags: readonly string[] },
): Promise<Timing> {
  const { env } = remote;
  const report = join(BENCH_DATA, `rclone-time-${process.pid}.txt`);
  const wrap = existsSync(TIME);
  const args = ["copy", ...remote.flags, from, to];
  const e0 = emulatorCpuMs();
  const ms = await new Promise<number>((resolve, reject) => {
    const t0 = performance.now();
    const child = wrap
      ? spawn(TIME, ["-f", "%U %S %M", "-o", report, "rclone", ...args], {
          env,
          stdio: ["ignore", "ignore", "pipe"],
        })
      : spawn("rclone", args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr = (stderr + s).slice(-4000);
    });
    child.once("error", reject);
    child.once("close", (status) => {
      const ms = performance.now() - t0;
      if (status === 0) resolve(ms);
      else reject(new Error(`rclone copy ${from} ${to} exited ${status}: ${stderr.trim()}`));
    });
  });
  const e1 = emulatorCpuMs();
  const emulator = e0 === undefined || e1 === undefined ? undefined : e1 - e0;
  if (!wrap) return { ms, cpuMs: Number.NaN, emulatorCpuMs: emulator };
  const [user, system, rssKb] = readFileSync(report, "utf8")
    .trim()
    .split("\n")
    .at(-1)!
    .split(" ")
    .map(Number);
  rmSync(report, { force: true });
  return {
    ms,
    cpuMs: (user! + system!) * 1000,
    sysMs: system! * 1000,
    emulatorCpuMs: emulator,
    rssMb: rssKb! / 1024,
  };
}

/** `CPU: cairn 9.1 s (sys 1.2 s) + s3rver 8.2 s, rclone 2.0 s (sys 0.9 s) + s3rver 6.1 s; rclone peak RSS 70 MB`. */
export function cpuNote(cairn: Timing, rclone: Timing, emulator: string): string {
  const cpu = (t: Timing, who: string) =>
    `${who} ${seconds(t.cpuMs)}${t.sysMs === undefined ? "" : ` (sys ${seconds(t.sysMs)})`}${t.emulatorCpuMs === undefined ? "" : ` + ${emulator} ${seconds(t.emulatorCpuMs)}`}`;
  return `CPU: ${cpu(cairn, "cairn")}, ${cpu(rclone, "rclone")}${rclone.rssMb ? `; rclone peak RSS ${Math.round(rclone.rssMb)} MB` : ""}`;
}

/** The figures of a cairn/rclone pair for the JSON results. */
export const figures = (cairn: Timing, rclone: Timing) => ({
  cpuMs: cairn.cpuMs,
  emulatorCpuMs: cairn.emulatorCpuMs,
  rcloneMs: rclone.ms,
  rcloneCpuMs: rclone.cpuMs,
  rcloneEmulatorCpuMs: rclone.emulatorCpuMs,
  rcloneRssMb: rclone.rssMb,
  ratio: cairn.ms / rclone.ms,
});

// ---------------------------------------------------------------------------------------------------------------
// The emulators

/** An emulator with a bucket (container) per name: how cairn's store and rclone reach it. */
export interface Remote {
  readonly kind: "s3" | "azure";
  readonly server: TestServer;
  /** Creates the bucket or container `bucket`. */
  create(bucket: string): Promise<void>;
  /** cairn's store on `bucket` under `prefix`, with extra URL parameters (`&name=value…`). */
  open(bucket: string, prefix: string, params?: string): Promise<ObjectStore>;
  /** rclone's name of `bucket/prefix`, the environment that configures it and the flags it needs. */
  rclone(bucket: string, prefix: string): { path: string; env: NodeJS.ProcessEnv; flags: readonly string[] };
}

/** A remote on an s3rver at `endpoint` (the access key it insists on; any secret). */
export function s3Remote(server: TestServer, endpoint: string): Remote {
  // The store takes credentials from the AWS chain only, never from its URL.
  process.env.AWS_ACCESS_KEY_ID = EMULATOR_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = EMULATOR_CREDENTIALS.secretAccessKey;
  process.env.AWS_REGION = "us-east-1";
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
  const env = rcloneEnv("bench", {
    type: "s3",
    provider: "Other",
    endpoint,
    access_key_id: EMULATOR_CREDENTIALS.accessKeyId,
    secret_access_key: EMULATOR_CREDENTIALS.secretAccessKey,
    force_path_style: "true",
  });
  return {
    kind: "s3",
    server,
    create: (bucket) => createBucket(endpoint, bucket),
    open: async (bucket, prefix, params = "") =>
      (await s3()).open(`s3://${bucket}/${prefix}?endpoint=${endpoint}${params}`),
    // s3rver answers a delimited listing of a folder two levels above its objects (objects/ab/cd/…) with an empty
    // page, so rclone's default folder-by-folder listing sees nothing there; one recursive listing sees it all.
    rclone: (bucket, prefix) => ({ path: `bench:${bucket}/${prefix}`, env, flags: ["--fast-list"] }),
  };
}

/** A fresh s3rver with its remote. */
export async function startS3Remote(): Promise<Remote> {
  const server = await startS3rver();
  return s3Remote(server, server.endpoint);
}

/**
 * A fresh Azurite with its remote. cairn and rclone both authenticate with the same container SAS: rclone 1.60
 * reaches an emulator on another port than 10000 only through a SAS URL, and signing the same way keeps the
 * comparison fair (an account key costs cairn an HMAC per request as well).
 */
export async function startAzureRemote(): Promise<Remote> {
  const server = await startAzurite();
  const sas = new Map<string, string>();
  return {
    kind: "azure",
    server,
    async create(bucket) {
      await createContainer(server.connectionString, bucket);
      process.env.AZURE_STORAGE_CONNECTION_STRING = server.connectionString;
      const admin = (await (await azure()).open(`azure://${bucket}`)) as AzureStore;
      // The SDK only calls toString() on the permissions it is given; this spares a direct dependency on it.
      const permissions = { toString: () => "racwdl" } as Parameters<
        AzureStore["containerClient"]["generateSasUrl"]
      >[0]["permissions"];
      const url = await admin.containerClient.generateSasUrl({
        permissions,
        expiresOn: new Date(Date.now() + 6 * 3600_000),
      });
      await admin.close();
      sas.set(bucket, url);
    },
    async open(bucket, prefix, params = "") {
      const url = sas.get(bucket);
      if (!url) throw new Error(`bench: container ${bucket} was not created by this run.`);
      process.env.AZURE_STORAGE_CONNECTION_STRING = `BlobEndpoint=${server.endpoint};SharedAccessSignature=${new URL(url).search.slice(1)}`;
      try {
        return await (await azure()).open(
          `azure://${bucket}/${prefix}${params ? `?${params.replace(/^&/, "")}` : ""}`,
        );
      } finally {
        process.env.AZURE_STORAGE_CONNECTION_STRING = server.connectionString;
      }
    },
    rclone(bucket, prefix) {
      const url = sas.get(bucket);
      if (!url) throw new Error(`bench: container ${bucket} was not created by this run.`);
      return {
        path: `az:${bucket}/${prefix}`,
        env: rcloneEnv("az", { type: "azureblob", sas_url: url }),
        flags: [],
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Local files

/** A set of equal-sized files: `count` files of `size` bytes; small ones spread over 16 folders. */
export interface FileSet {
  tag: string;
  count: number;
  size: number;
}

export const SMALL: FileSet = {
  tag: "2000x64k",
  count: Math.max(1, Math.round(2000 * SCALE)),
  size: 64 * KiB,
};
export const BIG: FileSet = { tag: "4x64m", count: Math.max(1, Math.round(4 * SCALE)), size: 64 * MiB };

const setDir = (set: FileSet) => join(BENCH_DATA, `transfer-${set.count}x${set.size}`);
const keyOf = (set: FileSet, i: number) =>
  set.count > 16
    ? `${String(i % 16).padStart(2, "0")}/f${String(i).padStart(5, "0")}.bin`
    : `f${String(i).padStart(5, "0")}.bin`;

/** Writes the files of `set` (random bytes) under bench/.data once; later runs reuse them. */
async function makeFiles(set: FileSet): Promise<string> {
  const dir = setDir(set);
  if (existsSync(join(dir, "READY"))) return join(dir, "files");
  rmSync(dir, { recursive: true, force: true });
  for (let i = 0; i < set.count; i++) {
    const file = join(dir, "files", keyOf(set, i));
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, randomBytes(set.size));
  }
  writeFileSync(join(dir, "READY"), "");
  return join(dir, "files");
}

/** Relative paths of the files under `dir`, `/`-separated. */
export async function filesUnder(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await filesUnder(dir, rel)));
    else out.push(rel);
  }
  return out;
}

/** Throws unless `dir` holds exactly `set`'s files at their size. */
async function checkFiles(dir: string, set: FileSet, who: string): Promise<void> {
  const names = await filesUnder(dir);
  if (names.length !== set.count)
    throw new Error(`${who} left ${names.length} files, expected ${set.count}.`);
  for (const name of names) {
    if ((await stat(join(dir, name))).size !== set.size)
      throw new Error(`${who} left ${name} of the wrong size.`);
  }
}

/** Throws unless `store` lists exactly `set`'s objects at their size. */
async function checkObjects(store: ObjectStore, set: FileSet, who: string): Promise<void> {
  let n = 0;
  for await (const info of store.list("")) {
    n++;
    if (info.size !== set.size)
      throw new Error(`${who} wrote ${info.key} of ${info.size} bytes, not ${set.size}.`);
  }
  if (n !== set.count) throw new Error(`${who} wrote ${n} objects, expected ${set.count}.`);
}

// ---------------------------------------------------------------------------------------------------------------
// The cases

/**
 * Uploads every file of `dir` to `store`, `PARALLEL` at a time, each streamed from disk with its size and a way
 * to read it again, as `cairn fs upload` gives them.
 */
async function putAll(store: ObjectStore, dir: string): Promise<void> {
  const limit = pLimit(PARALLEL);
  const names = await filesUnder(dir);
  await Promise.all(
    names.map((name) =>
      limit(async () => {
        const path = join(dir, name);
        const { size } = await stat(path);
        const open = () => fileStream(path, size);
        await store.put(name, open(), { size, reopen: open });
      }),
    ),
  );
}

/** The SHA-256 of every file under `dir`, by relative path: what a repository's entries record. */
async function digestsOf(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of await filesUnder(dir)) {
    out.set(
      name,
      createHash("sha256")
        .update(await readFile(join(dir, name)))
        .digest("hex"),
    );
  }
  return out;
}

/**
 * Downloads every object of `store` into `dir`, `PARALLEL` at a time, as `cairn fs download --recursive` does:
 * downloads start while the listing goes on (rclone lists too), reading ahead at most twice `PARALLEL` keys, and
 * each file is written by a `FileWriterPool`, its bytes checked against their SHA-256 there (rclone checks the MD5
 * of each), so the store is told not to check them too.
 */
async function getAll(
  store: ObjectStore,
  dir: string,
  digests: Map<string, string>,
  check: "sha256" | "md5" = "sha256",
): Promise<void> {
  const folders = new Map<string, Promise<unknown>>();
  const limit = pLimit(PARALLEL);
  const running = new Set<Promise<void>>();
  for await (const { key, size, etag } of store.list("")) {
    const file = join(dir, key);
    const folder = dirname(file);
    if (!folders.has(folder)) folders.set(folder, mkdir(folder, { recursive: true }));
    const task = limit(async () => {
      await folders.get(folder);
      // As `cairn fs download` writes (apps/cli/src/local-files.ts), without its temporary name.
      const { body } = await store.get(key, { verify: false });
      try {
        // rclone's check: the MD5 of the bytes against the ETag, when the ETag is one (a single PUT's).
        const md5 = /^"?([0-9a-f]{32})"?$/.exec(etag)?.[1];
        await writers.write(file, body, {
          algorithm: check,
          check: {
            size,
            digest: check === "sha256" ? digests.get(key) : md5,
            mismatch: () => new Error(`cairn read ${key} wrong.`),
          },
        });
      } finally {
        body.destroy();
      }
    }).finally(() => running.delete(task));
    running.add(task);
    if (running.size >= PARALLEL * 2) await Promise.race(running);
  }
  await Promise.all(running);
}

/** The threads that write downloaded files, as `cairn fs download` has them. */
const writers = new FileWriterPool();

interface TransferCase {
  remote: "s3" | "azure";
  direction: "up" | "down";
  set: FileSet;
  /** Extra store URL parameters, `&name=value…`, and a word for them in the name. */
  params?: { url: string; label: string };
  /** What downloads check: the SHA-256 each file's entry records (as `cairn fs download`), or the MD5 rclone checks. */
  check?: "sha256" | "md5";
}

function transferCase({ remote, direction, set, params, check = "sha256" }: TransferCase): Case {
  const name = `${remote}-${direction}-${set.tag}${params ? `-${params.label}` : ""}${check === "md5" ? "-md5" : ""}`;
  const what = `${set.count} × ${set.size >= MiB ? `${set.size / MiB} MiB` : `${set.size / KiB} KiB`}`;
  return {
    name,
    async setup() {
      ensureRclone();
      await makeFiles(set);
    },
    async run() {
      const source = await makeFiles(set);
      const out = join(BENCH_DATA, `${name}-out`);
      rmSync(out, { recursive: true, force: true });
      const r = remote === "s3" ? await startS3Remote() : await startAzureRemote();
      try {
        await r.create("cairn");
        await r.create("rclone");
        const cairnRounds: Timing[] = [];
        const rcloneRounds: Timing[] = [];
        // The emulators leave work behind a transfer (garbage to collect): whoever goes next pays for it, ~0.5 s
        // of Azurite's CPU after 2,000 uploads. So each measured transfer follows one of the same files:
        // rclone's, not measured, before the first round. And the machine's speed drifts from minute to minute,
        // so each side runs ROUNDS times and gives its median, in turns that alternate who goes first (cairn then
        // rclone, rclone then cairn, …): what one transfer leaves behind for the next (an emulator's garbage, the
        // kernel's free memory and recently removed inodes) falls on each side as often.
        const inTurn = async (round: number, turns: [() => Promise<void>, () => Promise<void>]) => {
          const [first, second] = round % 2 === 0 ? turns : [turns[1], turns[0]];
          await first();
          await second();
        };
        if (direction === "up") {
          await r.create("warm");
          const warm = r.rclone("warm", "t");
          await rcloneCopy(source, warm.path, warm);
          for (let round = 0; round < ROUNDS; round++) {
            await inTurn(round, [
              async () => {
                const store = await r.open("cairn", `t${round}`, params?.url);
                cairnRounds.push(await timed(() => putAll(store, source)));
                await checkObjects(store, set, "cairn");
                await store.close();
              },
              async () => {
                const to = r.rclone("rclone", `t${round}`);
                rcloneRounds.push(await rcloneCopy(source, to.path, to));
                const check = await r.open("rclone", `t${round}`);
                await checkObjects(check, set, "rclone");
                await check.close();
              },
            ]);
          }
        } else {
          // Both read the same objects, put there by rclone (not measured), after rclone read them once.
          // Small files are kept until the case ends, each round in a folder of its own. On ext4 without a journal
          // (this machine's), creating a file skips, reading each from disk, every inode of its group removed in the
          // last minute (five, if its block is dirty): 2,000 files created after 2,000 were removed cost 0.35–1.5 s
          // of kernel CPU, against 0.07 s otherwise, for cairn and rclone alike, and swamped what they do
          // themselves. Large files are removed after each round, so that the memory of their page cache is
          // reused rather than taken afresh.
          const keep = set.size < MiB;
          const done = (dir: string) => {
            if (!keep) rmSync(dir, { recursive: true, force: true });
          };
          const seed = r.rclone("cairn", "t");
          await rcloneCopy(source, seed.path, seed);
          await rcloneCopy(seed.path, join(out, "warm"), seed);
          done(join(out, "warm"));
          const store = await r.open("cairn", "t", params?.url);
          const digests = await digestsOf(source);
          for (let round = 0; round < ROUNDS; round++) {
            await inTurn(round, [
              async () => {
                const mine = join(out, `cairn-${round}`);
                cairnRounds.push(await timed(() => getAll(store, mine, digests, check)));
                await checkFiles(mine, set, "cairn");
                done(mine);
              },
              async () => {
                const theirs = join(out, `rclone-${round}`);
                rcloneRounds.push(await rcloneCopy(seed.path, theirs, seed));
                await checkFiles(theirs, set, "rclone");
                done(theirs);
              },
            ]);
          }
          await store.close();
        }
        const cairn = median(cairnRounds);
        const rclone = median(rcloneRounds);
        const emulator = remote === "s3" ? "s3rver" : "Azurite";
        const ratio = cairn.ms / rclone.ms;
        const rounds = cairnRounds.map((c, i) => (c.ms / rcloneRounds[i]!.ms).toFixed(2)).join(", ");
        return {
          name,
          ms: cairn.ms,
          items: (set.count * set.size) / MiB,
          unit: "MiB",
          files: set.count,
          bytes: set.count * set.size,
          ...figures(cairn, rclone),
          note:
            `${what} ${direction === "up" ? `folder → ${emulator}` : `${emulator} → folder`}` +
            `${params ? ` (${params.url.replace(/^&/, "")})` : ""}${check === "md5" ? " (checked by MD5 against the ETag, as rclone checks)" : ""}${set.size < MiB ? `, ${Math.round(set.count / (cairn.ms / 1000))} files/s` : ""}; rclone copy ${seconds(rclone.ms)}; ` +
            `ratio ${ratio.toFixed(2)} (target ≤ 1.0, ≤ 256 MB; medians of ${ROUNDS} rounds, who goes first alternating, each round's ratio ${rounds}); ` +
            `${PARALLEL} at a time; ${cpuNote(cairn, rclone, emulator)}${scaleNote}`,
        };
      } finally {
        await r.server.stop();
        rmSync(out, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Folder → emulator and back for 2,000 × 64 KiB and 4 × 64 MiB files. Files up to 100 MiB go up to S3 in one PUT
 * (rclone's cutoff is 200 MiB); S3 uploads of large files also run in parts (`singlePutLimit=0`), as streams
 * that cannot be reopened and files above 100 MiB go up, to show what s3rver's assembly of parts costs. Large S3
 * downloads also run checked by MD5 against the ETag, rclone's check, to show what the SHA-256 check costs.
 */
export const STORE_CASES: Case[] = [
  transferCase({ remote: "s3", direction: "up", set: SMALL }),
  transferCase({ remote: "s3", direction: "down", set: SMALL }),
  transferCase({ remote: "s3", direction: "up", set: BIG }),
  transferCase({
    remote: "s3",
    direction: "up",
    set: BIG,
    params: { url: "&singlePutLimit=0", label: "parts" },
  }),
  transferCase({ remote: "s3", direction: "down", set: BIG }),
  transferCase({ remote: "s3", direction: "down", set: BIG, check: "md5" }),
  transferCase({ remote: "azure", direction: "up", set: SMALL }),
  transferCase({ remote: "azure", direction: "down", set: SMALL }),
  transferCase({ remote: "azure", direction: "up", set: BIG }),
  transferCase({ remote: "azure", direction: "down", set: BIG }),
];
