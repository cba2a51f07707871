/** Shared measurement helpers for the benchmark suites. */

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

/** Runs `fn` `runs` times (after one warm-up) and returns each run's duration in ms. */
export function timeRuns(runs: number, fn: () => void): number[] {
  fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
}

export async function timeRunsAsync(runs: number, fn: () => Promise<void>): Promise<number[]> {
  await fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
}

export function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) throw new Error('run with --expose-gc');
  g();
  g();
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export type Row = Record<string, string | number | boolean | null>;

/** A node process as the suites reach it: its id and its API. */
interface StatusSource {
  id: string;
  get<T>(path: string): Promise<T>;
}
type Status = { versionVector: Record<string, number> };

/**
 * Waits until every node's version vector holds every node's own writes as of now: the moment
 * all updates made so far have been applied everywhere.
 */
export async function untilAllApplied(nodes: StatusSource[], timeoutMs: number): Promise<void> {
  const targets = await Promise.all(
    nodes.map(async (x) => [x.id, (await x.get<Status>('/v1/status')).versionVector[x.id] ?? 0] as const),
  );
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const vvs = await Promise.all(nodes.map((x) => x.get<Status>('/v1/status')));
    if (vvs.every((s) => targets.every(([id, seq]) => (s.versionVector[id] ?? 0) >= seq))) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for every node to apply every update`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
