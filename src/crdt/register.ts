import { invalid } from './errors.js';
import { isTimestamp, type Timestamp } from './hlc.js';
import type { CrdtType } from './type.js';
import { compareValues, deepEqual } from './value-order.js';

/**
 * A register: one value with the timestamp and id of the node that wrote it. `undefined` is the
 * bottom (never written). Kept as a small fixed-shape object because records hold many of them.
 */
export interface Register<V> {
  readonly v: V;
  readonly t: Timestamp;
  readonly w: string;
}
export type RegisterState<V> = Register<V> | undefined;

/** Wire form: [value, timestamp, writer], or null for the bottom. */
export type RegisterWire = [unknown, number, string] | null;

/**
 * A register ordered by `order` on the values first: the value that `order` ranks higher wins
 * whatever the clocks say; values it ranks equal fall back to last-writer-wins on (timestamp,
 * writer), and a deterministic order of the values as a final tie-break. `order` must be a total
 * preorder (consistent, transitive); then the whole order is total, so merge (taking the
 * maximum) is a join.
 */
export function orderedRegister<V>(
  kind: string,
  order: (a: V, b: V) => number,
  validate: (v: unknown) => v is V,
): CrdtType<RegisterState<V>, V | undefined> & {
  set(value: V, t: Timestamp, writer: string): Register<V>;
  compare(a: Register<V>, b: Register<V>): number;
} {
  const compare = (a: Register<V>, b: Register<V>): number => {
    const o = order(a.v, b.v);
    if (o !== 0) return o;
    if (a.t !== b.t) return a.t - b.t;
    if (a.w !== b.w) return a.w < b.w ? -1 : 1;
    return compareValues(a.v, b.v);
  };
  return {
    kind,
    compare,
    set: (value, t, writer) => ({ v: value, t, w: writer }),
    empty: () => undefined,
    isEmpty: (s) => s === undefined,
    merge(a, b) {
      if (b === undefined || a === b) return a;
      if (a === undefined) return b;
      return compare(b, a) > 0 ? b : a;
    },
    equals(a, b) {
      if (a === b) return true;
      if (a === undefined || b === undefined) return false;
      return a.t === b.t && a.w === b.w && deepEqual(a.v, b.v);
    },
    visit(s, v) {
      if (s === undefined) return;
      v.writer(s.w);
      v.timestamp(s.t);
    },
    value: (s) => s?.v,
    toWire: (s): RegisterWire => (s === undefined ? null : [s.v, s.t, s.w]),
    fromWire(w, limits) {
      if (w === null || w === undefined) return undefined;
      if (!Array.isArray(w) || w.length !== 3) return invalid(`${kind} register`);
      const [v, t, writer] = w as unknown[];
      if (!isTimestamp(t)) return invalid(`${kind} register timestamp`);
      if (typeof writer !== 'string' || writer.length === 0 || writer.length > (limits?.maxStringLength ?? 1024)) {
        return invalid(`${kind} register writer`);
      }
      if (!validate(v)) return invalid(`${kind} register value`);
      return { v, t, w: writer };
    },
  };
}

/**
 * A state-lattice register: the value with the higher `rank` wins whatever the clocks say (a
 * COMPLETED task never regresses to IN_PROGRESS); equal ranks fall back to last-writer-wins on
 * (timestamp, writer), and a deterministic order of the values as a final tie-break.
 */
export function latticeRegister<V>(
  kind: string,
  rank: (v: V) => number,
  validate: (v: unknown) => v is V,
): ReturnType<typeof orderedRegister<V>> {
  return orderedRegister<V>(kind, (a, b) => rank(a) - rank(b), validate);
}

const anyValue = (v: unknown): v is unknown => v !== undefined;

/** Last-writer-wins register: a lattice register in which every value has the same rank. */
export function lwwRegister<V = unknown>(
  validate: (v: unknown) => v is V = anyValue as (v: unknown) => v is V,
  kind = 'lww',
): ReturnType<typeof latticeRegister<V>> {
  return latticeRegister<V>(kind, () => 0, validate);
}
