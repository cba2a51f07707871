import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decode as msgpackDecode, encode as msgpackEncode } from '@msgpack/msgpack';
import fc from 'fast-check';
import {
  type CrdtType,
  DEFAULT_LIMITS,
  gCounter,
  latticeRegister,
  lwwRegister,
  orMap,
  orSet,
  pnCounter,
  RecordSchema,
  type RegisterState,
} from '../../src/crdt/index.js';
import { fcParams } from '../helpers/fc.js';

/**
 * Each model drives one CRDT type the way replicas do: ops run on a replica's local state and
 * yield deltas; replicas occasionally merge each other's full state (so later deltas depend
 * causally on earlier ones, which is what makes OR-Set removes interesting).
 */
interface Model<S, Op> {
  name: string;
  type: CrdtType<S, unknown>;
  op: fc.Arbitrary<Op>;
  apply(state: S, op: Op, replica: string, step: number): S;
}

const REPLICAS = ['node-a', 'node-b', 'node-c'] as const;
const small = fc.constantFrom('x', 'y', 'z', 'w');
const jsonValue = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom('a', 'b', 'c'),
  fc.constant(null),
  fc.record({ k: fc.constantFrom(1, 2) }),
);

const lww = lwwRegister();
const rankOf = (v: number): number => v >> 1; // pairs of values share a rank, so ties happen
const lattice = latticeRegister<number>('lattice', rankOf, (v): v is number => typeof v === 'number');
const counterMap = orMap(gCounter);
const recordSchema = new RecordSchema('test', { title: lww, hits: gCounter, tags: orSet, level: pnCounter });

/* eslint-disable @typescript-eslint/no-explicit-any -- a heterogeneous list of models */
const models: Model<any, any>[] = [
  {
    name: 'G-Counter',
    type: gCounter,
    op: fc.integer({ min: 0, max: 10 }),
    apply: (s, n: number, r) => gCounter.increment(s, r, n),
  },
  {
    name: 'PN-Counter',
    type: pnCounter,
    op: fc.integer({ min: -10, max: 10 }),
    apply: (s, n: number, r) => pnCounter.add(s, r, n),
  },
  {
    // Timestamps from a tiny range so that equal timestamps (from one or two writers) are common.
    name: 'LWW-Register',
    type: lww,
    op: fc.tuple(jsonValue, fc.integer({ min: 0, max: 4 })),
    apply: (_s, [v, t]: [unknown, number], r) => lww.set(v, t, r),
  },
  {
    name: 'lattice register',
    type: lattice,
    op: fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 4 })),
    apply: (_s, [v, t]: [number, number], r) => lattice.set(v, t, r),
  },
  {
    name: 'OR-Set',
    type: orSet,
    op: fc.oneof(
      fc.record({ k: fc.constant('add'), e: small }),
      fc.record({ k: fc.constant('remove'), e: small }),
      fc.record({ k: fc.constant('clear'), e: small }),
    ),
    apply: (s, op: { k: string; e: string }, r) =>
      op.k === 'add' ? orSet.add(s, op.e, r) : op.k === 'remove' ? orSet.remove(s, op.e) : orSet.clear(s),
  },
  {
    name: 'OR-Map<G-Counter>',
    type: counterMap,
    op: fc.record({ remove: fc.boolean(), key: small, n: fc.integer({ min: 1, max: 5 }) }),
    apply: (s, op: { remove: boolean; key: string; n: number }, r) =>
      op.remove
        ? counterMap.remove(s, op.key)
        : counterMap.update(s, op.key, gCounter.increment(counterMap.get(s, op.key) ?? gCounter.empty(), r, op.n), r),
  },
  {
    name: 'record',
    type: recordSchema,
    op: fc.oneof(
      fc.record({ f: fc.constant('title'), v: jsonValue, t: fc.integer({ min: 0, max: 4 }) }),
      fc.record({ f: fc.constant('hits'), n: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ f: fc.constant('tags'), e: small, add: fc.boolean() }),
      fc.record({ f: fc.constant('level'), n: fc.integer({ min: -3, max: 3 }) }),
    ),
    apply(s, op: { f: string; v?: unknown; t?: number; n?: number; e?: string; add?: boolean }, r) {
      switch (op.f) {
        case 'title':
          return recordSchema.delta({ title: lww.set(op.v, op.t as number, r) });
        case 'hits':
          return recordSchema.delta({ hits: gCounter.increment(recordSchema.get(s, 'hits'), r, op.n) });
        case 'tags': {
          const tags = recordSchema.get(s, 'tags');
          return recordSchema.delta({
            tags: op.add ? orSet.add(tags, op.e as string, r) : orSet.remove(tags, op.e as string),
          });
        }
        default:
          return recordSchema.delta({ level: pnCounter.add(recordSchema.get(s, 'level'), r, op.n as number) });
      }
    },
  },
];
/* eslint-enable @typescript-eslint/no-explicit-any */

type Step<Op> = { replica: number; sync: number | null; op: Op };

function stepsOf<Op>(op: fc.Arbitrary<Op>): fc.Arbitrary<Step<Op>[]> {
  return fc.array(
    fc.record({
      replica: fc.integer({ min: 0, max: 2 }),
      sync: fc.option(fc.integer({ min: 0, max: 2 }), { freq: 4 }),
      op,
    }),
    { maxLength: 25 },
  );
}

/** Runs a scenario: returns every delta produced and every replica's final state. */
function run<S, Op>(m: Model<S, Op>, steps: Step<Op>[]): { deltas: S[]; states: S[] } {
  const states = REPLICAS.map(() => m.type.empty());
  const deltas: S[] = [];
  steps.forEach((st, i) => {
    if (st.sync !== null) states[st.replica] = m.type.merge(states[st.replica] as S, states[st.sync] as S);
    const d = m.apply(states[st.replica] as S, st.op, REPLICAS[st.replica] as string, i);
    deltas.push(d);
    states[st.replica] = m.type.merge(states[st.replica] as S, d);
  });
  return { deltas, states };
}

function joinAll<S>(type: CrdtType<S, unknown>, xs: S[]): S {
  return xs.reduce((acc, x) => type.merge(acc, x), type.empty());
}

function roundTrip<S>(type: CrdtType<S, unknown>, s: S): S {
  return type.fromWire(msgpackDecode(msgpackEncode(type.toWire(s), { sortKeys: true })), DEFAULT_LIMITS);
}

for (const m of models) {
  describe(`${m.name} laws`, () => {
    const states = stepsOf(m.op).map((steps) => run(m, steps).states);
    const eq = (a: unknown, b: unknown, msg: string): void =>
      assert.ok(
        m.type.equals(a, b),
        `${msg}: ${JSON.stringify(m.type.toWire(a))} vs ${JSON.stringify(m.type.toWire(b))}`,
      );

    it('merge is commutative', () => {
      fc.assert(
        fc.property(states, states, (x, y) => {
          for (const a of x) for (const b of y) eq(m.type.merge(a, b), m.type.merge(b, a), 'a+b != b+a');
        }),
        fcParams,
      );
    });

    it('merge is associative', () => {
      fc.assert(
        fc.property(states, (xs) => {
          const [a, b, c] = xs;
          eq(m.type.merge(m.type.merge(a, b), c), m.type.merge(a, m.type.merge(b, c)), '(a+b)+c != a+(b+c)');
        }),
        fcParams,
      );
    });

    it('merge is idempotent and returns the same state when nothing is new', () => {
      fc.assert(
        fc.property(states, (xs) => {
          for (const a of xs) {
            assert.equal(m.type.merge(a, a), a, 'a+a must return a itself');
            const joined = joinAll(m.type, xs);
            eq(m.type.merge(joined, a), joined, 'joined+a != joined');
            assert.equal(
              m.type.merge(joined, a),
              joined,
              'merging a state already included must return the same object',
            );
          }
        }),
        fcParams,
      );
    });

    it('deltas applied in any order, duplicated, or dropped then repaired give the full-state result', () => {
      fc.assert(
        fc.property(
          stepsOf(m.op),
          fc.infiniteStream(fc.nat()),
          fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }),
          (steps, rand, drop) => {
            const { deltas, states } = run(m, steps);
            const full = joinAll(m.type, states);
            // Shuffle with duplicates: every delta once or twice, in a random order.
            const r = rand[Symbol.iterator]();
            const next = (): number => r.next().value as number;
            const delivered = deltas.flatMap((d) => (next() % 3 === 0 ? [d, d] : [d]));
            for (let i = delivered.length - 1; i > 0; i--) {
              const j = next() % (i + 1);
              [delivered[i], delivered[j]] = [delivered[j], delivered[i]];
            }
            eq(joinAll(m.type, delivered), full, 'shuffled+duplicated deltas != full state');
            // Drop some, then repair with a full-state merge of every replica.
            const partial = joinAll(
              m.type,
              delivered.filter((_, i) => !drop[i % drop.length]),
            );
            eq(joinAll(m.type, [partial, ...states]), full, 'dropped deltas + full-state repair != full state');
          },
        ),
        fcParams,
      );
    });

    it('encode/decode round-trips and equal states encode to equal bytes', () => {
      fc.assert(
        fc.property(states, (xs) => {
          for (const a of xs) {
            const back = roundTrip(m.type, a);
            eq(back, a, 'round trip');
            // Two different construction orders of the same join must encode identically.
            const ab = m.type.merge(xs[0], m.type.merge(xs[1], xs[2]));
            const ba = m.type.merge(m.type.merge(xs[2], xs[1]), xs[0]);
            assert.deepEqual(
              msgpackEncode(m.type.toWire(ab), { sortKeys: true }),
              msgpackEncode(m.type.toWire(ba), { sortKeys: true }),
              'canonical encoding differs for equal states',
            );
          }
        }),
        fcParams,
      );
    });
  });
}

describe('OR-Set semantics', () => {
  it('add wins over a concurrent remove; a remove that saw the add wins', () => {
    fc.assert(
      fc.property(small, fc.array(small, { maxLength: 5 }), (e, others) => {
        let a = orSet.empty();
        for (const o of others) a = orSet.merge(a, orSet.add(a, o, 'node-a'));
        a = orSet.merge(a, orSet.add(a, e, 'node-a'));
        let b = a; // b has seen everything a did
        const removal = orSet.remove(a, e);
        a = orSet.merge(a, removal);
        assert.ok(!orSet.has(a, e), 'remove must remove locally');
        const concurrentAdd = orSet.add(b, e, 'node-b');
        b = orSet.merge(b, concurrentAdd);
        const merged = orSet.merge(a, b);
        assert.ok(orSet.has(merged, e), 'the concurrent add must survive the remove');
        assert.ok(orSet.equals(merged, orSet.merge(b, a)));
        // A remove issued after observing both adds removes the element everywhere.
        const later = orSet.merge(merged, orSet.remove(merged, e));
        assert.ok(!orSet.has(orSet.merge(later, b), e), 'an observed add must not resurrect');
      }),
      fcParams,
    );
  });

  it('keeps no tombstones: the context stays one prefix per origin after many adds and removes', () => {
    let s = orSet.empty();
    for (let i = 0; i < 1000; i++) {
      const e = `cap-${i % 7}`;
      s = orSet.merge(s, i % 3 === 0 ? orSet.remove(s, e) : orSet.add(s, e, 'node-a'));
    }
    assert.ok(s.entries.length <= 7, 'at most one live entry per element');
    assert.equal(s.ctx.length, 1);
    assert.equal(s.ctx[0]?.[2].length, 0, 'no exceptions: the context is a bare prefix');
  });
});

describe('LWW determinism', () => {
  it('equal timestamps resolve to the same winner in any merge order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(jsonValue, fc.constantFrom('node-a', 'node-b', 'node-c')), { minLength: 2, maxLength: 6 }),
        fc.integer({ min: 0, max: 1e12 }),
        (writes, t) => {
          const regs = writes.map(([v, w]) => lww.set(v, t, w));
          const forward = regs.reduce<RegisterState<unknown>>((acc, r) => lww.merge(acc, r), undefined);
          const backward = [...regs].reverse().reduce<RegisterState<unknown>>((acc, r) => lww.merge(acc, r), undefined);
          assert.ok(lww.equals(forward, backward));
          const maxWriter = writes
            .map(([, w]) => w)
            .sort()
            .at(-1);
          assert.equal(forward?.w, maxWriter, 'the greatest writer id wins a timestamp tie');
        },
      ),
      fcParams,
    );
  });

  it('a higher lattice rank wins whatever the timestamps', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 7 }),
        fc.nat(),
        fc.nat(),
        (v1, v2, t1, t2) => {
          const a = lattice.set(v1, t1, 'node-a');
          const b = lattice.set(v2, t2, 'node-b');
          const m = lattice.merge(a, b);
          if (rankOf(v1) > rankOf(v2)) assert.equal(m, a);
          else if (rankOf(v2) > rankOf(v1)) assert.equal(m, b);
          else assert.equal(m, t1 > t2 || (t1 === t2 && 'node-a' > 'node-b') ? a : b);
        },
      ),
      fcParams,
    );
  });
});
