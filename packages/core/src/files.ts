import { createHash } from "node:crypto";
import { createReadStream, type ReadStream } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { Readable, Transform } from "node:stream";

/**
 * Bytes gathered into one write. Node's write streams write each chunk as it comes (16 KiB by default), each
 * write a round trip to libuv's thread pool.
 */
const GATHER = 1024 * 1024;

/**
 * A stream of the file at `path`, of `size` bytes, read in chunks of up to 1 MiB but never larger than the file.
 * Each read takes a buffer of the chunk size: 64 KiB files read with 1 MiB chunks churned 2 GB of buffers per
 * 2,000 files, and the garbage collections they set off doubled the CPU of an upload. Large files read in 1 MiB
 * chunks take a sixteenth of the reads of Node's default 64 KiB.
 */
export function fileStream(path: string, size: number): ReadStream {
  return createReadStream(path, { highWaterMark: Math.max(1, Math.min(size, GATHER)) });
}

/**
 * Writes every chunk of `body` through `handle`, gathered into writes of up to 1 MiB, and returns how many
 * bytes it wrote; `each` sees every chunk first (to hash or count it). Cheaper than piping into a write stream:
 * measured on 2,000 downloads of 64 KiB, 0.4 s less CPU, mostly the stream machinery set up per file. The
 * caller opens and closes the handle; a chunk that fails `each` or the write stops the loop there.
 */
export async function writeBody(
  handle: FileHandle,
  body: AsyncIterable<Uint8Array>,
  each?: (chunk: Uint8Array) => void,
): Promise<number> {
  let parts: Uint8Array[] = [];
  let gathered = 0;
  let written = 0;
  for await (const chunk of body) {
    each?.(chunk);
    parts.push(chunk);
    gathered += chunk.length;
    if (gathered >= GATHER) {
      await writeAll(handle, parts, gathered);
      written += gathered;
      parts = [];
      gathered = 0;
    }
  }
  if (gathered > 0) await writeAll(handle, parts, gathered);
  return written + gathered;
}

/** Writes `parts` (`length` bytes in all) whole, going on after a short write. */
async function writeAll(handle: FileHandle, parts: Uint8Array[], length: number): Promise<void> {
  let { bytesWritten } = await handle.writev(parts);
  if (bytesWritten === length) return;
  const rest = Buffer.concat(parts, length);
  while (bytesWritten < length) {
    bytesWritten += (await handle.write(rest, bytesWritten, length - bytesWritten)).bytesWritten;
  }
}

/**
 * Passes bytes through and fails the stream at its end, with `mismatch(actual, size)`, when their digest
 * (`algorithm`, hex) is not `expected`. The last chunk is held back until the digest is checked, so a reader
 * never gets all of the bytes before it learns they are wrong: a store's put of such a stream, with its size,
 * fails before its request is complete, even when it streams the body in one request.
 */
export function digestChecked(
  algorithm: string,
  expected: string,
  mismatch: (actual: string, size: number) => Error,
): Transform {
  const hash = createHash(algorithm);
  let size = 0;
  let held: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      size += chunk.length;
      const previous = held;
      held = chunk;
      done(null, previous);
    },
    flush(done) {
      const actual = hash.digest("hex");
      if (actual !== expected) {
        done(mismatch(actual, size));
        return;
      }
      done(null, held);
    },
  });
}

/**
 * A stream of chunks already in memory, one push per chunk: for bodies read whole before they are handed over
 * (to check them first, or to resume a cut read before the caller sees a byte).
 */
export function chunkStream(chunks: readonly Uint8Array[]): Readable {
  let next = 0;
  return new Readable({
    read() {
      this.push(next < chunks.length ? chunks[next++] : null);
    },
  });
}
