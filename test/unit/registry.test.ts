import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { orSet, type RecordState } from '../../src/crdt/index.js';
import { meshSchemaFor } from '../../src/node/schemas.js';
import {
  AGENT_OWNER_FIELDS,
  AgentRegistry,
  agentKey,
  agentPolicy,
  agentSchema,
  MAX_CAPABILITIES,
  MAX_META_BYTES,
  REGISTRY_HTTP_STATUS,
  RegistryError,
} from '../../src/registry/index.js';
import { type Delta, PolicyError, Replica } from '../../src/replica/index.js';
import { taskPolicy } from '../../src/tasks/index.js';

interface Node {
  id: string;
  replica: Replica;
  registry: AgentRegistry;
  /** Every delta this node produced, in order. */
  out: Delta[];
}

function meshNode(id: string, now?: () => number): Node {
  const replica = new Replica({
    nodeId: id,
    schemaFor: meshSchemaFor,
    policy: (i) => {
      if (i.key.startsWith('agent/')) agentPolicy(i);
      else if (i.key.startsWith('task/')) taskPolicy(i);
    },
  });
  const out: Delta[] = [];
  const mutate = async (k: string, b: Parameters<Replica['mutate']>[1]) => {
    const d = replica.mutate(k, b);
    out.push(d);
    return d;
  };
  return { id, replica, out, registry: new AgentRegistry({ replica, mutate, ...(now ? { now } : {}) }) };
}

/** Delivers every delta `from` produced (again: duplicates are no-ops) to each of `to`. */
function deliver(from: Node, ...to: Node[]): void {
  for (const n of to) for (const d of from.out) n.replica.applyDelta(d, from.id);
}

function isRegistryError(code: string) {
  return (e: unknown) => e instanceof RegistryError && e.code === code;
}
function isPolicyError(reason: string) {
  return (e: unknown) => e instanceof PolicyError && e.reason === reason && e.code === 'POLICY_REJECTED';
}

/** A delta as `origin` would send it, with the given (possibly forged) record state. */
function forged(target: Replica, key: string, origin: string, state: RecordState): Delta {
  return { key, origin, seq: target.dots.max(origin) + 1, state };
}

const base = { name: 'worker', type: 'llm', capabilities: ['summarize', 'translate'] };

describe('agent registry', () => {
  it('registers an agent owned by this node, with defaults, and replicates it', async () => {
    const a = meshNode('node-a', () => 1_000);
    const b = meshNode('node-b');
    const v = await a.registry.upsert('agent-1', { ...base, meta: { model: 'x', skip: undefined } });
    assert.deepEqual(v, {
      id: 'agent-1',
      owner: 'node-a',
      name: 'worker',
      type: 'llm',
      capabilities: ['summarize', 'translate'],
      state: 'INITIALIZING',
      health: 'unknown',
      load: 0,
      capacity: 1,
      heartbeat: 1_000,
      stats: { executions: 0, successes: 0, failures: 0, restarts: 0 },
      meta: { model: 'x' },
      removed: false,
    });
    assert.deepEqual(a.registry.get('agent-1'), v);
    assert.equal(b.registry.get('agent-1'), undefined);
    deliver(a, b);
    assert.deepEqual(b.registry.get('agent-1'), v);
    assert.equal(a.registry.get('nope'), undefined);
    assert.equal(a.registry.get('bad id!'), undefined);
  });

  it('updates only what the input sets, and heartbeats refresh liveness fields', async () => {
    let now = 1_000;
    const a = meshNode('node-a', () => now);
    await a.registry.upsert('ag', { ...base, state: 'RUNNING', load: 0.5, capacity: 4, meta: { v: 1 } });
    now = 2_000;
    const v = await a.registry.upsert('ag', { name: 'renamed', type: 'llm' });
    assert.equal(v.name, 'renamed');
    assert.equal(v.state, 'RUNNING');
    assert.equal(v.load, 0.5);
    assert.equal(v.capacity, 4);
    assert.deepEqual(v.meta, { v: 1 });
    assert.deepEqual(v.capabilities, ['summarize', 'translate'], 'omitted capabilities are kept');
    assert.equal(v.heartbeat, 2_000);
    now = 3_000;
    const h = await a.registry.heartbeat('ag', { load: 2, health: 'degraded', state: 'PAUSED' });
    assert.deepEqual([h.load, h.health, h.state, h.heartbeat, h.capacity], [2, 'degraded', 'PAUSED', 3_000, 4]);
  });

  it('diffs capabilities: adds the new ones, removes the missing ones, on every replica', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    await a.registry.upsert('ag', { ...base, capabilities: ['a', 'b', 'c'] });
    deliver(a, b);
    const before = a.out.length;
    const v = await a.registry.upsert('ag', { ...base, capabilities: ['b', 'c', 'd', 'd'] });
    assert.deepEqual(v.capabilities, ['b', 'c', 'd']);
    // The update's delta carries only the change: one new entry (d) and the removed dot of a.
    const caps = agentSchema.get((a.out[before] as Delta).state, 'capabilities');
    assert.deepEqual(
      caps.entries.map((e) => e[0]),
      ['d'],
    );
    deliver(a, b);
    assert.deepEqual(b.registry.get('ag')?.capabilities, ['b', 'c', 'd']);
    assert.deepEqual((await a.registry.upsert('ag', { ...base, capabilities: [] })).capabilities, []);
    deliver(a, b);
    assert.deepEqual(b.registry.get('ag')?.capabilities, []);
  });

  it('refuses updates, heartbeats and removals of another node’s agent with NOT_OWNER (409)', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    await a.registry.upsert('ag', base);
    deliver(a, b);
    const before = b.replica.get(agentKey('ag'));
    await assert.rejects(b.registry.upsert('ag', { ...base, name: 'mine' }), isRegistryError('NOT_OWNER'));
    await assert.rejects(b.registry.heartbeat('ag', { load: 1 }), isRegistryError('NOT_OWNER'));
    await assert.rejects(b.registry.remove('ag'), isRegistryError('NOT_OWNER'));
    assert.equal(b.replica.get(agentKey('ag')), before, 'nothing was written');
    assert.equal(b.out.length, 0, 'no delta was produced');
    const err = await b.registry.remove('ag').then(
      () => assert.fail('should be refused'),
      (e: unknown) => e as RegistryError,
    );
    assert.equal(err.status, 409);
    assert.deepEqual(err.toJSON(), {
      code: 'NOT_OWNER',
      message: err.message,
      details: { owner: 'node-a' },
    });
    assert.equal(REGISTRY_HTTP_STATUS.NOT_OWNER, 409);
    // Any node may count executions of any known agent, in its own slot.
    assert.equal((await b.registry.recordExecution('ag', 'success')).stats.executions, 1);
  });

  it('rejects forged deltas touching owner fields: not_owner, counted, state unchanged', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    await a.registry.upsert('ag', base);
    deliver(a, b);
    const key = agentKey('ag');
    const S = agentSchema;
    const t = () => b.replica.clock.now();

    // 1. B's own replica refuses B writing A's agent (a local mutation through the raw replica).
    const bBefore = b.replica.get(key);
    assert.throws(
      () => b.replica.mutate(key, () => S.delta({ name: S.fields.name.set('hijacked', t(), 'node-b') })),
      isPolicyError('not_owner'),
    );
    assert.equal(b.replica.get(key), bBefore);
    assert.equal(b.replica.stats.rejectedByReason.not_owner, 1);

    const aBefore = a.replica.get(key);
    const attempts: Array<[string, RecordState]> = [
      // 2. A register write by B.
      ['register', S.delta({ name: S.fields.name.set('hijacked', t(), 'node-b') })],
      // 3. A takeover: B claims the owner register for itself.
      ['owner takeover', S.delta({ owner: S.fields.owner.set('node-b', t(), 'node-b') })],
      // 4. A capability added under B's dot.
      [
        'capability add',
        S.delta({ capabilities: orSet.add(S.get(aBefore as RecordState, 'capabilities'), 'x', 'node-b') }),
      ],
      // 5. A context-only removal of A's dots (no writer of its own, but not from the owner).
      [
        'capability removal',
        S.delta({ capabilities: orSet.remove(S.get(aBefore as RecordState, 'capabilities'), 'summarize') }),
      ],
      // 6. Marking A's agent removed.
      ['removal', S.delta({ removed: S.fields.removed.set(true, t(), 'node-b') })],
    ];
    for (const [what, state] of attempts) {
      assert.throws(
        () => a.replica.applyDelta(forged(a.replica, key, 'node-b', state), 'node-b'),
        isPolicyError('not_owner'),
        what,
      );
    }
    assert.equal(a.replica.get(key), aBefore, 'A’s record is unchanged');
    assert.equal(a.replica.stats.rejectedByReason.not_owner, attempts.length);
    assert.equal(a.replica.dots.max('node-b'), 0, 'refused dots are not marked seen');
    assert.deepEqual(a.registry.get('ag')?.capabilities, ['summarize', 'translate']);

    // 7. A full record from sync carrying B's write is refused too.
    const record = S.merge(aBefore as RecordState, S.delta({ name: S.fields.name.set('hijacked', t(), 'node-b') }));
    assert.throws(() => a.replica.mergeRecord(key, record, 'node-b'), isPolicyError('not_owner'));
    assert.equal(a.replica.get(key), aBefore);

    // 8. On a node that never heard of the agent: B cannot claim it in A's name...
    const c = meshNode('node-c');
    const claim = S.delta({
      owner: S.fields.owner.set('node-a', t(), 'node-b'),
      name: S.fields.name.set('x', t(), 'node-b'),
    });
    assert.throws(
      () => c.replica.applyDelta(forged(c.replica, key, 'node-b', claim), 'node-b'),
      isPolicyError('not_owner'),
    );
    // ...and owner fields with no owner known are refused.
    const orphan = S.delta({ name: S.fields.name.set('x', t(), 'node-b') });
    assert.throws(
      () => c.replica.applyDelta(forged(c.replica, key, 'node-b', orphan), 'node-b'),
      isPolicyError('not_owner'),
    );
    assert.equal(c.replica.has(key), false);
    // The genuine deltas still apply afterwards.
    deliver(a, c);
    assert.deepEqual(c.registry.get('ag'), a.registry.get('ag'));
  });

  it('lets owner-field deltas arrive out of order: each carries the owner register', async () => {
    const a = meshNode('node-a');
    const c = meshNode('node-c');
    await a.registry.upsert('ag', base);
    await a.registry.heartbeat('ag', { load: 3 });
    // C gets the heartbeat before the registration.
    c.replica.applyDelta(a.out[1] as Delta, 'node-a');
    assert.equal(c.registry.get('ag')?.load, 3);
    c.replica.applyDelta(a.out[0] as Delta, 'node-a');
    assert.deepEqual(c.registry.get('ag'), a.registry.get('ag'));
  });

  it('caps cardinalities after merge whoever writes them (too_large)', async () => {
    const a = meshNode('node-a');
    await a.registry.upsert('ag', base);
    const key = agentKey('ag');
    const S = agentSchema;
    const before = a.replica.get(key);
    assert.throws(
      () =>
        a.replica.mutate(key, (cur) => {
          let set = S.get(cur, 'capabilities');
          let delta = orSet.empty();
          for (let i = 0; i < MAX_CAPABILITIES; i++) {
            const d = orSet.add(set, `cap-${i}`, 'node-a');
            set = orSet.merge(set, d);
            delta = orSet.merge(delta, d);
          }
          return S.delta({ owner: S.get(cur, 'owner'), capabilities: delta });
        }),
      isPolicyError('too_large'),
    );
    const big = { blob: 'x'.repeat(MAX_META_BYTES) };
    assert.throws(
      () =>
        a.replica.mutate(key, (cur) =>
          S.delta({ owner: S.get(cur, 'owner'), meta: S.fields.meta.set(big, a.replica.clock.now(), 'node-a') }),
        ),
      isPolicyError('too_large'),
    );
    assert.equal(a.replica.get(key), before);
    assert.equal(a.replica.stats.rejectedByReason.too_large, 2);
  });

  it('validates input with typed errors and exported limits', async () => {
    const a = meshNode('node-a');
    const bad: Array<[string, unknown, string]> = [
      ['bad id!', base, 'INVALID_AGENT'],
      ['x'.repeat(129), base, 'INVALID_AGENT'],
      ['', base, 'INVALID_AGENT'],
      ['ok', { ...base, name: 'n'.repeat(129) }, 'INVALID_AGENT'],
      ['ok', { ...base, name: '' }, 'INVALID_AGENT'],
      ['ok', { ...base, type: 42 }, 'INVALID_AGENT'],
      ['ok', { ...base, capabilities: Array.from({ length: 65 }, (_, i) => `c${i}`) }, 'INVALID_AGENT'],
      ['ok', { ...base, capabilities: ['c'.repeat(65)] }, 'INVALID_AGENT'],
      ['ok', { ...base, capabilities: 'summarize' }, 'INVALID_AGENT'],
      ['ok', { ...base, load: -1 }, 'INVALID_AGENT'],
      ['ok', { ...base, load: Infinity }, 'INVALID_AGENT'],
      ['ok', { ...base, capacity: Number.NaN }, 'INVALID_AGENT'],
      ['ok', { ...base, state: 'DANCING' }, 'INVALID_AGENT'],
      ['ok', { ...base, health: 'great' }, 'INVALID_AGENT'],
      ['ok', { ...base, meta: [1, 2] }, 'INVALID_AGENT'],
      ['ok', { ...base, meta: { n: 10n } }, 'INVALID_AGENT'],
      ['ok', { ...base, meta: { blob: 'x'.repeat(MAX_META_BYTES) } }, 'TOO_LARGE'],
      ['ok', null, 'INVALID_AGENT'],
    ];
    for (const [id, input, code] of bad) {
      await assert.rejects(a.registry.upsert(id, input as never), isRegistryError(code), `${id} ${String(input)}`);
    }
    assert.equal(a.replica.size, 0);
    assert.equal(a.replica.stats.localMutations, 0);
    // At the limits exactly it is fine.
    const meta = { blob: 'x'.repeat(MAX_META_BYTES - JSON.stringify({ blob: '' }).length) };
    const v = await a.registry.upsert('x'.repeat(128), {
      name: 'n'.repeat(128),
      type: 't',
      capabilities: Array.from({ length: 64 }, (_, i) => `${i}`.padEnd(64, 'c')),
      meta,
    });
    assert.equal(v.capabilities.length, 64);
    await assert.rejects(a.registry.heartbeat('ok', { load: -5 }), isRegistryError('INVALID_AGENT'));
    await assert.rejects(
      a.registry.recordExecution('x'.repeat(128), 'maybe' as never),
      isRegistryError('INVALID_AGENT'),
    );
  });

  it('reports unknown agents as NOT_FOUND', async () => {
    const a = meshNode('node-a');
    await assert.rejects(a.registry.heartbeat('ghost'), isRegistryError('NOT_FOUND'));
    await assert.rejects(a.registry.remove('ghost'), isRegistryError('NOT_FOUND'));
    await assert.rejects(a.registry.recordExecution('ghost', 'success'), isRegistryError('NOT_FOUND'));
    await assert.rejects(a.registry.recordRestart('ghost'), isRegistryError('NOT_FOUND'));
    assert.equal(a.replica.size, 0);
  });

  it('removes agents (owner only, idempotent), hides them from lists, and lets the owner re-register', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    await a.registry.upsert('ag', { ...base, state: 'RUNNING' });
    const r = await a.registry.remove('ag');
    assert.deepEqual([r.removed, r.state], [true, 'TERMINATED']);
    const n = a.out.length;
    assert.deepEqual(await a.registry.remove('ag'), r);
    assert.equal(a.out.length, n, 'removing twice writes nothing');
    deliver(a, b);
    assert.equal(b.registry.get('ag')?.removed, true);
    assert.deepEqual(b.registry.list(), []);
    assert.deepEqual(
      b.registry.list({ includeRemoved: true }).map((x) => x.id),
      ['ag'],
    );
    await assert.rejects(a.registry.heartbeat('ag'), isRegistryError('AGENT_REMOVED'));
    await assert.rejects(
      b.registry.upsert('ag', base),
      isRegistryError('NOT_OWNER'),
      'removed agents keep their owner',
    );
    const back = await a.registry.upsert('ag', base);
    assert.deepEqual([back.removed, back.state], [false, 'INITIALIZING']);
    deliver(a, b);
    assert.deepEqual(b.registry.list(), [back]);
  });

  it('adds up execution stats from every node', async () => {
    const [a, b, c] = ['node-a', 'node-b', 'node-c'].map((id) => meshNode(id)) as [Node, Node, Node];
    await a.registry.upsert('ag', base);
    deliver(a, b, c);
    await Promise.all([
      a.registry.recordExecution('ag', 'success'),
      a.registry.recordExecution('ag', 'success'),
      b.registry.recordExecution('ag', 'failure'),
      c.registry.recordExecution('ag', 'success'),
      c.registry.recordExecution('ag', 'failure'),
      b.registry.recordRestart('ag'),
    ]);
    // Before exchanging, each node sees only its own increments.
    assert.deepEqual(b.registry.get('ag')?.stats, { executions: 1, successes: 0, failures: 1, restarts: 1 });
    deliver(a, b, c);
    deliver(b, a, c);
    deliver(c, a, b);
    for (const n of [a, b, c]) {
      assert.deepEqual(n.registry.get('ag')?.stats, { executions: 5, successes: 3, failures: 2, restarts: 1 }, n.id);
      assert.ok(
        agentSchema.equals(n.replica.get(agentKey('ag')) as RecordState, a.replica.get(agentKey('ag')) as RecordState),
      );
    }
    // Stats deltas carry no owner field, so the policy lets them through from anyone.
    assert.equal(a.replica.stats.rejected, 0);
    assert.ok(!AGENT_OWNER_FIELDS.includes('executions' as never));
  });

  it('filters lists by capability, type, state and node, sorted by id', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    await a.registry.upsert('z-coder', { name: 'z', type: 'coder', capabilities: ['code', 'test'], state: 'RUNNING' });
    await a.registry.upsert('a-writer', { name: 'a', type: 'writer', capabilities: ['write'], state: 'PAUSED' });
    await b.registry.upsert('m-coder', { name: 'm', type: 'coder', capabilities: ['code'], state: 'RUNNING' });
    await b.registry.upsert('gone', { name: 'g', type: 'coder', capabilities: ['code'] });
    await b.registry.remove('gone');
    deliver(a, b);
    deliver(b, a);
    for (const n of [a, b]) {
      const ids = (f: Parameters<AgentRegistry['list']>[0]) => n.registry.list(f).map((x) => x.id);
      assert.deepEqual(ids({}), ['a-writer', 'm-coder', 'z-coder']);
      assert.deepEqual(ids({ capability: 'code' }), ['m-coder', 'z-coder']);
      assert.deepEqual(ids({ capability: 'code', includeRemoved: true }), ['gone', 'm-coder', 'z-coder']);
      assert.deepEqual(ids({ type: 'coder', node: 'node-a' }), ['z-coder']);
      assert.deepEqual(ids({ state: 'PAUSED' }), ['a-writer']);
      assert.deepEqual(ids({ node: 'node-b' }), ['m-coder']);
      assert.deepEqual(ids({ state: 'TERMINATED', includeRemoved: true }), ['gone']);
      assert.deepEqual(ids({ capability: 'fly' }), []);
    }
  });

  it('hides records whose owner register has not arrived (stats only)', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    const c = meshNode('node-c');
    await a.registry.upsert('ag', base);
    deliver(a, b);
    await b.registry.recordExecution('ag', 'success');
    deliver(b, c); // C sees B's increment before A's registration.
    assert.equal(c.replica.has(agentKey('ag')), true);
    assert.equal(c.registry.get('ag'), undefined);
    assert.deepEqual(c.registry.list({ includeRemoved: true }), []);
    await assert.rejects(c.registry.recordExecution('ag', 'success'), isRegistryError('NOT_FOUND'));
    deliver(a, c);
    assert.equal(c.registry.get('ag')?.stats.successes, 1);
  });
});
