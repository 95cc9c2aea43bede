// One benchmark phase in its own process: `node child.js <name> setup|run`.
import { CASES } from "./cases.js";

const [name, phase] = process.argv.slice(2);
const c = CASES.find((x) => x.name === name);
if (!c || (phase !== "setup" && phase !== "run")) {
  console.error(`usage: child.js <${CASES.map((x) => x.name).join("|")}> setup|run`);
  process.exit(2);
}
if (phase === "setup") {
  await c.setup();
} else {
  const result = await c.run();
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(`${JSON.stringify({ ...result, peakRssMb })}\n`);
}
