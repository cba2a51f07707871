import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_AGING_MS, PendingIndex, type PendingEntry, signatureOf } from '../../src/scheduler/pending-index.js';
import { hash32, rendezvousOrder } from '../../src/scheduler/rendezvous.js';
import { fcParams } from '../helpers/fc.js';
import { prng } from '../helpers/replicas.js';

const ids = (it: Iterable<PendingEntry>): string[] => [...it].map((e) => e.id);
const caps = (...c: string[]): ReadonlySet<string> => new Set(c);

interface Task {
  id: string;
  capabilities: string[];
  priority: number;
  createdAt: number;
}

/**
 * The order a dispatch must see, stated directly: the highest effective priority at any instant
 * `now` (priority + waiting time / agingMs) first, then the smaller id. With agingMs a power of
 * two and integer times, every value here is exact in binary floating point.
 */
function expectedOrder(tasks: Task[], agent: ReadonlySet<string>, agingMs: number, now: number): string[] {
  const eff = (t: Task) => t.priority + (now - t.createdAt) / agingMs;
  return tasks
    .filter((t) => t.capabilities.every((c) => agent.has(c)))
    .sort((a, b) => eff(b) - eff(a) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((t) => t.id);
}

describe('PendingIndex', () => {
  it('orders by priority, highest first, and FIFO within a priority', () => {
    const idx = new PendingIndex();
    idx.add('low', [], 1, 1_000);
    idx.add('high', [], 9, 1_000);
    idx.add('mid-new', [], 5, 1_002);
    idx.add('mid-old', [], 5, 1_000);
    idx.add('mid-mid', [], 5, 1_001);
    idx.add('mid-tie-b', [], 5, 1_001);
    assert.deepEqual(
      ids(idx.eligible(caps())),
      ['high', 'mid-old', 'mid-mid', 'mid-tie-b', 'mid-new', 'low'],
      'priority first; older first within a priority; equal times by id',
    );
    assert.equal(idx.size, 6);
    assert.equal(DEFAULT_AGING_MS, 60_000, 'one priority level per minute of waiting');
  });

  it('ages: an old low-priority task overtakes newer high-priority ones after agingMs per level', () => {
    for (const agingMs of [1_000, DEFAULT_AGING_MS]) {
      const t0 = 1_700_000_000_000;
      for (const levels of [1, 2, 5]) {
        const waited = levels * agingMs;
        // A newer task `levels` priorities higher, created a little less / more than `waited` later.
        const idx = new PendingIndex(agingMs);
        idx.add('old-low', [], 2, t0);
        idx.add('new-high-before', [], 2 + levels, t0 + waited - 1);
        idx.add('new-high-after', [], 2 + levels, t0 + waited + 1);
        assert.deepEqual(
          ids(idx.eligible(caps())),
          ['new-high-before', 'old-low', 'new-high-after'],
          `agingMs ${agingMs}, ${levels} levels: the old task overtakes what came more than ${waited}ms after it`,
        );
      }
    }
    // Nothing starves: however many high-priority tasks keep arriving, the old one gets ahead of
    // every one created more than 9 levels' worth of waiting after it.
    const idx = new PendingIndex(1_000);
    idx.add('starving', [], 0, 0);
    for (let i = 0; i < 50; i++) idx.add(`hot-${String(i).padStart(2, '0')}`, [], 9, i * 500);
    const order = ids(idx.eligible(caps()));
    const pos = order.indexOf('starving');
    assert.deepEqual(
      order.slice(pos + 1),
      Array.from({ length: 31 }, (_x, i) => `hot-${String(i + 19).padStart(2, '0')}`),
      'exactly the tasks created after 9s come later',
    );
  });

  it('serves an agent only the buckets whose capabilities it has, merged best first', () => {
    const idx = new PendingIndex(1_024);
    idx.add('plain', [], 5, 0);
    idx.add('gpu', ['gpu'], 5, 1);
    idx.add('gpu-cuda', ['cuda', 'gpu'], 9, 2);
    idx.add('cuda-gpu', ['gpu', 'cuda'], 1, 3);
    idx.add('net', ['net'], 7, 4);
    idx.add('gpu-net', ['net', 'gpu'], 6, 5);
    assert.equal(signatureOf(['gpu', 'cuda']), signatureOf(['cuda', 'gpu']), 'one bucket per capability set');
    const all = [...idx.eligible(caps('gpu', 'cuda', 'net', 'extra'))];
    assert.deepEqual(
      all.map((e) => e.id),
      ['gpu-cuda', 'net', 'gpu-net', 'plain', 'gpu', 'cuda-gpu'],
      'an agent with every capability sees every task, by priority',
    );
    assert.deepEqual(
      all.find((e) => e.id === 'cuda-gpu')?.capabilities,
      ['cuda', 'gpu'],
      'entries carry the sorted capability set',
    );
    assert.deepEqual(ids(idx.eligible(caps('gpu'))), ['plain', 'gpu'], 'gpu alone');
    assert.deepEqual(ids(idx.eligible(caps('cuda'))), ['plain'], 'a subset of a bucket is not enough');
    assert.deepEqual(ids(idx.eligible(caps('gpu', 'net'))), ['net', 'gpu-net', 'plain', 'gpu']);
    assert.deepEqual(ids(idx.eligible(caps())), ['plain'], 'no capabilities: only tasks that need none');
    // Lazy: a dispatch can stop after the first few.
    const gen = idx.eligible(caps('gpu', 'cuda', 'net'));
    assert.equal(gen.next().value?.id, 'gpu-cuda');
    assert.equal(gen.next().value?.id, 'net');
  });

  it('removes tasks, re-adds them with new priorities, and drops empty buckets', () => {
    const idx = new PendingIndex(1_024);
    idx.add('a', ['x'], 5, 0);
    idx.add('b', ['x'], 5, 1);
    idx.add('c', ['y'], 5, 2);
    assert.deepEqual([idx.size, idx.has('a'), idx.has('zz')], [3, true, false]);
    idx.remove('a');
    idx.remove('a');
    idx.remove('never-added');
    assert.deepEqual([idx.size, idx.has('a')], [2, false], 'removed once; unknown ids are ignored');
    assert.deepEqual(ids(idx.eligible(caps('x', 'y'))), ['b', 'c']);
    idx.add('c', ['x'], 9, 2);
    assert.deepEqual([idx.size, ids(idx.eligible(caps('x')))], [2, ['c', 'b']], 'a re-add moves the task');
    assert.deepEqual(ids(idx.eligible(caps('y'))), [], 'its old bucket is gone');
    idx.remove('b');
    idx.remove('c');
    assert.deepEqual([idx.size, ids(idx.eligible(caps('x', 'y')))], [0, []]);
  });

  it('yields exactly the eligible tasks in effective-priority order, after any adds and removes (property)', () => {
    const universe = ['a', 'b', 'c', 'd'];
    const task = fc.record({
      n: fc.nat(40),
      capabilities: fc.subarray(universe),
      priority: fc.integer({ min: 0, max: 9 }),
      createdAt: fc.integer({ min: 0, max: 20_000 }),
    });
    const op = fc.oneof(
      { arbitrary: task.map((t) => ({ kind: 'add' as const, ...t })), weight: 4 },
      { arbitrary: fc.nat(40).map((n) => ({ kind: 'remove' as const, n })), weight: 1 },
      // A dispatch in between: the index settles its buckets, later adds and removes come on top.
      { arbitrary: fc.nat(40).map((n) => ({ kind: 'read' as const, n })), weight: 1 },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.subarray(universe), (ops, agentCaps) => {
        const agingMs = 1_024;
        const idx = new PendingIndex(agingMs);
        const live = new Map<string, Task>();
        for (const o of ops) {
          const id = `t${String(o.n).padStart(2, '0')}`;
          if (o.kind === 'add') {
            idx.add(id, o.capabilities, o.priority, o.createdAt);
            live.set(id, { id, capabilities: o.capabilities, priority: o.priority, createdAt: o.createdAt });
          } else if (o.kind === 'read') {
            const agent = new Set(agentCaps);
            assert.deepEqual(
              ids(idx.eligible(agent)),
              expectedOrder([...live.values()], agent, agingMs, 20_000),
              'mid-way',
            );
          } else {
            idx.remove(id);
            live.delete(id);
          }
        }
        assert.equal(idx.size, live.size, 'size');
        for (const id of live.keys()) assert.ok(idx.has(id), `has ${id}`);
        const agent = new Set(agentCaps);
        for (const now of [20_000, 1_000_000]) {
          assert.deepEqual(
            ids(idx.eligible(agent)),
            expectedOrder([...live.values()], agent, agingMs, now),
            `caps [${agentCaps.join(',')}], seen at ${now}`,
          );
        }
      }),
      { ...fcParams, numRuns: Math.min(fcParams.numRuns, 500) },
    );
  });
});

describe('rendezvousOrder', () => {
  const agents = (n: number, prefix = 'agent-') => Array.from({ length: n }, (_x, i) => ({ id: `${prefix}${i}` }));

  it('is deterministic and a permutation of the candidates', () => {
    const cands = agents(7);
    const first = rendezvousOrder('task-1', cands);
    assert.deepEqual(rendezvousOrder('task-1', cands), first, 'same key, same order');
    assert.deepEqual(first.map((c) => c.id).sort(), cands.map((c) => c.id).sort(), 'every candidate exactly once');
    assert.ok(
      first.every((c) => cands.includes(c)),
      'the candidates themselves, not copies',
    );
    assert.deepEqual(cands, agents(7), 'the input is not reordered');
    assert.deepEqual(rendezvousOrder('task-1', []), []);
    const orders = new Set(Array.from({ length: 50 }, (_x, i) => rendezvousOrder(`task-${i}`, cands)[0]?.id));
    assert.ok(orders.size > 1, 'different keys choose different candidates');
    for (const s of ['', 'a', 'task-1', 'é\u0000x']) {
      const h = hash32(s);
      assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32, `hash32(${JSON.stringify(s)}) is a uint32`);
      assert.equal(hash32(s), h, 'hash32 is deterministic');
    }
  });

  it('does not depend on the order the candidates are given in (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 40 }),
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 12 }),
        fc.nat(),
        (key, names, seed) => {
          const cands = names.map((id) => ({ id }));
          const expected = rendezvousOrder(key, cands).map((c) => c.id);
          const rnd = prng(seed);
          const shuffled = [...cands];
          for (let i = shuffled.length - 1; i > 0; i--) {
            const j = Math.floor(rnd() * (i + 1));
            [shuffled[i], shuffled[j]] = [shuffled[j] as { id: string }, shuffled[i] as { id: string }];
          }
          for (const input of [shuffled, [...cands].reverse()]) {
            assert.deepEqual(
              rendezvousOrder(key, input).map((c) => c.id),
              expected,
              `key ${JSON.stringify(key)}, given as ${input.map((c) => c.id).join(',')}`,
            );
          }
        },
      ),
      { ...fcParams, numRuns: Math.min(fcParams.numRuns, 500) },
    );
  });

  it('spreads first choices roughly uniformly over the candidates (chi-square)', () => {
    // 99.9th percentile of chi-square with k - 1 degrees of freedom, for k = 5, 10, 16.
    const critical: Record<number, number> = { 5: 18.47, 10: 27.88, 16: 37.7 };
    const keys = 20_000;
    for (const [k, prefix] of [
      [5, 'agent-'],
      [10, 'node-'],
      [16, '12D3KooW/agent-'],
    ] as const) {
      const cands = agents(k, prefix);
      const counts = new Map<string, number>(cands.map((c) => [c.id, 0]));
      for (let i = 0; i < keys; i++) {
        const first = rendezvousOrder(`task-${i}`, cands)[0] as { id: string };
        counts.set(first.id, (counts.get(first.id) as number) + 1);
      }
      const expected = keys / k;
      const chi2 = [...counts.values()].reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
      assert.ok(
        chi2 < (critical[k] as number),
        `${k} candidates: chi-square ${chi2.toFixed(1)} (counts ${[...counts.values()]})`,
      );
      for (const [id, c] of counts) {
        assert.ok(Math.abs(c - expected) < expected * 0.1, `${k} candidates: ${id} is first for ${c} of ${keys} keys`);
      }
    }
  });

  it('moves only the keys a removed candidate had first, and only to a candidate that is added (property)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 10 }), { minLength: 2, maxLength: 10 }),
        fc.nat(),
        fc.array(fc.string({ maxLength: 20 }), { minLength: 1, maxLength: 30 }),
        (names, pick, keys) => {
          const cands = names.map((id) => ({ id }));
          const gone = cands[pick % cands.length] as { id: string };
          const rest = cands.filter((c) => c !== gone);
          for (const key of keys) {
            const before = rendezvousOrder(key, cands).map((c) => c.id);
            const after = rendezvousOrder(key, rest).map((c) => c.id);
            // The others keep their relative order: only `gone`'s keys get a new first choice.
            assert.deepEqual(
              after,
              before.filter((id) => id !== gone.id),
              `key ${JSON.stringify(key)} without ${gone.id}`,
            );
            if (before[0] !== gone.id) assert.equal(after[0], before[0], `key ${JSON.stringify(key)} kept its first`);
            // Adding `gone` back takes only the keys it now ranks first.
            if (before[0] !== after[0])
              assert.equal(before[0], gone.id, `key ${JSON.stringify(key)} moved to the new one`);
          }
        },
      ),
      { ...fcParams, numRuns: Math.min(fcParams.numRuns, 500) },
    );
    // At scale: of 5,000 keys over 8 candidates, removing one moves exactly its own keys.
    const cands = agents(8);
    const firsts = (cs: Array<{ id: string }>) =>
      Array.from({ length: 5_000 }, (_x, i) => (rendezvousOrder(`task-${i}`, cs)[0] as { id: string }).id);
    const before = firsts(cands);
    const after = firsts(cands.filter((c) => c.id !== 'agent-3'));
    const moved = before.filter((id, i) => id !== after[i]);
    assert.ok(moved.length > 0 && moved.every((id) => id === 'agent-3'), `${moved.length} keys moved, all agent-3's`);
    assert.equal(moved.length, before.filter((id) => id === 'agent-3').length, 'every key of agent-3 moved');
  });
});
