import { invalid, LimitExceededError } from './errors.js';
import { addElement, mergeSets, type OrSet, orSet, removeElement, setHas } from './orset.js';
import type { CrdtType } from './type.js';

/**
 * Observed-remove map from string keys to CRDT values of one type. Key presence is an add-wins
 * OR-Set; values merge with their own type. Removing a key hides it but keeps its value state,
 * so a concurrent update of that key still merges deterministically and a re-added counter keeps
 * its history. The retained states are bounded by the key-cardinality limit.
 */
export interface OrMap<S> {
  readonly keys: OrSet;
  /** Sorted by key. */
  readonly vals: ReadonlyArray<readonly [string, S]>;
}

export function orMap<S, V>(
  inner: CrdtType<S, V>,
): CrdtType<OrMap<S>, Record<string, V>> & {
  /** Delta writing `delta` (a delta of the inner type) under key on behalf of origin. */
  update(m: OrMap<S>, key: string, delta: S, origin: string): OrMap<S>;
  remove(m: OrMap<S>, key: string): OrMap<S>;
  get(m: OrMap<S>, key: string): S | undefined;
} {
  const EMPTY: OrMap<S> = Object.freeze({ keys: orSet.empty(), vals: Object.freeze([]) as OrMap<S>['vals'] });
  const get = (m: OrMap<S>, key: string): S | undefined => {
    for (const [k, s] of m.vals) if (k === key) return s;
    return undefined;
  };
  const mergeVals = (a: OrMap<S>['vals'], b: OrMap<S>['vals']): OrMap<S>['vals'] => {
    if (a === b || b.length === 0) return a;
    if (a.length === 0) return b;
    const out: Array<readonly [string, S]> = [];
    let changed = false;
    let i = 0;
    let j = 0;
    while (i < a.length || j < b.length) {
      const x = a[i];
      const y = b[j];
      if (y === undefined || (x !== undefined && x[0] < y[0])) {
        out.push(x as readonly [string, S]);
        i++;
      } else if (x === undefined || y[0] < x[0]) {
        out.push(y);
        changed = true;
        j++;
      } else {
        const m = inner.merge(x[1], y[1]);
        if (m !== x[1]) changed = true;
        out.push(m === x[1] ? x : [x[0], m]);
        i++;
        j++;
      }
    }
    return changed ? out : a;
  };
  return {
    kind: `ormap<${inner.kind}>`,
    get,
    update: (m, key, delta, origin) => ({ keys: addElement(m.keys, key, origin), vals: [[key, delta]] }),
    remove: (m, key) => ({ keys: removeElement(m.keys, key), vals: EMPTY.vals }),
    empty: () => EMPTY,
    isEmpty: (m) => orSet.isEmpty(m.keys) && m.vals.length === 0,
    merge(a, b) {
      if (a === b) return a;
      const keys = mergeSets(a.keys, b.keys);
      const vals = mergeVals(a.vals, b.vals);
      return keys === a.keys && vals === a.vals ? a : { keys, vals };
    },
    equals(a, b) {
      if (a === b) return true;
      if (!orSet.equals(a.keys, b.keys) || a.vals.length !== b.vals.length) return false;
      for (let i = 0; i < a.vals.length; i++) {
        const x = a.vals[i] as readonly [string, S];
        const y = b.vals[i] as readonly [string, S];
        if (x[0] !== y[0] || !inner.equals(x[1], y[1])) return false;
      }
      return true;
    },
    visit(m, v) {
      orSet.visit(m.keys, v);
      for (const [, s] of m.vals) inner.visit(s, v);
    },
    value(m) {
      const out: Record<string, V> = {};
      for (const [k, s] of m.vals) if (setHas(m.keys, k)) out[k] = inner.value(s);
      return out;
    },
    toWire: (m) => [orSet.toWire(m.keys), m.vals.map(([k, s]) => [k, inner.toWire(s)])],
    fromWire(w, limits) {
      if (w === null || w === undefined) return EMPTY;
      if (!Array.isArray(w) || w.length !== 2 || !Array.isArray(w[1])) return invalid('OR-Map');
      const keys = orSet.fromWire(w[0], limits);
      const raw = w[1] as unknown[];
      if (limits && raw.length > limits.maxEntries)
        throw new LimitExceededError('OR-Map values', limits.maxEntries, raw.length);
      const vals: Array<readonly [string, S]> = [];
      for (const r of raw) {
        if (!Array.isArray(r) || r.length !== 2 || typeof r[0] !== 'string') return invalid('OR-Map entry');
        const k = r[0] as string;
        if (vals.length > 0 && (vals[vals.length - 1] as readonly [string, S])[0] >= k) {
          return invalid('OR-Map keys must be sorted and unique');
        }
        vals.push([k, inner.fromWire(r[1], limits)]);
      }
      return { keys, vals };
    },
  };
}
