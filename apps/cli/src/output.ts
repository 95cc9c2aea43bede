import type { Writable } from "node:stream";

/** Where a command writes: results to stdout (text, or JSON with `--json`), notes and progress to stderr. */
export interface Io {
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export class Output {
  readonly io: Io;
  readonly json: boolean;

  constructor(io: Io, json: boolean) {
    this.io = io;
    this.json = json;
  }

  /** Whether to draw progress bars: a terminal on stderr and human output. */
  get interactive(): boolean {
    return !this.json && this.io.stderr.isTTY === true;
  }

  /** Writes one line of human output to stdout, waiting when the reader is slow. */
  line(text = ""): Promise<void> {
    return write(this.io.stdout, `${text}\n`);
  }

  /** Writes one value as one line of JSON (a whole document, or one record of a JSON Lines stream). */
  record(value: unknown): Promise<void> {
    return write(this.io.stdout, `${JSON.stringify(value)}\n`);
  }

  /** A note for the person at the terminal, on stderr, never mixed into results. */
  note(text: string): void {
    this.io.stderr.write(`${text}\n`);
  }
}

function write(stream: Writable, chunk: string): Promise<void> {
  if (stream.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      stream.off("drain", done);
      stream.off("error", done);
      if (err) reject(err);
      else resolve();
    };
    stream.once("drain", done);
    stream.once("error", done);
  });
}
