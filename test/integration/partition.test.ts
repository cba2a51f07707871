import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type MeshProcess, metric, startMesh, waitFor } from '../helpers/mesh-process.js';

async function taskIds(n: MeshProcess): Promise<Set<string>> {
  return new Set((await n.get<Array<{ id: string }>>('/v1/tasks?limit=10000')).map((t) => t.id));
}

describe('partition and heal', { timeout: 120_000 }, () => {
  let nodes: MeshProcess[] = [];
  before(async () => {
    nodes = await startMesh(4, ['--heartbeat-ms', '500', '--log-level', 'info']);
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.dispose()));
  });

  it('both sides keep accepting writes during a partition and all converge after it heals', async () => {
    const [a, b, c, d] = nodes as [MeshProcess, MeshProcess, MeshProcess, MeshProcess];
    await waitFor(
      async () => (await Promise.all(nodes.map((n) => n.get<unknown[]>('/v1/peers')))).every((p) => p.length === 3),
      20_000,
      'every node to know the three others',
    );
    const left = [a, b];
    const right = [c, d];
    for (const n of left)
      assert.equal((await n.call('POST', '/v1/admin/partition', { peers: right.map((x) => x.id) })).status, 200);
    for (const n of right)
      assert.equal((await n.call('POST', '/v1/admin/partition', { peers: left.map((x) => x.id) })).status, 200);

    // From here on no node may open a connection at all: the partition closed the cross ones, and
    // the same-side ones stay up. A write can only cross over a connection.
    const connects = await Promise.all(nodes.map((n) => metric(n, 'net_peer_connects_total')));
    const refusedAtStart = await Promise.all(nodes.map((n) => metric(n, 'net_gater_refused_total')));

    // Each side writes; each side sees its own writes but none of the other side's.
    for (let i = 0; i < 30; i++) {
      assert.equal((await (i % 2 ? a : b).call('POST', '/v1/tasks', { id: `left-${i}`, type: 'p' })).status, 201);
      assert.equal((await (i % 2 ? c : d).call('POST', '/v1/tasks', { id: `right-${i}`, type: 'p' })).status, 201);
    }
    // The same agent updated on both sides: the owner (a) writes during the partition.
    assert.equal((await a.call('PUT', '/v1/agents/shared', { name: 'during', type: 't' })).status, 200);
    await waitFor(
      async () => (await taskIds(b)).has('left-29') && (await taskIds(c)).has('right-28'),
      20_000,
      'writes within each side',
    );
    // The failure detector notices: the other side is dead (suspect, disconnected and silent).
    await waitFor(
      async () => {
        const peers = await a.get<Array<{ id: string; state: string }>>('/v1/peers');
        return peers.filter((p) => right.some((r) => r.id === p.id)).every((p) => p.state === 'dead');
      },
      30_000,
      'a to consider c and d dead',
    );
    // Every node kept redialling the other side and was refused by its gater (the partition was
    // tested, not merely idle), and no node opened any connection meanwhile.
    await waitFor(
      async () => {
        const refused = await Promise.all(nodes.map((n) => metric(n, 'net_gater_refused_total')));
        return refused.every((r, i) => r > (refusedAtStart[i] as number));
      },
      20_000,
      'each node to refuse a connection across the partition',
    );
    assert.deepEqual(
      await Promise.all(nodes.map((n) => metric(n, 'net_peer_connects_total'))),
      connects,
      'no connection was opened during the partition',
    );
    for (const n of left)
      assert.ok(![...(await taskIds(n))].some((id) => id.startsWith('right-')), 'no write crossed the partition');
    for (const n of right)
      assert.ok(![...(await taskIds(n))].some((id) => id.startsWith('left-')), 'no write crossed the partition');

    for (const n of nodes) assert.equal((await n.call('POST', '/v1/admin/heal', {})).status, 200);
    await waitFor(
      async () => {
        for (const n of nodes) {
          const ids = await taskIds(n);
          if (ids.size !== 60) return false;
          if ((await n.call('GET', '/v1/agents/shared')).status !== 200) return false;
        }
        const roots = await Promise.all(nodes.map((n) => n.get<{ merkleRoot: string }>('/v1/status')));
        return new Set(roots.map((r) => r.merkleRoot)).size === 1;
      },
      40_000,
      'all four nodes to converge after the partition heals',
      250,
    );
    // The operator is told: both peers back on a, as one partition heal that brought records in.
    const healed = await a.waitForLog((e) => /partition healed/.test(String(e.msg)), 15_000, 'the heal line');
    assert.equal(healed.level, 30);
    assert.deepEqual([...(healed.peers as string[])].sort(), right.map((x) => x.id).sort());
    assert.ok((healed.recordsReceived as number) >= 30, `records brought in: ${String(healed.recordsReceived)}`);
    for (const peer of right) {
      await a.waitForLog((e) => e.peer === peer.id && /peer dead/.test(String(e.msg)), 1_000, 'the dead line');
      await a.waitForLog((e) => e.peer === peer.id && /peer back/.test(String(e.msg)), 1_000, 'the back line');
    }
  });
});
