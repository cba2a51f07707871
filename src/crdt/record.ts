import { invalid } from './errors.js';
import type { CrdtLimits, CrdtType, StateVisitor } from './type.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- field maps hold CRDT types of any state */
type AnyCrdt = CrdtType<any, any>;
export type FieldMap = Record<string, AnyCrdt>;
export type StateOf<T> = T extends CrdtType<infer S, any> ? S : never;
export type ValueOf<T> = T extends CrdtType<any, infer V> ? V : never;
/* eslint-enable @typescript-eslint/no-explicit-any */

/**
 * A record state: one slot per schema field, in schema order; `undefined` is the bottom of any
 * field, so a delta that touches one field is an array with one defined slot. An array rather
 * than an object because a node holds hundreds of thousands of records.
 */
export type RecordState = readonly unknown[];

/** The plain values of a record, field by field. */
export type RecordValue<F extends FieldMap> = { [K in keyof F]: ValueOf<F[K]> };

/**
 * A schema-typed record: a map of named fields, each with its CRDT type, merged field by field.
 * A record is itself a CRDT (the product of its fields' lattices), so it composes like one.
 */
export class RecordSchema<F extends FieldMap = FieldMap> implements CrdtType<RecordState, RecordValue<F>> {
  readonly kind: string;
  readonly fieldNames: readonly (keyof F & string)[];
  private readonly types: readonly CrdtType<unknown, unknown>[];
  private readonly index: ReadonlyMap<string, number>;
  private readonly bottom: RecordState;

  constructor(
    readonly name: string,
    readonly fields: F,
  ) {
    this.kind = `record<${name}>`;
    this.fieldNames = Object.keys(fields) as (keyof F & string)[];
    this.types = this.fieldNames.map((f) => fields[f] as CrdtType<unknown, unknown>);
    this.index = new Map(this.fieldNames.map((f, i) => [f, i]));
    this.bottom = Object.freeze(new Array<unknown>(this.fieldNames.length).fill(undefined));
  }

  empty(): RecordState {
    return this.bottom;
  }

  isEmpty(s: RecordState): boolean {
    for (let i = 0; i < s.length; i++) {
      const x = s[i];
      if (x !== undefined && !(this.types[i] as CrdtType<unknown>).isEmpty(x)) return false;
    }
    return true;
  }

  indexOf(field: keyof F & string): number {
    const i = this.index.get(field);
    if (i === undefined) throw new RangeError(`${this.name} has no field ${field}`);
    return i;
  }

  /** The field's state, or its type's bottom if it was never written. */
  get<K extends keyof F & string>(s: RecordState, field: K): StateOf<F[K]> {
    const i = this.indexOf(field);
    const x = s[i];
    return (x === undefined ? (this.types[i] as CrdtType<unknown>).empty() : x) as StateOf<F[K]>;
  }

  /** A delta holding just these field deltas. */
  delta(parts: { [K in keyof F]?: StateOf<F[K]> }): RecordState {
    const out = new Array<unknown>(this.fieldNames.length).fill(undefined);
    for (const [f, v] of Object.entries(parts)) if (v !== undefined) out[this.indexOf(f)] = v;
    return out;
  }

  merge(a: RecordState, b: RecordState): RecordState {
    if (a === b) return a;
    let out: unknown[] | undefined;
    for (let i = 0; i < this.types.length; i++) {
      const y = b[i];
      const t = this.types[i] as CrdtType<unknown>;
      if (y === undefined || t.isEmpty(y)) continue;
      const x = a[i];
      const m = x === undefined ? y : t.merge(x, y);
      if (m !== x) {
        out ??= a.slice();
        out[i] = m;
      }
    }
    return out ?? a;
  }

  equals(a: RecordState, b: RecordState): boolean {
    if (a === b) return true;
    for (let i = 0; i < this.types.length; i++) {
      const t = this.types[i] as CrdtType<unknown>;
      const x = a[i] ?? t.empty();
      const y = b[i] ?? t.empty();
      if (!t.equals(x, y)) return false;
    }
    return true;
  }

  visit(s: RecordState, v: StateVisitor): void {
    for (let i = 0; i < this.types.length; i++) {
      const x = s[i];
      if (x !== undefined) (this.types[i] as CrdtType<unknown>).visit(x, v);
    }
  }

  value(s: RecordState): RecordValue<F> {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < this.types.length; i++) {
      const t = this.types[i] as CrdtType<unknown>;
      const x = s[i];
      out[this.fieldNames[i] as string] = t.value(x === undefined ? t.empty() : x);
    }
    return out as RecordValue<F>;
  }

  /** Field values only for the fields this state sets (used to describe deltas). */
  touched(s: RecordState): (keyof F & string)[] {
    const out: (keyof F & string)[] = [];
    for (let i = 0; i < this.types.length; i++)
      if (s[i] !== undefined) out.push(this.fieldNames[i] as keyof F & string);
    return out;
  }

  /** Wire form: one slot per field in schema order, null for unset fields. */
  toWire(s: RecordState): unknown[] {
    const out = new Array<unknown>(this.types.length);
    for (let i = 0; i < this.types.length; i++) {
      const x = s[i];
      const t = this.types[i] as CrdtType<unknown>;
      out[i] = x === undefined || t.isEmpty(x) ? null : t.toWire(x);
    }
    return out;
  }

  fromWire(w: unknown, limits?: CrdtLimits): RecordState {
    // Older writers may know fewer fields; newer ones more (ignored) — same-major compatibility.
    if (!Array.isArray(w)) return invalid(`${this.name} record`);
    const out = new Array<unknown>(this.types.length);
    for (let i = 0; i < this.types.length; i++) {
      const x = w[i] as unknown;
      if (x === null || x === undefined) {
        out[i] = undefined;
        continue;
      }
      const t = this.types[i] as CrdtType<unknown>;
      const s = t.fromWire(x, limits);
      out[i] = t.isEmpty(s) ? undefined : s;
    }
    return out;
  }
}

/** Any schema, for code that handles records of every type (the replica keyspace). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- schemas are invariant in their field map
export type AnyRecordSchema = RecordSchema<any>;
