import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  ClockDriftError,
  DotSet,
  HybridClock,
  LOGICAL_RANGE,
  type Ordering,
  VersionVector,
  wallOf,
} from '../../src/crdt/index.js';
import { fcParams } from '../helpers/fc.js';

describe('hybrid logical clock', () => {
  it('is strictly monotonic per node and orders receives after sends under skewed physical clocks', () => {
    const event = fc.record({
      node: fc.integer({ min: 0, max: 2 }),
      kind: fc.constantFrom('local', 'send'),
      advance: fc.integer({ min: -50, max: 50 }), // physical clocks jump back and forth
      to: fc.integer({ min: 0, max: 2 }),
    });
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -5_000, max: 5_000 }), { minLength: 3, maxLength: 3 }),
        fc.array(event, { maxLength: 200 }),
        (skews, events) => {
          const physical = [1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_000].map(
            (p, i) => p + (skews[i] as number),
          );
          const clocks = physical.map(
            (_, i) => new HybridClock({ now: () => physical[i] as number, maxDriftMs: 1_000_000 }),
          );
          const last = [0, 0, 0];
          let maxPhysical = Math.max(...physical);
          for (const e of events) {
            physical[e.node] = (physical[e.node] as number) + e.advance;
            maxPhysical = Math.max(maxPhysical, physical[e.node] as number);
            const c = clocks[e.node] as HybridClock;
            const t = c.now();
            assert.ok(t > (last[e.node] as number), 'local timestamps must strictly increase');
            assert.ok(wallOf(t) >= (physical[e.node] as number), 'the wall part never lags the physical clock');
            last[e.node] = t;
            if (e.kind === 'send' && e.to !== e.node) {
              const r = (clocks[e.to] as HybridClock).observe(t);
              assert.ok(r > t, 'a receive orders after the send it observed');
              assert.ok(r > (last[e.to] as number), 'receives keep the receiver monotonic');
              last[e.to] = r;
            }
          }
          // No clock runs ahead of the highest physical reading by more than the logical carry.
          for (const c of clocks) assert.ok(wallOf(c.current) <= maxPhysical + events.length / LOGICAL_RANGE + 1);
        },
      ),
      fcParams,
    );
  });

  it('refuses readings too far in the future and stays unchanged', () => {
    const clock = new HybridClock({ now: () => 1_000_000, maxDriftMs: 1_000 });
    const before = clock.now();
    assert.throws(() => clock.observe((1_000_000 + 1_001) * LOGICAL_RANGE), ClockDriftError);
    assert.equal(clock.current, before);
    assert.ok(clock.observe((1_000_000 + 999) * LOGICAL_RANGE) > before);
  });

  it('resumes after its persisted high-water mark even if the physical clock went back', () => {
    const high = 5_000_000 * LOGICAL_RANGE + 7;
    const clock = new HybridClock({ now: () => 4_000_000, initial: high });
    assert.ok(clock.now() > high);
  });
});

describe('version vector', () => {
  const vv = fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd'), fc.integer({ min: 0, max: 4 }), { maxKeys: 4 });
  const reference = (x: Record<string, number>, y: Record<string, number>): Ordering => {
    const keys = new Set([...Object.keys(x), ...Object.keys(y)]);
    const le = [...keys].every((k) => (x[k] ?? 0) <= (y[k] ?? 0));
    const ge = [...keys].every((k) => (x[k] ?? 0) >= (y[k] ?? 0));
    return le && ge ? 'equal' : le ? 'before' : ge ? 'after' : 'concurrent';
  };

  it('compare agrees with a reference model', () => {
    fc.assert(
      fc.property(vv, vv, (x, y) => {
        const a = new VersionVector(Object.entries(x));
        const b = new VersionVector(Object.entries(y));
        assert.equal(a.compare(b), reference(x, y));
      }),
      fcParams,
    );
  });

  it('merge is the pointwise maximum and dominates both inputs', () => {
    fc.assert(
      fc.property(vv, vv, (x, y) => {
        const m = new VersionVector(Object.entries(x)).merge(new VersionVector(Object.entries(y)));
        for (const k of ['a', 'b', 'c', 'd']) assert.equal(m.get(k), Math.max(x[k] ?? 0, y[k] ?? 0));
        assert.ok(['after', 'equal'].includes(m.compare(new VersionVector(Object.entries(x)))));
        assert.deepEqual(VersionVector.fromWire(m.toWire()).toWire(), m.toWire());
      }),
      fcParams,
    );
  });
});

describe('dot set (contiguous prefix plus exceptions)', () => {
  const dots = fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 1, max: 30 })), { maxLength: 60 });

  it('agrees with a plain set of dots on has, max, gaps and merge', () => {
    fc.assert(
      fc.property(dots, dots, (xs, ys) => {
        const d = new DotSet();
        const e = new DotSet();
        const ref = new Set<string>();
        for (const [o, s] of xs) {
          assert.equal(d.add(o, s), !ref.has(`${o}:${s}`), 'add reports whether the dot is new');
          ref.add(`${o}:${s}`);
        }
        for (const [o, s] of ys) {
          e.add(o, s);
          ref.add(`${o}:${s}`);
        }
        d.merge(e);
        for (const o of ['a', 'b', 'c']) {
          let max = 0;
          for (let s = 1; s <= 30; s++) {
            assert.equal(d.has(o, s), ref.has(`${o}:${s}`), `has(${o}, ${s})`);
            if (ref.has(`${o}:${s}`)) max = s;
          }
          assert.equal(d.max(o), max);
          const missing: number[] = [];
          for (let s = 1; s <= max; s++) if (!ref.has(`${o}:${s}`)) missing.push(s);
          assert.deepEqual(
            d.gaps(o).flatMap(([from, to]) => Array.from({ length: to - from + 1 }, (_, i) => from + i)),
            missing,
            'gaps list exactly the missing seqs',
          );
          assert.equal(d.base(o), missing.length > 0 ? (missing[0] as number) - 1 : max);
        }
        const back = DotSet.fromWire(d.toWire());
        assert.deepEqual(back.toWire(), d.toWire());
        assert.ok(back.covers(e) && d.covers(e));
      }),
      fcParams,
    );
  });

  it('rejects malformed wire forms', () => {
    assert.throws(() => DotSet.fromWire([['a', 2, [3]]]), /exceptions/); // 3 would extend the prefix
    assert.throws(() => DotSet.fromWire([['a', 1, [5, 4]]]), /exceptions/);
    assert.throws(
      () =>
        DotSet.fromWire([
          ['a', 1, []],
          ['a', 2, []],
        ]),
      /duplicate/,
    );
    assert.throws(() => DotSet.fromWire('x'), /invalid/);
  });
});
