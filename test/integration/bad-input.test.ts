import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { encode } from '../../src/codec/index.js';
import { LOGICAL_RANGE } from '../../src/crdt/index.js';
import { createHost, type MeshHost } from '../../src/net/index.js';
import { meshSchemaFor } from '../../src/node/schemas.js';
import { type AgentProfile, agentSchema } from '../../src/registry/agent-schema.js';
import { Replica } from '../../src/replica/index.js';
import { SYNC_PROTOCOL } from '../../src/sync/index.js';
import { MeshProcess, metric, waitFor } from '../helpers/mesh-process.js';

const TOPIC = 'agentmesh/default/deltas/1';

function profile(owner: string, name: string, registeredAt: number): AgentProfile {
  return {
    owner,
    name,
    type: 'worker',
    capabilities: [],
    state: 'RUNNING',
    health: 'healthy',
    load: 0,
    capacity: 1,
    heartbeat: Date.now(),
    meta: {},
    removed: false,
    registeredAt,
  };
}

describe('bad input', { timeout: 120_000 }, () => {
  let node: MeshProcess;
  let peer: MeshHost;
  let forger: Replica;
  let victim: unknown;

  before(async () => {
    node = await new MeshProcess({ name: 'target' }).start();
    assert.equal((await node.call('PUT', '/v1/agents/victim', { name: 'original', type: 'worker' })).status, 200);
    victim = await node.get('/v1/agents/victim');
    peer = await createHost({ listen: ['/ip4/127.0.0.1/tcp/0'], pubsub: { maxMessageSize: 8 * 1024 * 1024 } });
    forger = new Replica({ nodeId: peer.peerId, schemaFor: meshSchemaFor });
    peer.pubsub.subscribe(TOPIC, () => {});
    await peer.dial(node.addr);
    await waitFor(
      () => peer.pubsub.meshPeers(TOPIC).length + peer.pubsub.subscribers(TOPIC).length > 0,
      20_000,
      'gossip mesh',
    );
  });
  after(async () => {
    await peer?.stop();
    await node?.dispose();
  });

  async function unchanged(): Promise<void> {
    assert.deepEqual((await node.call('GET', '/v1/health')).status, 200, 'node alive');
    const now = (await node.get<Record<string, unknown>>('/v1/agents/victim')) as Record<string, unknown>;
    assert.deepEqual(
      { ...now, reachable: undefined },
      { ...(victim as object), reachable: undefined },
      'victim unchanged',
    );
  }

  it('gossip: malformed, oversized, bit-flipped, forged and future-dated messages are refused and counted', async () => {
    const rejectedBefore = await metric(node, 'gossip_messages_received_total');
    // Malformed bytes.
    await peer.pubsub.publish(TOPIC, new TextEncoder().encode('definitely not an envelope'));
    // Oversized (beyond the node's 1 MiB message limit).
    await peer.pubsub.publish(TOPIC, new Uint8Array(2 * 1024 * 1024).fill(7));
    // A forged delta for the victim's agent: written by the forger, naming the victim's owner.
    const owner = (victim as { owner: string }).owner;
    const forged = forger.mutate('agent/victim', () =>
      agentSchema.delta({
        profile: agentSchema.fields.profile.set(profile(owner, 'hijacked', 1), forger.clock.now(), peer.peerId),
      }),
    );
    await peer.pubsub.publish(TOPIC, encode([forger.deltaToWire(forged)]));
    // The same, bit-flipped in transit.
    const flipped = encode([forger.deltaToWire(forged)]);
    flipped[flipped.length - 6] = (flipped[flipped.length - 6] as number) ^ 0x10;
    await peer.pubsub.publish(TOPIC, flipped);
    // A delta claiming to come from the node itself, signed by the forger.
    await peer.pubsub.publish(
      TOPIC,
      encode([[...forger.deltaToWire(forged).slice(0, 1), owner, 99, forger.deltaToWire(forged)[3]]]),
    );
    // A clock reading two hours in the future, on an agent of the forger's own.
    const future = (Date.now() + 7_200_000) * LOGICAL_RANGE;
    const fromFuture = forger.mutate('agent/from-future', () =>
      agentSchema.delta({
        profile: agentSchema.fields.profile.set(profile(peer.peerId, 'future', future), future, peer.peerId),
      }),
    );
    await peer.pubsub.publish(TOPIC, encode([forger.deltaToWire(fromFuture)]));

    await waitFor(
      async () => (await metric(node, 'gossip_messages_received_total')) - rejectedBefore >= 5,
      15_000,
      'the node to receive the messages',
    );
    await waitFor(
      async () => (await metric(node, 'gossip_rejected_deltas_total{reason="clock_drift"}')) >= 1,
      10_000,
      'clock drift counted',
    );
    assert.ok(
      (await metric(node, 'gossip_rejected_messages_total{reason="deserialization_failed"}')) >= 1,
      'malformed counted',
    );
    assert.ok(
      (await metric(node, 'gossip_rejected_messages_total{reason="checksum_mismatch"}')) >= 1,
      'bit flip counted',
    );
    assert.ok(
      (await metric(node, 'gossip_rejected_messages_total{reason="origin_mismatch"}')) >= 1,
      'origin mismatch counted',
    );
    assert.ok(
      (await metric(node, 'gossip_rejected_deltas_total{reason="not_owner"}')) >= 1,
      'forged owner write counted',
    );
    assert.ok((await metric(node, 'pubsub_rejected_total{reason="too_large"}')) >= 1, 'oversized counted');
    assert.equal((await node.call('GET', '/v1/agents/from-future')).status, 404);
    await unchanged();
  });

  it('sync stream: malformed, oversized, bit-flipped frames and forged or future records are refused and counted', async () => {
    // Each bad session fails on the node with the code of its fault, counted by code: the counts
    // prove each frame was refused for its own reason, not merely that three sessions failed.
    const codes = ['DESERIALIZATION_FAILED', 'FRAME_TOO_LARGE', 'CHECKSUM_MISMATCH'];
    const failed = (code: string): string => `sync_failed_sessions_total{code="${code}"}`;
    const before = Object.fromEntries(
      await Promise.all(codes.map(async (c) => [c, await metric(node, failed(c))] as const)),
    );
    const failedWith = async (code: string): Promise<void> =>
      waitFor(
        async () => (await metric(node, failed(code))) === (before[code] as number) + 1,
        10_000,
        `a session failed with ${code}`,
      );
    const hello = encode({ t: 'hello', v: 1, dots: [], root: new Uint8Array(16), count: 0, depth: 4 });
    const session = async () => peer.openSession(node.id, SYNC_PROTOCOL, { maxFrameSize: 16 * 1024 * 1024 });

    const s1 = await session();
    await s1.send(new TextEncoder().encode('garbage'));
    await s1.receive().catch(() => undefined);
    await failedWith('DESERIALIZATION_FAILED');
    const s2 = await session();
    await s2.send(new Uint8Array(5 * 1024 * 1024)).catch(() => undefined);
    await s2.receive().catch(() => undefined);
    await failedWith('FRAME_TOO_LARGE');
    const s3 = await session();
    const bad = hello.slice();
    bad[12] = (bad[12] as number) ^ 0x01;
    await s3.send(bad);
    await s3.receive().catch(() => undefined);
    await failedWith('CHECKSUM_MISMATCH');

    // A well-formed conversation carrying a forged record and a future-dated one.
    const s4 = await session();
    await s4.send(hello);
    await s4.receive();
    const owner = (victim as { owner: string }).owner;
    const forgedRecord = agentSchema.delta({
      profile: agentSchema.fields.profile.set(profile(owner, 'hijacked', 1), forger.clock.now(), peer.peerId),
    });
    const future = (Date.now() + 7_200_000) * LOGICAL_RANGE;
    const futureRecord = agentSchema.delta({
      profile: agentSchema.fields.profile.set(profile(peer.peerId, 'future', future), future, peer.peerId),
    });
    await s4.send(
      encode({
        t: 'recs',
        recs: [
          ['agent/victim', forger.encodeRecord('agent/victim', forgedRecord)],
          ['agent/from-future', forger.encodeRecord('agent/from-future', futureRecord)],
        ],
        more: false,
      }),
    );
    await s4.send(encode({ t: 'done', complete: false }));
    await s4.close();
    await waitFor(
      async () =>
        (await metric(node, 'sync_rejected_records_total{reason="not_owner"}')) >= 1 &&
        (await metric(node, 'sync_rejected_records_total{reason="clock_drift"}')) >= 1,
      10_000,
      'forged and future records counted',
    );
    assert.equal((await node.call('GET', '/v1/agents/from-future')).status, 404);
    await unchanged();
  });

  it('HTTP: bad JSON, oversized bodies and invalid transitions get typed errors and change nothing', async () => {
    const res = await fetch(`${node.api}/v1/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"type":',
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'BAD_JSON');
    const big = await node.call('POST', '/v1/tasks', { type: 'x', payload: 'y'.repeat(400 * 1024) });
    assert.equal(big.status, 413);
    assert.equal((await node.call('POST', '/v1/tasks', { id: 't1', type: 'x' })).status, 201);
    const bad = await node.call<{ error: { code: string } }>('PATCH', '/v1/tasks/t1', { status: 'COMPLETED' });
    assert.equal(bad.status, 409);
    assert.equal(bad.body.error.code, 'INVALID_TRANSITION');
    assert.equal((await node.get<{ status: string }>('/v1/tasks/t1')).status, 'PENDING');
    await unchanged();
  });
});
