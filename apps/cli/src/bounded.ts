import pLimit from "p-limit";

/**
 * Runs `fn` on each item of a stream with at most `parallel` at a time, reading ahead only a little, so
 * memory stays flat however many items there are. The first failure stops new work; work under way
 * finishes, then the failure is thrown.
 */
export async function forEachBounded<T>(
  items: AsyncIterable<T> | Iterable<T>,
  parallel: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const limit = pLimit(parallel);
  const running = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  for await (const item of items) {
    if (failure) break;
    const task: Promise<void> = limit(async () => {
      if (!failure) await fn(item);
    }).then(
      () => {
        running.delete(task);
      },
      (error: unknown) => {
        failure ??= { error };
        running.delete(task);
      },
    );
    running.add(task);
    if (running.size >= parallel * 2) await Promise.race(running);
  }
  await Promise.all(running);
  if (failure) throw failure.error;
}
