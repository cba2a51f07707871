import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StateDigest } from '../../src/node/state-digest.js';
import { nodeSchema } from '../../src/registry/node-schema.js';
import { AgentRegistry } from '../../src/registry/agents.js';
import type { Replica } from '../../src/replica/index.js';
import { TaskBoard } from '../../src/tasks/tasks.js';
import { meshReplica } from '../helpers/api-backend.js';

function node(id: string): { replica: Replica; agents: AgentRegistry; tasks: TaskBoard; digest: StateDigest } {
  const replica = meshReplica(id);
  const mutate = async (key: string, build: Parameters<Replica['mutate']>[1]) => replica.mutate(key, build);
  return {
    replica,
    agents: new AgentRegistry({ replica, mutate }),
    tasks: new TaskBoard({ replica, mutate }),
    digest: new StateDigest(replica),
  };
}

/** Every record of `from` merged into `to`, as anti-entropy would. */
function syncInto(from: Replica, to: Replica): void {
  for (const [key, state] of from.entries()) to.mergeRecord(key, state, from.nodeId);
}

function beat(replica: Replica, wall: number): void {
  replica.mutate(`node/${replica.nodeId}`, () =>
    nodeSchema.delta({ heartbeat: nodeSchema.fields.heartbeat.set(wall, replica.clock.now(), replica.nodeId) }),
  );
}

describe('state digest', () => {
  it('is equal on replicas holding the same records, whatever their order, and ignores liveness', async () => {
    const a = node('node-a');
    const b = node('node-b');
    await a.agents.upsert('ag1', { name: 'one', type: 't', capabilities: ['x'] });
    await a.tasks.create({ id: 't1', type: 'job' });
    await b.tasks.create({ id: 't2', type: 'job' });
    beat(a.replica, 1);
    beat(b.replica, 1);
    const before = a.digest.hex();
    assert.match(before, /^[0-9a-f]{32}$/);
    syncInto(a.replica, b.replica);
    syncInto(b.replica, a.replica);
    assert.equal(a.digest.hex(), b.digest.hex(), 'same records, arrived in different orders');
    assert.notEqual(a.digest.hex(), before, 'a got t2 and b node record');

    const agreed = a.digest.hex();
    const rootBefore = a.replica.merkle().rootHex();
    beat(a.replica, 2);
    await a.agents.heartbeat('ag1', { load: 3, state: 'PAUSED' });
    assert.notEqual(a.replica.merkle().rootHex(), rootBefore, 'heartbeats change the Merkle root');
    assert.equal(a.digest.hex(), agreed, 'and not the digest');

    await a.agents.recordRestart('ag1');
    assert.notEqual(a.digest.hex(), agreed, 'a counter is state');
    syncInto(a.replica, b.replica);
    assert.equal(b.digest.hex(), a.digest.hex());
  });

  it('kept incrementally, equals a digest computed from scratch', async () => {
    const a = node('node-a');
    for (let i = 0; i < 50; i++) await a.tasks.create({ id: `t${i}`, type: 'job' });
    a.digest.hex();
    for (let i = 0; i < 50; i += 3) await a.tasks.cancel(`t${i}`);
    await a.agents.upsert('ag', { name: 'n', type: 't' });
    const fresh = new StateDigest(a.replica);
    assert.equal(a.digest.hex(), fresh.hex());
    fresh.close();
  });
});
