/**
 * The mesh benchmark: real node processes on 127.0.0.1 (convergence latency, sustained
 * throughput, catch-up and restart with 100k records) and an in-process pair of libp2p hosts
 * (bytes to reconcile d differences, strategies side by side).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { httpApi } from '../src/api/service.js';
import { encode } from '../src/codec/index.js';
import { createHost, type MeshHost } from '../src/net/index.js';
import { MeshNode } from '../src/node/mesh-node.js';
import { meshSchemaFor } from '../src/node/schemas.js';
import { Replica } from '../src/replica/index.js';
import { DeltaLog, type StrategyChoice, SyncProtocol } from '../src/sync/index.js';
import { taskSchema } from '../src/tasks/task-schema.js';
import { initialRun, SPEC_DEFAULTS } from '../src/tasks/tasks.js';
import { MeshProcess, startMesh, waitFor } from '../test/helpers/mesh-process.js';
import { median, percentile, round, type Row, untilAllApplied } from './util.js';

/** Follows a node's event stream and resolves waiters when an agent id shows up. */
class EventWatcher {
  private readonly seen = new Map<string, number>();
  private readonly waiters = new Map<string, (t: number) => void>();
  private readonly abort = new AbortController();

  constructor(private readonly api: string) {}

  async start(): Promise<void> {
    const res = await fetch(`${this.api}/v1/events?kind=agent`, { signal: this.abort.signal });
    if (!res.body) throw new Error('no event stream');
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    void (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          const now = performance.now();
          buf += decoder.decode(value, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (!line.startsWith('data: ')) continue;
            const id = (JSON.parse(line.slice(6)) as { id: string }).id;
            if (!this.seen.has(id)) {
              this.seen.set(id, now);
              this.waiters.get(id)?.(now);
            }
          }
        }
      } catch {
        // aborted
      }
    })();
  }

  arrival(id: string): Promise<number> {
    const t = this.seen.get(id);
    if (t !== undefined) return Promise.resolve(t);
    return new Promise((res) => this.waiters.set(id, res));
  }

  stop(): void {
    this.abort.abort();
  }
}

async function latency(n: number, samples: number): Promise<Row> {
  const nodes = await startMesh(n);
  try {
    await waitFor(
      async () =>
        (await Promise.all(nodes.map((x) => x.get<{ peers: { connected: number } }>('/v1/status')))).every(
          (s) => s.peers.connected >= Math.min(n - 1, 4),
        ),
      30_000,
      'connections',
    );
    const watchers = nodes.map((x) => new EventWatcher(x.api));
    await Promise.all(watchers.map((w) => w.start()));
    const all: number[] = [];
    const acked: number[] = [];
    const replication: number[] = [];
    for (let i = -20; i < samples; i++) {
      const writer = nodes[(i + 20) % n] as MeshProcess;
      const id = `lat-${n}-${i + 20}`;
      const arrivals = watchers.map((w) => w.arrival(id));
      const t0 = performance.now();
      const r = await writer.call('PUT', `/v1/agents/${id}`, { name: id, type: 'bench' });
      const tAck = performance.now();
      if (r.status !== 200) throw new Error(`write failed: ${r.status}`);
      const times = await Promise.all(arrivals);
      if (i >= 0) {
        all.push(Math.max(...times) - t0);
        acked.push(tAck - t0);
        const w = (i + 20) % n;
        const local = times[w] as number;
        replication.push(Math.max(...times) - local);
      }
      await new Promise((res) => setTimeout(res, 20));
    }
    for (const w of watchers) w.stop();
    return {
      bench: `convergence latency N=${n}`,
      samples,
      'client->all p50 ms': round(median(all)),
      'client->all p99 ms': round(percentile(all, 99)),
      'local apply->all p50 ms': round(median(replication)),
      'local apply->all p99 ms': round(percentile(replication, 99)),
      'client ack (durable) p50 ms': round(median(acked)),
      target: n === 5 ? 'p50 <= 5, p99 <= 25' : n === 10 ? 'p99 <= 50' : '-',
    };
  } finally {
    await Promise.all(nodes.map((x) => x.dispose()));
  }
}

async function throughput(n: number, perNode: number): Promise<Row> {
  const nodes = await startMesh(n);
  try {
    await waitFor(
      async () =>
        (await Promise.all(nodes.map((x) => x.get<{ peers: { connected: number } }>('/v1/status')))).every(
          (s) => s.peers.connected >= n - 1,
        ),
      30_000,
      'full connectivity',
    );
    // Register the agents first so the timed part is pure updates.
    await Promise.all(
      nodes.map((x) => x.call('POST', '/v1/admin/load', { count: 1, agents: 200, concurrency: 1 }, 60_000)),
    );
    const t0 = performance.now();
    const loads = await Promise.all(
      nodes.map((x) =>
        x.call<{ count: number; ms: number }>('POST', '/v1/admin/load', {
          count: perNode,
          agents: 200,
          concurrency: 512,
        }),
      ),
    );
    const localDone = performance.now();
    await untilAllApplied(nodes, 120_000);
    const total = n * perNode;
    const ms = performance.now() - t0;
    return {
      bench: `sustained replicated updates N=${n}`,
      samples: total,
      'updates/s (applied at all nodes)': Math.round(total / (ms / 1000)),
      'local write phase ms (median node)': round(median(loads.map((l) => l.body.ms))),
      'ms until all nodes caught up': round(ms),
      'lag after last local write ms': round(ms - (localDone - t0)),
      target: '>= 10k/s',
    };
  } finally {
    await Promise.all(nodes.map((x) => x.dispose()));
  }
}

// --- bytes to reconcile ---------------------------------------------------------------------------

function makeBase(n: number): { base: Array<[string, Uint8Array]>; gen: Replica } {
  const gen = new Replica({
    nodeId: 'node-generator-00000000000000000000000000000000000000',
    schemaFor: meshSchemaFor,
  });
  const s = taskSchema.fields;
  for (let i = 0; i < n; i++) {
    gen.mutate(`task/${i.toString(36).padStart(8, '0')}`, () => {
      const t = gen.clock.now();
      const w = gen.nodeId;
      return taskSchema.delta({
        spec: s.spec.set(
          {
            type: 'summarize',
            title: `Summarize document ${i}`,
            payload: { doc: `s3://bucket/docs/${i}.pdf`, pages: i % 40 },
            capabilities: ['summarize'],
            priority: i % 10,
            deadline: null,
            maxRetries: 3,
            parent: null,
            dependencies: [],
            ...SPEC_DEFAULTS,
            retry: { ...SPEC_DEFAULTS.retry },
            creator: w,
            createdAt: 1_763_700_000_000 + i,
            createdTs: t,
          },
          t,
          w,
        ),
        run: s.run.set(initialRun(1_763_700_000_000 + i), t, w),
      });
    });
  }
  return { base: [...gen.keys()].map((k) => [k, gen.encodeRecord(k)]), gen };
}

async function reconcile(n: number, ds: number[]): Promise<Row[]> {
  const { base, gen } = makeBase(n);
  const hostA = await createHost({ listen: ['/ip4/127.0.0.1/tcp/0'] });
  const hostB = await createHost({ listen: ['/ip4/127.0.0.1/tcp/0'] });
  const rows: Row[] = [];
  try {
    await hostB.dial(hostA.multiaddrs()[0] as string);
    const fullBaseline = fullTransferBytes(base);
    for (const d of ds) {
      const byStrategy: Record<string, Row> = {};
      for (const strategy of ['merkle', 'bloom', 'adaptive'] as const) {
        const r = await reconcileOnce(hostA, hostB, base, gen, d, strategy);
        byStrategy[strategy] = r;
      }
      const lower = byStrategy.merkle?.lowerBound as number;
      for (const [strategy, r] of Object.entries(byStrategy)) {
        rows.push({
          bench: `reconcile n=${n} d=${d}`,
          strategy: strategy === 'adaptive' ? `adaptive (${r.chose as string})` : strategy,
          bytes: r.bytes as number,
          'lower bound bytes': lower,
          'x lower bound': round((r.bytes as number) / lower, 2),
          'payload bytes': r.payload as number,
          'id bits/diff': round((((r.bytes as number) - (r.payload as number)) * 8) / d, 1),
          rounds: r.rounds as number,
          ms: r.ms as number,
        });
      }
      rows.push({
        bench: `reconcile n=${n} d=${d}`,
        strategy: 'full-state transfer',
        bytes: fullBaseline,
        'lower bound bytes': lower,
        'x lower bound': round(fullBaseline / lower, 2),
        'payload bytes': fullBaseline,
        'id bits/diff': 0,
        rounds: 1,
        ms: null,
      });
    }
  } finally {
    await hostA.stop();
    await hostB.stop();
  }
  return rows;
}

function fullTransferBytes(base: Array<[string, Uint8Array]>): number {
  let bytes = 0;
  for (let i = 0; i < base.length; i += 1000)
    bytes += encode({ t: 'recs', recs: base.slice(i, i + 1000), more: true }).length;
  return bytes;
}

async function reconcileOnce(
  hostA: MeshHost,
  hostB: MeshHost,
  base: Array<[string, Uint8Array]>,
  gen: Replica,
  d: number,
  strategy: StrategyChoice,
): Promise<Row> {
  const a = new Replica({ nodeId: 'node-a', schemaFor: meshSchemaFor });
  const b = new Replica({ nodeId: 'node-b', schemaFor: meshSchemaFor });
  a.load(base, gen.dots);
  b.load(base, gen.dots);
  // d updates on a, to d distinct records (progress of a running task).
  const step = Math.floor(base.length / d);
  let lowerBound = 0;
  // As on a live node, a's own recent deltas are in its delta log (gossip puts them there).
  const logA = new DeltaLog(50_000);
  for (let i = 0; i < d; i++) {
    const key = (base[i * step] as [string, Uint8Array])[0];
    const delta = a.mutate(key, (cur) =>
      taskSchema.delta({
        run: taskSchema.fields.run.set(
          { ...(taskSchema.get(cur, 'run')?.v ?? initialRun(0)), progress: 50 },
          a.clock.now(),
          a.nodeId,
        ),
      }),
    );
    logA.add(delta.origin, delta.seq, a.deltaToWire(delta));
    lowerBound += a.encodeRecord(key).length;
  }
  a.merkle();
  b.merkle();
  const pa = new SyncProtocol({ replica: a, host: hostA, deltaLog: logA });
  const pb = new SyncProtocol({ replica: b, host: hostB, deltaLog: new DeltaLog(50_000) });
  await pa.start();
  await pb.start();
  try {
    const report = await pb.syncWith(hostA.peerId, { strategy });
    if (a.merkle().rootHex() !== b.merkle().rootHex())
      throw new Error(`${strategy} d=${d}: replicas differ after sync`);
    return {
      bytes: report.bytesSent + report.bytesReceived,
      payload: report.payloadBytes,
      lowerBound,
      rounds: report.rounds,
      chose: report.strategy,
      ms: round(report.durationMs),
    };
  } finally {
    await pa.stop();
    await pb.stop();
  }
}

// --- catch-up and restart -----------------------------------------------------------------------

async function catchUp(n: number): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-bench-'));
  try {
    const node = await MeshNode.start({
      dataDir: dir,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      services: [httpApi({ host: '127.0.0.1', port: 0 })],
    });
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < n) {
        const i = next++;
        await node.tasks.create({ id: `t${i}`, type: 'summarize', title: `Summarize document ${i}`, payload: { i } });
      }
    };
    await Promise.all(Array.from({ length: 256 }, worker));
    await node.stop();

    const inProcess: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const again = await MeshNode.start({
        dataDir: dir,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        services: [httpApi({ host: '127.0.0.1', port: 0 })],
      });
      again.replica.merkle();
      inProcess.push(performance.now() - t0);
      await again.stop();
    }

    const t0 = performance.now();
    const a = await new MeshProcess({ dataDir: dir, readyTimeoutMs: 60_000 }).start();
    const ready = performance.now() - t0;
    const keys = (await a.get<{ keys: number }>('/v1/status')).keys;
    const firstStatus = performance.now() - t0;
    try {
      const t1 = performance.now();
      const b = await new MeshProcess({ join: [a.addr], readyTimeoutMs: 60_000 }).start();
      const bReady = performance.now() - t1;
      try {
        await waitFor(
          async () => (await b.get<{ keys: number }>('/v1/status')).keys >= keys + 1,
          120_000,
          'catch-up',
          20,
        );
        const caughtUp = performance.now() - t1;
        return [
          {
            bench: `new node catching up ${n} records`,
            'ms from spawn': round(caughtUp),
            'ms from ready': round(caughtUp - bReady),
            target: '<= 3000 ms',
          },
          {
            bench: `restart recovering ${n} records`,
            'ms to ready (process spawn -> API up)': round(ready),
            'ms to first status (Merkle root built)': round(firstStatus),
            'ms in-process start + Merkle (median of 3)': round(median(inProcess)),
            target: '<= 1000 ms',
          },
        ];
      } finally {
        await b.dispose();
      }
    } finally {
      await a.kill('SIGTERM');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchMesh(): Promise<Row[]> {
  const only = process.env.MESH_BENCH_ONLY?.split(',');
  const want = (k: string): boolean => only === undefined || only.includes(k);
  const rows: Row[] = [];
  // Progress on stderr, so a late failure does not hide what was measured before it.
  const add = (...rs: Row[]): void => {
    for (const r of rs) process.stderr.write(`${JSON.stringify(r)}\n`);
    rows.push(...rs);
  };
  if (want('latency'))
    for (const n of (process.env.MESH_BENCH_N ?? '3,5,10').split(',').map(Number)) add(await latency(n, 200));
  if (want('throughput')) add(await throughput(5, 20_000));
  if (want('reconcile')) add(...(await reconcile(100_000, [10, 100, 1000, 10_000])));
  if (want('catchup')) add(...(await catchUp(100_000)));
  return rows;
}
