/**
 * `npm run bench -- api`: the mesh measured the way users drive it. N node processes started
 * through the CLI on 127.0.0.1; writer processes outside the nodes write agents (PUT with a
 * ~200-byte meta), task creations and task transitions through the HTTP API, spread over every
 * node; one watcher process per node follows that node's `GET /v1/events`. A write counts as
 * applied at a node when its event arrives at that node's watcher; all processes stamp with one
 * clock (api-workload.ts `now()`), so write -> event latency is the watcher's arrival time minus
 * the writer's send time. Node CPU comes from /proc/<pid>/stat over each measured window.
 *
 * The brokered reference runs in the same suite: NATS JetStream KV (Debian's nats-server, one
 * process, installed by scripts/install-bench-deps.sh), the same values put under the same keys
 * by the same writers, one `kv.watch()` per mesh node in its own watcher process.
 *
 * Knobs (environment): MESH_BENCH_N (node counts, default 3,5,10), MESH_BENCH_SECONDS (each
 * measured window, 20), MESH_BENCH_REPEATS (closed-loop runs per row, median and spread, 3), MESH_BENCH_RATES (offered writes/s, 100,500,2000), MESH_BENCH_IN_FLIGHT
 * (closed loop, per node, 16), MESH_BENCH_WRITERS (writer processes, 2), MESH_BENCH_AGENT_POOL
 * (agents per node the mixed workload updates, 200), MESH_BENCH_BATCH_OPS (ops per batch, 100),
 * MESH_BENCH_BATCH_IN_FLIGHT (batches in flight per node, 2), MESH_BENCH_SCALE_AGENTS (10000),
 * MESH_BENCH_SCALE_N (5), MESH_BENCH_SCALE_SECONDS (30), MESH_BENCH_HEARTBEAT_MS (5000),
 * MESH_BENCH_CEILING_COUNT (internal ceiling updates per node, 20000), MESH_BENCH_SETTLE_MS
 * (longest wait for the watchers after the writers end, 30000), MESH_BENCH_ONLY (rows:
 * sustained,latency,batch,ceiling,scale), MESH_BENCH_BASELINE=0 (skip NATS).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeshProcess, type MeshProcessOptions, shutdownNodes, until } from '../test/helpers/mesh-process.js';
import { cpuMs, killAllChildren, LineChild } from './api-child.js';
import type { WriterConfig } from './api-writer.js';
import type { Arrivals, WatcherSummary, WriteRecord, WriterSummary } from './api-workload.js';
import { median, percentile, round, type Row, untilAllApplied } from './util.js';

const env = (k: string, d: string): string => process.env[`MESH_BENCH_${k}`] ?? d;
const NS = env('N', '3,5,10').split(',').map(Number);
const SECONDS = Number(env('SECONDS', '20'));
const REPEATS = Number(env('REPEATS', '3'));
const RATES = env('RATES', '100,500,2000').split(',').map(Number);
const IN_FLIGHT = Number(env('IN_FLIGHT', '16'));
const WRITERS = Number(env('WRITERS', '2'));
const AGENT_POOL = Number(env('AGENT_POOL', '200'));
const BATCH_OPS = Number(env('BATCH_OPS', '100'));
const BATCH_IN_FLIGHT = Number(env('BATCH_IN_FLIGHT', '2'));
const SCALE_AGENTS = Number(env('SCALE_AGENTS', '10000'));
const SCALE_N = Number(env('SCALE_N', '5'));
const SCALE_SECONDS = Number(env('SCALE_SECONDS', '30'));
const HEARTBEAT_MS = Number(env('HEARTBEAT_MS', '5000'));
const CEILING_COUNT = Number(env('CEILING_COUNT', '20000'));
const SETTLE_MS = Number(env('SETTLE_MS', '30000'));
const ONLY = process.env.MESH_BENCH_ONLY?.split(',');
const BASELINE = env('BASELINE', '1') !== '0';
/** A node's start (spawn to API up) on a machine shared with other work can take a while. */
const NODE_READY_MS = 60_000;
const want = (row: string): boolean => ONLY === undefined || ONLY.includes(row);

// --- the systems under test ------------------------------------------------------------------------

interface MeshSystem {
  target: 'mesh';
  n: number;
  nodes: MeshProcess[];
}
interface NatsSystem {
  target: 'nats';
  n: number;
  port: number;
  bucket: string;
  pid: number | undefined;
}
type System = MeshSystem | NatsSystem;

const pidsOf = (s: System): Array<number | undefined> => (s.target === 'mesh' ? s.nodes.map((x) => x.pid) : [s.pid]);

/** N nodes through the CLI, joined through the first; resolves once every node sees every other alive. */
async function startMesh(n: number, dir: string): Promise<MeshSystem> {
  const nodes: MeshProcess[] = [];
  // Data directories inside the suite's temp dir, so that even an interrupted run leaves none behind.
  const dataDir = (i: number): string => mkdtempSync(join(dir, `node${i}-`));
  // Pushed before start, so that a node that fails to come up is stopped with the others.
  const add = (o: MeshProcessOptions): Promise<MeshProcess> => {
    const node = new MeshProcess({ readyTimeoutMs: NODE_READY_MS, ...o });
    nodes.push(node);
    const t0 = performance.now();
    return node.start().then(
      (x) => {
        process.stderr.write(`api bench: node ${o.name} up in ${Math.round(performance.now() - t0)} ms\n`);
        return x;
      },
      (err: unknown) => {
        throw new Error(`${o.name} (of ${n}): ${(err as Error).message}`);
      },
    );
  };
  try {
    const first = await add({ name: 'api0', dataDir: dataDir(0) });
    for (let i = 1; i < n; i++) await add({ name: `api${i}`, dataDir: dataDir(i), join: [first.addr] });
    for (const node of nodes) {
      await until(
        () => node.get<{ peers: { alive: number } }>('/v1/status'),
        (s) => s.peers.alive >= n - 1,
        60_000,
        `${node.options.name} to see all ${n - 1} peers alive`,
      );
    }
    return { target: 'mesh', n, nodes };
  } catch (err) {
    await shutdownNodes(nodes);
    throw err;
  }
}

/** Stops the nodes (agents first, as the CLI does on SIGTERM) and deletes their data. */
async function stopMesh(sys: MeshSystem): Promise<void> {
  await shutdownNodes(sys.nodes);
  for (const x of sys.nodes) rmSync(x.dataDir, { recursive: true, force: true });
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

/** A throw-away nats-server with JetStream on a free port and a temp store; a reason string if none is installed. */
async function startNatsServer(dir: string): Promise<{ port: number; proc: ChildProcess; version: string } | string> {
  let version: string;
  try {
    version = execFileSync('nats-server', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'nats-server not installed: run scripts/install-bench-deps.sh (the NATS baseline rows are skipped)';
  }
  const port = await freePort();
  const store = join(dir, 'nats-store');
  mkdirSync(store, { recursive: true });
  const proc = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', store], { stdio: 'ignore' });
  await until(
    () =>
      new Promise<boolean>((res) => {
        const s = tcpConnect(port, '127.0.0.1', () => {
          s.destroy();
          res(true);
        });
        s.once('error', () => res(false));
      }),
    (ok) => ok,
    10_000,
    'nats-server up',
  );
  return { port, proc, version };
}

/** SIGTERM, then SIGKILL after a grace; resolves once the process has exited. */
async function stopProcess(proc: ChildProcess, graceMs = 5000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((res) => proc.once('exit', res));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/** A fresh KV bucket (history 1, file storage: the server's default) for one node count. */
async function natsBucket(port: number, bucket: string): Promise<void> {
  const { connect } = await import('@nats-io/transport-node');
  const { Kvm } = await import('@nats-io/kv');
  const nc = await connect({ servers: `127.0.0.1:${port}` });
  try {
    await new Kvm(nc).create(bucket, { history: 1 });
  } finally {
    await nc.close();
  }
}

// --- one measured window ---------------------------------------------------------------------------

interface LoadOptions {
  workload: WriterConfig['workload'];
  inFlight?: number;
  /** Mesh-wide offered writes per second (open loop). */
  rate?: number;
  durationMs: number;
  batchOps?: number;
  agentPrefix: string;
  agentsPerSlot: number;
  /** Whether to run watchers (not needed to set up agents). */
  watch: boolean;
}

interface LoadResult {
  acked: number;
  failed: number;
  notSent: number;
  /** Open loop: the most a write went out after its due time, ms (the writer process fell behind). */
  lateMs: number;
  errors: string[];
  batchMissing: boolean;
  /** Writer window: first send to last ack, ms. */
  start: number;
  end: number;
  /** Per acked write: send -> acknowledgement (ms). */
  acks: number[];
  /** Per acked write: time from send to its event at every node (ms); writes missing somewhere excluded. */
  all: number[];
  /** Per node: send -> event there (ms). */
  perNode: number[][];
  /** Per node: acked writes whose event never arrived there. */
  missingPerNode: number[];
  dropped: number;
  reconnects: number;
  /** When the last acked write had reached every node (`now()` clock). */
  lastAll: number;
  /** CPU ms per process of the system (nodes, or nats-server) over the window up to the watchers' settle. */
  cpu: number[];
  /** Window of the CPU measurement, ms. */
  cpuWindowMs: number;
}

let runSeq = 0;

async function load(sys: System, o: LoadOptions, dir: string): Promise<LoadResult> {
  const run = `r${++runSeq}`;
  const rdir = join(dir, run);
  mkdirSync(rdir, { recursive: true });
  const slots = Array.from({ length: sys.n }, (_, i) => ({
    index: i,
    ...(sys.target === 'mesh' ? { api: (sys.nodes[i] as MeshProcess).api } : {}),
  }));
  const nats = sys.target === 'nats' ? { natsPort: sys.port, bucket: sys.bucket } : {};
  const watchers: LineChild[] = [];
  const writers: LineChild[] = [];
  try {
    if (o.watch) {
      for (let i = 0; i < sys.n; i++) {
        watchers.push(
          new LineChild(
            'api-watcher.ts',
            { target: sys.target, api: slots[i]?.api, ...nats, out: join(rdir, `arrivals-${i}.json`) },
            `watcher ${i}`,
          ),
        );
      }
      await Promise.all(watchers.map((w) => w.ready()));
    }
    const w = Math.max(1, Math.min(WRITERS, sys.n));
    for (let k = 0; k < w; k++) {
      const mine = slots.filter((s) => s.index % w === k);
      const cfg: WriterConfig = {
        target: sys.target,
        slots: mine,
        ...nats,
        workload: o.workload,
        ...(o.inFlight !== undefined ? { inFlight: o.inFlight } : {}),
        ...(o.rate !== undefined ? { rate: (o.rate * mine.length) / sys.n } : {}),
        durationMs: o.durationMs,
        ...(o.batchOps !== undefined ? { batchOps: o.batchOps } : {}),
        agentPrefix: o.agentPrefix,
        agentsPerSlot: o.agentsPerSlot,
        taskPrefix: `${run}-t`,
        out: join(rdir, `writes-${k}.json`),
      };
      writers.push(new LineChild('api-writer.ts', cfg, `writer ${k}`));
    }
    await Promise.all(writers.map((x) => x.ready()));
    const pids = pidsOf(sys);
    const cpu0 = pids.map(cpuMs);
    const t0 = performance.now();
    for (const x of writers) x.send('go');
    const sums = await Promise.all(writers.map((x) => x.result<WriterSummary>(o.durationMs + 120_000)));
    const writes = writers.flatMap(
      (_, k) => JSON.parse(readFileSync(join(rdir, `writes-${k}.json`), 'utf8')) as WriteRecord[],
    );
    // What each watcher must see: every key's last acknowledged version.
    const expect: Record<string, number> = {};
    for (const [key, v, , , , ok] of writes) if (ok === 1 && v > (expect[key] ?? 0)) expect[key] = v;
    const expectFile = join(rdir, 'expect.json');
    writeFileSync(expectFile, JSON.stringify(expect));
    for (const x of watchers) x.send(`settle ${expectFile} ${SETTLE_MS}`);
    const wsums = await Promise.all(watchers.map((x) => x.result<WatcherSummary>(SETTLE_MS + 60_000)));
    const cpu1 = pids.map(cpuMs);
    const cpuWindowMs = performance.now() - t0;
    const arrivals = watchers.map(
      (_, i) => JSON.parse(readFileSync(join(rdir, `arrivals-${i}.json`), 'utf8')) as Arrivals,
    );
    const j = joinArrivals(writes, arrivals);
    return {
      acked: sums.reduce((a, s) => a + s.acked, 0),
      failed: sums.reduce((a, s) => a + s.failed, 0),
      notSent: sums.reduce((a, s) => a + s.notSent, 0),
      lateMs: Math.max(...sums.map((s) => s.lateMs)),
      errors: [...sums.flatMap((s) => s.errors), ...wsums.flatMap((s) => s.errors)].slice(0, 5),
      batchMissing: sums.some((s) => s.batchMissing === true),
      start: Math.min(...sums.map((s) => s.start)),
      end: Math.max(...sums.map((s) => s.end)),
      acks: writes.filter((w) => w[5] === 1).map((w) => w[3] - w[2]),
      ...j,
      dropped: wsums.reduce((a, s) => a + s.dropped, 0),
      reconnects: wsums.reduce((a, s) => a + s.reconnects, 0),
      cpu: cpu1.map((c, i) => c - (cpu0[i] as number)),
      cpuWindowMs,
    };
  } finally {
    await Promise.all([...writers, ...watchers].map((x) => x.stop()));
    rmSync(rdir, { recursive: true, force: true });
  }
}

/** The first arrival at or past version v (arrivals are in increasing version order). */
function arrivalOf(list: Array<[number, number]> | undefined, v: number): number | undefined {
  if (list === undefined) return undefined;
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((list[mid] as [number, number])[0] >= v) hi = mid;
    else lo = mid + 1;
  }
  return list[lo]?.[1];
}

function joinArrivals(
  writes: WriteRecord[],
  arrivals: Arrivals[],
): Pick<LoadResult, 'all' | 'perNode' | 'missingPerNode' | 'lastAll'> {
  const all: number[] = [];
  const perNode = arrivals.map(() => [] as number[]);
  const missingPerNode = arrivals.map(() => 0);
  let lastAll = 0;
  for (const [key, v, sent, , , ok] of writes) {
    if (ok !== 1) continue;
    let worst = 0;
    let missing = false;
    arrivals.forEach((a, i) => {
      const t = arrivalOf(a[key], v);
      if (t === undefined) {
        missing = true;
        (missingPerNode[i] as number)++;
        return;
      }
      (perNode[i] as number[]).push(t - sent);
      worst = Math.max(worst, t);
    });
    if (!missing && arrivals.length > 0) {
      all.push(worst - sent);
      lastAll = Math.max(lastAll, worst);
    }
  }
  return { all, perNode, missingPerNode, lastAll };
}

// --- rows ------------------------------------------------------------------------------------------

/** One system's figure for a row: a headline number (for the ratio), its text, and detail. */
interface Cell {
  value?: number;
  text: string;
  detail?: string;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
const fmt = (x: number, d = 1): string => (Number.isFinite(x) ? round(x, d).toLocaleString('en-US') : '-');
const missingOf = (r: LoadResult): number => sum(r.missingPerNode);
const health = (r: LoadResult): string =>
  `ack p50 / p99 ${fmt(percentile(r.acks, 50))} / ${fmt(percentile(r.acks, 99))} ms; dropped watchers ${r.dropped}, missing events ${missingOf(r)}, failed writes ${r.failed}` +
  (r.notSent > 0 ? `, not sent (client cap) ${r.notSent}` : '') +
  (r.lateMs > 50 ? `, writer up to ${fmt(r.lateMs, 0)} ms behind schedule` : '') +
  (r.errors.length > 0 ? `; errors: ${r.errors.slice(0, 2).join(' | ')}` : '');
const cpuPerWrite = (r: LoadResult): number => sum(r.cpu) / Math.max(1, r.acked);

function sustainedCell(r: LoadResult): Cell {
  const ackedPerS = (r.acked * 1000) / (r.end - r.start);
  const appliedPerS = r.lastAll > 0 ? (r.all.length * 1000) / (r.lastAll - r.start) : Number.NaN;
  const clean = r.dropped === 0 && missingOf(r) === 0 && r.failed === 0;
  return {
    value: clean ? appliedPerS : undefined,
    text: clean ? `${fmt(appliedPerS, 0)}/s` : `not sustained (${fmt(appliedPerS, 0)}/s applied)`,
    detail:
      `acked ${fmt(ackedPerS, 0)}/s, applied at all ${fmt(appliedPerS, 0)}/s, ${r.acked} writes, ` +
      `last event at all nodes - last ack ${fmt(r.lastAll - r.end, 0)} ms, write->all p50 ${fmt(percentile(r.all, 50))} ms; ${health(r)}`,
  };
}

const spread = (xs: number[], d = 0): string => `${fmt(Math.min(...xs), d)}-${fmt(Math.max(...xs), d)}`;

/** The median of REPEATS sustained runs, with their spread; the detail is the median run's. */
function repeatedCell(rs: LoadResult[], one: (r: LoadResult) => Cell, digits = 0): Cell {
  const cells = rs.map(one);
  const values = cells.map((c) => c.value);
  if (values.some((v) => v === undefined)) {
    const bad = cells.find((c) => c.value === undefined) as Cell;
    return { text: bad.text, detail: `${cells.length} runs, not all clean; ${bad.detail ?? ''}` };
  }
  const vs = values as number[];
  const m = median(vs);
  const mid = cells[vs.indexOf([...vs].sort((a, b) => a - b)[(vs.length - 1) >> 1] as number)] as Cell;
  return {
    value: m,
    text: vs.length > 1 ? `${mid.text.replace(/^[\d,.]+/, fmt(m, digits))} (${spread(vs, digits)})` : mid.text,
    detail: `median of ${vs.length} runs (${vs.map((v) => fmt(v, digits)).join(', ')}); median run: ${mid.detail ?? ''}`,
  };
}

function latencyCell(r: LoadResult): Cell {
  const p50 = percentile(r.all, 50);
  return {
    value: p50,
    text: `${fmt(p50)} / ${fmt(percentile(r.all, 99))} / ${fmt(Math.max(...r.all))} ms`,
    detail: `${r.all.length} of ${r.acked} writes seen at all nodes; ${health(r)}`,
  };
}

/** CPU per write over the window; `idle` (ms per s, all processes) gives the part above what they use at rest. */
function cpuCell(r: LoadResult, idle: number): Cell {
  const ms = cpuPerWrite(r);
  const above = (sum(r.cpu) - (idle * r.cpuWindowMs) / 1000) / Math.max(1, r.acked);
  return {
    value: ms,
    text: `${fmt(ms, 3)} ms`,
    detail:
      `${fmt(sum(r.cpu), 0)} ms CPU over ${r.acked} writes in ${fmt(r.cpuWindowMs / 1000)} s (${r.cpu.length} process(es)); ` +
      `at rest the same processes use ${fmt(idle, 0)} ms CPU per s in all, so ${fmt(above, 3)} ms per write above rest`,
  };
}

const errorCell = (err: unknown): Cell => ({ text: 'error', detail: (err as Error).message.slice(0, 400) });

/** Rows keyed by measure, each with a mesh and a NATS cell. */
class Table {
  private readonly rows = new Map<string, { measure: string; n: number; mesh?: Cell; nats?: Cell }>();

  get(measure: string, n: number, target: System['target']): Cell | undefined {
    return this.rows.get(`${measure}|${n}`)?.[target];
  }

  set(measure: string, n: number, target: System['target'], cell: Cell): void {
    const key = `${measure}|${n}`;
    const row = this.rows.get(key) ?? { measure, n };
    row[target] = cell;
    this.rows.set(key, row);
    process.stderr.write(`api bench: ${measure}, N = ${n}, ${target}: ${cell.text}; ${cell.detail ?? ''}\n`);
  }

  toRows(natsNote: string | undefined): Row[] {
    return [...this.rows.values()].map((r) => {
      const ratio = r.mesh?.value !== undefined && r.nats?.value !== undefined ? r.mesh.value / r.nats.value : null;
      return {
        measure: r.measure,
        N: r.n,
        mesh: r.mesh?.text ?? '-',
        NATS: r.nats?.text ?? (natsNote !== undefined ? 'not run' : '-'),
        'mesh/NATS': ratio === null ? null : round(ratio, 2),
        'mesh detail': r.mesh?.detail ?? null,
        'NATS detail': r.nats?.detail ?? natsNote ?? null,
      };
    });
  }
}

const M = {
  sustained: (c: number) => `sustained writes/s acked and applied at every node (closed loop, ${c} in flight per node)`,
  latency: (rate: number) =>
    `write -> event at all nodes at ${rate.toLocaleString('en-US')} writes/s offered (p50 / p99 / max)`,
  cpu: 'CPU ms per replicated write (all node processes / nats-server), sustained run',
  batch: `bulk: POST /v1/batch of ${BATCH_OPS} ops, writes/s applied at every node`,
  ceiling: 'internal ceiling (POST /v1/admin/load inside each node, not through the API): updates/s applied at all',
  register: (a: number) => `register ${a.toLocaleString('en-US')} agents through the API (writes/s applied at all)`,
  heartbeat: (a: number) =>
    `${a.toLocaleString('en-US')} agents heartbeating every ${HEARTBEAT_MS / 1000} s (${fmt(a / (HEARTBEAT_MS / 1000), 0)} writes/s): lag p50 / p99 at the slowest node`,
  applied: 'heartbeat run: writes seen at the node with fewest (of acked)',
  nodeCpu: 'heartbeat run: CPU per node (ms per s, busiest / median)',
};

/** The rows that both systems run at one node count. */
async function commonRows(sys: System, table: Table, dir: string): Promise<void> {
  const n = sys.n;
  const idle = sum(await idleCpu(sys));
  const base = { agentPrefix: 'pool', agentsPerSlot: AGENT_POOL, watch: true } as const;
  if (want('sustained')) {
    try {
      const rs: LoadResult[] = [];
      for (let i = 0; i < REPEATS; i++)
        rs.push(await load(sys, { ...base, workload: 'mixed', inFlight: IN_FLIGHT, durationMs: SECONDS * 1000 }, dir));
      table.set(M.sustained(IN_FLIGHT), n, sys.target, repeatedCell(rs, sustainedCell));
      table.set(
        M.cpu,
        n,
        sys.target,
        repeatedCell(rs, (r) => cpuCell(r, idle), 3),
      );
    } catch (err) {
      table.set(M.sustained(IN_FLIGHT), n, sys.target, errorCell(err));
    }
  }
  if (want('latency')) {
    for (const rate of RATES) {
      try {
        const r = await load(sys, { ...base, workload: 'mixed', rate, durationMs: SECONDS * 1000 }, dir);
        const cell = latencyCell(r);
        cell.detail = `${cell.detail}; CPU ${fmt(cpuPerWrite(r), 3)} ms per write`;
        table.set(M.latency(rate), n, sys.target, cell);
      } catch (err) {
        table.set(M.latency(rate), n, sys.target, errorCell(err));
      }
    }
  }
}

/** CPU per process (ms per s) of the system at rest over `ms`: the part of every window's CPU no write causes. */
async function idleCpu(sys: System, ms = 2000): Promise<number[]> {
  const pids = pidsOf(sys);
  const c0 = pids.map(cpuMs);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const t = performance.now() - t0;
  return pids.map((p, i) => ((cpuMs(p) - (c0[i] as number)) * 1000) / t);
}

/** The agents the mixed workload updates, registered before any measured window (not measured). */
async function registerPool(sys: System, dir: string): Promise<void> {
  const r = await load(
    sys,
    {
      workload: 'register',
      inFlight: IN_FLIGHT,
      durationMs: 120_000,
      agentPrefix: 'pool',
      agentsPerSlot: AGENT_POOL,
      watch: false,
    },
    dir,
  );
  if (r.failed > 0) throw new Error(`registering the agent pool: ${r.failed} writes failed: ${r.errors.join(' | ')}`);
}

async function meshOnlyRows(sys: MeshSystem, table: Table, dir: string): Promise<void> {
  const n = sys.n;
  if (want('batch')) {
    try {
      const probe = await (sys.nodes[0] as MeshProcess).call('POST', '/v1/batch', { ops: [] });
      if (probe.status === 404)
        table.set(M.batch, n, 'mesh', { text: 'not available in this build', detail: 'POST /v1/batch answered 404' });
      else {
        const rs: LoadResult[] = [];
        for (let i = 0; i < REPEATS; i++) {
          const r = await load(
            sys,
            {
              workload: 'mixed',
              inFlight: BATCH_IN_FLIGHT,
              batchOps: BATCH_OPS,
              durationMs: SECONDS * 1000,
              agentPrefix: 'pool',
              agentsPerSlot: AGENT_POOL,
              watch: true,
            },
            dir,
          );
          if (r.batchMissing) break;
          rs.push(r);
        }
        if (rs.length < REPEATS)
          table.set(M.batch, n, 'mesh', { text: 'not available in this build', detail: 'POST /v1/batch answered 404' });
        else {
          const cell = repeatedCell(rs, sustainedCell);
          const single = table.get(M.sustained(IN_FLIGHT), n, 'mesh')?.value;
          const cpu = median(rs.map(cpuPerWrite));
          cell.detail =
            `${BATCH_IN_FLIGHT} batches in flight per node; CPU ${fmt(cpu, 3)} ms per write` +
            (single !== undefined && cell.value !== undefined
              ? `; ${fmt(cell.value / single, 1)}x the single-write sustained rate`
              : '') +
            `; ${cell.detail ?? ''}`;
          table.set(M.batch, n, 'mesh', cell);
        }
      }
    } catch (err) {
      table.set(M.batch, n, 'mesh', errorCell(err));
    }
  }
  if (want('ceiling')) {
    try {
      table.set(M.ceiling, n, 'mesh', await ceiling(sys));
    } catch (err) {
      table.set(M.ceiling, n, 'mesh', errorCell(err));
    }
  }
}

/**
 * Internal figure, not a headline: each node writes its own agents' owner updates from inside
 * (`POST /v1/admin/load`, the --faults switch MeshProcess starts nodes with), and the time runs
 * until every node's version vector holds every update. No HTTP request per write, no watcher.
 */
async function ceiling(sys: MeshSystem): Promise<Cell> {
  const { nodes } = sys;
  await Promise.all(
    nodes.map((x) => x.call('POST', '/v1/admin/load', { count: 1, agents: 200, concurrency: 1 }, 60_000)),
  );
  const cpu0 = nodes.map((x) => cpuMs(x.pid));
  const t0 = performance.now();
  await Promise.all(
    nodes.map((x) =>
      x.call('POST', '/v1/admin/load', { count: CEILING_COUNT, agents: 200, concurrency: 512 }, 300_000),
    ),
  );
  await untilAllApplied(nodes, 120_000);
  const ms = performance.now() - t0;
  const cpu = sum(nodes.map((x, i) => cpuMs(x.pid) - (cpu0[i] as number)));
  const total = CEILING_COUNT * nodes.length;
  const perS = (total * 1000) / ms;
  return {
    text: `${fmt(perS, 0)}/s (internal)`,
    detail: `${total} updates in ${fmt(ms, 0)} ms; CPU ${fmt(cpu / total, 3)} ms per update (internal figure)`,
  };
}

/** The seeds' scale: SCALE_AGENTS agents registered, then each heartbeating every HEARTBEAT_MS. */
async function scaleRows(sys: System, table: Table, dir: string): Promise<void> {
  const n = sys.n;
  const per = Math.ceil(SCALE_AGENTS / n);
  const agents = per * n;
  const base = { agentPrefix: 'fleet', agentsPerSlot: per, watch: true } as const;
  try {
    const reg = await load(sys, { ...base, workload: 'register', inFlight: IN_FLIGHT, durationMs: 600_000 }, dir);
    const cell = sustainedCell(reg);
    cell.detail = `all registered and seen at every node after ${fmt((reg.lastAll - reg.start) / 1000, 2)} s; ${cell.detail}`;
    table.set(M.register(agents), n, sys.target, cell);
  } catch (err) {
    table.set(M.register(agents), n, sys.target, errorCell(err));
    return;
  }
  try {
    const rate = agents / (HEARTBEAT_MS / 1000);
    const r = await load(sys, { ...base, workload: 'heartbeat', rate, durationMs: SCALE_SECONDS * 1000 }, dir);
    const p99s = r.perNode.map((l) => percentile(l, 99));
    const slowest = p99s.indexOf(Math.max(...p99s));
    const slow = r.perNode[slowest] ?? [];
    const seenFrac = r.perNode.map((l) => l.length / Math.max(1, r.acked));
    const perNodeText = r.perNode
      .map(
        (l, i) =>
          `node ${i}: ${fmt(percentile(l, 50))}/${fmt(percentile(l, 99))} ms, ${fmt(100 * (seenFrac[i] as number), 2)}% seen`,
      )
      .join('; ');
    table.set(M.heartbeat(agents), n, sys.target, {
      value: percentile(slow, 99),
      text: `${fmt(percentile(slow, 50))} / ${fmt(percentile(slow, 99))} ms`,
      detail: `${r.acked} heartbeats acked, offered over ${SCALE_SECONDS} s (${fmt((r.acked * 1000) / (r.end - r.start), 0)}/s from the first send to the last ack); ${perNodeText}; ${health(r)}`,
    });
    const minSeen = Math.min(...seenFrac);
    table.set(M.applied, n, sys.target, {
      value: minSeen,
      text: `${fmt(100 * minSeen, 2)}%`,
      detail: `per node: ${seenFrac.map((f) => `${fmt(100 * f, 2)}%`).join(', ')} of ${r.acked} writes`,
    });
    const perS = r.cpu.map((c) => (c * 1000) / r.cpuWindowMs);
    table.set(M.nodeCpu, n, sys.target, {
      value: Math.max(...perS),
      text: `${fmt(Math.max(...perS), 0)} / ${fmt(median(perS), 0)} ms/s`,
      detail: `per process: ${perS.map((c) => fmt(c, 0)).join(', ')} ms CPU per s (1000 = one core); ${fmt(cpuPerWrite(r), 3)} ms per write`,
    });
  } catch (err) {
    table.set(M.heartbeat(agents), n, sys.target, errorCell(err));
  }
}

// --- the suite -------------------------------------------------------------------------------------

export async function benchApi(): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-bench-api-'));
  const table = new Table();
  let nats: { port: number; proc: ChildProcess; version: string } | undefined;
  let natsNote: string | undefined = BASELINE ? undefined : 'baseline skipped (MESH_BENCH_BASELINE=0)';
  let mesh: MeshSystem | undefined;
  // Ctrl-C: end every process this suite started (nodes die with the harness through their stdin).
  const onSignal = (): void => {
    killAllChildren();
    nats?.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (BASELINE) {
      const s = await startNatsServer(dir);
      if (typeof s === 'string') natsNote = s;
      else nats = s;
      if (natsNote !== undefined) process.stderr.write(`api bench: ${natsNote}\n`);
    }
    const natsSystem = async (n: number, tag: string): Promise<NatsSystem | undefined> => {
      if (nats === undefined) return undefined;
      const bucket = `bench-${tag}-${n}`;
      await natsBucket(nats.port, bucket);
      return { target: 'nats', n, port: nats.port, bucket, pid: nats.proc.pid };
    };
    const meshRows = want('sustained') || want('latency') || want('batch') || want('ceiling');
    for (const n of NS) {
      if (!meshRows) break;
      try {
        mesh = await startMesh(n, dir);
        await registerPool(mesh, dir);
        await commonRows(mesh, table, dir);
        await meshOnlyRows(mesh, table, dir);
      } catch (err) {
        table.set(M.sustained(IN_FLIGHT), n, 'mesh', errorCell(err));
      } finally {
        if (mesh !== undefined) await stopMesh(mesh);
        mesh = undefined;
      }
      if (want('sustained') || want('latency')) {
        try {
          const sys = await natsSystem(n, 'rows');
          if (sys !== undefined) {
            await registerPool(sys, dir);
            await commonRows(sys, table, dir);
          }
        } catch (err) {
          table.set(M.sustained(IN_FLIGHT), n, 'nats', errorCell(err));
        }
      }
    }
    if (want('scale')) {
      try {
        mesh = await startMesh(SCALE_N, dir);
        await scaleRows(mesh, table, dir);
      } catch (err) {
        table.set(M.register(SCALE_AGENTS), SCALE_N, 'mesh', errorCell(err));
      } finally {
        if (mesh !== undefined) await stopMesh(mesh);
        mesh = undefined;
      }
      try {
        const sys = await natsSystem(SCALE_N, 'scale');
        if (sys !== undefined) await scaleRows(sys, table, dir);
      } catch (err) {
        table.set(M.register(SCALE_AGENTS), SCALE_N, 'nats', errorCell(err));
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    killAllChildren();
    if (mesh !== undefined) await stopMesh(mesh);
    if (nats !== undefined) await stopProcess(nats.proc);
    rmSync(dir, { recursive: true, force: true });
  }
  const rows = table.toRows(natsNote);
  if (nats !== undefined)
    rows.push({
      measure: 'baseline',
      N: null,
      mesh: null,
      NATS: nats.version,
      'mesh/NATS': null,
      'mesh detail': null,
      'NATS detail':
        'JetStream KV, file storage, history 1, one nats-server process; this version has no sync_interval: ' +
        'a put is acknowledged before fsync (the mesh acknowledges after its group commit fsync)',
    });
  rows.push({
    measure: 'settings',
    N: null,
    mesh: null,
    NATS: null,
    'mesh/NATS': null,
    'mesh detail': JSON.stringify({
      seconds: SECONDS,
      repeats: REPEATS,
      rates: RATES,
      inFlightPerNode: IN_FLIGHT,
      writerProcesses: WRITERS,
      agentPoolPerNode: AGENT_POOL,
      batchOps: BATCH_OPS,
      batchInFlightPerNode: BATCH_IN_FLIGHT,
      scale: { agents: SCALE_AGENTS, n: SCALE_N, seconds: SCALE_SECONDS, heartbeatMs: HEARTBEAT_MS },
      ceilingCountPerNode: CEILING_COUNT,
      settleMs: SETTLE_MS,
    }),
    'NATS detail': null,
  });
  return rows;
}
