import { invalid } from './errors.js';
import { isCounter, VersionVector } from './version-vector.js';

/** A dot names one event: the `seq`-th event issued by `origin`. */
export interface Dot {
  readonly origin: string;
  readonly seq: number;
}

/** Seen seqs of one origin: every seq <= base, plus the sorted exceptions above base. */
interface Seen {
  base: number;
  extra: number[];
}

/** Wire form: [origin, base, exceptions[]] sorted by origin. */
export type DotSetWire = Array<[string, number, number[]]>;

/**
 * The set of dots a replica has seen, kept compact as a contiguous prefix per origin plus the
 * exceptions above it. A delta that arrives out of order becomes an exception until the gap
 * below it is filled, so `gaps()` tells exactly which events to ask a peer for.
 */
export class DotSet {
  private readonly seen = new Map<string, Seen>();

  has(origin: string, seq: number): boolean {
    const s = this.seen.get(origin);
    if (s === undefined) return false;
    return seq <= s.base || (s.extra.length > 0 && binarySearch(s.extra, seq) >= 0);
  }

  /** Records a dot; returns false if it had been seen already. */
  add(origin: string, seq: number): boolean {
    let s = this.seen.get(origin);
    if (s === undefined) {
      s = { base: 0, extra: [] };
      this.seen.set(origin, s);
    }
    if (seq <= s.base) return false;
    if (seq === s.base + 1) {
      s.base = seq;
      if (s.extra.length > 0) compact(s);
      return true;
    }
    const i = binarySearch(s.extra, seq);
    if (i >= 0) return false;
    s.extra.splice(~i, 0, seq);
    return true;
  }

  /** Highest contiguous seq of origin: every event up to it has been seen. */
  base(origin: string): number {
    return this.seen.get(origin)?.base ?? 0;
  }

  /** Highest seq of origin seen at all. */
  max(origin: string): number {
    const s = this.seen.get(origin);
    if (s === undefined) return 0;
    return s.extra.length > 0 ? (s.extra[s.extra.length - 1] as number) : s.base;
  }

  origins(): IterableIterator<string> {
    return this.seen.keys();
  }

  /** Missing seq ranges [from, to] (inclusive) of origin below the highest seen seq. */
  gaps(origin: string): Array<[number, number]> {
    const s = this.seen.get(origin);
    const out: Array<[number, number]> = [];
    if (s === undefined) return out;
    let next = s.base + 1;
    for (const x of s.extra) {
      if (x > next) out.push([next, x - 1]);
      next = x + 1;
    }
    return out;
  }

  /** How many dots of `other` have not been seen here. */
  countMissing(other: DotSet): number {
    let n = 0;
    for (const [o, s] of other.seen) {
      const mine = this.seen.get(o);
      const base = mine?.base ?? 0;
      if (s.base > base) {
        n += s.base - base;
        // Our exceptions inside (base, s.base] were seen after all.
        if (mine) for (const x of mine.extra) if (x <= s.base) n--;
      }
      for (const x of s.extra) if (!this.has(o, x)) n++;
    }
    return n;
  }

  /**
   * Ranges [origin, from, to] of dots seen by `other` but not here (at most `max` ranges).
   * Walks the two compact forms, not the seqs between them, so a peer claiming seq 10^15 costs
   * nothing more than one claiming seq 10.
   */
  missingRanges(other: DotSet, max = 1024): Array<[string, number, number]> {
    const out: Array<[string, number, number]> = [];
    const push = (o: string, from: number, to: number): boolean => {
      const last = out[out.length - 1];
      if (last !== undefined && last[0] === o && last[2] + 1 === from) last[2] = to;
      else out.push([o, from, to]);
      return out.length < max;
    };
    for (const [o, theirs] of other.seen) {
      const mine = this.seen.get(o);
      const myBase = mine?.base ?? 0;
      const myExtra = mine?.extra ?? [];
      // Their contiguous prefix above ours, minus our exceptions inside it.
      let next = myBase + 1;
      for (const x of myExtra) {
        if (x > theirs.base) break;
        if (x > next && !push(o, next, x - 1)) return out;
        next = x + 1;
      }
      if (next <= theirs.base && !push(o, next, theirs.base)) return out;
      // Their exceptions (all above their prefix) that we have not seen.
      for (const x of theirs.extra) {
        if (x > myBase && binarySearch(myExtra, x) < 0 && !push(o, x, x)) return out;
      }
    }
    return out;
  }

  /** Has every dot of `other` been seen here? */
  covers(other: DotSet): boolean {
    return this.missingRanges(other, 1).length === 0;
  }

  /** Adds every dot of `other`, except those of origin `except` if given. */
  merge(other: DotSet, except?: string): this {
    for (const [o, s] of other.seen) {
      if (o === except) continue;
      const mine = this.seen.get(o);
      if (mine === undefined) {
        this.seen.set(o, { base: s.base, extra: s.extra.slice() });
        continue;
      }
      if (s.base > mine.base) {
        mine.base = s.base;
        mine.extra = mine.extra.filter((x) => x > s.base);
      }
      for (const x of s.extra) {
        if (x <= mine.base) continue;
        const i = binarySearch(mine.extra, x);
        if (i < 0) mine.extra.splice(~i, 0, x);
      }
      compact(mine);
    }
    return this;
  }

  /** The contiguous prefixes as a version vector ("everything up to here has been seen"). */
  toVersionVector(): VersionVector {
    const vv = new VersionVector();
    for (const [o, s] of this.seen) vv.observe(o, s.base);
    return vv;
  }

  /** The highest seq per origin, gaps or not. */
  maxVector(): VersionVector {
    const vv = new VersionVector();
    for (const o of this.seen.keys()) vv.observe(o, this.max(o));
    return vv;
  }

  clone(): DotSet {
    const c = new DotSet();
    for (const [o, s] of this.seen) c.seen.set(o, { base: s.base, extra: s.extra.slice() });
    return c;
  }

  toWire(): DotSetWire {
    return [...this.seen]
      .filter(([, s]) => s.base > 0 || s.extra.length > 0)
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([o, s]) => [o, s.base, s.extra.slice()]);
  }

  static fromWire(v: unknown): DotSet {
    if (!Array.isArray(v)) invalid('dot set');
    const d = new DotSet();
    for (const e of v) {
      if (!Array.isArray(e) || e.length !== 3 || typeof e[0] !== 'string' || !isCounter(e[1]) || !Array.isArray(e[2])) {
        invalid('dot set entry');
      }
      if (d.seen.has(e[0])) invalid('dot set: duplicate origin');
      let floor = e[1] + 1; // the first exception must skip at least one seq, later ones ascend
      for (const x of e[2]) {
        if (!isCounter(x) || x <= floor) invalid('dot set: exceptions must ascend above a gap');
        floor = x;
      }
      d.seen.set(e[0], { base: e[1], extra: (e[2] as number[]).slice() });
    }
    return d;
  }
}

function compact(s: Seen): void {
  let i = 0;
  while (i < s.extra.length && (s.extra[i] as number) <= s.base + 1) {
    if ((s.extra[i] as number) === s.base + 1) s.base++;
    i++;
  }
  if (i > 0) s.extra.splice(0, i);
}

/** Index of x in the sorted array, or ~insertionPoint. */
export function binarySearch(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = a[mid] as number;
    if (v < x) lo = mid + 1;
    else if (v > x) hi = mid - 1;
    else return mid;
  }
  return ~lo;
}
