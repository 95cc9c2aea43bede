import { type KvEntry, type ScanRange, TextEntry } from "@cairn/core";
import type { Page } from "./scan-page.js";

/** Rows of a scan's first page; pages double from there up to the engine's `pageSize`. */
const FIRST_PAGE_ROWS = 64;

/** Reads one page of a scan's range: rows after (or from, when `inclusive`) `lower`, at most `want`. */
export type PageReader = (
  lower: Buffer | undefined,
  inclusive: boolean,
  want: number,
) => Page | Promise<Page>;

/** A view of bytes that came from another thread (a plain Uint8Array) as a Buffer, without copying. */
export const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/**
 * The pages of a scan of `range`, read with keyset pagination: each page is its own query, so no statement stays
 * open while the caller runs and may write on the same connection (better-sqlite3 forbids that while a statement
 * iterates). Pages grow from a few rows, so that a scan of a few keys reads few rows and a long one goes by in
 * pages of `pageSize`. With `readAhead`, the next page is asked for before this one is handed over, so a reader
 * on another thread reads it while the caller works.
 */
export async function* readPages(
  read: PageReader,
  range: ScanRange,
  pageSize: number,
  readAhead: boolean,
): AsyncGenerator<readonly KvEntry[]> {
  let remaining = range.limit;
  let want = Math.min(FIRST_PAGE_ROWS, pageSize);
  let next: Page | Promise<Page> | undefined =
    remaining > 0 ? read(range.lower, range.inclusive, Math.min(want, remaining)) : undefined;
  try {
    while (next !== undefined) {
      const page: Page = await next;
      next = undefined;
      remaining -= page.keys.length;
      const more = page.full && remaining > 0 && page.last !== undefined;
      const ask = () => {
        want = Math.min(2 * want, pageSize);
        return read(Buffer.from(page.last!, "utf8"), false, Math.min(want, remaining));
      };
      if (more && readAhead) next = ask();
      if (page.keys.length > 0) yield entries(page);
      if (more && !readAhead) next = ask();
    }
  } finally {
    // A page read ahead that the caller no longer wants: its failure is nobody's.
    if (next instanceof Promise) next.catch(() => {});
  }
}

/** A page's rows as entries: values read as text stay text ({@link TextEntry}), so a dump writes them as they are. */
function entries(page: Page): KvEntry[] {
  const { keys, values } = page;
  const out: KvEntry[] = new Array(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const value = values[i]!;
    out[i] =
      typeof value === "string" ? new TextEntry(keys[i]!, value) : { key: keys[i]!, value: asBuffer(value) };
  }
  return out;
}
