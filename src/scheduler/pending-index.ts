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

interface Bucket {
  readonly caps: readonly string[];
  /** Sorted best first; may hold removed entries (skipped, and dropped at the next merge). */
  entries: PendingEntry[];
  /** Added since the last merge, unsorted. */
  incoming: PendingEntry[];
  /** Entries of this bucket still in the index. */
  live: number;
  /** Removed entries still in `entries`. */
  dead: number;
}

/** Key desc, then id asc. */
const before = (a: PendingEntry, b: PendingEntry): number =>
  a.key !== b.key ? b.key - a.key : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;

/**
 * Inserts and removals are O(1): new entries wait unsorted and removed ones are only forgotten
 * (an entry counts while `where` maps its id to that very object); a bucket is brought in order
 * only when a dispatch reads it, by sorting what arrived and merging it in. A node that receives
 * 100k PENDING tasks by sync in hash order (not in the index's order) spent 3.9 s of CPU in array
 * splices when every insert kept the bucket sorted; now that is one sort.
 */
export class PendingIndex {
  private readonly buckets = new Map<string, Bucket>();
  private readonly where = new Map<string, { entry: PendingEntry; sig: string }>();

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
      bucket = { caps: [...capabilities].sort(), entries: [], incoming: [], live: 0, dead: 0 };
      this.buckets.set(sig, bucket);
    }
    const entry: PendingEntry = { id, capabilities: bucket.caps, key: priority - createdAt / this.agingMs, createdAt };
    bucket.incoming.push(entry);
    bucket.live++;
    this.where.set(id, { entry, sig });
  }

  remove(id: string): void {
    const at = this.where.get(id);
    if (at === undefined) return;
    this.where.delete(id);
    const bucket = this.buckets.get(at.sig);
    if (bucket === undefined) return;
    bucket.live--;
    bucket.dead++;
    if (bucket.live === 0) this.buckets.delete(at.sig);
  }

  private isLive(e: PendingEntry): boolean {
    return this.where.get(e.id)?.entry === e;
  }

  /** Brings a bucket in order: sorts what arrived and merges it with the live sorted entries. */
  private settle(bucket: Bucket): PendingEntry[] {
    if (bucket.incoming.length === 0 && bucket.dead * 2 <= bucket.entries.length) return bucket.entries;
    const incoming = bucket.incoming.filter((e) => this.isLive(e)).sort(before);
    const old = bucket.entries;
    const merged: PendingEntry[] = [];
    let i = 0;
    let j = 0;
    while (i < old.length || j < incoming.length) {
      const a = old[i];
      if (a !== undefined && !this.isLive(a)) {
        i++;
        continue;
      }
      const b = incoming[j];
      if (b === undefined || (a !== undefined && before(a, b) <= 0)) {
        merged.push(a as PendingEntry);
        i++;
      } else {
        merged.push(b);
        j++;
      }
    }
    bucket.entries = merged;
    bucket.incoming = [];
    bucket.dead = 0;
    return merged;
  }

  /**
   * The tasks that an agent with `capabilities` can run, best first (merged across the buckets
   * whose capability set it covers). Lazy: a dispatch stops as soon as it has filled its slots.
   */
  *eligible(capabilities: ReadonlySet<string>): Generator<PendingEntry> {
    const lists: PendingEntry[][] = [];
    for (const b of this.buckets.values()) {
      if (b.caps.every((c) => capabilities.has(c))) lists.push(this.settle(b));
    }
    const pos = lists.map(() => 0);
    const head = (i: number): PendingEntry | undefined => {
      const list = lists[i] as PendingEntry[];
      let p = pos[i] as number;
      // Skip entries removed since the bucket was settled (a dispatch that claims as it goes).
      while (p < list.length && !this.isLive(list[p] as PendingEntry)) p++;
      pos[i] = p;
      return list[p];
    };
    for (;;) {
      let best = -1;
      let bestEntry: PendingEntry | undefined;
      for (let i = 0; i < lists.length; i++) {
        const e = head(i);
        if (e === undefined) continue;
        if (bestEntry === undefined || before(e, bestEntry) < 0) {
          best = i;
          bestEntry = e;
        }
      }
      if (bestEntry === undefined) return;
      pos[best] = (pos[best] as number) + 1;
      yield bestEntry;
    }
  }
}
