/**
 * Runs `fn` over `items` in chunks, yielding to the event loop between chunks, so that a scan
 * of every record at start-up (100k tasks decode in about a second) neither delays the node's
 * start nor blocks its requests while it runs. Stops early once `stopped()` says so.
 */
export async function forEachChunked<T>(
  items: Iterable<T>,
  fn: (item: T) => void | Promise<void>,
  options: { chunk?: number; stopped?: () => boolean } = {},
): Promise<void> {
  const chunk = options.chunk ?? 1000;
  let n = 0;
  for (const item of items) {
    if (options.stopped?.() === true) return;
    await fn(item);
    if (++n % chunk === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
