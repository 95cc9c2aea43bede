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
