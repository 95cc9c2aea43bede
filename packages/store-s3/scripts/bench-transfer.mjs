// Moves 2,000 × 64 KiB and 4 × 64 MiB objects from a local folder to s3rver and back, with this store and
// with rclone, and prints the times. A measurement, not a test: `pnpm -F @cairn/store-s3 build` first, then
// `node scripts/bench-transfer.mjs [small-count] [big-count] [extra URL parameters, e.g. "&singlePutLimit=100"]`
// from the package folder.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { EMULATOR_CREDENTIALS, startS3rver } from "@cairn/testkit/servers";
import { factory } from "../dist/index.js";

process.env.AWS_ACCESS_KEY_ID = EMULATOR_CREDENTIALS.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = EMULATOR_CREDENTIALS.secretAccessKey;
process.env.AWS_REGION = "us-east-1";
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";

const KiB = 1024;
const MiB = 1024 * KiB;
const smallCount = Number(process.argv[2] ?? 2000);
const bigCount = Number(process.argv[3] ?? 4);
const extraParams = process.argv[4] ?? "";
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16);

async function mapLimit(items, limit, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

async function files(dir, base = dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await files(path, base)));
    else out.push(path.slice(base.length + 1));
  }
  return out;
}

function run(command, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["ignore", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("close", (status) =>
      status === 0 ? resolve() : reject(new Error(`${command} exited ${status}`)),
    );
  });
}

async function time(label, fn) {
  const started = performance.now();
  await fn();
  const seconds = (performance.now() - started) / 1000;
  console.log(`${label.padEnd(42)} ${seconds.toFixed(2)} s`);
  return seconds;
}

const work = await mkdtemp(join(tmpdir(), "cairn-s3-bench-"));
const server = await startS3rver();
try {
  const source = join(work, "source");
  for (const [name, count, size] of [
    ["small", smallCount, 64 * KiB],
    ["big", bigCount, 64 * MiB],
  ]) {
    await mkdir(join(source, name), { recursive: true });
    for (let i = 0; i < count; i++)
      await writeFile(join(source, name, `${String(i).padStart(5, "0")}.bin`), randomBytes(size));
  }
  const admin = new S3Client({
    endpoint: server.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { ...EMULATOR_CREDENTIALS },
  });
  for (const bucket of ["bench-cairn", "bench-rclone"])
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  admin.destroy();

  const rcloneEnv = { ...process.env };
  delete rcloneEnv.AWS_CA_BUNDLE;
  Object.assign(rcloneEnv, {
    RCLONE_CONFIG_BENCH_TYPE: "s3",
    RCLONE_CONFIG_BENCH_PROVIDER: "Other",
    RCLONE_CONFIG_BENCH_ENDPOINT: server.endpoint,
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: "S3RVER",
    RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: "S3RVER",
    RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: "true",
  });

  const store = await factory.open(`s3://bench-cairn/data?endpoint=${server.endpoint}${extraParams}`);
  const results = {};
  for (const part of ["small", "big"]) {
    const names = await files(join(source, part));
    const limit = part === "small" ? CONCURRENCY : 4;
    results[`cairn ${part} up`] = await time(`cairn: ${names.length} ${part} files up`, () =>
      mapLimit(names, limit, async (name) => {
        const path = join(source, part, name);
        await store.put(`${part}/${name}`, createReadStream(path, { highWaterMark: MiB }), {
          size: (await stat(path)).size,
        });
      }),
    );
    const back = join(work, "cairn-back", part);
    await mkdir(back, { recursive: true });
    results[`cairn ${part} down`] = await time(`cairn: ${names.length} ${part} files down`, () =>
      mapLimit(names, limit, async (name) => {
        await pipeline((await store.get(`${part}/${name}`)).body, createWriteStream(join(back, name)));
      }),
    );
    results[`rclone ${part} up`] = await time(`rclone: ${names.length} ${part} files up`, () =>
      run("rclone", ["copy", join(source, part), `bench:bench-rclone/${part}`], rcloneEnv),
    );
    results[`rclone ${part} down`] = await time(`rclone: ${names.length} ${part} files down`, () =>
      run("rclone", ["copy", `bench:bench-rclone/${part}`, join(work, "rclone-back", part)], rcloneEnv),
    );
  }
  await store.close();
  console.log(JSON.stringify(results));
} finally {
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
