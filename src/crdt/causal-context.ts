import { invalid, LimitExceededError } from './errors.js';
import { binarySearch } from './dots.js';
import type { CrdtLimits } from './type.js';
import { isCounter } from './version-vector.js';

/**
 * Immutable causal context of one CRDT value (an OR-Set, an OR-Map's keys): the dots its
 * history contains, per origin a contiguous prefix `base` plus the sorted exceptions above it.
 * Each value numbers its own dots (1, 2, 3... per origin), so in steady state every origin is a
 * bare prefix and the context is as small as a version vector: removals leave no tombstones.
 */
export type ContextEntry = readonly [origin: string, base: number, extra: readonly number[]];
export type CausalContext = readonly ContextEntry[];

export const EMPTY_CONTEXT: CausalContext = Object.freeze([]) as CausalContext;
const NO_EXTRA: readonly number[] = Object.freeze([]) as readonly number[];

function find(ctx: CausalContext, origin: string): ContextEntry | undefined {
  for (const e of ctx) if (e[0] === origin) return e;
  return undefined;
}

export function contextHas(ctx: CausalContext, origin: string, seq: number): boolean {
  const e = find(ctx, origin);
  if (e === undefined) return false;
  return seq <= e[1] || (e[2].length > 0 && binarySearch(e[2], seq) >= 0);
}

/** Highest seq of origin in the context (the next dot origin issues is this + 1). */
export function contextMax(ctx: CausalContext, origin: string): number {
  const e = find(ctx, origin);
  if (e === undefined) return 0;
  return e[2].length > 0 ? (e[2][e[2].length - 1] as number) : e[1];
}

function normalize(origin: string, base: number, seqs: number[]): ContextEntry {
  seqs.sort((x, y) => x - y);
  let i = 0;
  while (i < seqs.length && (seqs[i] as number) <= base + 1) {
    if (seqs[i] === base + 1) base++;
    i++;
  }
  const extra = i === 0 ? seqs : seqs.slice(i);
  return [origin, base, extra.length === 0 ? NO_EXTRA : dedupe(extra)];
}

function dedupe(sorted: number[]): number[] {
  let w = 0;
  for (let r = 0; r < sorted.length; r++) if (r === 0 || sorted[r] !== sorted[w - 1]) sorted[w++] = sorted[r] as number;
  sorted.length = w;
  return sorted;
}

/** The context holding exactly these dots. */
export function contextOf(dots: Iterable<readonly [string, number]>): CausalContext {
  const by = new Map<string, number[]>();
  for (const [o, s] of dots) {
    const l = by.get(o);
    if (l) l.push(s);
    else by.set(o, [s]);
  }
  return [...by.keys()].sort().map((o) => normalize(o, 0, by.get(o) as number[]));
}

/** Union of two contexts; returns `a` itself if `b` adds nothing. */
export function contextUnion(a: CausalContext, b: CausalContext): CausalContext {
  if (a === b || b.length === 0) return a;
  if (a.length === 0) return b;
  const out: ContextEntry[] = [];
  let changed = false;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const ea = a[i];
    const eb = b[j];
    if (eb === undefined || (ea !== undefined && ea[0] < eb[0])) {
      out.push(ea as ContextEntry);
      i++;
    } else if (ea === undefined || eb[0] < ea[0]) {
      out.push(eb);
      changed = true;
      j++;
    } else {
      const merged = unionEntry(ea, eb);
      if (merged !== ea) changed = true;
      out.push(merged);
      i++;
      j++;
    }
  }
  return changed ? out : a;
}

function unionEntry(a: ContextEntry, b: ContextEntry): ContextEntry {
  // Fast path: b is covered by a's prefix.
  if (b[1] <= a[1] && b[2].every((x) => x <= a[1] || binarySearch(a[2], x) >= 0)) return a;
  const base = Math.max(a[1], b[1]);
  const seqs: number[] = [];
  for (const x of a[2]) if (x > base) seqs.push(x);
  for (const x of b[2]) if (x > base) seqs.push(x);
  return normalize(a[0], base, seqs);
}

export function contextEquals(a: CausalContext, b: CausalContext): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as ContextEntry;
    const y = b[i] as ContextEntry;
    if (x[0] !== y[0] || x[1] !== y[1] || x[2].length !== y[2].length) return false;
    for (let k = 0; k < x[2].length; k++) if (x[2][k] !== y[2][k]) return false;
  }
  return true;
}

export function contextToWire(ctx: CausalContext): unknown[] {
  return ctx.map((e) => [e[0], e[1], e[2].slice()]);
}

export function contextFromWire(w: unknown, limits: CrdtLimits | undefined): CausalContext {
  if (w === null || w === undefined) return EMPTY_CONTEXT;
  if (!Array.isArray(w)) return invalid('causal context');
  if (limits && w.length > limits.maxEntries)
    throw new LimitExceededError('causal context origins', limits.maxEntries, w.length);
  let prev = '';
  let total = 0;
  const out: ContextEntry[] = [];
  for (const e of w as unknown[]) {
    if (!Array.isArray(e) || e.length !== 3) return invalid('causal context entry');
    const [o, base, extra] = e as [unknown, unknown, unknown];
    if (typeof o !== 'string' || o.length === 0 || (out.length > 0 && o <= prev)) {
      return invalid('causal context: origins must be sorted and unique');
    }
    if (limits && o.length > limits.maxStringLength) return invalid('causal context: origin too long');
    if (!isCounter(base) || !Array.isArray(extra)) return invalid('causal context entry');
    total += extra.length;
    if (limits && total > limits.maxEntries)
      throw new LimitExceededError('causal context exceptions', limits.maxEntries, total);
    let floor = base + 1; // the first exception must skip at least one seq, later ones ascend
    for (const x of extra as unknown[]) {
      if (!isCounter(x) || x <= floor) return invalid('causal context: exceptions must ascend above a gap');
      floor = x;
    }
    out.push([o, base, extra.length === 0 ? NO_EXTRA : (extra as number[])]);
    prev = o;
  }
  return out;
}
