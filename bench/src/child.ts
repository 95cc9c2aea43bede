// One benchmark phase in its own process: `node child.js <name> setup|run|teardown`.
import { tuneHeapForStreaming } from "@cairn/core";
import { CASES } from "./cases.js";

// As the `cairn` command runs (apps/cli/src/bin.ts); CAIRN_BENCH_V8_DEFAULTS=1 measures V8's defaults instead.
if (process.env.CAIRN_BENCH_V8_DEFAULTS !== "1") tuneHeapForStreaming();

const [name, phase] = process.argv.slice(2);
const c = CASES.find((x) => x.name === name);
if (!c || (phase !== "setup" && phase !== "run" && phase !== "teardown")) {
  console.error(`usage: child.js <${CASES.map((x) => x.name).join("|")}> setup|run|teardown`);
  process.exit(2);
}
if (phase === "setup") {
  await c.setup();
} else if (phase === "teardown") {
  await c.teardown?.();
} else {
  const result = await c.run();
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(`${JSON.stringify({ ...result, peakRssMb })}\n`);
}
