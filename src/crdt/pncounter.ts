import { invalid } from './errors.js';
import { counterFromWire, counterValue, gCounter, type GCounter, mergeCounters } from './gcounter.js';
import type { CrdtType } from './type.js';

/** Counter that goes both ways: a G-Counter of increments and one of decrements. */
export interface PNCounter {
  readonly p: GCounter;
  readonly n: GCounter;
}

const EMPTY: PNCounter = Object.freeze({ p: gCounter.empty(), n: gCounter.empty() });

/** Delta that adds `by` (any safe integer) on behalf of origin. */
export function add(c: PNCounter, origin: string, by: number): PNCounter {
  if (!Number.isSafeInteger(by)) throw new RangeError('PN-Counter steps must be integers');
  return by >= 0
    ? { p: gCounter.increment(c.p, origin, by), n: gCounter.empty() }
    : { p: gCounter.empty(), n: gCounter.increment(c.n, origin, -by) };
}

export const pnCounter: CrdtType<PNCounter, number> & { add: typeof add } = {
  kind: 'pncounter',
  add,
  empty: () => EMPTY,
  isEmpty: (c) => c.p.length === 0 && c.n.length === 0,
  merge(a, b) {
    if (a === b) return a;
    const p = mergeCounters(a.p, b.p);
    const n = mergeCounters(a.n, b.n);
    return p === a.p && n === a.n ? a : { p, n };
  },
  equals: (a, b) => gCounter.equals(a.p, b.p) && gCounter.equals(a.n, b.n),
  visit(c, v) {
    gCounter.visit(c.p, v);
    gCounter.visit(c.n, v);
  },
  value: (c) => counterValue(c.p) - counterValue(c.n),
  toWire: (c) => [c.p.slice(), c.n.slice()],
  fromWire(w, limits) {
    if (w === null || w === undefined) return EMPTY;
    if (!Array.isArray(w) || w.length !== 2) return invalid('PN-Counter');
    return { p: counterFromWire(w[0], limits, 'PN-Counter P'), n: counterFromWire(w[1], limits, 'PN-Counter N') };
  },
};
