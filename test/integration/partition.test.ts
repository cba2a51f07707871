import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type MeshProcess, startMesh, waitFor } from '../helpers/mesh-process.js';

async function taskIds(n: MeshProcess): Promise<Set<string>> {
  return new Set((await n.get<Array<{ id: string }>>('/v1/tasks?limit=10000')).map((t) => t.id));
}

describe('partition and heal', { timeout: 120_000 }, () => {
  let nodes: MeshProcess[] = [];
  before(async () => {
    nodes = await startMesh(4, ['--heartbeat-ms', '500']);
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

    // Each side writes; each side sees its own writes but none of the other side's.
    for (let i = 0; i < 30; i++) {
      assert.equal((await (i % 2 ? a : b).call('POST', '/v1/tasks', { id: `left-${i}`, type: 'p' })).status, 201);
      assert.equal((await (i % 2 ? c : d).call('POST', '/v1/tasks', { id: `right-${i}`, type: 'p' })).status, 201);
    }
    // The same agent updated on both sides: the owner (a) writes during the partition.
    assert.equal((await a.call('PUT', '/v1/agents/shared', { name: 'during', type: 't' })).status, 200);
    await waitFor(
      async () => (await taskIds(b)).has('left-1') && (await taskIds(c)).has('right-0'),
      20_000,
      'writes within each side',
    );
    await new Promise((r) => setTimeout(r, 1500));
    for (const n of left)
      assert.ok(![...(await taskIds(n))].some((id) => id.startsWith('right-')), 'no write crossed the partition');
    for (const n of right)
      assert.ok(![...(await taskIds(n))].some((id) => id.startsWith('left-')), 'no write crossed the partition');
    // The failure detector notices: the other side is suspect or dead.
    await waitFor(
      async () => {
        const peers = await a.get<Array<{ id: string; state: string }>>('/v1/peers');
        return peers.filter((p) => right.some((r) => r.id === p.id)).every((p) => p.state !== 'alive');
      },
      20_000,
      'a to stop considering c and d alive',
    );

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
  });
});
