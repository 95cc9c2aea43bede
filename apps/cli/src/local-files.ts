import { randomBytes } from "node:crypto";
import { constants, createReadStream, rmSync, type Stats } from "node:fs";
import { access, lstat, mkdir, opendir, rm, stat } from "node:fs/promises";
import { basename, dirname, join, relative, sep } from "node:path";
import type { Readable } from "node:stream";
import { CorruptError, FileWriterPool, InvalidArgumentError, NotFoundError } from "@cairn/core";

/** Temporary files being written, removed if the process is interrupted. */
const pending = new Set<string>();

/** Registers a temporary file to remove if the process is interrupted; returns the function that forgets it. */
export function trackTempFile(file: string): () => void {
  pending.add(file);
  return () => pending.delete(file);
}

/** Removes unfinished downloads; called on Ctrl-C, synchronous because the process exits right after. */
export function removeTempFilesSync(): void {
  for (const file of pending) rmSync(file, { force: true });
  pending.clear();
}

/** `stat` of a file the user named, with a one-line error when it does not exist. */
export async function statLocal(path: string): Promise<Stats> {
  try {
    return await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw new NotFoundError(`Local file or directory "${path}" does not exist.`);
    }
    throw e;
  }
}

/** Whether `path` names an existing directory (false when absent). */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}

export interface LocalFile {
  /** Path as the file system takes it. */
  path: string;
  /** Relative to the walked directory, with `/` separators: the object path below the target prefix. */
  rel: string;
  size: number;
}

/**
 * The regular files under `root`, in sorted order, streamed one directory at a time. Symbolic links to files
 * are followed; links to directories are not (they could loop), and other kinds of file are skipped.
 */
export async function* walkLocal(root: string): AsyncGenerator<LocalFile> {
  const names: string[] = [];
  for await (const d of await opendir(root)) names.push(d.name);
  names.sort();
  for (const name of names) {
    const path = join(root, name);
    const l = await lstat(path);
    if (l.isDirectory()) {
      for await (const f of walkLocal(path)) yield { ...f, rel: `${name}/${f.rel}` };
    } else if (l.isFile()) {
      yield { path, rel: name, size: l.size };
    } else if (l.isSymbolicLink()) {
      const s = await stat(path).catch(() => undefined);
      if (s?.isFile()) yield { path, rel: name, size: s.size };
    }
  }
}

/** The threads that write downloaded files, started with the first download; idle, they keep nothing alive. */
let writers: FileWriterPool | undefined;

/**
 * Writes `body` to `target` through a temporary file in the same directory, checking its size and SHA-256,
 * then renames it into place: `target` is either left as it was or replaced whole. The file is hashed, written
 * and renamed by a `FileWriterPool`: on a thread of its own, so that this thread only reads the network, unless
 * it is small enough to cost less written here. `folders` lets many writes share their folders' creation: one
 * `mkdir` per folder rather than one per file.
 */
export async function writeFileAtomically(
  target: string,
  body: Readable,
  expected: { size: number; sha256: string; what: string },
  folders?: Map<string, Promise<unknown>>,
): Promise<void> {
  await makeFolder(dirname(target), folders);
  const temp = join(dirname(target), `.${basename(target)}.cairn-${randomBytes(4).toString("hex")}.partial`);
  pending.add(temp);
  try {
    writers ??= new FileWriterPool();
    await writers.write(target, body, {
      algorithm: "sha256",
      temp,
      exclusive: true,
      check: {
        size: expected.size,
        digest: expected.sha256,
        mismatch: (size, sha256 = "") =>
          new CorruptError(
            `The bytes read for ${expected.what} do not match its record (${size} bytes, sha256 ${sha256.slice(0, 12)}; expected ${expected.size} bytes, ${expected.sha256.slice(0, 12)}); nothing was written.`,
          ),
      },
    });
  } catch (e) {
    // The pool removes what it wrote on failure; this covers a writing thread that stopped.
    await rm(temp, { force: true });
    throw e;
  } finally {
    pending.delete(temp);
  }
}

/** Creates `folder` and its parents, once per folder of `folders` when given. */
function makeFolder(folder: string, folders?: Map<string, Promise<unknown>>): Promise<unknown> {
  if (!folders) return mkdir(folder, { recursive: true });
  let made = folders.get(folder);
  if (!made) {
    made = mkdir(folder, { recursive: true });
    // A failure is not kept: the next file of the folder tries again, and reports its own error.
    made.catch(() => folders.delete(folder));
    folders.set(folder, made);
  }
  return made;
}

/** `target` if it stays inside `root`, else an error: a path from a repository never escapes the download folder. */
export function inside(root: string, target: string): string {
  const rel = relative(root, target);
  if (rel === "" || rel.startsWith(`..${sep}`) || rel === "..") {
    throw new CorruptError(`Object path would be written outside ${root}: ${target}.`);
  }
  return target;
}

/**
 * The bytes of a local file the user named as input (`-`: `stdin`), with a one-line error naming `what` and
 * the file when it cannot be read, before any work starts.
 */
export async function openInput(
  file: string,
  what: string,
  stdin: NodeJS.ReadableStream,
): Promise<AsyncIterable<Uint8Array> & { destroy?: () => void }> {
  if (file === "-") return stdin as AsyncIterable<Uint8Array>;
  await checkReadable(file, what);
  return createReadStream(file);
}

/** Refuses, naming it, a file this process cannot read. */
export async function checkReadable(file: string, what: string): Promise<void> {
  try {
    await access(file, constants.R_OK);
  } catch (error) {
    throw new InvalidArgumentError(
      `Cannot read the ${what} ${file} (${(error as NodeJS.ErrnoException).code}).`,
      {
        cause: error,
      },
    );
  }
}
