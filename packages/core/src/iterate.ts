/**
 * Flattens a stream of pages into a stream of items without an async generator per item: `next()` hands out
 * the current page's items as already-resolved promises, so iterating a million entries costs one microtask
 * each instead of a generator's queue and awaits.
 */
export function flattenPages<T>(pages: AsyncIterable<T[]>): AsyncIterableIterator<T> {
  let source: AsyncIterator<T[]> | undefined;
  let page: T[] = [];
  let i = 0;
  let finished = false;
  const fill = async (): Promise<IteratorResult<T>> => {
    source ??= pages[Symbol.asyncIterator]();
    while (!finished) {
      const r = await source.next();
      if (r.done) break;
      page = r.value;
      i = 0;
      if (page.length > 0) return { value: page[i++]!, done: false };
    }
    finished = true;
    page = [];
    return { value: undefined, done: true };
  };
  const iterator: AsyncIterableIterator<T> = {
    [Symbol.asyncIterator]: () => iterator,
    next: () => (i < page.length ? Promise.resolve({ value: page[i++]!, done: false }) : fill()),
    async return(): Promise<IteratorResult<T>> {
      finished = true;
      page = [];
      await source?.return?.();
      return { value: undefined, done: true };
    },
  };
  return iterator;
}

/** Groups a stream of items into pages of up to `size`. */
export async function* paginate<T>(items: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let page: T[] = [];
  for await (const item of items) {
    page.push(item);
    if (page.length >= size) {
      yield page;
      page = [];
    }
  }
  if (page.length > 0) yield page;
}

/** One page of a listing service's answer, and the token of the next page (`undefined` on the last). */
export interface ListedPage<T> {
  items: T[];
  next: string | undefined;
}

export interface PagesAheadOptions {
  /** Entries asked for in the first request: few, so that the reader has its first entries soon. */
  first: number;
  /** Entries asked for in each later request. */
  size: number;
}

/**
 * The pages of a listing, with the next page asked for as soon as the one before it has come, while the reader
 * is still busy with it: a reader that starts work on each entry (a download) is not left waiting at each page's
 * end, and the service lists while the work goes on. The first request asks for only `options.first` entries, so
 * the work starts after a short answer rather than a full page (a page of 5,000 blobs takes Azurite ~0.15 s).
 * At most one request runs ahead of the reader. A failure of a page comes when the reader gets to that page;
 * one of a page the reader never gets to (it stopped early) is dropped.
 */
export async function* pagesAhead<T>(
  fetch: (token: string | undefined, size: number) => Promise<ListedPage<T>>,
  options: PagesAheadOptions,
): AsyncGenerator<T[]> {
  let ahead: Promise<ListedPage<T>> | undefined = fetch(undefined, options.first);
  while (ahead) {
    const page: ListedPage<T> = await ahead;
    ahead = page.next === undefined ? undefined : fetch(page.next, options.size);
    // Handled here too, so that a failure the reader never gets to is not an unhandled rejection.
    ahead?.catch(() => {});
    yield page.items;
  }
}
