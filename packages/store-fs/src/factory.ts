import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  InvalidArgumentError,
  PermissionDeniedError,
  type StoreFactory,
  UnavailableError,
  urlScheme,
} from "@cairn/core";
import { createFsStore, type FsStore, type FsStoreOptions } from "./fs-store.js";

const PARAMS = ["fsync"] as const;

/**
 * Reads the options of a `file:` URL: `file:///absolute/folder` (percent-encoded as usual, e.g. `%20` for a
 * space), or `file://./relative/folder` and `file://../folder`, which this package resolves against the working
 * directory (not standard file URLs, but handy on a command line). Parameter: `fsync=true|false`.
 */
export function parseFileUrl(url: string): FsStoreOptions {
  if (urlScheme(url) !== "file") {
    throw new InvalidArgumentError(
      `"${url}" is not a file URL; expected file:///absolute/folder or file://./relative/folder.`,
    );
  }
  const q = url.indexOf("?");
  const base = q >= 0 ? url.slice(0, q) : url;
  const query = q >= 0 ? url.slice(q + 1) : "";
  let root: string;
  const relative = /^file:\/\/(\.\.?)(\/|$)/i.exec(base);
  try {
    if (relative) {
      root = resolve(decodeURIComponent(base.slice("file://".length)));
    } else {
      root = fileURLToPath(base);
    }
  } catch (cause) {
    throw new InvalidArgumentError(
      `${url} is not a usable folder URL; expected file:///absolute/folder or file://./relative/folder.`,
      { cause },
    );
  }
  const options: FsStoreOptions = { root };
  for (const [name, value] of new URLSearchParams(query)) {
    if (name !== "fsync") {
      throw new InvalidArgumentError(
        `Unknown parameter "${name}" in ${url}; supported: ${PARAMS.join(", ")}.`,
      );
    }
    if (value !== "true" && value !== "false") {
      throw new InvalidArgumentError(`The parameter fsync=${value} in ${url} must be true or false.`);
    }
    options.fsync = value === "true";
  }
  return options;
}

/** A {@link StoreFactory} whose stores are typed as {@link FsStore}. */
export interface FsStoreFactory extends StoreFactory {
  open(url: string): Promise<FsStore>;
}

/** Opens folder stores from `file:` URLs; see {@link parseFileUrl}. The folder is created on the first write. */
export const factory: FsStoreFactory = Object.freeze({
  schemes: Object.freeze(["file"]),
  async open(url: string): Promise<FsStore> {
    const store = createFsStore(parseFileUrl(url));
    let isFolder: boolean;
    try {
      isFolder = (await stat(store.root)).isDirectory();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return store;
      if (code === "EACCES" || code === "EPERM") {
        throw new PermissionDeniedError(`Permission denied to open the folder store ${url}.`, {
          cause: error,
        });
      }
      if (code === "ENOTDIR")
        throw new InvalidArgumentError(`${url} lies below a file, not a folder.`, { cause: error });
      throw new UnavailableError(`Cannot open the folder store ${url} (${code ?? error}).`, { cause: error });
    }
    if (!isFolder) throw new InvalidArgumentError(`${url} names a file, not a folder.`);
    return store;
  },
});
