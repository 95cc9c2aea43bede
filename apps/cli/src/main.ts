import { createRegistry } from "./adapters.js";
import { describeError, EXIT, printError } from "./errors.js";
import type { Io } from "./output.js";
import { type App, commandPath, createProgram } from "./program.js";
import { Session } from "./session.js";

/** The process's own streams and environment. */
export function processIo(): Io {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
  };
}

/**
 * Runs `cairn <argv…>` and returns the exit status. The one place errors are caught: each becomes one line
 * on stderr (or one JSON document with `--json`) and a status of {@link EXIT}; only an unexpected error
 * prints its stack.
 */
export async function main(argv: readonly string[], io: Io = processIo()): Promise<number> {
  const registry = createRegistry();
  const sessions = new Map<string, Session>();
  const app: App = {
    io,
    registry,
    session(meta) {
      let s = sessions.get(meta);
      if (!s) {
        s = new Session({ meta, cwd: io.cwd, registry });
        sessions.set(meta, s);
      }
      return s;
    },
    async run(args) {
      await createProgram(app).parseAsync(args, { from: "user" });
    },
  };
  let status: number = EXIT.OK;
  try {
    await app.run(argv);
  } catch (e) {
    const report = describeError(e);
    if (report.code === "USAGE" && report.message !== "") {
      const path = commandPath(createProgram(app), argv);
      report.message += ` (see: cairn ${[...path, "--help"].join(" ")})`;
    }
    const end = argv.indexOf("--");
    const json = (end < 0 ? argv : argv.slice(0, end)).includes("--json");
    printError(report, (s) => io.stderr.write(s), json);
    status = report.status;
  } finally {
    for (const s of sessions.values()) {
      await s.close().catch(() => {
        // Closing after a failure can fail the same way; the first error is the one to report.
      });
    }
  }
  return status;
}
