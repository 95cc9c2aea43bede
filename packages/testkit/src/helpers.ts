import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ErrorCode, hasCode } from "@cairn/core";
import { afterAll, expect, onTestFinished } from "vitest";

const pending = new Set<string>();
let exitHookInstalled = false;

/**
 * Creates a new, empty temporary directory whose name starts with `prefix` and removes it with everything in it
 * after the test run: after the current test when called inside a test, after the current suite when called
 * while tests are collected (e.g. at the top of a test file), and at the latest when the process exits.
 *
 * @param prefix Start of the directory's name, e.g. `"cairn-sqlite-"`.
 * @returns The directory's absolute path.
 */
export async function tempDir(prefix = "cairn-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  pending.add(dir);
  installExitHook();
  const remove = async () => {
    pending.delete(dir);
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  };
  try {
    onTestFinished(remove);
  } catch {
    // Not inside a test: vitest only lets a test register onTestFinished, so fall back to the suite.
    afterAll(remove);
  }
  return dir;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // The last resort when a hook never ran (a worker torn down early): an exit handler must be synchronous.
  process.once("exit", () => {
    for (const dir of pending) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // Nothing more can be done while the process exits.
      }
    }
  });
}

/**
 * A name that is unique across runs and processes, so tests that share a database, bucket or folder never
 * see each other's data: `prefix`, a time stamp and random hex, e.g. `p-m3x1k2-9f3a0c1b2d4e`.
 *
 * @param prefix Start of the name; only characters every engine and store accepts should be used.
 */
export function randomName(prefix = "t"): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
}

/** Every item of `iterable`, in order. Meant for tests: it holds all of them in memory. */
export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/**
 * Awaits `promise`, expects it to reject with a cairn error of `code`, and returns that error for further
 * checks (message, cause).
 */
export async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof Error)) return expect.fail(`expected an error with code ${code}, but it succeeded`);
  expect(hasCode(error, code), `${(error as { code?: string }).code}: ${error.message}`).toBe(true);
  return error;
}

/**
 * Pipes an HTTP answer's body to the client with its first byte flipped, as a fault-injecting proxy does to
 * show that a reader checks what it reads.
 */
export function pipeCorrupted(from: NodeJS.ReadableStream, to: NodeJS.WritableStream): void {
  let first = true;
  from.on("data", (chunk: Buffer) => {
    if (first && chunk.length > 0) {
      chunk = Buffer.from(chunk);
      chunk[0]! ^= 0xff;
      first = false;
    }
    to.write(chunk);
  });
  from.on("end", () => to.end());
}
