import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const app = fileURLToPath(new URL("..", import.meta.url));
const root = join(app, "..", "..");

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds the CLI and what it depends on when `dist/bin.js` is missing or older than a source file. */
export default function setup(): void {
  const bin = join(app, "dist", "bin.js");
  const deps = ["core", "engine-sqlite", "store-fs"].map((p) =>
    join(root, "packages", p, "dist", "index.js"),
  );
  const stale =
    !existsSync(bin) || statSync(bin).mtimeMs < newest(join(app, "src")) || deps.some((d) => !existsSync(d));
  if (!stale) return;
  const turbo = join(root, "node_modules", ".bin", "turbo");
  const result = spawnSync(turbo, ["run", "build", "--filter=@cairn/cli...", "--output-logs=errors-only"], {
    cwd: root,
    stdio: "inherit",
    env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1" },
  });
  if (result.status !== 0)
    throw new Error(`Building the CLI failed (exit ${result.status ?? result.signal}).`);
}
