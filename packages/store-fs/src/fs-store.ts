import { randomUUID } from "node:crypto";
import type { BigIntStats } from "node:fs";
import { constants } from "node:fs";
import {
  copyFile,
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  rename,
  rm,
  rmdir,
  stat,
  unlink,
} from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import {
  AlreadyExistsError,
  ConflictError,
  checkListPrefix,
  compareKeys,
  type GetOptions,
  InvalidArgumentError,
  type ListOptions,
  NotFoundError,
  type ObjectInfo,
  type ObjectReader,
  type ObjectStore,
  type PutBody,
  type PutOptions,
  UnavailableError,
} from "@cairn/core";
import { type FsAction, mapFsError } from "./errors.js";
import { checkKey, isListableFolder, TEMP_FOLDER } from "./keys.js";

export interface FsStoreOptions {
  /**
   * The store's root folder, absolute or relative to the working directory. It is created, with its parents,
   * on the first write; until then the store reads as empty.
   */
  root: string;
  /**
   * Flush every object to disk (and the folder entry that names it) before `put` or `copy` resolves, and flush
   * folders after `delete`, so that what a call reported survives a power loss. `false` trades that for speed
   * (tests, scratch data); a crash then may lose recent objects, but still never leaves a partial one.
   * @default true
   */
  fsync?: boolean;
}

/** An {@link ObjectStore} kept as files under one local folder, one file per key. */
export interface FsStore extends ObjectStore {
  readonly kind: "fs";
  /** Absolute path of the root folder. */
  readonly root: string;
}

const READ_CHUNK = 256 * 1024;
const COMMIT_ATTEMPTS = 10;

/**
 * Creates a store that keeps each object as a file at `root/<key>`. Writes go to a temporary file in
 * `root/.cairn-tmp/`, are flushed, and are then renamed (or, for create-only, hard-linked) into place, so a
 * reader sees the old object or the new one, whole.
 */
export function createFsStore(options: FsStoreOptions): FsStore {
  if (typeof options?.root !== "string" || options.root.length === 0) {
    throw new InvalidArgumentError("A folder store needs a root folder.");
  }
  const config = Object.freeze({ root: resolve(options.root), fsync: options.fsync ?? true });
  return new FsStoreImpl(config);
}

type Config = Readonly<{ root: string; fsync: boolean }>;

const etagOf = (st: BigIntStats): string =>
  `${st.size.toString(16)}-${st.mtimeNs.toString(16)}-${st.ino.toString(16)}`;

const infoOf = (key: string, st: BigIntStats): ObjectInfo => ({
  key,
  size: Number(st.size),
  etag: etagOf(st),
  lastModified: new Date(Number(st.mtimeMs)),
});

const errnoOf = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | null)?.code;

function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === "string") return Buffer.from(chunk, "utf8");
  throw new InvalidArgumentError(`A put body must yield Uint8Array chunks, got ${typeof chunk}.`);
}

/** Carries an error raised by the caller's body, so it is rethrown as is rather than read as a file system error. */
class BodyError extends Error {}

async function* guarded(body: AsyncIterable<unknown>): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of body) yield toBytes(chunk);
  } catch (error) {
    throw new BodyError("the body failed", { cause: error });
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}

async function syncFolder(path: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, "r");
    await handle.sync();
  } catch (error) {
    // Some file systems cannot fsync a folder (EINVAL); the data itself is synced already.
    if (errnoOf(error) !== "EINVAL" && errnoOf(error) !== "EISDIR") throw error;
  } finally {
    await handle?.close();
  }
}

class FsStoreImpl implements FsStore {
  readonly kind = "fs" as const;
  readonly root: string;
  readonly url: string;
  readonly #fsync: boolean;
  readonly #temp: string;
  #closed = false;

  constructor(config: Config) {
    this.root = config.root;
    this.#fsync = config.fsync;
    this.#temp = join(this.root, TEMP_FOLDER);
    this.url = pathToFileURL(this.root).href + (config.fsync ? "" : "?fsync=false");
  }

  #check(): void {
    if (this.#closed) throw new UnavailableError(`The folder store ${this.url} is closed.`);
  }

  #path(key: string): string {
    return join(this.root, ...key.split("/"));
  }

  #error(error: unknown, key: string, action: FsAction): unknown {
    return mapFsError(error, key, this.url, action);
  }

  /** A new, open temporary file inside the store, on the same file system as its target. */
  async #tempFile(): Promise<{ path: string; handle: FileHandle }> {
    const path = join(this.#temp, `${randomUUID()}.tmp`);
    try {
      return { path, handle: await open(path, "wx") };
    } catch (error) {
      if (errnoOf(error) !== "ENOENT") throw error;
    }
    const created = await mkdir(this.#temp, { recursive: true });
    if (created && this.#fsync) await this.#syncCreated(created);
    return { path, handle: await open(path, "wx") };
  }

  /** Flushes the folders that name the newly created `first` and everything below it down to `last`. */
  async #syncCreated(first: string, last = first): Promise<void> {
    const folders: string[] = [];
    for (let dir = last; dir.length >= first.length; dir = dirname(dir)) folders.push(dir);
    folders.push(dirname(first));
    for (const folder of folders) await syncFolder(folder);
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<ObjectInfo> {
    this.#check();
    checkKey(key, this.url);
    const { path: temp, handle } = await this.#tempFile().catch((error: unknown) => {
      throw this.#error(error, key, "write");
    });
    let open: FileHandle | undefined = handle;
    try {
      let size = 0;
      if (body instanceof Uint8Array) {
        await writeAll(handle, body);
        size = body.length;
      } else {
        for await (const bytes of guarded(body as AsyncIterable<unknown>)) {
          await writeAll(handle, bytes);
          size += bytes.length;
        }
      }
      if (options.size !== undefined && options.size !== size) {
        throw new InvalidArgumentError(
          `The body of "${key}" in ${this.url} has ${size} bytes, not the ${options.size} its size option says.`,
        );
      }
      if (this.#fsync) await handle.datasync();
      const st = await handle.stat({ bigint: true });
      await handle.close();
      open = undefined;
      await this.#commit(temp, key, options.createOnly === true);
      return infoOf(key, st);
    } catch (error) {
      await open?.close().catch(() => {});
      await rm(temp, { force: true }).catch(() => {});
      if (error instanceof BodyError) throw error.cause;
      throw this.#error(error, key, "write");
    }
  }

  /**
   * Moves the finished temporary file to `key`: rename replaces atomically; link fails if the key exists, so
   * of concurrent create-only writes exactly one wins.
   */
  async #commit(temp: string, key: string, createOnly: boolean): Promise<void> {
    const target = this.#path(key);
    const folder = dirname(target);
    for (let attempt = 1; ; attempt++) {
      try {
        const created = await mkdir(folder, { recursive: true }).catch((error: unknown) => {
          const code = errnoOf(error);
          if (code !== "EEXIST" && code !== "ENOTDIR") throw error;
          throw new ConflictError(
            `The key "${key}" in ${this.url} lies below another object; a folder store cannot hold both "a" and "a/b".`,
            { cause: error },
          );
        });
        if (created && this.#fsync) await this.#syncCreated(created, folder);
        if (createOnly) {
          await link(temp, target);
          await unlink(temp).catch(() => {});
        } else {
          await rename(temp, target);
        }
        break;
      } catch (error) {
        const code = errnoOf(error);
        // A concurrent delete may remove an empty folder between mkdir and rename: make it again.
        if (code === "ENOENT" && attempt < COMMIT_ATTEMPTS) continue;
        if (code === "ENOENT") {
          throw new UnavailableError(
            `Writing "${key}" in ${this.url} kept racing with deletes of its folder.`,
            {
              cause: error,
            },
          );
        }
        if (
          (code === "EEXIST" || code === "EISDIR" || code === "ENOTEMPTY") &&
          (await this.#isFolder(target))
        ) {
          // An empty folder left by an interrupted delete is no object: remove it and try again.
          if (
            attempt < COMMIT_ATTEMPTS &&
            (await rmdir(target).then(
              () => true,
              () => false,
            ))
          )
            continue;
          throw new ConflictError(
            `The key "${key}" in ${this.url} is a folder of other keys; a folder store cannot hold both "a" and "a/b".`,
            { cause: error },
          );
        }
        if (code === "EEXIST" && createOnly) {
          throw new AlreadyExistsError(`The object "${key}" already exists in ${this.url}.`, {
            cause: error,
          });
        }
        throw error;
      }
    }
    if (this.#fsync) await syncFolder(folder);
  }

  async #isFolder(path: string): Promise<boolean> {
    return lstat(path).then(
      (st) => st.isDirectory(),
      () => false,
    );
  }

  async get(key: string, options: GetOptions = {}): Promise<ObjectReader> {
    this.#check();
    checkKey(key, this.url);
    const { range } = options;
    if (range !== undefined) {
      const { start, end } = range;
      if (
        !Number.isSafeInteger(start) ||
        start < 0 ||
        (end !== undefined && (!Number.isSafeInteger(end) || end < start))
      ) {
        throw new InvalidArgumentError(
          `The range ${JSON.stringify(range)} for "${key}" in ${this.url} is not valid; expected 0 ≤ start ≤ end.`,
        );
      }
    }
    let handle: FileHandle;
    try {
      handle = await open(this.#path(key), "r");
    } catch (error) {
      if (errnoOf(error) === "ENOTDIR")
        throw new NotFoundError(`No object "${key}" in ${this.url}.`, { cause: error });
      throw this.#error(error, key, "read");
    }
    try {
      const st = await handle.stat({ bigint: true });
      if (!st.isFile()) throw new NotFoundError(`No object "${key}" in ${this.url}.`);
      const size = Number(st.size);
      let start = 0;
      let end = size - 1;
      if (range) {
        if (range.start >= size) {
          throw new InvalidArgumentError(
            `The range starts at byte ${range.start}, beyond the end of "${key}" (${size} bytes) in ${this.url}.`,
          );
        }
        start = range.start;
        end = Math.min(range.end ?? end, end);
      }
      // Reading through the handle opened above keeps this version even if the key is replaced meanwhile.
      const length = size === 0 ? 0 : end - start + 1;
      if (length <= READ_CHUNK) {
        // Small objects (tree ranges, most data) in one read: a stream's per-chunk machinery costs more than
        // the read itself when thousands of them are fetched in a row.
        const bytes = Buffer.allocUnsafe(length);
        let read = 0;
        while (read < length) {
          const { bytesRead } = await handle.read(bytes, read, length - read, start + read);
          if (bytesRead === 0) break;
          read += bytesRead;
        }
        await handle.close();
        return { ...infoOf(key, st), body: bufferStream(bytes.subarray(0, read)) };
      }
      const body = handle.createReadStream({ start, end, highWaterMark: READ_CHUNK, autoClose: true });
      return { ...infoOf(key, st), body };
    } catch (error) {
      await handle.close().catch(() => {});
      throw this.#error(error, key, "read");
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    this.#check();
    checkKey(key, this.url);
    try {
      const st = await stat(this.#path(key), { bigint: true });
      return st.isFile() ? infoOf(key, st) : undefined;
    } catch (error) {
      const code = errnoOf(error);
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      throw this.#error(error, key, "read");
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncGenerator<ObjectInfo> {
    this.#check();
    checkListPrefix(prefix, this.url);
    const { after } = options;
    // Start in the deepest folder the prefix names whole; nothing outside it can match.
    const folder = prefix.slice(0, prefix.lastIndexOf("/") + 1);
    if (!isListableFolder(folder)) return;
    yield* this.#walk(folder, prefix, after);
  }

  /** Objects under `folder` (a key prefix ending in "/", or "") in byte order of their keys. */
  async *#walk(folder: string, prefix: string, after: string | undefined): AsyncGenerator<ObjectInfo> {
    this.#check();
    let entries: import("node:fs").Dirent[];
    try {
      entries = await readdir(folder === "" ? this.root : this.#path(folder.slice(0, -1)), {
        withFileTypes: true,
      });
    } catch (error) {
      const code = errnoOf(error);
      if (code === "ENOENT" || code === "ENOTDIR") return;
      throw this.#error(error, folder || "(the root folder)", "list");
    }
    // A folder's keys all start with "name/", so sorting folders as "name/" among files puts every subtree
    // exactly where its keys belong in byte order: "a.txt" < "a/b" < "a0".
    const items: { key: string; folder: boolean }[] = [];
    for (const entry of entries) {
      if (folder === "" && entry.name === TEMP_FOLDER) continue;
      if (entry.isDirectory()) items.push({ key: `${folder}${entry.name}/`, folder: true });
      else if (entry.isFile()) items.push({ key: folder + entry.name, folder: false });
    }
    items.sort((a, b) => compareKeys(a.key, b.key));

    for (const item of items) {
      if (item.folder) {
        if (!item.key.startsWith(prefix) && !prefix.startsWith(item.key)) continue;
        // Every key below is greater than "name/" and shares it, so `after` past the subtree skips it whole.
        if (after !== undefined && compareKeys(after, item.key) >= 0 && !after.startsWith(item.key)) continue;
        yield* this.#walk(item.key, prefix, after);
        continue;
      }
      if (!item.key.startsWith(prefix)) continue;
      if (after !== undefined && compareKeys(item.key, after) <= 0) continue;
      let st: BigIntStats;
      try {
        st = await stat(this.#path(item.key), { bigint: true });
      } catch (error) {
        // Deleted since the folder was read: it was not present for the whole listing.
        if (errnoOf(error) === "ENOENT") continue;
        throw this.#error(error, item.key, "list");
      }
      if (st.isFile()) yield infoOf(item.key, st);
    }
  }

  async delete(key: string): Promise<void> {
    this.#check();
    checkKey(key, this.url);
    const path = this.#path(key);
    try {
      await unlink(path);
    } catch (error) {
      const code = errnoOf(error);
      // Absent, or a folder of other keys (which is no object): nothing to delete.
      if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") return;
      if (code === "EPERM" && (await this.#isFolder(path))) return;
      throw this.#error(error, key, "delete");
    }
    try {
      if (this.#fsync) await syncFolder(dirname(path));
      await this.#removeEmptyFolders(dirname(path));
    } catch (error) {
      // A concurrent delete of the folder's last other key removed the folder first: the key is gone all the same.
      if (errnoOf(error) === "ENOENT") return;
      throw this.#error(error, key, "delete");
    }
  }

  /** Removes `folder` and its parents up to the root while they are empty, so no empty folder outlives its keys. */
  async #removeEmptyFolders(folder: string): Promise<void> {
    for (let dir = folder; dir.startsWith(this.root + sep); dir = dirname(dir)) {
      try {
        await rmdir(dir);
      } catch {
        // Not empty (or already gone, or in use by a concurrent put): the folders above are not empty either.
        return;
      }
    }
  }

  async copy(source: string, target: string, options: { createOnly?: boolean } = {}): Promise<ObjectInfo> {
    this.#check();
    checkKey(source, this.url);
    checkKey(target, this.url);
    const { path: temp, handle } = await this.#tempFile().catch((error: unknown) => {
      throw this.#error(error, target, "copy to");
    });
    let open: FileHandle | undefined = handle;
    try {
      try {
        // Cloned where the file system can (reflink), copied otherwise; never a hard link, so the copy is independent.
        await copyFile(this.#path(source), temp, constants.COPYFILE_FICLONE);
      } catch (error) {
        const code = errnoOf(error);
        if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") {
          throw new NotFoundError(`No object "${source}" in ${this.url} to copy to "${target}".`, {
            cause: error,
          });
        }
        throw this.#error(error, source, "read");
      }
      if (this.#fsync) await handle.datasync();
      const st = await handle.stat({ bigint: true });
      if (!st.isFile())
        throw new NotFoundError(`No object "${source}" in ${this.url} to copy to "${target}".`);
      await handle.close();
      open = undefined;
      await this.#commit(temp, target, options.createOnly === true);
      return infoOf(target, st);
    } catch (error) {
      await open?.close().catch(() => {});
      await rm(temp, { force: true }).catch(() => {});
      throw this.#error(error, target, "copy to");
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

function bufferStream(bytes: Buffer): Readable {
  let done = false;
  return new Readable({
    read() {
      if (!done && bytes.length > 0) this.push(bytes);
      done = true;
      this.push(null);
    },
  });
}
