import { invalid } from './errors.js';

export type Ordering = 'before' | 'after' | 'equal' | 'concurrent';

/** Wire form: [origin, counter] pairs sorted by origin, counters > 0. */
export type VersionVectorWire = Array<[string, number]>;

/**
 * A version vector: for each origin, the highest counter seen. Compare follows the usual
 * pointwise order; a missing origin counts as 0.
 */
export class VersionVector {
  private readonly entries: Map<string, number>;

  constructor(entries?: Iterable<readonly [string, number]>) {
    this.entries = new Map();
    if (entries) for (const [o, n] of entries) if (n > 0) this.entries.set(o, n);
  }

  get(origin: string): number {
    return this.entries.get(origin) ?? 0;
  }

  /** Raises origin's counter to at least n. */
  observe(origin: string, n: number): void {
    if (n > (this.entries.get(origin) ?? 0)) this.entries.set(origin, n);
  }

  origins(): IterableIterator<string> {
    return this.entries.keys();
  }

  get size(): number {
    return this.entries.size;
  }

  /** Sum of all counters: a cheap "how much has this replica seen" figure. */
  total(): number {
    let t = 0;
    for (const n of this.entries.values()) t += n;
    return t;
  }

  merge(other: VersionVector): this {
    for (const [o, n] of other.entries) this.observe(o, n);
    return this;
  }

  clone(): VersionVector {
    return new VersionVector(this.entries);
  }

  compare(other: VersionVector): Ordering {
    let less = false;
    let greater = false;
    for (const [o, n] of this.entries) {
      const m = other.get(o);
      if (n < m) less = true;
      else if (n > m) greater = true;
    }
    for (const [o, m] of other.entries) {
      if (!this.entries.has(o) && m > 0) less = true;
    }
    if (less && greater) return 'concurrent';
    if (less) return 'before';
    if (greater) return 'after';
    return 'equal';
  }

  toWire(): VersionVectorWire {
    return [...this.entries].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  static fromWire(v: unknown): VersionVector {
    if (!Array.isArray(v)) invalid('version vector');
    const vv = new VersionVector();
    for (const e of v) {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || !isCounter(e[1])) {
        invalid('version vector entry');
      }
      if (vv.entries.has(e[0])) invalid('version vector: duplicate origin');
      vv.observe(e[0], e[1]);
    }
    return vv;
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries(this.toWire());
  }
}

export function isCounter(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
