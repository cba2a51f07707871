import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeMsgpack, encodeMsgpack } from '../../src/codec/index.js';
import type { Register, RecordState } from '../../src/crdt/index.js';
import {
  AGENT_OWNER_FIELDS,
  type AgentProfile,
  AgentRegistry,
  agentKey,
  agentSchema,
  MAX_AGENT_NAME_LENGTH,
  MAX_CAPABILITIES,
  MAX_META_BYTES,
  REGISTRY_HTTP_STATUS,
  RegistryError,
} from '../../src/registry/index.js';
import type { Replica } from '../../src/replica/index.js';
import { type Delta, deltaToWire, PolicyError } from '../../src/replica/index.js';
import { meshReplica } from '../helpers/api-backend.js';
import { fcParams } from '../helpers/fc.js';
import { prng } from '../helpers/replicas.js';

interface Node {
  id: string;
  replica: Replica;
  registry: AgentRegistry;
  /** Every delta this node produced, in order. */
  out: Delta[];
}

interface NodeOptions {
  /** Wall clock for heartbeats (AgentRegistry's `now`). */
  now?: () => number;
  /** Physical clock of the replica's HLC (default Date.now). */
  hlc?: () => number;
}

function meshNode(id: string, now?: () => number, options: NodeOptions = {}): Node {
  const replica = meshReplica(id, options.hlc);
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

/** A delta as the receiver decodes it: through msgpack and the validating wire decoder. */
function viaWire(target: Replica, d: Delta): Delta {
  return target.deltaFromWire(decodeMsgpack(encodeMsgpack(target.deltaToWire(d))));
}

/** Sends every agent record of `from` to `to` as full records (the sync path), through the codec. */
function syncRecords(from: Node, to: Node): void {
  for (const [key] of from.replica.entries('agent/')) {
    to.replica.mergeRecord(key, to.replica.decodeRecord(key, from.replica.encodeRecord(key)), from.id);
  }
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

function profileOf(r: Replica, key: string): Register<AgentProfile> | undefined {
  const s = r.get(key);
  return s === undefined ? undefined : agentSchema.get(s, 'profile');
}

/** A well-formed profile for hand-made (forged or oversized) writes. */
function profile(owner: string, registeredAt: number, over: Partial<AgentProfile> = {}): AgentProfile {
  return {
    owner,
    name: 'n',
    type: 't',
    capabilities: [],
    state: 'RUNNING',
    health: 'healthy',
    load: 0,
    capacity: 1,
    heartbeat: 0,
    meta: {},
    removed: false,
    registeredAt,
    ...over,
  };
}

function assertConverged(nodes: Node[], key: string): void {
  const first = nodes[0] as Node;
  const ref = first.replica.get(key) as RecordState;
  for (const n of nodes) {
    const s = n.replica.get(key);
    assert.ok(s !== undefined, `${n.id} has ${key}`);
    assert.ok(agentSchema.equals(s, ref), `${n.id} and ${first.id} hold equal ${key}`);
  }
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

  it('replaces capabilities as a whole sorted, unique list, on every replica', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    await a.registry.upsert('ag', { ...base, capabilities: ['c', 'a', 'b'] });
    deliver(a, b);
    assert.deepEqual(b.registry.get('ag')?.capabilities, ['a', 'b', 'c']);
    const v = await a.registry.upsert('ag', { ...base, capabilities: ['d', 'b', 'c', 'd'] });
    assert.deepEqual(v.capabilities, ['b', 'c', 'd']);
    // The update's delta is the whole profile: one register, no per-field or per-element parts.
    const last = a.out.at(-1) as Delta;
    assert.deepEqual(agentSchema.touched(last.state), ['profile']);
    assert.deepEqual(agentSchema.get(last.state, 'profile')?.v.capabilities, ['b', 'c', 'd']);
    deliver(a, b);
    assert.deepEqual(b.registry.get('ag')?.capabilities, ['b', 'c', 'd']);
    assert.deepEqual((await a.registry.upsert('ag', { ...base, capabilities: [] })).capabilities, []);
    deliver(a, b);
    assert.deepEqual(b.registry.get('ag')?.capabilities, []);
    // Views are copies: mutating one does not touch the replica's state.
    (b.registry.get('ag') as { capabilities: string[] }).capabilities.push('x');
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

  it('rejects forged profiles: a writer naming another owner is not_owner, counted, state unchanged', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    await a.registry.upsert('ag', base);
    deliver(a, b);
    const key = agentKey('ag');
    const S = agentSchema;
    const t = () => b.replica.clock.now();
    const registeredAt = (profileOf(a.replica, key) as Register<AgentProfile>).v.registeredAt;
    // B writes a profile naming A as owner (with A's own registeredAt, so it would win the merge).
    const hijack = () =>
      S.delta({ profile: S.fields.profile.set(profile('node-a', registeredAt, { name: 'hijacked' }), t(), 'node-b') });

    // 1. B's own replica refuses it as a local mutation through the raw replica.
    const bBefore = b.replica.get(key);
    assert.throws(() => b.replica.mutate(key, hijack), isPolicyError('not_owner'));
    assert.equal(b.replica.get(key), bBefore);
    assert.equal(b.replica.stats.rejectedByReason.not_owner, 1);

    // 2. A refuses it as a delta from B...
    const aBefore = a.replica.get(key);
    assert.throws(
      () => a.replica.applyDelta(forged(a.replica, key, 'node-b', hijack()), 'node-b'),
      isPolicyError('not_owner'),
    );
    // ...and a delta from B carrying a profile "written by A" fails the replica's authorship check.
    const asA = S.delta({
      profile: S.fields.profile.set(profile('node-a', registeredAt, { name: 'hijacked' }), t(), 'node-a'),
    });
    assert.throws(
      () => a.replica.applyDelta(forged(a.replica, key, 'node-b', asA), 'node-b'),
      isPolicyError('foreign_writer'),
    );
    // 3. A full record from sync carrying it is refused too (no origin to check: the writer is).
    assert.throws(
      () => a.replica.mergeRecord(key, S.merge(aBefore as RecordState, hijack()), 'node-b'),
      isPolicyError('not_owner'),
    );
    assert.equal(a.replica.get(key), aBefore, 'A’s record is unchanged');
    assert.equal(a.replica.stats.rejectedByReason.not_owner, 2);
    assert.equal(a.replica.stats.rejectedByReason.foreign_writer, 1);
    assert.equal(a.replica.dots.max('node-b'), 0, 'refused dots are not marked seen');

    // 4. On a node that never heard of the agent: B cannot register it in A's name either.
    const c = meshNode('node-c');
    assert.throws(
      () => c.replica.applyDelta(forged(c.replica, key, 'node-b', hijack()), 'node-b'),
      isPolicyError('not_owner'),
    );
    assert.equal(c.replica.has(key), false);

    // 5. A profile in B's own name is honest input: accepted, and decided by the lattice. With a
    //    later registeredAt it loses to A's registration: a no-op.
    const late = S.delta({ profile: S.fields.profile.set(profile('node-b', t()), t(), 'node-b') });
    assert.equal(a.replica.applyDelta(forged(a.replica, key, 'node-b', late), 'node-b'), 'unchanged');
    assert.equal(a.registry.get('ag')?.owner, 'node-a');
    // Documented limitation: a member that backdates registeredAt takes the id over (attributably).
    const backdated = S.delta({ profile: S.fields.profile.set(profile('node-b', registeredAt - 1), t(), 'node-b') });
    assert.equal(c.replica.applyDelta(forged(c.replica, key, 'node-b', backdated), 'node-b'), 'applied');
    deliver(a, c);
    assert.equal(c.registry.get('ag')?.owner, 'node-b');
    assert.equal(a.replica.stats.rejected, 3, 'honest-looking profiles are never refused');
  });

  it('lets owner updates arrive out of order: heartbeats write only the liveness register', async () => {
    let now = 1_000;
    const a = meshNode('node-a', () => now);
    const c = meshNode('node-c');
    await a.registry.upsert('ag', { ...base, meta: { big: 'x'.repeat(2000) } });
    now = 2_000;
    await a.registry.heartbeat('ag', { load: 3 });
    // The heartbeat's delta carries the small liveness register, not the profile with its meta.
    assert.deepEqual(agentSchema.touched((a.out[1] as Delta).state), ['live']);
    const wire = (d: Delta): number => encodeMsgpack(deltaToWire(d, agentSchema as never)).length;
    assert.ok(wire(a.out[1] as Delta) < 300, `a heartbeat is small: ${wire(a.out[1] as Delta)} bytes`);
    assert.ok(wire(a.out[0] as Delta) > 2000, 'the registration carries the meta');
    // C gets the heartbeat before the registration: no agent yet, then the whole current one.
    c.replica.applyDelta(a.out[1] as Delta, 'node-a');
    assert.equal(c.registry.get('ag'), undefined);
    c.replica.applyDelta(a.out[0] as Delta, 'node-a');
    assert.deepEqual(c.registry.get('ag'), a.registry.get('ag'));
    assert.equal(c.registry.get('ag')?.load, 3);
    assert.equal(c.registry.get('ag')?.heartbeat, 2_000);
    // A later upsert folds the liveness into the profile; the older liveness no longer overlays it.
    now = 3_000;
    await a.registry.upsert('ag', { ...base, load: 1 });
    c.replica.applyDelta(a.out[2] as Delta, 'node-a');
    assert.equal(c.registry.get('ag')?.load, 1);
    assert.deepEqual(c.registry.get('ag'), a.registry.get('ag'));
  });

  it('ignores liveness reports not written by the owner', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    await a.registry.upsert('ag', base);
    deliver(a, b);
    const S = agentSchema;
    const forged = b.replica.mutate(agentKey('ag'), () =>
      S.delta({
        live: S.fields.live.set(
          { state: 'ERROR', health: 'unhealthy', load: 99, capacity: 1, heartbeat: 1 },
          b.replica.clock.now(),
          'node-b',
        ),
      }),
    );
    a.replica.applyDelta(forged, 'node-b');
    assert.equal(a.registry.get('ag')?.state, 'INITIALIZING');
    assert.equal(a.registry.get('ag')?.load, 0);
  });

  it('caps sizes whoever writes them: too_large in the policy, invalid at decode', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    await a.registry.upsert('ag', base);
    const key = agentKey('ag');
    const S = agentSchema;
    const before = a.replica.get(key);
    const registeredAt = (profileOf(a.replica, key) as Register<AgentProfile>).v.registeredAt;
    const oversized: Array<Partial<AgentProfile>> = [
      { capabilities: Array.from({ length: MAX_CAPABILITIES + 1 }, (_, i) => `cap-${String(i).padStart(3, '0')}`) },
      { capabilities: ['c'.repeat(65)] },
      { meta: { blob: 'x'.repeat(MAX_META_BYTES) } },
      { name: 'n'.repeat(MAX_AGENT_NAME_LENGTH + 1) },
      { type: 't'.repeat(129) },
    ];
    for (const over of oversized) {
      const write = () =>
        S.delta({
          profile: S.fields.profile.set(profile('node-a', registeredAt, over), a.replica.clock.now(), 'node-a'),
        });
      assert.throws(() => a.replica.mutate(key, write), isPolicyError('too_large'), Object.keys(over)[0]);
      // A peer's decoder refuses the same value before it reaches the policy.
      const d = forged(b.replica, key, 'node-a', write());
      assert.throws(() => viaWire(b.replica, d), /invalid delta state/, Object.keys(over)[0]);
    }
    assert.equal(a.replica.get(key), before);
    assert.equal(a.replica.stats.rejectedByReason.too_large, oversized.length);
    // Malformed profiles are refused at decode as well.
    const malformed: unknown[] = [
      { ...profile('node-a', registeredAt), capabilities: ['b', 'a'] },
      { ...profile('node-a', registeredAt), capabilities: ['a', 'a'] },
      { ...profile('node-a', registeredAt), state: 'DANCING' },
      { ...profile('node-a', registeredAt), load: -1 },
      { ...profile('node-a', registeredAt), meta: [1] },
      { ...profile('node-a', registeredAt), registeredAt: -5 },
      (({ removed: _r, ...rest }) => rest)(profile('node-a', registeredAt)),
    ];
    for (const v of malformed) {
      const wire = [key, 'node-a', 1, [[v, registeredAt, 'node-a'], null, null, null, null]];
      assert.throws(() => b.replica.deltaFromWire(decodeMsgpack(encodeMsgpack(wire))), /invalid delta state/);
    }
    // An unknown extra field (from a newer minor version) decodes; a missing known one does not.
    const extra = [
      key,
      'node-a',
      1,
      [[{ ...profile('node-a', registeredAt), extra: 1 }, registeredAt, 'node-a'], null, null, null, null],
    ];
    assert.doesNotThrow(() => b.replica.deltaFromWire(decodeMsgpack(encodeMsgpack(extra))));
    // The well-formed original decodes fine.
    assert.equal(b.replica.applyDelta(viaWire(b.replica, a.out[0] as Delta)), 'applied');
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
    const registeredAt = profileOf(a.replica, agentKey('ag'))?.v.registeredAt;
    const back = await a.registry.upsert('ag', base);
    assert.equal(profileOf(a.replica, agentKey('ag'))?.v.registeredAt, registeredAt, 'same registration, same rank');
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
    // Stats deltas carry no profile, so the policy lets them through from anyone.
    assert.equal(a.replica.stats.rejected, 0);
    assert.deepEqual(AGENT_OWNER_FIELDS, ['profile', 'live']);
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

  it('hides records whose profile has not arrived (stats only)', async () => {
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

  it('converges when two nodes register the same agent id concurrently: the earlier registration wins whole', async () => {
    let ms = 1_000_000;
    // A registers first (earlier HLC), B a little later, neither having seen the other.
    const a = meshNode('node-a', () => 1, { hlc: () => ms });
    const b = meshNode('node-b', () => 2, { hlc: () => ms + 5 });
    const others = ['node-c', 'node-d', 'node-e', 'node-f'].map((id) => meshNode(id, undefined, { hlc: () => ms }));
    const [c, d, e, f] = others as [Node, Node, Node, Node];
    await a.registry.upsert('ag', { name: 'alpha', type: 'llm', capabilities: ['x', 'y'], meta: { by: 'a' } });
    await b.registry.upsert('ag', { name: 'beta', type: 'tool', capabilities: ['z'], state: 'RUNNING', load: 7 });
    ms += 10;
    // Both keep updating before they hear of each other; B's updates keep losing (same lower rank).
    await b.registry.heartbeat('ag', { load: 9, health: 'healthy' });
    await a.registry.heartbeat('ag', { load: 1 });
    await b.registry.upsert('ag', { name: 'beta-2', type: 'tool' });
    await a.registry.recordExecution('ag', 'success');
    await b.registry.recordExecution('ag', 'failure');
    const expected = (profileOf(a.replica, agentKey('ag')) as Register<AgentProfile>).v;

    // Every delivery order: A<->B directly, C: B's deltas first, D: A's first, interleaved for
    // E (through the wire decoder, with duplicates), and F only through full records.
    deliver(a, b);
    deliver(b, a);
    deliver(b, c);
    deliver(a, c);
    deliver(a, d);
    deliver(b, d);
    const mixed = [...b.out, ...a.out].sort((x, y) => x.seq - y.seq || (x.origin < y.origin ? 1 : -1));
    for (const x of [...mixed, ...mixed.slice().reverse()]) e.replica.applyDelta(viaWire(e.replica, x), x.origin);
    syncRecords(b, f); // B's full record (which has merged A's by now)...
    syncRecords(c, f); // ...and again from another peer: a no-op.
    const all = [a, b, c, d, e, f];
    assertConverged(all, agentKey('ag'));
    for (const n of all) {
      const v = n.registry.get('ag');
      assert.equal(v?.owner, 'node-a', n.id);
      assert.deepEqual(profileOf(n.replica, agentKey('ag'))?.v, expected, `${n.id}: A's whole profile, nothing of B's`);
      assert.deepEqual(v?.stats, { executions: 2, successes: 1, failures: 1, restarts: 0 }, n.id);
      assert.equal(n.replica.stats.rejected, 0, `${n.id}: honest concurrent writes are never refused`);
    }
    assert.deepEqual(a.registry.get('ag')?.capabilities, ['x', 'y']);
    assert.deepEqual(a.registry.get('ag')?.meta, { by: 'a' });

    // The loser's node now sees another owner and refuses locally, writing nothing.
    const n = b.out.length;
    await assert.rejects(b.registry.upsert('ag', { name: 'beta-3', type: 'tool' }), isRegistryError('NOT_OWNER'));
    await assert.rejects(b.registry.heartbeat('ag'), isRegistryError('NOT_OWNER'));
    await assert.rejects(b.registry.remove('ag'), isRegistryError('NOT_OWNER'));
    assert.equal(b.out.length, n);
    // The winner carries on, and its updates still win everywhere.
    await a.registry.upsert('ag', { name: 'alpha-2', type: 'llm' });
    deliver(a, b, c, d, e, f);
    for (const x of all) assert.equal(x.registry.get('ag')?.name, 'alpha-2', x.id);
    assertConverged(all, agentKey('ag'));
  });

  it('keeps registeredAt across updates and re-registration, so an old owner never loses its agent', async () => {
    let ms = 5_000_000;
    const a = meshNode('node-a', undefined, { hlc: () => ms });
    await a.registry.upsert('ag', base);
    const first = profileOf(a.replica, agentKey('ag')) as Register<AgentProfile>;
    assert.equal(first.v.registeredAt, first.t, 'registeredAt is the HLC time of the first registration');
    ms += 100;
    await a.registry.heartbeat('ag', { load: 2 });
    await a.registry.remove('ag');
    ms += 100;
    await a.registry.upsert('ag', { ...base, name: 'again' });
    const now = profileOf(a.replica, agentKey('ag')) as Register<AgentProfile>;
    assert.equal(now.v.registeredAt, first.v.registeredAt);
    assert.ok(now.t > first.t);
    assert.deepEqual([now.v.removed, now.v.state, now.v.name], [false, 'INITIALIZING', 'again']);
  });

  it('converges under random concurrent registrations, updates and removals from 3 nodes, any delivery order (property)', async () => {
    const AGENTS = ['ag-0', 'ag-1'];
    const cmd = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant('upsert' as const),
          node: fc.nat(2),
          agent: fc.nat(1),
          name: fc.constantFrom('p', 'q', 'r'),
          caps: fc.option(fc.subarray(['a', 'b', 'c', 'd']), { nil: undefined }),
          state: fc.option(fc.constantFrom('RUNNING' as const, 'PAUSED' as const), { nil: undefined }),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          kind: fc.constant('heartbeat' as const),
          node: fc.nat(2),
          agent: fc.nat(1),
          load: fc.nat(10),
        }),
      },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), node: fc.nat(2), agent: fc.nat(1) }) },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('exec' as const),
          node: fc.nat(2),
          agent: fc.nat(1),
          ok: fc.boolean(),
        }),
      },
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('deliver' as const), node: fc.nat(2), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('sync' as const), from: fc.nat(2), to: fc.nat(2) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.nat(3) }) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(cmd, { maxLength: 60 }),
        fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3)),
        fc.integer(),
        async (cmds, skews, seed) => {
          let ms = 1_000_000;
          const nodes = ['node-a', 'node-b', 'node-c'].map((id, i) =>
            meshNode(id, () => ms, { hlc: () => ms + (skews[i] as number) }),
          );
          const log: Delta[] = [];
          const executions = new Map<string, number>();
          for (const c of cmds) {
            if (c.kind === 'tick') {
              ms += c.ms;
              continue;
            }
            if (c.kind === 'deliver') {
              // Any delta, applied or not: duplicates must be no-ops.
              if (log.length === 0) continue;
              const d = log[c.pick % log.length] as Delta;
              const n = nodes[c.node] as Node;
              if (d.origin !== n.id) n.replica.applyDelta(viaWire(n.replica, d), d.origin);
              continue;
            }
            if (c.kind === 'sync') {
              if (c.from !== c.to) syncRecords(nodes[c.from] as Node, nodes[c.to] as Node);
              continue;
            }
            const n = nodes[c.node] as Node;
            const id = AGENTS[c.agent] as string;
            const before = n.out.length;
            const run =
              c.kind === 'upsert'
                ? n.registry.upsert(id, {
                    name: c.name,
                    type: 't',
                    ...(c.caps ? { capabilities: c.caps } : {}),
                    ...(c.state ? { state: c.state } : {}),
                  })
                : c.kind === 'heartbeat'
                  ? n.registry.heartbeat(id, { load: c.load })
                  : c.kind === 'remove'
                    ? n.registry.remove(id)
                    : n.registry.recordExecution(id, c.ok ? 'success' : 'failure');
            await run.catch((e: unknown) => {
              if (!(e instanceof RegistryError && ['NOT_OWNER', 'NOT_FOUND', 'AGENT_REMOVED'].includes(e.code)))
                throw e;
            });
            if (c.kind === 'exec' && n.out.length > before) executions.set(id, (executions.get(id) ?? 0) + 1);
            log.push(...n.out.slice(before));
          }
          // Heal: every node gets every delta, in a random order, some twice.
          const rand = prng(seed);
          for (const n of nodes) {
            const order = [...log, ...log.filter(() => rand() < 0.3)].sort(() => rand() - 0.5);
            for (const d of order) n.replica.applyDelta(viaWire(n.replica, d), d.origin);
          }
          const P = agentSchema.fields.profile;
          for (const id of AGENTS) {
            const key = agentKey(id);
            const written = log.filter((d) => d.key === key);
            if (written.length === 0) {
              for (const n of nodes) assert.equal(n.replica.has(key), false);
              continue;
            }
            assertConverged(nodes, key);
            // The outcome is the maximum, in the profile's order, of every profile ever written.
            const profiles = written
              .map((d) => agentSchema.get(d.state, 'profile'))
              .filter((p): p is Register<AgentProfile> => p !== undefined);
            const best = profiles.reduce((x, y) => (P.compare(x, y) >= 0 ? x : y));
            const held = profileOf(nodes[0]?.replica as Replica, key);
            assert.ok(held !== undefined && P.equals(held, best));
            // The earliest registration owns it; everyone else is refused locally.
            const earliest = Math.min(...profiles.map((p) => p.v.registeredAt));
            assert.equal(held.v.registeredAt, earliest);
            for (const n of nodes) {
              const view = n.registry.get(id);
              assert.equal(view?.owner, held.v.owner);
              assert.equal(view?.stats.executions, executions.get(id) ?? 0);
              if (n.id !== held.v.owner) {
                await assert.rejects(n.registry.upsert(id, { name: 'x', type: 't' }), isRegistryError('NOT_OWNER'));
              }
            }
          }
          for (const n of nodes) assert.equal(n.replica.stats.rejected, 0, 'honest writes are never refused');
        },
      ),
      { ...fcParams, numRuns: Math.min(fcParams.numRuns, 300) },
    );
  });
});
