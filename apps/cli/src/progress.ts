import { formatSize } from "./format.js";
import type { Output } from "./output.js";

/** Progress of a transfer of many files: a bar on stderr when it is a terminal, nothing otherwise. */
export interface Progress {
  /** One file done, of `bytes` bytes. */
  done(bytes: number): void;
  stop(): void;
}

const SILENT: Progress = { done() {}, stop() {} };

/** Loaded only when a bar is drawn, so commands that draw none start faster. */
export async function startProgress(
  out: Output,
  verb: string,
  files: number,
  bytes: number,
): Promise<Progress> {
  if (!out.interactive || files < 2) return SILENT;
  const { default: cliProgress } = await import("cli-progress");
  const bar = new cliProgress.SingleBar(
    {
      stream: out.io.stderr,
      format: `${verb} [{bar}] {value}/{total} files | {done} of {size}`,
      hideCursor: true,
      clearOnComplete: true,
      barsize: 30,
    },
    cliProgress.Presets.shades_classic,
  );
  let doneBytes = 0;
  bar.start(files, 0, { done: formatSize(0), size: formatSize(bytes) });
  return {
    done(n) {
      doneBytes += n;
      bar.increment(1, { done: formatSize(doneBytes) });
    },
    stop() {
      bar.stop();
    },
  };
}

/** A running count of records (dumps, loads) on stderr when it is a terminal, nothing otherwise. */
export interface Counter {
  update(count: number): void;
  stop(): void;
}

const SILENT_COUNTER: Counter = { update() {}, stop() {} };

export async function startCounter(out: Output, verb: string): Promise<Counter> {
  if (!out.interactive) return SILENT_COUNTER;
  const { default: cliProgress } = await import("cli-progress");
  const bar = new cliProgress.SingleBar({
    stream: out.io.stderr,
    format: `${verb} {value} records`,
    hideCursor: true,
    clearOnComplete: true,
  });
  bar.start(0, 0);
  return {
    update(count) {
      bar.setTotal(count);
      bar.update(count);
    },
    stop() {
      bar.stop();
    },
  };
}

/** One line of status on stderr, rewritten in place, when it is a terminal; nothing otherwise. */
export interface StatusLine {
  update(text: string): void;
  stop(): void;
}

export function startStatus(out: Output, everyMs = 200): StatusLine {
  if (!out.interactive) return { update() {}, stop() {} };
  let last = 0;
  let shown = false;
  return {
    update(text) {
      const now = Date.now();
      if (now - last < everyMs) return;
      last = now;
      shown = true;
      out.io.stderr.write(`\r\x1b[2K${text}`);
    },
    stop() {
      if (shown) out.io.stderr.write("\r\x1b[2K");
    },
  };
}
