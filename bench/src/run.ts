// `pnpm bench [name…]`: runs each benchmark in a fresh process (so peak RSS is the benchmark's own), prints a
// table and writes the figures as JSON to bench/results/.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CASES, type Result } from "./cases.js";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !CASES.some((c) => c.name === w));
if (unknown.length > 0) {
  console.error(
    `bench: unknown benchmark ${unknown.join(", ")}; known: ${CASES.map((c) => c.name).join(", ")}`,
  );
  process.exit(2);
}
const selected = CASES.filter((c) => wanted.length === 0 || wanted.includes(c.name));

const child = (name: string, phase: "setup" | "run" | "teardown"): Result | undefined => {
  const r = spawnSync(process.execPath, ["--max-old-space-size=4096", join(here, "child.js"), name, phase], {
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
    cwd: root,
  });
  if (r.status !== 0) {
    console.error(`bench: ${name} (${phase}) failed with exit ${r.status}`);
    process.exitCode = 1;
    return undefined;
  }
  return phase === "run" ? (JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Result) : undefined;
};

const results: Result[] = [];
for (const c of selected) {
  console.error(`bench: ${c.name} — setting up`);
  child(c.name, "setup");
  const runs: Result[] = [];
  for (let i = 0; i < (c.repeat ?? 1); i++) {
    // Flush what earlier work left to write, so it does not slow this run down.
    spawnSync("sync");
    console.error(`bench: ${c.name} — run ${i + 1} of ${c.repeat ?? 1}`);
    const r = child(c.name, "run");
    if (r) runs.push(r);
  }
  if (c.teardown) child(c.name, "teardown");
  if (runs.length === 0) continue;
  runs.sort((a, b) => a.ms - b.ms);
  const median = runs[Math.floor((runs.length - 1) / 2)]!;
  results.push(
    runs.length > 1
      ? {
          ...median,
          runsMs: runs.map((r) => Math.round(r.ms)),
          note: `median of ${runs.length}; ${median.note ?? ""}`,
        }
      : median,
  );
}

const rows = results.map((r) => [
  r.name,
  `${(r.ms / 1000).toFixed(3)} s`,
  r.items ? `${Math.round(r.items / (r.ms / 1000)).toLocaleString("en-US")} ${r.unit}/s` : "",
  `${Math.round(r.peakRssMb)} MB`,
  r.note ?? "",
]);
const header = ["benchmark", "wall time", "throughput", "peak RSS", "notes"];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const row of rows) console.log(line(row));

const machine = {
  cpus: cpus().length,
  cpu: cpus()[0]?.model,
  memoryGb: Math.round(totalmem() / 2 ** 30),
  node: process.version,
};
mkdirSync(join(root, "results"), { recursive: true });
const file = join(root, "results", `${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), machine, results }, null, 2)}\n`);
console.error(`bench: figures written to ${file}`);
