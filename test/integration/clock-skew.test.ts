/**
 * Clock skew is visible and never silent: a node whose wall clock runs 120 s ahead (beyond the
 * 60 s drift bound) joins two healthy nodes. Every side measures the others' clocks over the clock
 * protocol; /v1/peers and /v1/status show the offsets; both sides warn in their logs; and the
 * skewed node refuses writes with 503 CLOCK_SKEW instead of acknowledging writes its peers would
 * refuse, while still taking in theirs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MeshProcess, metric, shutdownNodes, waitFor } from '../helpers/mesh-process.js';

const SKEW_MS = 120_000;
/** The offset is measured over loopback: within a second of the injected one is generous. */
const near = (v: unknown, expected: number): boolean => typeof v === 'number' && Math.abs(v - expected) < 1_000;

interface Status {
  clockOffsetMs: number | null;
  clockSkewed: boolean;
}
interface Peer {
  id: string;
  clockOffsetMs: number | null;
}

describe('clock skew', { timeout: 90_000 }, () => {
  let nodes: MeshProcess[] = [];
  let n0: MeshProcess;
  let n1: MeshProcess;
  let skewed: MeshProcess;

  before(async () => {
    n0 = await new MeshProcess({ name: 'n0' }).start();
    n1 = await new MeshProcess({ name: 'n1', join: [n0.addr] }).start();
    nodes = [n0, n1];
    skewed = await new MeshProcess({
      name: 'ahead',
      join: [n0.addr],
      env: { MESH_TEST_CLOCK_OFFSET_MS: String(SKEW_MS) },
    }).start();
    nodes.push(skewed);
  });
  after(() => shutdownNodes(nodes));

  it('offsets are measured and shown on both sides', async () => {
    await waitFor(
      async () => near((await skewed.get<Status>('/v1/status')).clockOffsetMs, SKEW_MS),
      20_000,
      'the skewed node to estimate its own offset',
    );
    for (const n of [n0, n1]) {
      await waitFor(
        async () => near((await n.get<Peer[]>('/v1/peers')).find((p) => p.id === skewed.id)?.clockOffsetMs, SKEW_MS),
        20_000,
        `${n.options.name} to show the skewed peer's offset`,
      );
      const status = await n.get<Status>('/v1/status');
      assert.equal(status.clockSkewed, false, `${n.options.name} is not the skewed one`);
    }
    const fromSkewed = await skewed.get<Peer[]>('/v1/peers');
    assert.ok(near(fromSkewed.find((p) => p.id === n0.id)?.clockOffsetMs, -SKEW_MS), JSON.stringify(fromSkewed));
  });

  it('both sides warn, once per peer', async () => {
    for (const n of [n0, n1]) {
      const line = await n.waitForLog(
        (e) => e.peer === skewed.id && /clock runs ahead of ours/.test(String(e.msg)),
        20_000,
        'the skewed peer warning',
      );
      assert.equal(line.level, 40, 'at warn level');
      assert.ok(near(line.clockOffsetMs, SKEW_MS));
    }
    const self = await skewed.waitForLog(
      (e) => /this node's clock runs ahead of most of its peers/.test(String(e.msg)),
      20_000,
      'the skewed node about itself',
    );
    assert.ok((self.level as number) >= 40);
    await skewed.waitForLog(
      (e) => e.peer === n0.id && /clock runs behind ours/.test(String(e.msg)),
      20_000,
      'the skewed node about n0',
    );
    // One line per peer per state change, not one per measurement.
    const aheadLines = n0.stderr.filter((l) => l.includes(skewed.id) && l.includes('clock runs ahead of ours'));
    assert.equal(aheadLines.length, 1, aheadLines.join('\n'));
  });

  it('the skewed node refuses writes (503 CLOCK_SKEW) and says so in health; the others accept them', async () => {
    await waitFor(async () => (await skewed.get<Status>('/v1/status')).clockSkewed, 20_000, 'the skew verdict');
    const refused = await skewed.call<{ error: { code: string } }>('POST', '/v1/tasks', { id: 'skewed-1', type: 'x' });
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'CLOCK_SKEW');
    const health = await skewed.call<{ ok: boolean; problems: Array<{ code: string }> }>('GET', '/v1/health');
    assert.equal(health.status, 503);
    assert.equal(health.body.problems[0]?.code, 'CLOCK_SKEW');
    assert.equal((await n0.call('GET', '/v1/health')).status, 200);

    // The skewed node publishes nothing more: its heartbeat writes are refused (counted), and its
    // published-delta count stands still while they are.
    const published = await metric(skewed, 'gossip_deltas_published_total');
    const refusedBefore = await metric(skewed, 'clock_skew_refused_writes_total');
    assert.ok(refusedBefore >= 1);
    await waitFor(
      async () => (await metric(skewed, 'clock_skew_refused_writes_total')) >= refusedBefore + 3,
      15_000,
      'three more refused writes (heartbeats)',
    );
    assert.equal(await metric(skewed, 'gossip_deltas_published_total'), published, 'nothing published while skewed');

    // A healthy node's write is acknowledged and reaches the skewed node (it is behind us, not ahead).
    const ok = await n0.call('POST', '/v1/tasks', { id: 'healthy-1', type: 'x' });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    await waitFor(
      async () => (await skewed.call('GET', '/v1/tasks/healthy-1')).status === 200,
      15_000,
      'healthy-1 on the skewed node',
    );
    assert.equal((await n0.call('GET', '/v1/tasks/skewed-1')).status, 404);
  });

  it('set right and restarted, the node still refuses writes while its persisted logical clock is ahead', async () => {
    await skewed.stop();
    const fixed = await new MeshProcess({ name: 'fixed', dataDir: skewed.dataDir, join: [n0.addr] }).start();
    nodes.push(fixed);
    // Its wall clock agrees with the peers now, but its HLC resumes after the mark it persisted
    // while 120 s ahead: peers would refuse what it stamps, for up to two minutes.
    const refused = await fixed.call<{ error: { code: string; message: string } }>('POST', '/v1/tasks', {
      id: 'fixed-1',
      type: 'x',
    });
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'CLOCK_SKEW');
    assert.match(refused.body.error.message, /logical clock/);
    const health = await fixed.call<{ problems: Array<{ code: string }> }>('GET', '/v1/health');
    assert.equal(health.status, 503);
    assert.equal(health.body.problems[0]?.code, 'CLOCK_SKEW');
    await fixed.waitForLog((e) => /logical clock runs ahead/.test(String(e.msg)), 5_000, 'the logical-clock line');
    await waitFor(
      async () => near((await fixed.get<Status>('/v1/status')).clockOffsetMs, 0),
      20_000,
      'the fixed node to measure its peers as in agreement',
    );
  });
});
