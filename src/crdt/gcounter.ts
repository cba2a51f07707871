import { invalid, LimitExceededError } from './errors.js';
import type { CrdtLimits, CrdtType } from './type.js';
import { isCounter } from './version-vector.js';

/**
 * Grow-only counter: one monotone slot per origin, value = sum. Stored as a flat array
 * `[origin0, n0, origin1, n1, ...]` sorted by origin, because records hold several counters and
 * most have one or two origins: a flat array is a third of the memory of a Map.
 */
export type GCounter = readonly (string | number)[];

const EMPTY: GCounter = Object.freeze([]) as GCounter;

function slot(c: GCounter, origin: string): number {
  for (let i = 0; i < c.length; i += 2) if (c[i] === origin) return c[i + 1] as number;
  return 0;
}

/** Delta that raises origin's slot by n (n >= 0). Only the origin itself may call this. */
export function increment(c: GCounter, origin: string, n = 1): GCounter {
  if (!(n >= 0) || !Number.isSafeInteger(n)) throw new RangeError('G-Counter increments must be non-negative integers');
  return n === 0 ? EMPTY : [origin, slot(c, origin) + n];
}

export function mergeCounters(a: GCounter, b: GCounter): GCounter {
  if (a === b || b.length === 0) return a;
  if (a.length === 0) return b;
  const out: (string | number)[] = [];
  let i = 0;
  let j = 0;
  let changed = false;
  while (i < a.length || j < b.length) {
    const oa = a[i] as string | undefined;
    const ob = b[j] as string | undefined;
    if (ob === undefined || (oa !== undefined && oa < ob)) {
      out.push(oa as string, a[i + 1] as number);
      i += 2;
    } else if (oa === undefined || ob < oa) {
      out.push(ob, b[j + 1] as number);
      j += 2;
      changed = true;
    } else {
      const na = a[i + 1] as number;
      const nb = b[j + 1] as number;
      if (nb > na) changed = true;
      out.push(oa, nb > na ? nb : na);
      i += 2;
      j += 2;
    }
  }
  return changed ? out : a;
}

export function counterValue(c: GCounter): number {
  let s = 0;
  for (let i = 1; i < c.length; i += 2) s += c[i] as number;
  return s;
}

export function counterSlot(c: GCounter, origin: string): number {
  return slot(c, origin);
}

export function counterOrigins(c: GCounter): string[] {
  const out: string[] = [];
  for (let i = 0; i < c.length; i += 2) out.push(c[i] as string);
  return out;
}

export function counterFromWire(w: unknown, limits: CrdtLimits | undefined, what: string): GCounter {
  if (w === null || w === undefined) return EMPTY;
  if (!Array.isArray(w) || w.length % 2 !== 0) return invalid(what);
  if (limits && w.length / 2 > limits.maxEntries)
    throw new LimitExceededError(`${what} origins`, limits.maxEntries, w.length / 2);
  let prev = '';
  for (let i = 0; i < w.length; i += 2) {
    const o = w[i] as unknown;
    if (typeof o !== 'string' || o.length === 0 || (i > 0 && o <= prev))
      return invalid(`${what}: origins must be sorted and unique`);
    if (limits && o.length > limits.maxStringLength) return invalid(`${what}: origin too long`);
    if (!isCounter(w[i + 1]) || w[i + 1] === 0) return invalid(`${what}: slots must be positive integers`);
    prev = o;
  }
  return w as GCounter;
}

function equalCounters(a: GCounter, b: GCounter): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export const gCounter: CrdtType<GCounter, number> & {
  increment: typeof increment;
  slot: typeof counterSlot;
} = {
  kind: 'gcounter',
  increment,
  slot: counterSlot,
  empty: () => EMPTY,
  isEmpty: (c) => c.length === 0,
  merge: mergeCounters,
  equals: equalCounters,
  visit(c, v) {
    for (let i = 0; i < c.length; i += 2) v.writer(c[i] as string);
  },
  value: counterValue,
  toWire: (c) => c.slice(),
  fromWire: (w, limits) => counterFromWire(w, limits, 'G-Counter'),
};
