/**
 * The contract every CRDT in this package meets. States are immutable values; mutators live in
 * each type's module and return a *delta*, a state of the same type that joins like any other.
 *
 * `merge` is a join (commutative, associative, idempotent). By convention it returns `a` itself
 * when `b` adds nothing to it, so callers detect "this changed something" with `!==` instead of
 * a deep comparison.
 */
export interface CrdtType<S, V = unknown> {
  readonly kind: string;
  /** The bottom element: a state that carries no information. */
  empty(): S;
  isEmpty(s: S): boolean;
  merge(a: S, b: S): S;
  equals(a: S, b: S): boolean;
  /**
   * Reports who wrote what a state carries: every origin whose own slots, dots or register writes
   * it contains, and every clock reading. Replicas use it to check that a delta only carries
   * writes by its origin and no timestamp from too far in the future.
   */
  visit(s: S, visitor: StateVisitor): void;
  /** The plain value users see. */
  value(s: S): V;
  /** Canonical plain form (arrays in a fixed order) for msgpack; equal states give equal forms. */
  toWire(s: S): unknown;
  /** Validating inverse of toWire: throws InvalidStateError or LimitExceededError. */
  fromWire(w: unknown, limits?: CrdtLimits): S;
}

export interface StateVisitor {
  writer(origin: string): void;
  timestamp(t: number): void;
}

export interface CrdtLimits {
  /** Max entries in any one collection (OR-Set elements/dots, counter origins, map keys). */
  maxEntries: number;
  /** Max length of any string element or key. */
  maxStringLength: number;
}

export const DEFAULT_LIMITS: CrdtLimits = { maxEntries: 4096, maxStringLength: 1024 };

export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
