/**
 * The PENDING tasks a node could claim, indexed so that a dispatch looks only at the tasks that
 * some local agent can run, best first, without scanning every task in the replica.
 *
 * Tasks are bucketed by their capability set; a bucket keeps its tasks sorted by a key that
 * builds in aging: `priority - createdAt / agingMs`. Comparing two tasks' effective priorities
 * `priority + (now - createdAt) / agingMs` at any instant gives the same order (the `now` terms
 * cancel), so the sort never goes stale, and a low-priority task overtakes newer high-priority
 * ones after waiting `agingMs` per priority level: nothing starves.
 */

export interface PendingEntry {
  readonly id: string;
  readonly capabilities: readonly string[];
  /** Higher first. */
  readonly key: number;
  readonly createdAt: number;
}

/** Default aging: one priority level per minute of waiting. */
export const DEFAULT_AGING_MS = 60_000;

export const signatureOf = (caps: readonly string[]): string => [...caps].sort().join('\u0000');

export class PendingIndex {
  private readonly buckets = new Map<string, { caps: readonly string[]; entries: PendingEntry[] }>();
  private readonly where = new Map<string, string>();

  constructor(private readonly agingMs = DEFAULT_AGING_MS) {}

  get size(): number {
    return this.where.size;
  }

  has(id: string): boolean {
    return this.where.has(id);
  }

  add(id: string, capabilities: readonly string[], priority: number, createdAt: number): void {
    this.remove(id);
    const sig = signatureOf(capabilities);
    let bucket = this.buckets.get(sig);
    if (bucket === undefined) {
      bucket = { caps: [...capabilities].sort(), entries: [] };
      this.buckets.set(sig, bucket);
    }
    const entry: PendingEntry = { id, capabilities: bucket.caps, key: priority - createdAt / this.agingMs, createdAt };
    const list = bucket.entries;
    // Binary search for the first entry that sorts after this one (key desc, then id asc).
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const m = list[mid] as PendingEntry;
      if (m.key > entry.key || (m.key === entry.key && m.id < id)) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, entry);
    this.where.set(id, sig);
  }

  remove(id: string): void {
    const sig = this.where.get(id);
    if (sig === undefined) return;
    this.where.delete(id);
    const bucket = this.buckets.get(sig);
    if (bucket === undefined) return;
    const i = bucket.entries.findIndex((e) => e.id === id);
    if (i >= 0) bucket.entries.splice(i, 1);
    if (bucket.entries.length === 0) this.buckets.delete(sig);
  }

  /**
   * The tasks that an agent with `capabilities` can run, best first (merged across the buckets
   * whose capability set it covers). Lazy: a dispatch stops as soon as it has filled its slots.
   */
  *eligible(capabilities: ReadonlySet<string>): Generator<PendingEntry> {
    const lists: PendingEntry[][] = [];
    for (const b of this.buckets.values()) {
      if (b.caps.every((c) => capabilities.has(c))) lists.push(b.entries);
    }
    const pos = lists.map(() => 0);
    for (;;) {
      let best = -1;
      for (let i = 0; i < lists.length; i++) {
        const e = (lists[i] as PendingEntry[])[pos[i] as number];
        if (e === undefined) continue;
        const b = best < 0 ? undefined : (lists[best] as PendingEntry[])[pos[best] as number];
        if (b === undefined || e.key > b.key || (e.key === b.key && e.id < b.id)) best = i;
      }
      if (best < 0) return;
      const e = (lists[best] as PendingEntry[])[pos[best] as number] as PendingEntry;
      pos[best] = (pos[best] as number) + 1;
      yield e;
    }
  }
}
