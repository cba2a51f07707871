/**
 * Network latency of the libp2p layer between hosts on 127.0.0.1:
 *  - gossip publish -> receive (signed, StrictSign) first-hand, through one relay, and fan-out to 4 peers;
 *  - framed-session request/response round trip on one open stream, and open + 1 RTT + close;
 *  - time for a 5-node gossip mesh to form, per heartbeat interval.
 * "in-process" hosts share one event loop (every node's CPU work is serialised: an upper bound);
 * "threads" runs each host in its own worker thread (own event loop, like separate processes).
 * Standalone: `npx node --import tsx bench/net-latency.ts`.
 */
import { pathToFileURL } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { createHost, type HostOptions, type MeshHost } from '../src/net/host.js';
import { PUBSUB_DEFAULTS, type PubsubOptions } from '../src/net/pubsub.js';

// Self-contained statistics (same definitions as bench/util.ts).
type Row = Record<string, string | number | boolean | null>;
const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const median = (xs: number[]): number => percentile(xs, 50);
function percentile(xs: number[], p: number): number {
  const s = sorted(xs);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}
const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;

const LISTEN = ['/ip4/127.0.0.1/tcp/0'];
const PROTO = '/agentmesh/bench-echo/1.0.0';

async function startMesh(n: number, full: boolean, pubsub: PubsubOptions = {}): Promise<MeshHost[]> {
  const first = await createHost({ listen: LISTEN, pubsub });
  const hosts = [first];
  for (let i = 1; i < n; i++) {
    const opts: HostOptions = { listen: LISTEN, pubsub, bootstrap: first.multiaddrs() };
    hosts.push(await createHost(opts));
  }
  if (full) {
    for (const h of hosts) {
      for (const o of hosts) if (o !== h) await h.addKnownAddresses(o.peerId, o.multiaddrs());
    }
  }
  return hosts;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function meshReady(hosts: MeshHost[], topic: string, degree: number, ms = 10_000): Promise<number> {
  const t0 = performance.now();
  await until(
    () => hosts.every((h) => h.pubsub.meshPeers(topic).length >= Math.min(degree, hosts.length - 1)),
    ms,
    'gossip mesh',
  );
  return performance.now() - t0;
}

/** Publish `count` messages one at a time from `from`; per message, latency until each receiver has it. */
async function gossipLatency(
  from: MeshHost,
  receivers: MeshHost[],
  topic: string,
  count: number,
  size: number,
): Promise<{ each: number[]; last: number[]; cpuMsPerMsg: number }> {
  const each: number[] = [];
  const last: number[] = [];
  let sentAt = 0;
  let pending = 0;
  let resolveAll: (() => void) | undefined;
  let lastAt = 0;
  const offs = receivers.map((r) =>
    r.pubsub.subscribe(topic, () => {
      const now = performance.now();
      each.push(now - sentAt);
      lastAt = now;
      if (--pending === 0) resolveAll?.();
    }),
  );
  const payload = new Uint8Array(size).fill(7);
  let cpu0 = process.cpuUsage();
  for (let i = -20; i < count; i++) {
    if (i === 0) cpu0 = process.cpuUsage();
    const done = new Promise<void>((r) => (resolveAll = r));
    pending = receivers.length;
    sentAt = performance.now();
    await from.pubsub.publish(topic, payload);
    await Promise.race([
      done,
      new Promise((_, rej) => setTimeout(() => rej(new Error('gossip message lost')), 5_000).unref()),
    ]);
    if (i < 0)
      each.length = 0; // warm-up
    else last.push(lastAt - sentAt);
  }
  const cpu = process.cpuUsage(cpu0);
  offs.forEach((off) => off());
  return { each, last, cpuMsPerMsg: (cpu.user + cpu.system) / 1000 / count };
}

function row(name: string, xs: number[], extra: Row = {}): Row {
  return {
    case: name,
    n: xs.length,
    p50_ms: round(median(xs), 3),
    p99_ms: round(percentile(xs, 99), 3),
    max_ms: round(Math.max(...xs), 3),
    ...extra,
  };
}

export async function benchNet(opts: { messages?: number; rtts?: number } = {}): Promise<Row[]> {
  const messages = opts.messages ?? 500;
  const rtts = opts.rtts ?? 2000;
  const rows: Row[] = [];

  // 1. Two hosts: first-hand gossip and stream round trips.
  {
    const hosts = await startMesh(2, false);
    try {
      const [a, b] = hosts as [MeshHost, MeshHost];
      a.pubsub.subscribe('bench', () => {});
      b.pubsub.subscribe('bench', () => {});
      await meshReady(hosts, 'bench', 1);
      const g = await gossipLatency(a, [b], 'bench', messages, 256);
      rows.push(row('gossip 2 nodes, 256 B, direct', g.each, { cpu_ms_per_msg: round(g.cpuMsPerMsg, 3) }));

      await b.handle(PROTO, async (s) => {
        for (let f = await s.receiveOrEnd(); f !== undefined; f = await s.receiveOrEnd()) await s.send(f);
      });
      const s = await a.openSession(b.peerId, PROTO);
      const frame = new Uint8Array(128).fill(1);
      const rtt: number[] = [];
      for (let i = -50; i < rtts; i++) {
        const t0 = performance.now();
        await s.request(frame);
        if (i >= 0) rtt.push(performance.now() - t0);
      }
      await s.close();
      rows.push(row('stream RTT, open session, 128 B', rtt));

      const big = new Uint8Array(64 * 1024).fill(2);
      const bigRtt: number[] = [];
      const s2 = await a.openSession(b.peerId, PROTO);
      for (let i = -10; i < 300; i++) {
        const t0 = performance.now();
        await s2.request(big);
        if (i >= 0) bigRtt.push(performance.now() - t0);
      }
      await s2.close();
      rows.push(row('stream RTT, open session, 64 KiB', bigRtt));

      const openRtt: number[] = [];
      for (let i = -10; i < 300; i++) {
        const t0 = performance.now();
        const x = await a.openSession(b.peerId, PROTO);
        await x.request(frame);
        await x.close();
        if (i >= 0) openRtt.push(performance.now() - t0);
      }
      rows.push(row('stream open + 1 RTT + close, 128 B', openRtt));
    } finally {
      await Promise.all(hosts.map((h) => h.stop()));
    }
  }

  // 2. Star of three (B, C bootstrap to A): C -> B goes through A.
  {
    const hosts = await startMesh(3, false);
    try {
      const [, b, c] = hosts as [MeshHost, MeshHost, MeshHost];
      for (const h of hosts) h.pubsub.subscribe('bench', () => {});
      await meshReady(hosts, 'bench', 1);
      const g = await gossipLatency(c, [b], 'bench', messages, 256);
      rows.push(row('gossip 3 nodes (star), 256 B, 1 relay hop', g.each, { cpu_ms_per_msg: round(g.cpuMsPerMsg, 3) }));
    } finally {
      await Promise.all(hosts.map((h) => h.stop()));
    }
  }

  // 3. Five nodes, full mesh, each in its own thread.
  rows.push(...(await threadedGossip(5, messages, 1024)));

  // 4. Five nodes in one event loop, full mesh; one publisher, four receivers; per heartbeat setting.
  for (const heartbeatIntervalMs of [250, 1000]) {
    const hosts = await startMesh(5, true, { heartbeatIntervalMs });
    try {
      for (const h of hosts) h.pubsub.subscribe('bench', () => {});
      // Formed = every host holds at least the low watermark of mesh peers (above it gossipsub stops grafting).
      const formed = await meshReady(hosts, 'bench', PUBSUB_DEFAULTS.Dlo);
      const [a, ...rest] = hosts as [MeshHost, ...MeshHost[]];
      const g = await gossipLatency(a, rest, 'bench', messages, 1024);
      const extra = {
        heartbeat_ms: heartbeatIntervalMs,
        mesh_formed_ms: Math.round(formed),
        cpu_ms_per_msg: round(g.cpuMsPerMsg, 3),
      };
      rows.push(row('gossip 5 nodes in-process, 1 KiB, each receiver', g.each, extra));
      rows.push(row('gossip 5 nodes in-process, 1 KiB, last of 4 receivers', g.last, extra));
    } finally {
      await Promise.all(hosts.map((h) => h.stop()));
    }
  }
  return rows;
}

// ---- worker-thread hosts -------------------------------------------------------------------------

type ToWorker =
  | { type: 'connect'; peers: Array<{ id: string; addrs: string[] }> }
  | { type: 'mesh' }
  | { type: 'publish'; seq: number; size: number }
  | { type: 'stop' };
type FromWorker =
  | { type: 'ready'; peerId: string; addrs: string[] }
  | { type: 'mesh'; size: number }
  | { type: 'sent'; seq: number; at: number }
  | { type: 'recv'; seq: number; at: number }
  | { type: 'stopped' };

const WORKER_ROLE = 'agentmesh-net-bench-host';
const now = (): number => performance.timeOrigin + performance.now();

async function workerMain(port: NonNullable<typeof parentPort>, data: { bootstrap: string[] }): Promise<void> {
  const host = await createHost({ listen: LISTEN, bootstrap: data.bootstrap });
  const post = (m: FromWorker): void => port.postMessage(m);
  host.pubsub.subscribe('bench', (m) => {
    const at = now();
    post({ type: 'recv', seq: new DataView(m.data.buffer, m.data.byteOffset).getUint32(0), at });
  });
  port.on('message', (m: ToWorker) => {
    void (async () => {
      if (m.type === 'connect') {
        for (const p of m.peers) if (p.id !== host.peerId) await host.addKnownAddresses(p.id, p.addrs);
      } else if (m.type === 'mesh') {
        post({ type: 'mesh', size: host.pubsub.meshPeers('bench').length });
      } else if (m.type === 'publish') {
        const payload = new Uint8Array(m.size);
        new DataView(payload.buffer).setUint32(0, m.seq);
        const at = now();
        await host.pubsub.publish('bench', payload);
        post({ type: 'sent', seq: m.seq, at });
      } else {
        await host.stop();
        post({ type: 'stopped' });
        port.close();
      }
    })();
  });
  post({ type: 'ready', peerId: host.peerId, addrs: host.multiaddrs() });
}

class HostThread {
  readonly worker: Worker;
  readonly #waiters: Array<{ type: string; resolve: (m: FromWorker) => void }> = [];
  onRecv: (seq: number, at: number) => void = () => {};
  onSent: (seq: number, at: number) => void = () => {};

  constructor(bootstrap: string[]) {
    this.worker = new Worker(new URL(import.meta.url), { workerData: { role: WORKER_ROLE, bootstrap } });
    this.worker.on('message', (m: FromWorker) => {
      if (m.type === 'recv') this.onRecv(m.seq, m.at);
      else if (m.type === 'sent') this.onSent(m.seq, m.at);
      const i = this.#waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.#waiters.splice(i, 1)[0]?.resolve(m);
    });
  }

  next<T extends FromWorker['type']>(type: T): Promise<Extract<FromWorker, { type: T }>> {
    return new Promise((resolve) => this.#waiters.push({ type, resolve: resolve as (m: FromWorker) => void }));
  }

  send(m: ToWorker): void {
    this.worker.postMessage(m);
  }
}

async function threadedGossip(n: number, count: number, size: number): Promise<Row[]> {
  const threads: HostThread[] = [];
  try {
    const first = new HostThread([]);
    threads.push(first);
    const firstReady = await first.next('ready');
    const ready = [firstReady];
    for (let i = 1; i < n; i++) {
      const t = new HostThread(firstReady.addrs);
      threads.push(t);
      ready.push(await t.next('ready'));
    }
    const peers = ready.map((r) => ({ id: r.peerId, addrs: r.addrs }));
    for (const t of threads) t.send({ type: 'connect', peers });
    const deadline = performance.now() + 10_000;
    for (;;) {
      const sizes = await Promise.all(
        threads.map((t) => {
          const p = t.next('mesh');
          t.send({ type: 'mesh' });
          return p;
        }),
      );
      if (sizes.every((s) => s.size >= Math.min(PUBSUB_DEFAULTS.Dlo, n - 1))) break;
      if (performance.now() > deadline) throw new Error('threaded mesh did not form');
      await new Promise((r) => setTimeout(r, 20));
    }
    const each: number[] = [];
    const last: number[] = [];
    const publisher = threads[0] as HostThread;
    for (let seq = 0; seq < count + 20; seq++) {
      let sentAt = 0;
      const recvAt: number[] = [];
      const all = new Promise<void>((resolve) => {
        for (const t of threads.slice(1)) {
          t.onRecv = (s, at) => {
            if (s !== seq) return;
            recvAt.push(at);
            if (recvAt.length === n - 1) resolve();
          };
        }
      });
      const sent = new Promise<void>((resolve) => {
        publisher.onSent = (s, at) => {
          if (s === seq) {
            sentAt = at;
            resolve();
          }
        };
      });
      publisher.send({ type: 'publish', seq, size });
      await Promise.race([
        Promise.all([all, sent]),
        new Promise((_, rej) => setTimeout(() => rej(new Error('threaded gossip message lost')), 5_000).unref()),
      ]);
      if (seq < 20) continue; // warm-up
      for (const at of recvAt) each.push(at - sentAt);
      last.push(Math.max(...recvAt) - sentAt);
    }
    return [
      row(`gossip ${n} nodes threads, ${size} B, each receiver`, each),
      row(`gossip ${n} nodes threads, ${size} B, last of ${n - 1} receivers`, last),
    ];
  } finally {
    await Promise.all(
      threads.map(async (t) => {
        const stopped = t.next('stopped');
        t.send({ type: 'stop' });
        await Promise.race([stopped, new Promise((r) => setTimeout(r, 3_000).unref())]);
        await t.worker.terminate();
      }),
    );
  }
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === WORKER_ROLE && parentPort !== null) {
  await workerMain(parentPort, workerData as { bootstrap: string[] });
} else if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.table(await benchNet());
}
