import {
  type CausalContext,
  contextEquals,
  contextFromWire,
  contextHas,
  contextMax,
  contextOf,
  contextToWire,
  contextUnion,
  EMPTY_CONTEXT,
} from './causal-context.js';
import { invalid, LimitExceededError } from './errors.js';
import type { CrdtType } from './type.js';
import { isCounter } from './version-vector.js';

/** One live add: element `e` tagged with the dot (origin, seq) that added it. */
export type OrSetEntry = readonly [e: string, origin: string, seq: number];

/**
 * Add-wins observed-remove set (Bieniusa et al., "An optimized conflict-free replicated set";
 * Almeida et al., delta-state OR-Set). Entries are the live (element, dot) pairs; the causal
 * context records every dot ever seen. A dot in the context but not in the entries was removed,
 * so removals need no tombstones and a concurrent add (a dot the remover never saw) survives.
 */
export interface OrSet {
  /** Sorted by element, then origin, then seq. */
  readonly entries: readonly OrSetEntry[];
  readonly ctx: CausalContext;
}

const EMPTY: OrSet = Object.freeze({ entries: Object.freeze([]) as readonly OrSetEntry[], ctx: EMPTY_CONTEXT });

function cmpEntry(a: OrSetEntry, b: OrSetEntry): number {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1;
  return a[2] - b[2];
}

function dotsOf(s: OrSet, e: string): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const x of s.entries) if (x[0] === e) out.push([x[1], x[2]]);
  return out;
}

/** Delta adding `e` on behalf of origin; it also supersedes the dots `e` already had. */
export function addElement(s: OrSet, e: string, origin: string): OrSet {
  const seq = contextMax(s.ctx, origin) + 1;
  const dots = dotsOf(s, e);
  dots.push([origin, seq]);
  return { entries: [[e, origin, seq]], ctx: contextOf(dots) };
}

/** Delta removing `e`: the dots it has now, with no entries. Concurrent adds survive it. */
export function removeElement(s: OrSet, e: string): OrSet {
  const dots = dotsOf(s, e);
  return dots.length === 0 ? EMPTY : { entries: [], ctx: contextOf(dots) };
}

/** Delta removing every element. */
export function clearSet(s: OrSet): OrSet {
  return s.entries.length === 0 ? EMPTY : { entries: [], ctx: contextOf(s.entries.map((x) => [x[1], x[2]] as const)) };
}

export function mergeSets(a: OrSet, b: OrSet): OrSet {
  if (a === b) return a;
  if (b.entries.length === 0 && b.ctx.length === 0) return a;
  const out: OrSetEntry[] = [];
  let changed = false;
  let i = 0;
  let j = 0;
  const ae = a.entries;
  const be = b.entries;
  while (i < ae.length || j < be.length) {
    const x = ae[i];
    const y = be[j];
    const c = x === undefined ? 1 : y === undefined ? -1 : cmpEntry(x, y);
    if (c === 0) {
      out.push(x as OrSetEntry);
      i++;
      j++;
    } else if (c < 0) {
      const e = x as OrSetEntry;
      // Only in a: keep unless b has seen the dot (then b removed it).
      if (contextHas(b.ctx, e[1], e[2])) changed = true;
      else out.push(e);
      i++;
    } else {
      const e = y as OrSetEntry;
      // Only in b: add unless a has seen (and so removed) the dot.
      if (!contextHas(a.ctx, e[1], e[2])) {
        out.push(e);
        changed = true;
      }
      j++;
    }
  }
  const ctx = contextUnion(a.ctx, b.ctx);
  if (!changed && ctx === a.ctx) return a;
  return { entries: changed ? out : ae, ctx };
}

export function setValues(s: OrSet): string[] {
  const out: string[] = [];
  for (const x of s.entries) if (out.length === 0 || out[out.length - 1] !== x[0]) out.push(x[0]);
  return out;
}

export function setHas(s: OrSet, e: string): boolean {
  return s.entries.some((x) => x[0] === e);
}

export const orSet: CrdtType<OrSet, string[]> & {
  add: typeof addElement;
  remove: typeof removeElement;
  clear: typeof clearSet;
  has: typeof setHas;
} = {
  kind: 'orset',
  add: addElement,
  remove: removeElement,
  clear: clearSet,
  has: setHas,
  empty: () => EMPTY,
  isEmpty: (s) => s.entries.length === 0 && s.ctx.length === 0,
  merge: mergeSets,
  equals(a, b) {
    if (a === b) return true;
    if (a.entries.length !== b.entries.length || !contextEquals(a.ctx, b.ctx)) return false;
    for (let i = 0; i < a.entries.length; i++)
      if (cmpEntry(a.entries[i] as OrSetEntry, b.entries[i] as OrSetEntry) !== 0) return false;
    return true;
  },
  visit(s, v) {
    for (const x of s.entries) v.writer(x[1]);
  },
  value: setValues,
  toWire: (s) => [s.entries.map((x) => [x[0], x[1], x[2]]), contextToWire(s.ctx)],
  fromWire(w, limits) {
    if (w === null || w === undefined) return EMPTY;
    if (!Array.isArray(w) || w.length !== 2 || !Array.isArray(w[0])) return invalid('OR-Set');
    const raw = w[0] as unknown[];
    if (limits && raw.length > limits.maxEntries)
      throw new LimitExceededError('OR-Set entries', limits.maxEntries, raw.length);
    const ctx = contextFromWire(w[1], limits);
    const entries: OrSetEntry[] = [];
    const seen = new Set<string>();
    for (const r of raw) {
      if (!Array.isArray(r) || r.length !== 3) return invalid('OR-Set entry');
      const [e, o, s] = r as [unknown, unknown, unknown];
      if (typeof e !== 'string' || typeof o !== 'string' || o.length === 0 || !isCounter(s) || s === 0) {
        return invalid('OR-Set entry');
      }
      if (limits && (e.length > limits.maxStringLength || o.length > limits.maxStringLength)) {
        return invalid('OR-Set entry: string too long');
      }
      const entry: OrSetEntry = [e, o, s];
      if (entries.length > 0 && cmpEntry(entries[entries.length - 1] as OrSetEntry, entry) >= 0) {
        return invalid('OR-Set entries must be sorted and unique');
      }
      // Causal consistency: a live dot belongs to one element and is part of the context.
      const dot = `${o}\u0000${s}`;
      if (seen.has(dot)) return invalid('OR-Set: a dot tags two elements');
      seen.add(dot);
      if (!contextHas(ctx, o, s)) return invalid('OR-Set: an entry dot is missing from the context');
      entries.push(entry);
    }
    return { entries, ctx };
  },
};
