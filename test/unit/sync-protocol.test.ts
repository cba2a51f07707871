import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { encode } from '../../src/codec/index.js';
import { DotSet } from '../../src/crdt/index.js';
import { createHost, type MeshHost } from '../../src/net/index.js';
import { meshSchemaFor } from '../../src/node/schemas.js';
import { Replica } from '../../src/replica/index.js';
import { DeltaLog, SYNC_PROTOCOL, type StrategyChoice, SyncProtocol } from '../../src/sync/index.js';
import { taskSchema } from '../../src/tasks/task-schema.js';
import { initialRun, SPEC_DEFAULTS } from '../../src/tasks/tasks.js';

function task(r: Replica, i: number, result?: unknown) {
  return r.mutate(`task/t${i}`, (cur) => {
    const t = r.clock.now();
    const w = r.nodeId;
    const s = taskSchema.fields;
    if (result !== undefined) {
      const run = taskSchema.get(cur, 'run')?.v ?? initialRun(0);
      return taskSchema.delta({ run: s.run.set({ ...run, result }, t, w) });
    }
    return taskSchema.delta({
      spec: s.spec.set(
        {
          type: 'x',
          title: `t${i}`,
          payload: { i },
          capabilities: [],
          priority: 5,
          deadline: null,
          maxRetries: 3,
          parent: null,
          dependencies: [],
          ...SPEC_DEFAULTS,
          retry: { ...SPEC_DEFAULTS.retry },
          creator: w,
          createdAt: 1_700_000_000_000 + i,
          createdTs: t,
        },
        t,
        w,
      ),
      run: s.run.set(initialRun(1_700_000_000_000 + i), t, w),
    });
  });
}

describe('sync protocol', { timeout: 60_000 }, () => {
  let hostA: MeshHost;
  let hostB: MeshHost;
  before(async () => {
    hostA = await createHost({ listen: ['/ip4/127.0.0.1/tcp/0'] });
    hostB = await createHost({ listen: ['/ip4/127.0.0.1/tcp/0'] });
    await hostB.dial(hostA.multiaddrs()[0] as string);
    // The dialler knows of the connection first; A must see it too before it can open a session
    // to B (B's listen address is unknown to A).
    const deadline = Date.now() + 5_000;
    while (!hostA.connectedPeers().includes(hostB.peerId)) {
      assert.ok(Date.now() < deadline, 'A to see the connection from B');
      await new Promise((r) => setTimeout(r, 10));
    }
  });
  after(async () => {
    await hostA?.stop();
    await hostB?.stop();
  });

  async function pair(logA = new DeltaLog()) {
    const a = new Replica({ nodeId: hostA.peerId, schemaFor: meshSchemaFor });
    const b = new Replica({ nodeId: hostB.peerId, schemaFor: meshSchemaFor });
    const pa = new SyncProtocol({ replica: a, host: hostA, deltaLog: logA });
    const pb = new SyncProtocol({ replica: b, host: hostB, deltaLog: new DeltaLog() });
    await pa.start();
    await pb.start();
    return { a, b, pa, pb, stop: async () => Promise.all([pa.stop(), pb.stop()]) };
  }

  for (const strategy of ['merkle', 'bloom', 'adaptive'] as StrategyChoice[]) {
    it(`${strategy}: two divergent replicas end with equal records`, async () => {
      const { a, b, pb, stop } = await pair();
      try {
        for (let i = 0; i < 300; i++) task(a, i);
        for (let i = 200; i < 400; i++) task(b, i);
        for (let i = 0; i < 50; i++) task(a, i, { done: i });
        const report = await pb.syncWith(hostA.peerId, { strategy });
        assert.equal(a.merkle().rootHex(), b.merkle().rootHex(), `${strategy} left the replicas different`);
        assert.equal(a.size, 400);
        assert.ok(report.bytesSent + report.bytesReceived > 0);
      } finally {
        await stop();
      }
    });
  }

  it('gap repair whose deltas exceed one frame falls back to Merkle and still converges', async () => {
    const logA = new DeltaLog();
    const { a, b, pb, stop } = await pair(logA);
    try {
      for (let i = 0; i < 80; i++) task(a, i);
      await pb.syncWith(hostA.peerId);
      // 80 results of ~60 KiB: the missing deltas are far more than one 4 MiB frame.
      for (let i = 0; i < 80; i++) {
        const d = task(a, i, randomBytes(45_000).toString('base64')); // incompressible: lz4 cannot shrink the frame
        logA.add(d.origin, d.seq, a.deltaToWire(d));
      }
      const report = await pb.syncWith(hostA.peerId);
      assert.equal(report.strategy, 'gaps', 'few missing dots: gap repair is tried first');
      assert.equal(a.merkle().rootHex(), b.merkle().rootHex());
    } finally {
      await stop();
    }
  });

  it('a hello claiming absurd seqs neither hangs the node nor rewrites its own dots', async () => {
    const { b, stop } = await pair();
    try {
      task(b, 1);
      const before = b.nextSeq;
      const session = await hostA.openSession(hostB.peerId, SYNC_PROTOCOL);
      const lie = [
        [hostB.peerId, 1e15, []],
        ['someone-else', 0, [1e15]],
      ].sort((x, y) => ((x[0] as string) < (y[0] as string) ? -1 : 1));
      // Every wait below is bounded by the session's operation timeout and the test's timeout;
      // nothing is asserted about how long anything took.
      await session.send(encode({ t: 'hello', v: 1, dots: lie, root: new Uint8Array(16), count: 0, depth: 4 }));
      await session.receive();
      await session.send(encode({ t: 'done', complete: true }));
      // The responder closes its side once it has handled `done` (where it observes our dots).
      assert.equal(await session.receiveOrEnd(), undefined, 'the responder finished the session');
      await session.close();
      assert.equal(b.nextSeq, before, 'claims about our own origin are ignored');
      // The ranges a node would request for such a claim are computed without walking them: a
      // walk over 1e15 seqs would never return. They are exactly the two claimed spans.
      const ranges = new DotSet().missingRanges(DotSet.fromWire(lie), 10);
      assert.deepEqual(
        ranges.sort((x, y) => (x[0] < y[0] ? -1 : 1)),
        [
          [hostB.peerId, 1, 1e15],
          ['someone-else', 1e15, 1e15],
        ].sort((x, y) => ((x[0] as string) < (y[0] as string) ? -1 : 1)),
      );
    } finally {
      await stop();
    }
  });
});
