import { Worker } from "node:worker_threads";
import { type DecryptOptions, type DumpReader, ManifestError, type ManifestErrorCode } from "@cairn/manifest";
import { encodeJson, utf8 } from "./codec.js";
import { asCairnError, ENGINE_DUMP_SCHEMAS, ENGINE_DUMP_SECTIONS } from "./dump.js";
import { clearKeys, type MetadataEngine, type WriteOp } from "./engine.js";
import { InvalidArgumentError, PreconditionFailedError } from "./errors.js";
import { GLOBAL_PARTITION, namespaceKey, repoKey } from "./layout.js";
import { LoadCheckError, LoadChecks, type LoadedRepository, type PutFn } from "./load-records.js";
import type { LoadThreadData, LoadThreadMessage, PackedBatch } from "./load-thread.js";
import type { RepositoryRecord } from "./records.js";
import { workerFlags } from "./worker-flags.js";

export interface LoadEngineOptions {
  /** Load only this repository of the dump, into an engine that may hold others (but not this one). */
  repository?: string;
  onRecord?: (count: number) => void;
}

export interface LoadResult {
  repositories: string[];
  counts: Record<string, number>;
}

/**
 * A dump's bytes or its file, for a load that reads and checks them on a thread of its own while the calling
 * thread writes to the engine: the faster way to load a large dump. Gzip and encryption are recognised.
 */
export type DumpBytes = DumpInputOptions &
  (
    | {
        /** The dump as it was written: standard input's chunks, say. */
        readonly bytes: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
      }
    | {
        /** The dump's file, which the reading thread reads itself. */
        readonly file: string;
      }
  );

export interface DumpInputOptions {
  /** Private key of an encrypted dump. */
  readonly decrypt?: DecryptOptions;
  /** Name of the input (a file name) put before the line in messages. */
  readonly label?: string;
  /** Longest line accepted, in bytes. @default 67108864 (64 MiB) */
  readonly maxLineBytes?: number;
}

/**
 * How much a load hands to one `writeBatch` (one transaction, bulk insert or pipeline). Measured on SQLite with
 * 1.1M records: 1,000 records a batch loads in 16.1 s at 175 MB peak, 5,000 in 18.6 s at 280 MB.
 */
const LOAD_BATCH = { ops: 1000, bytes: 1024 * 1024 };
/** Batches written at once while keys ascend. */
const WRITES_AT_ONCE = 2;
/** Batches a reader thread may have ready before the loading thread takes them; and input chunks asked ahead. */
const THREAD_AHEAD = 4;
const THREAD_PREFETCH = 4;
/**
 * The reader thread's heap, which holds the records in flight (the commit ids that references are checked against
 * are kept outside it: see DigestSet). Both limits also bound how far V8 lets the heap grow past its live data between
 * full collections — in proportion to the old generation's limit below 2 GB, plus the young generation's size —
 * and the young generation only ever holds a page of records in flight. Measured on 1.1M records (SQLite): peak RSS
 * 290–308 MB with V8's defaults, 203–229 MB with these, 0.5 s slower.
 */
const THREAD_HEAP_MB = 1024;
const THREAD_YOUNG_MB = 6;

/** What a load's reading side hands its writing side: the header was read; writes to make; the end. */
type LoadEvent =
  | { kind: "header" }
  | {
      kind: "ops";
      ops: WriteOp[];
      partitions: readonly string[];
      count: number;
      /** No key of these ops was written before: they may be written while earlier ones still are. */
      ascending: boolean;
    }
  | { kind: "done"; repositories: LoadedRepository[]; counts: Record<string, number>; count: number };

/**
 * Loads a dump into an empty engine (or, with `repository`, one that does not hold that repository). Every
 * reference is checked (branches and tags to commits, commits to their parents, staged entries to their
 * repository) and the footer verified before anything becomes visible: the repositories' own records are written
 * last. On any failure what was written is removed again and the engine looks as it did before.
 *
 * `source` is either a reader from `@cairn/manifest`'s `readDump`, read and checked on this thread, or the dump's
 * bytes ({@link DumpBytes}), read and checked on a worker thread while this one writes.
 */
export async function loadEngine(
  engine: MetadataEngine,
  source: DumpReader | DumpBytes,
  options: LoadEngineOptions = {},
): Promise<LoadResult> {
  const events = "pages" in source ? checkHere(source, options) : checkOnThread(source, options);
  const written = new Set<string>();
  let repositories: LoadedRepository[] | undefined;
  let counts: Record<string, number> = {};
  let count = 0;
  // Batches are written while the next are read and checked: two at a time while keys ascend (none is written
  // twice, so the order they are applied in does not matter), so that an engine's client prepares one while its
  // server applies the other; one at a time otherwise.
  const writing: Promise<void>[] = [];
  const write = async (ops: WriteOp[], ascending: boolean) => {
    while (writing.length >= (ascending ? WRITES_AT_ONCE : 1)) await writing.shift();
    const written = engine.writeBatch(ops);
    // Settled here so that a failure is not unhandled while the next batch fills; it surfaces on a later write.
    written.catch(() => {});
    writing.push(written);
  };
  try {
    for await (const event of events) {
      if (event.kind === "header") await checkTarget(engine, options);
      else if (event.kind === "ops") {
        for (const partition of event.partitions) written.add(partition);
        await write(event.ops, event.ascending);
        if (Math.floor(event.count / 10_000) > Math.floor(count / 10_000)) options.onRecord?.(event.count);
        count = event.count;
      } else {
        ({ repositories, counts, count } = event);
      }
    }
    if (repositories === undefined) throw new Error("A load's reader ended without its last event.");
    // Last: the records that make repositories visible.
    written.add(GLOBAL_PARTITION);
    const last: WriteOp[] = [];
    for (const r of repositories) {
      const { name, namespace, defaultBranch, createdAt, bare, instanceId } = r;
      const record: RepositoryRecord = { name, namespace, defaultBranch, createdAt, bare, instanceId };
      last.push(
        {
          partition: GLOBAL_PARTITION,
          key: namespaceKey(namespace),
          value: encodeJson({ repository: name, instanceId }),
        },
        { partition: GLOBAL_PARTITION, key: repoKey(name), value: encodeJson(record) },
      );
    }
    await write(last, false);
    await Promise.all(writing);
    options.onRecord?.(count);
    return { repositories: repositories.map((r) => r.name), counts };
  } catch (error) {
    await Promise.allSettled(writing);
    await undo(engine, written, options.repository === undefined ? undefined : repositories);
    throw asCairnError(error);
  }
}

/** Refuses a target that holds what the load would write. */
async function checkTarget(engine: MetadataEngine, options: LoadEngineOptions): Promise<void> {
  if (options.repository === undefined) {
    for await (const partition of engine.partitions()) {
      throw new PreconditionFailedError(
        `The target engine is not empty (it has partition "${partition}"); load into an empty engine, or load one repository with --repo.`,
      );
    }
  } else if (await engine.get(GLOBAL_PARTITION, repoKey(options.repository))) {
    throw new PreconditionFailedError(`The target engine already has repository "${options.repository}".`);
  }
}

/** The events of a load that reads and checks `reader` on this thread. */
async function* checkHere(reader: DumpReader, options: LoadEngineOptions): AsyncGenerator<LoadEvent> {
  await reader.header();
  yield { kind: "header" };
  const checks = new LoadChecks({ repository: options.repository });
  let ops: WriteOp[] = [];
  let bytes = 0;
  let partitions = new Set<string>();
  const put: PutFn = (partition, key, value) => {
    const bytesOf = typeof value === "string" ? utf8(value) : value;
    ops.push({ partition, key, value: bytesOf });
    partitions.add(partition);
    bytes += key.length + bytesOf.length;
  };
  const take = (): LoadEvent => {
    const event: LoadEvent = {
      kind: "ops",
      ops,
      partitions: [...partitions],
      count: checks.count,
      ascending: checks.ascending,
    };
    ops = [];
    bytes = 0;
    partitions = new Set();
    return event;
  };
  for await (const page of reader.pages()) {
    for (const record of page) {
      checks.record(record, put);
      if (ops.length >= LOAD_BATCH.ops || bytes >= LOAD_BATCH.bytes) yield take();
    }
  }
  const repositories = checks.finish();
  if (ops.length > 0) yield take();
  yield { kind: "done", repositories, counts: checks.counts, count: checks.count };
}

/**
 * The events of a load whose reading and checking run on a worker thread (load-thread.js). This thread feeds it
 * the input's chunks as it asks for them (a file it reads itself), and unpacks the batches it sends back; the
 * worker stops when the load does, whatever the reason.
 */
async function* checkOnThread(source: DumpBytes, options: LoadEngineOptions): AsyncGenerator<LoadEvent> {
  const data: LoadThreadData = {
    read: {
      schemas: ENGINE_DUMP_SCHEMAS,
      sections: ENGINE_DUMP_SECTIONS,
      ...(source.decrypt ? { decrypt: source.decrypt } : {}),
      ...(source.label !== undefined ? { label: source.label } : {}),
      ...(source.maxLineBytes !== undefined ? { maxLineBytes: source.maxLineBytes } : {}),
    },
    file: "file" in source ? source.file : undefined,
    repository: options.repository,
    batch: LOAD_BATCH,
    ahead: THREAD_AHEAD,
    prefetch: THREAD_PREFETCH,
  };
  const worker = new Worker(new URL("./load-thread.js", import.meta.url), {
    workerData: data,
    resourceLimits: { maxOldGenerationSizeMb: THREAD_HEAP_MB, maxYoungGenerationSizeMb: THREAD_YOUNG_MB },
    ...workerFlags(),
  });
  const input = iterate("bytes" in source ? source.bytes : []);
  const messages: LoadThreadMessage[] = [];
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const fail = (error: unknown) => {
    failure ??= { error };
    notify();
  };
  // Input chunks go over one at a time, in order: an iterator takes no second `next()` before the first settles.
  let feeding: Promise<void> = Promise.resolve();
  const feed = async () => {
    const next = await input.next();
    if (next.done) return void worker.postMessage({ end: true });
    const value: unknown = next.value;
    if (!(value instanceof Uint8Array)) {
      throw new InvalidArgumentError(
        `A dump's bytes come as Uint8Array or Buffer chunks, not ${typeof value === "string" ? "text (a stream with an encoding set?)" : typeof value}.`,
      );
    }
    // A copy of its own, moved to the worker: the caller's buffer (or Node's pool) stays as it was.
    const chunk = new Uint8Array(value);
    worker.postMessage({ chunk }, [chunk.buffer]);
  };
  worker.on("message", (message: LoadThreadMessage | { pull: true }) => {
    if ("pull" in message) {
      feeding = feeding.then(feed).catch(fail);
      return;
    }
    messages.push(message);
    notify();
  });
  worker.on("error", (error: Error & { code?: string }) => {
    fail(
      error.code === "ERR_WORKER_OUT_OF_MEMORY"
        ? new PreconditionFailedError(
            `Loading needs more than the ${THREAD_HEAP_MB} MB of heap its reader thread may use (a line of the dump is too large to read).`,
            { cause: error },
          )
        : error,
    );
  });
  worker.on("exit", (code) => fail(new Error(`A load's reader thread stopped early (exit code ${code}).`)));
  try {
    for (;;) {
      while (messages.length === 0 && failure === undefined) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
      const message = messages.shift();
      if (message === undefined) throw failure!.error;
      if ("header" in message) yield { kind: "header" };
      else if ("batch" in message) {
        worker.postMessage({ taken: true });
        yield { kind: "ops", ...unpack(message.batch), count: message.count, ascending: message.ascending };
      } else if ("done" in message) {
        yield { kind: "done", ...message.done };
        return;
      } else throw errorFromThread(message.error);
    }
  } finally {
    worker.removeAllListeners("exit");
    await worker.terminate();
    // Closes the input; a read still under way is left to settle, not awaited: a pipe may never send more.
    Promise.resolve(input.return?.()).catch(() => {});
  }
}

/** An iterator over sync or async chunks. */
function iterate(
  bytes: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncIterator<Uint8Array> | Iterator<Uint8Array> {
  return Symbol.asyncIterator in bytes
    ? bytes[Symbol.asyncIterator]()
    : (bytes as Iterable<Uint8Array>)[Symbol.iterator]();
}

/** The writes of a batch from the reader thread, each value a view of the batch's one buffer. */
function unpack(batch: PackedBatch): { ops: WriteOp[]; partitions: readonly string[] } {
  const { partitions, parts, ends, length } = batch;
  const bytes = Buffer.from(batch.bytes.buffer, batch.bytes.byteOffset, batch.bytes.length);
  const ops = new Array<WriteOp>(length);
  let start = 0;
  for (let i = 0; i < length; i++) {
    const keyEnd = ends[2 * i]!;
    const end = ends[2 * i + 1]!;
    ops[i] = {
      partition: partitions[parts[i]!]!,
      key: bytes.toString("utf8", start, keyEnd),
      value: bytes.subarray(keyEnd, end),
    };
    start = end;
  }
  return { ops, partitions };
}

/** The error a reader thread reported, as the class it had there, so that it maps to the same cairn error. */
function errorFromThread(error: { name: string; code: string | undefined; message: string; stack?: string }) {
  if (error.name === "ManifestError")
    return new ManifestError(error.code as ManifestErrorCode, error.message);
  if (error.name === "InputError") {
    return new InvalidArgumentError(error.message);
  }
  if (error.name === "LoadCheckError") {
    return new LoadCheckError(error.code as "CORRUPT" | "INVALID_ARGUMENT", error.message);
  }
  const unexpected = new Error(`A load's reader thread failed: ${error.message}`);
  if (error.stack) unexpected.stack = error.stack;
  return unexpected;
}

/** Removes what a failed load wrote. */
async function undo(
  engine: MetadataEngine,
  partitions: Set<string>,
  only: readonly LoadedRepository[] | undefined,
): Promise<void> {
  for (const partition of partitions) {
    if (only && partition === GLOBAL_PARTITION) {
      for (const r of only) {
        await engine.delete(GLOBAL_PARTITION, repoKey(r.name)).catch(() => {});
        await engine.delete(GLOBAL_PARTITION, namespaceKey(r.namespace)).catch(() => {});
      }
      continue;
    }
    try {
      await clearKeys(engine, partition);
    } catch {
      // Best effort: the repositories' records were not written, so what is left is not visible.
    }
  }
}
