import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { EventStream, MeshProcess, metric, shutdownNodes, waitFor } from '../helpers/mesh-process.js';

const meta = { model: 'm-1', region: 'eu-west-1', tags: ['a', 'b'], notes: 'n'.repeat(120) };

describe('write path: push streams, batches, back-pressure', { timeout: 120_000 }, () => {
  const nodes: MeshProcess[] = [];
  after(() => shutdownNodes(nodes));

  it('replicates over direct push streams, and a batch of 500 writes costs a few store batches', async () => {
    const a = await new MeshProcess({ name: 'a' }).start();
    nodes.push(a);
    const b = await new MeshProcess({ name: 'b', join: [a.addr] }).start();
    nodes.push(b);
    await waitFor(async () => (await metric(a, 'push_links_opened_total')) >= 1, 20_000, 'a push stream a -> b');
    await waitFor(async () => (await metric(b, 'push_links_opened_total')) >= 1, 20_000, 'a push stream b -> a');
    const events = await EventStream.open(b, ['agent']);
    try {
      const batchesBefore = await metric(a, 'store_batches_total');
      const ops = Array.from({ length: 500 }, (_, i) => ({
        op: 'agent.put',
        id: `bulk-${i}`,
        agent: { name: `bulk ${i}`, type: 'worker', capabilities: ['c'], meta },
      }));
      const r = await a.call<{ ok: number; failed: number }>('POST', '/v1/batch', { ops });
      assert.equal(r.status, 200);
      assert.equal(r.body.ok, 500);
      const batches = (await metric(a, 'store_batches_total')) - batchesBefore;
      // One group commit for the batch, plus the odd heartbeat that shares the window.
      assert.ok(batches <= 4, `500 ops took ${batches} store batches`);
      await waitFor(() => new Set(events.events.map((e) => e.id)).size >= 500, 20_000, 'all 500 agents at b as events');
      const atB = await b.get<unknown[]>('/v1/agents?type=worker');
      assert.equal(atB.length, 500);
      assert.ok((await metric(b, 'push_deltas_applied_total')) >= 500, 'the deltas came over the push stream');
      assert.equal(await metric(a, 'gossip_deltas_published_total'), 0, 'no gossip needed in a connected mesh');
    } finally {
      events.close();
    }
  });

  it('past its bound of writes in progress a node answers 429 with Retry-After; every 2xx write replicates', async () => {
    const c = await new MeshProcess({ name: 'c', extraArgs: ['--max-inflight-writes', '4'] }).start();
    nodes.push(c);
    const d = await new MeshProcess({ name: 'd', join: [c.addr] }).start();
    nodes.push(d);
    const statuses = new Map<number, number>();
    const acked: string[] = [];
    let retryAfter: string | null = null;
    let overloadBody: { error?: { code?: string; message?: string } } | undefined;
    await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const id = `ov-${i}`;
        const res = await fetch(`${c.api}/v1/agents/${id}`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name: id, type: 'ov', meta }),
          signal: AbortSignal.timeout(20_000),
        });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const body = (await res.json()) as typeof overloadBody;
        if (res.status === 200) acked.push(id);
        if (res.status === 429) {
          retryAfter = res.headers.get('retry-after');
          overloadBody = body;
        }
      }),
    );
    const seen = JSON.stringify(Object.fromEntries(statuses));
    assert.ok((statuses.get(429) ?? 0) > 0, `some writes were refused: ${seen}`);
    assert.ok(acked.length > 0, `some writes were accepted: ${seen}`);
    assert.equal((statuses.get(200) ?? 0) + (statuses.get(429) ?? 0), 300, `only 200 and 429: ${seen}`);
    assert.equal(retryAfter, '1');
    assert.equal(overloadBody?.error?.code, 'OVERLOADED');
    assert.match(overloadBody?.error?.message ?? '', /writes in progress/);
    for (const node of [c, d]) {
      await waitFor(
        async () => (await node.get<unknown[]>('/v1/agents?type=ov')).length === acked.length,
        20_000,
        `every acknowledged write at ${node.options.name}`,
      );
    }
    const atD = new Set((await d.get<Array<{ id: string }>>('/v1/agents?type=ov')).map((x) => x.id));
    assert.deepEqual(
      acked.filter((id) => !atD.has(id)),
      [],
    );
  });

  it('a node no push stream reaches still gets every write, relayed by gossip through a common peer', async () => {
    const a = await new MeshProcess({ name: 'ra', extraArgs: ['--heartbeat-ms', '300'] }).start();
    nodes.push(a);
    const b = await new MeshProcess({ name: 'rb', join: [a.addr], extraArgs: ['--heartbeat-ms', '300'] }).start();
    nodes.push(b);
    const c = await new MeshProcess({ name: 'rc', join: [b.addr], extraArgs: ['--heartbeat-ms', '300'] }).start();
    nodes.push(c);
    await waitFor(
      async () => (await Promise.all([a, b, c].map((n) => n.get<unknown[]>('/v1/peers')))).every((p) => p.length === 2),
      20_000,
      'every node to know the two others',
    );
    // a and c refuse each other; both keep b.
    assert.equal((await a.call('POST', '/v1/admin/partition', { peers: [c.id] })).status, 200);
    assert.equal((await c.call('POST', '/v1/admin/partition', { peers: [a.id] })).status, 200);
    const events = await EventStream.open(c, ['agent']);
    try {
      const relayedBefore = await metric(c, 'gossip_deltas_applied_total');
      for (let i = 0; i < 20; i++) {
        assert.equal((await a.call('PUT', `/v1/agents/relay-${i}`, { name: `r${i}`, type: 'relay' })).status, 200);
      }
      await waitFor(
        () => new Set(events.events.filter((e) => e.id.startsWith('relay-')).map((e) => e.id)).size === 20,
        20_000,
        "all of a's writes at c",
      );
      assert.ok(
        (await metric(c, 'gossip_deltas_applied_total')) > relayedBefore,
        'some arrived by gossip through b (not only by anti-entropy)',
      );
      assert.ok((await metric(a, 'gossip_deltas_published_total')) > 0, 'a published on gossip: c is out of reach');
    } finally {
      events.close();
    }
  });

  it('nodes of two meshes that connect never exchange a record', async () => {
    const red = await new MeshProcess({ name: 'red', extraArgs: ['--mesh', 'red'] }).start();
    nodes.push(red);
    const red2 = await new MeshProcess({ name: 'red2', join: [red.addr], extraArgs: ['--mesh', 'red'] }).start();
    nodes.push(red2);
    const blue = await new MeshProcess({ name: 'blue', join: [red.addr], extraArgs: ['--mesh', 'blue'] }).start();
    nodes.push(blue);
    assert.equal((await red.call('PUT', '/v1/agents/red-agent', { name: 'r', type: 'x' })).status, 200);
    assert.equal((await blue.call('PUT', '/v1/agents/blue-agent', { name: 'b', type: 'x' })).status, 200);
    // Within one mesh records flow ...
    await waitFor(async () => (await red2.call('GET', '/v1/agents/red-agent')).status === 200, 20_000, 'red2 <- red');
    // ... and across meshes the connection exists but every exchange is refused at negotiation:
    // wait until both sides have tried (push streams refused, sync sessions failed) ...
    await waitFor(async () => (await metric(blue, 'push_peers_unsupported_total')) >= 1, 20_000, 'blue tried red');
    await waitFor(async () => (await metric(red, 'push_peers_unsupported_total')) >= 1, 20_000, 'red tried blue');
    await waitFor(
      async () =>
        (await metric(blue, 'sync_peers_unsupported_total')) + (await metric(red, 'sync_peers_unsupported_total')) >= 1,
      20_000,
      'a sync session between red and blue, refused',
    );
    // ... then nothing of the other mesh is there: no agent, no node record.
    assert.equal((await red.call('GET', '/v1/agents/blue-agent')).status, 404);
    assert.equal((await red2.call('GET', '/v1/agents/blue-agent')).status, 404);
    assert.equal((await blue.call('GET', '/v1/agents/red-agent')).status, 404);
    const bluePeers = await blue.get<Array<{ id: string; name: string | null }>>('/v1/peers');
    assert.ok(
      bluePeers.every((p) => p.name === null),
      `blue learned no node record of red: ${JSON.stringify(bluePeers)}`,
    );
    assert.equal(await metric(blue, 'replica_deltas_applied_total'), 0);
    assert.equal(await metric(blue, 'replica_records_merged_total'), 0);
  });
});
