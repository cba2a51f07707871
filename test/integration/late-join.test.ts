import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { MeshProcess, metric, waitFor } from '../helpers/mesh-process.js';

async function writeTasks(node: MeshProcess, count: number, concurrency: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const r = await node.call('POST', '/v1/tasks', {
        id: `bulk-${i}`,
        type: 'bulk',
        title: `bulk ${i}`,
        payload: { i },
      });
      assert.equal(r.status, 201, `write ${i}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

describe('late joiner', { timeout: 180_000 }, () => {
  const nodes: MeshProcess[] = [];
  after(async () => {
    await Promise.all(nodes.map((n) => n.dispose()));
  });

  it('catches up 20k records: Bloom sync moves the bulk and a Merkle pass finishes it', async () => {
    const a = await new MeshProcess({ name: 'a' }).start();
    nodes.push(a);
    await writeTasks(a, 20_000, 48);
    const aKeys = (await a.get<{ keys: number }>('/v1/status')).keys;
    assert.ok(aKeys >= 20_001);

    const b = await new MeshProcess({ name: 'b', join: [a.addr] }).start();
    nodes.push(b);
    await waitFor(
      async () => (await b.get<{ keys: number }>('/v1/status')).keys >= aKeys + 1,
      60_000,
      'the late joiner to hold every record',
      200,
    );
    const res = await fetch(`${b.api}/v1/tasks?limit=1`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(res.headers.get('x-total-count'), '20000', 'every task is listed on the late joiner');

    // Whichever side initiated, the records b received came through the Bloom phase, and a Merkle
    // pass ran after it (on b or a) to mop up what the filter's false positives hid.
    const bloomReceived = await metric(b, 'sync_records_received_total{phase="bloom"}');
    const merkleReceived = await metric(b, 'sync_records_received_total{phase="merkle"}');
    const merklePhases =
      (await metric(a, 'sync_phases_total{phase="merkle"}')) + (await metric(b, 'sync_phases_total{phase="merkle"}'));
    assert.ok(bloomReceived >= 19_000, `Bloom moved only ${bloomReceived} of 20k records`);
    assert.ok(merklePhases >= 1, 'no Merkle pass ran');
    assert.ok(bloomReceived + merkleReceived >= 20_000, `Bloom ${bloomReceived} + Merkle ${merkleReceived} < 20k`);
  });
});
