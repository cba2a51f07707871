import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { MeshProcess, waitFor } from '../helpers/mesh-process.js';
import { prng } from '../helpers/replicas.js';

describe('crash recovery', { timeout: 120_000 }, () => {
  const nodes: MeshProcess[] = [];
  after(async () => {
    await Promise.all(nodes.map((n) => n.dispose()));
  });

  it('a node killed with SIGKILL mid-stream keeps every acknowledged write and catches up on what it missed', async () => {
    const rand = prng(7);
    const a = await new MeshProcess({ name: 'a' }).start();
    nodes.push(a);
    const b = await new MeshProcess({ name: 'b', join: [a.addr] }).start();
    nodes.push(b);

    // A stream of writes to b from several concurrent clients; record what b acknowledged.
    const acked: string[] = [];
    let stop = false;
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; !stop && i < 5000; i++) {
        const id = `b-w${w}-${i}`;
        try {
          const r = await b.call('POST', '/v1/tasks', { id, type: 'crash', title: id });
          if (r.status === 201) acked.push(id);
        } catch {
          return; // the node died under us: this write was not acknowledged
        }
      }
    };
    const writers = [0, 1, 2, 3].map((w) => writer(w));
    await waitFor(() => acked.length >= 20, 20_000, 'the first acknowledged writes');
    await new Promise((r) => setTimeout(r, 100 + rand() * 400));
    await b.kill('SIGKILL');
    stop = true;
    await Promise.all(writers);
    assert.ok(acked.length > 0);
    // The highest seq of b that a saw before the crash: b must never issue it again, or a would
    // take b's next, different delta for a duplicate and drop it.
    const seenByA = (await a.get<{ versionVector: Record<string, number> }>('/v1/status')).versionVector[b.id] ?? 0;
    assert.ok(seenByA > 0, 'a received deltas from b before the crash');

    // While b is down, the mesh moves on.
    const missed: string[] = [];
    for (let i = 0; i < 50; i++) {
      const id = `a-${i}`;
      assert.equal((await a.call('POST', '/v1/tasks', { id, type: 'crash', title: id })).status, 201);
      missed.push(id);
    }

    // Restart on the same data directory, without any join address: b finds a from its records.
    const b2 = await new MeshProcess({ name: 'b', dataDir: b.dataDir }).start();
    nodes.push(b2);
    assert.equal(b2.id, b.id, 'the node keeps its identity across restarts');
    const ownSeq = (await b2.get<{ versionVector: Record<string, number> }>('/v1/status')).versionVector[b.id] ?? 0;
    assert.ok(ownSeq >= seenByA, `b restarted at seq ${ownSeq}, below the seq ${seenByA} a had seen: a seq was reused`);
    const present = new Set((await b2.get<Array<{ id: string }>>('/v1/tasks?limit=10000')).map((t) => t.id));
    const lost = acked.filter((id) => !present.has(id));
    assert.deepEqual(lost, [], `acknowledged writes lost after SIGKILL: ${lost.length} of ${acked.length}`);

    await waitFor(
      async () => {
        const ids = new Set((await b2.get<Array<{ id: string }>>('/v1/tasks?limit=10000')).map((t) => t.id));
        return missed.every((id) => ids.has(id));
      },
      30_000,
      'the restarted node to catch up on the writes it missed',
    );
    // And a, which was up all along, holds everything b acknowledged before it died.
    await waitFor(
      async () => {
        const ids = new Set((await a.get<Array<{ id: string }>>('/v1/tasks?limit=10000')).map((t) => t.id));
        return acked.every((id) => ids.has(id));
      },
      30_000,
      'the survivor to hold every write b acknowledged',
    );
  });
});
