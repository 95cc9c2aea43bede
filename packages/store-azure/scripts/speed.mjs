// Measures moving a local folder to Azurite and back with this store, next to `rclone copy` against the same
// emulator: 2,000 × 64 KiB and 4 × 64 MiB files by default. Not a test: run `pnpm build` first, then
// `node scripts/speed.mjs [smallCount] [bigCount]`. Needs rclone on PATH for the comparison.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import {
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { AZURITE_ACCOUNT, startAzurite } from "@cairn/testkit/servers";
import { factory } from "../dist/index.js";

const smallCount = Number(process.argv[2] ?? 2000);
const bigCount = Number(process.argv[3] ?? 4);
const KiB = 1024;
const MiB = 1024 * KiB;

async function mapLimit(items, limit, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

async function files(dir, prefix = "") {
  const out = [];
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await files(dir, rel)));
    else out.push(rel);
  }
  return out;
}

const time = async (fn) => {
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started) / 1e9;
};

const azurite = await startAzurite();
const work = await mkdtemp(join(tmpdir(), "cairn-azure-speed-"));
try {
  process.env.AZURE_STORAGE_CONNECTION_STRING = azurite.connectionString;
  const sets = [
    { name: `${smallCount} × 64 KiB`, count: smallCount, size: 64 * KiB, limit: 16 },
    { name: `${bigCount} × 64 MiB`, count: bigCount, size: 64 * MiB, limit: 4 },
  ];
  // rclone 1.60 reaches an emulator on another port than 10000 only through a container SAS URL.
  const sasUrl = (container) =>
    `${azurite.endpoint}/${container}?${generateBlobSASQueryParameters(
      {
        containerName: container,
        permissions: ContainerSASPermissions.parse("racwdl"),
        expiresOn: new Date(Date.now() + 3600_000),
      },
      new StorageSharedKeyCredential(AZURITE_ACCOUNT.name, AZURITE_ACCOUNT.key),
    )}`;
  let rcloneEnv;
  const rclone = (args) => {
    const r = spawnSync("rclone", args, { env: rcloneEnv, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`rclone ${args.join(" ")} failed: ${r.stderr}`);
  };
  const hasRclone = spawnSync("rclone", ["version"]).status === 0;
  const results = [];
  for (const set of sets.filter((s) => s.count > 0)) {
    const src = join(work, `src-${set.size}`);
    for (let i = 0; i < set.count; i++) {
      const dir = join(src, String(i % 16).padStart(2, "0"));
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, `f${i}.bin`), randomBytes(set.size));
    }
    const keys = await files(src);
    const container = `speed-${set.size}`;
    await factory.open(`azure://${container}/cairn`).then((s) => s.containerClient.create());
    // The same credential as rclone's (a container SAS), unless SPEED_AUTH=key asks for the account key.
    if (process.env.SPEED_AUTH !== "key") {
      const sas = new URL(sasUrl(container)).search.slice(1);
      process.env.AZURE_STORAGE_CONNECTION_STRING = `BlobEndpoint=${azurite.endpoint};SharedAccessSignature=${sas}`;
    }
    const store = await factory.open(`azure://${container}/cairn${process.env.STORE_PARAMS ?? ""}`);
    process.env.AZURE_STORAGE_CONNECTION_STRING = azurite.connectionString;

    const up = await time(() =>
      mapLimit(keys, set.limit, async (key) => {
        const path = join(src, key);
        await store.put(key, createReadStream(path, { highWaterMark: 1 * MiB }), {
          size: (await stat(path)).size,
        });
      }),
    );
    const dst = join(work, `dst-${set.size}`);
    const down = await time(async () => {
      for (const key of keys) await mkdir(join(dst, key, ".."), { recursive: true });
      await mapLimit(keys, set.limit, async (key) => {
        await pipeline((await store.get(key)).body, createWriteStream(join(dst, key)));
      });
    });
    const row = { set: set.name, cairnUp: up, cairnDown: down };
    if (hasRclone) {
      rcloneEnv = {
        ...process.env,
        RCLONE_CONFIG_AZ_TYPE: "azureblob",
        RCLONE_CONFIG_AZ_SAS_URL: sasUrl(container),
      };
      row.rcloneUp = await time(async () => rclone(["copy", src, `az:${container}/rclone`]));
      row.rcloneDown = await time(async () =>
        rclone(["copy", `az:${container}/rclone`, join(work, `rdst-${set.size}`)]),
      );
    }
    results.push(row);
    await rm(src, { recursive: true, force: true });
    await rm(dst, { recursive: true, force: true });
    await rm(join(work, `rdst-${set.size}`), { recursive: true, force: true });
  }
  const s = (x) => (x === undefined ? "-" : `${x.toFixed(2)} s`);
  console.log("set              cairn up   rclone up  cairn down rclone down");
  for (const r of results) {
    console.log(
      `${r.set.padEnd(16)} ${s(r.cairnUp).padStart(9)} ${s(r.rcloneUp).padStart(10)} ${s(r.cairnDown).padStart(10)} ${s(r.rcloneDown).padStart(11)}`,
    );
  }
} finally {
  await azurite.stop();
  await rm(work, { recursive: true, force: true });
}
