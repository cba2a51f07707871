/**
 * `npm run bench -- sched`: scheduling without a broker, measured the way users run tasks. Node
 * processes are started through the CLI, each with one trivial stdio agent (concurrency 16);
 * client processes outside the nodes submit tasks with a capability through the HTTP API (no
 * assignment: the mesh schedules them) and wait for COMPLETED on their node's event stream. The
 * brokered reference runs in the same suite: BullMQ on one redis-server (Debian's, installed by
 * scripts/install-bench-deps.sh), with as many worker and producer processes as the mesh has
 * nodes and clients, the same job count and in-flight bound.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { EventStream, MeshProcess, shutdownNodes, until, writeAgentsFile } from '../test/helpers/mesh-process.js';
import { runClient, spreadOf } from './client-process.js';
import { median, percentile, round, type Row } from './util.js';

const HERE = import.meta.dirname;
const STDIO_AGENT = resolve(HERE, 'agents/trivial-stdio.mjs');
const WORD_COUNT = resolve(HERE, '../examples/agents/word-count.py');
const WORKER = resolve(HERE, 'bullmq-worker.ts');
const REPEATS = Number(process.env.MESH_BENCH_REPEATS ?? 3);
const CONCURRENCY = 16;
const IN_FLIGHT = 32;

/** Several clients at once; throughput is all their tasks over the slowest one's wall time. */
async function clients(cfgs: Array<Record<string, unknown>>): Promise<{ perSecond: number; latencies: number[] }> {
  const results = await Promise.all(cfgs.map((c) => runClient(c)));
  const n = results.reduce((a, r) => a + r.latencies.length, 0);
  const wall = Math.max(...results.map((r) => r.wallMs));
  return { perSecond: (n * 1000) / wall, latencies: results.flatMap((r) => r.latencies) };
}

/** Ids that appear more than once across the agents' run logs. */
function duplicates(files: string[]): { runs: number; duplicates: number } {
  const seen = new Map<string, number>();
  for (const f of files) {
    if (!existsSync(f)) continue;
    for (const id of readFileSync(f, 'utf8').split('\n')) if (id) seen.set(id, (seen.get(id) ?? 0) + 1);
  }
  let dups = 0;
  let runs = 0;
  for (const n of seen.values()) {
    runs += n;
    if (n > 1) dups += n - 1;
  }
  return { runs, duplicates: dups };
}

async function meshOf(n: number, dir: string, extra: string[] = []): Promise<{ nodes: MeshProcess[]; logs: string[] }> {
  mkdirSync(dir, { recursive: true });
  const logs: string[] = [];
  const nodes: MeshProcess[] = [];
  for (let i = 0; i < n; i++) {
    const log = join(dir, `runs-${i}.log`);
    logs.push(log);
    const file = writeAgentsFile(
      dir,
      [
        {
          id: `trivial-${i}`,
          mode: 'stdio',
          command: process.execPath,
          args: [STDIO_AGENT],
          capabilities: ['trivial'],
          concurrency: CONCURRENCY,
          env: { BENCH_RUN_LOG: log },
        },
      ],
      `agents-${i}.json`,
    );
    const join_ = i === 0 ? [] : [(nodes[0] as MeshProcess).addr];
    nodes.push(await new MeshProcess({ name: `s${i}`, join: join_, extraArgs: ['--agents', file, ...extra] }).start());
  }
  // Every node must see every agent RUNNING before the clock starts.
  for (const node of nodes) {
    await until(
      () => node.get<Array<{ state: string }>>('/v1/agents?capability=trivial'),
      (as) => as.length === n && as.every((a) => a.state === 'RUNNING'),
      30_000,
      'every agent RUNNING on every node',
    );
  }
  return { nodes, logs };
}

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

/** A throw-away redis-server on a free port, without persistence; undefined if none is installed. */
async function redis(): Promise<{ port: number; proc: ChildProcess } | undefined> {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const port = await freePort();
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  await until(
    () => {
      try {
        execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: 'pipe' });
        return true;
      } catch {
        return false;
      }
    },
    (ok) => ok,
    10_000,
    'redis-server up',
  );
  return { port, proc };
}

async function bullmqRun(
  port: number,
  n: number,
  count: number,
  dir: string,
  run: number,
): Promise<{ perSecond: number; dup: ReturnType<typeof duplicates> }> {
  const queue = `bench-${run}`;
  const logs = Array.from({ length: n }, (_, i) => join(dir, `bull-${run}-${i}.log`));
  const workers = logs.map((log) =>
    spawn(process.execPath, ['--import', 'tsx', WORKER, String(port), queue, String(CONCURRENCY)], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, BENCH_RUN_LOG: log },
    }),
  );
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((res, rej) => {
            w.stdout.once('data', () => res());
            w.once('exit', (c) => rej(new Error(`bullmq worker exited with ${c}`)));
          }),
      ),
    );
    const r = await clients(
      Array.from({ length: n }, (_, i) => ({
        mode: 'bullmq',
        redisPort: port,
        queue,
        count,
        inFlight: IN_FLIGHT,
        prefix: `q${run}-${i}`,
      })),
    );
    return { perSecond: r.perSecond, dup: duplicates(logs) };
  } finally {
    for (const w of workers) w.stdin.end();
    await Promise.all(
      workers.map((w) => new Promise((res) => (w.exitCode !== null ? res(null) : w.once('exit', res)))),
    );
  }
}

export async function benchSched(): Promise<Row[]> {
  const rows: Row[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'mesh-bench-sched-'));
  const broker = await redis();
  try {
    for (const n of [1, 5]) {
      const perClient = n === 1 ? 2000 : 1000;
      // --- mesh throughput
      const { nodes, logs } = await meshOf(n, join(dir, `mesh${n}`), []).catch(async (err: unknown) => {
        throw err;
      });
      const xs: number[] = [];
      try {
        for (let r = 0; r < REPEATS; r++) {
          const res = await clients(
            nodes.map((node, i) => ({
              mode: 'api',
              api: node.api,
              capability: 'trivial',
              count: perClient,
              inFlight: IN_FLIGHT,
              prefix: `m${r}-${i}`,
            })),
          );
          xs.push(res.perSecond);
        }
        // --- latency at a fixed offered rate (50 tasks/s spread over the nodes)
        const lat = await clients(
          nodes.map((node, i) => ({
            mode: 'api',
            api: node.api,
            capability: 'trivial',
            count: 500 / n,
            rate: 50 / n,
            inFlight: 1,
            prefix: `l-${i}`,
          })),
        );
        const dup = duplicates(logs);
        rows.push({
          measure: `tasks completed per second, N = ${n} (${n} client processes, ${IN_FLIGHT} in flight each)`,
          mesh: round(median(xs), 0),
          'mesh spread': spreadOf(xs),
          tasks: perClient * n * REPEATS,
          'duplicate runs': dup.duplicates,
          'duplicates per 10k': round((dup.duplicates * 10_000) / Math.max(1, dup.runs), 2),
        });
        rows.push({
          measure: `submit -> COMPLETED at 50 tasks/s offered, N = ${n}`,
          'p50 ms': round(percentile(lat.latencies, 50), 1),
          'p99 ms': round(percentile(lat.latencies, 99), 1),
          'max ms': round(Math.max(...lat.latencies), 1),
          tasks: lat.latencies.length,
        });
      } finally {
        await shutdownNodes(nodes);
      }
      // --- brokered reference in the same run
      if (broker === undefined) {
        rows.push({
          measure: `BullMQ on redis-server, N = ${n}`,
          note: 'redis-server not installed: run scripts/install-bench-deps.sh',
        });
      } else {
        const bs: number[] = [];
        let dupB = { runs: 0, duplicates: 0 };
        for (let r = 0; r < REPEATS; r++) {
          const b = await bullmqRun(broker.port, n, perClient, dir, n * 100 + r);
          bs.push(b.perSecond);
          dupB = { runs: dupB.runs + b.dup.runs, duplicates: dupB.duplicates + b.dup.duplicates };
        }
        rows.push({
          measure: `BullMQ jobs completed per second, ${n} worker process(es) x ${CONCURRENCY}, ${n} producer(s)`,
          brokered: round(median(bs), 0),
          'brokered spread': spreadOf(bs),
          'ratio mesh/brokered': round(median(xs) / median(bs), 2),
          'duplicate runs': dupB.duplicates,
        });
      }
    }
    rows.push(
      await nodeDeath(join(dir, 'death')).catch((err: unknown) => ({
        measure: 'node death -> its tasks IN_PROGRESS elsewhere',
        error: (err as Error).message,
      })),
    );
  } finally {
    broker?.proc.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/**
 * A node dies while its agents run tasks: the time from its SIGKILL until each of its tasks is
 * IN_PROGRESS on another node, seen from a survivor's event stream. The lower bound is the lease.
 */
async function nodeDeath(dir: string): Promise<Row> {
  const leaseMs = 3000;
  mkdirSync(dir, { recursive: true });
  const nodes: MeshProcess[] = [];
  for (let i = 0; i < 3; i++) {
    const file = writeAgentsFile(
      dir,
      [
        {
          id: `wc-${i}`,
          mode: 'stdio',
          command: 'python3',
          args: [WORD_COUNT],
          capabilities: ['wordcount'],
          concurrency: 4,
        },
      ],
      `agents-${i}.json`,
    );
    const join_ = i === 0 ? [] : [(nodes[0] as MeshProcess).addr];
    nodes.push(
      await new MeshProcess({
        name: `d${i}`,
        join: join_,
        extraArgs: ['--agents', file, '--lease-ms', String(leaseMs)],
      }).start(),
    );
  }
  try {
    const [survivor] = nodes as [MeshProcess];
    await until(
      () => survivor.get<Array<{ state: string }>>('/v1/agents?capability=wordcount'),
      (as) => as.length === 3 && as.every((a) => a.state === 'RUNNING'),
      30_000,
      'agents RUNNING',
    );
    const ids: string[] = [];
    // 6 tasks on 3 agents of concurrency 4: the two survivors have room for all of them.
    for (let i = 0; i < 6; i++) {
      const r = await survivor.call<{ id: string }>('POST', '/v1/tasks', {
        type: 'wordcount',
        capabilities: ['wordcount'],
        payload: { text: 'x', sleepMs: 60_000 },
      });
      ids.push(r.body.id);
    }
    type T = { id: string; status: string; node: string | null };
    const running = await until(
      () => survivor.get<T[]>('/v1/tasks'),
      (ts) => ts.filter((t) => ids.includes(t.id) && t.status === 'IN_PROGRESS').length === ids.length,
      30_000,
      'all tasks IN_PROGRESS',
    );
    const victim = nodes.find((n) => n !== survivor && running.some((t) => t.node === n.id)) as MeshProcess;
    const theirs = running.filter((t) => t.node === victim.id).map((t) => t.id);
    const stream = await EventStream.open(survivor, ['task']);
    const t0 = Date.now();
    await victim.kill('SIGKILL');
    const moved = new Map<string, number>();
    await until(
      () => {
        for (const e of stream.events) {
          const v = e.value as T;
          if (theirs.includes(v.id) && v.status === 'IN_PROGRESS' && v.node !== victim.id && !moved.has(v.id))
            moved.set(v.id, e.at - t0);
        }
        return moved.size;
      },
      (n) => n === theirs.length,
      30_000,
      "the dead node's tasks running elsewhere",
    );
    stream.close();
    const times = [...moved.values()];
    return {
      measure: `node death -> its tasks IN_PROGRESS elsewhere (N = 3, lease ${leaseMs} ms, ${theirs.length} tasks)`,
      'median ms': round(median(times), 0),
      'max ms': round(Math.max(...times), 0),
      'lease ms': leaseMs,
      'max - lease ms': round(Math.max(...times) - leaseMs, 0),
    };
  } finally {
    await shutdownNodes(nodes);
  }
}
