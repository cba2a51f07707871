/**
 * The exec benchmark's client, run as its own process (never inside the node): drives one node
 * through its public HTTP API, or calls an agent directly (the baselines), and prints one JSON
 * line of per-task timings. Usage: exec-client.ts '<json config>'.
 *
 * Modes:
 * - `api`: for each task, POST /v1/tasks (with `agent` as its assignee, or with `capability` for
 *   the mesh to schedule); a task is done when the node's event stream says COMPLETED (or
 *   FAILED). `inFlight` tasks at a time, or `rate` per second.
 * - `direct-stdio`: spawns the agent command itself and speaks the stdio protocol to it.
 * - `direct-exec`: spawns the exec script per task, task JSON on stdin, waits for its exit.
 * - `direct-mcp`: the MCP SDK client calls the tool on a server it spawns itself.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

interface Config {
  mode: 'api' | 'direct-stdio' | 'direct-exec' | 'direct-mcp' | 'bullmq';
  count: number;
  inFlight: number;
  /** Open loop: start tasks at this rate (per second) instead of keeping `inFlight` busy. */
  rate?: number;
  /** api: task ids start with this (several clients in one run). */
  prefix?: string;
  /** bullmq: redis port and queue name. */
  redisPort?: number;
  queue?: string;
  api?: string;
  agent?: string;
  capability?: string;
  payload?: unknown;
  command?: string;
  args?: string[];
  tool?: string;
}

const cfg = JSON.parse(process.argv[2] as string) as Config;
const task = (i: number) => ({
  id: `b${process.pid}-${i}`,
  type: 'bench',
  title: '',
  payload: cfg.payload ?? { i },
  capabilities: cfg.capability ? [cfg.capability] : [],
  attempt: 1,
  deadline: null,
});

/**
 * Runs `count` jobs, `inFlight` at a time (or, with `rate`, one started every 1/rate s whatever
 * is still running: an open loop, so that a slow system cannot slow the offered load down);
 * returns each job's latency (ms) and the wall time.
 */
async function drive(run: (i: number) => Promise<void>): Promise<{ latencies: number[]; wallMs: number }> {
  const latencies: number[] = [];
  if (cfg.rate !== undefined) {
    const t0 = performance.now();
    const all: Promise<void>[] = [];
    for (let i = 0; i < cfg.count; i++) {
      const due = t0 + (i * 1000) / cfg.rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const s = performance.now();
      all.push(run(i).then(() => void latencies.push(performance.now() - s)));
    }
    await Promise.all(all);
    return { latencies, wallMs: performance.now() - t0 };
  }
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < cfg.count) {
      const i = next++;
      const s = performance.now();
      await run(i);
      latencies.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: cfg.inFlight }, worker));
  return { latencies, wallMs: performance.now() - t0 };
}

async function viaApi(): Promise<{ latencies: number[]; wallMs: number }> {
  // Node's fetch keeps connections alive and opens as many per origin as there are requests in flight.
  const api = cfg.api as string;
  const waiting = new Map<string, (status: string) => void>();
  const abort = new AbortController();
  const res = await fetch(`${api}/v1/events?kind=task`, { signal: abort.signal });
  if (!res.ok || res.body === null) throw new Error(`events: ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  void (async () => {
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return;
      buf += value;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('event: error')) throw new Error('the node dropped this event stream (too slow)');
        // Only final states matter: skip the JSON parse of every other event (most of them).
        if (!line.startsWith('data: ') || !/"status":"(COMPLETED|FAILED|CANCELLED)"/.test(line)) continue;
        const ev = JSON.parse(line.slice(6)) as { id: string; value: { status: string } };
        const s = ev.value.status;
        if (s === 'COMPLETED' || s === 'FAILED' || s === 'CANCELLED') waiting.get(ev.id)?.(s);
      }
    }
  })();
  const call = async (method: string, path: string, body: unknown): Promise<void> => {
    const r = await fetch(`${api}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    await r.arrayBuffer();
  };
  const failed: string[] = [];
  const out = await drive(async (i) => {
    const t = task(i);
    const done = new Promise<string>((resolve) => waiting.set(t.id, resolve));
    // Without an agent the mesh schedules it (capabilities); with one, it is created assigned.
    await call('POST', '/v1/tasks', {
      id: t.id,
      type: t.type,
      payload: t.payload,
      capabilities: t.capabilities,
      ...(cfg.agent === undefined ? {} : { assignee: cfg.agent }),
    });
    const status = await done;
    waiting.delete(t.id);
    if (status !== 'COMPLETED') failed.push(`${t.id}: ${status}`);
  });
  abort.abort();
  if (failed.length > 0) throw new Error(`${failed.length} tasks did not complete: ${failed.slice(0, 3).join(', ')}`);
  return out;
}

async function directStdio(): Promise<{ latencies: number[]; wallMs: number }> {
  const child = spawn(cfg.command as string, cfg.args ?? [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting = new Map<string, () => void>();
  let ready: () => void = () => {};
  const isReady = new Promise<void>((r) => (ready = r));
  createInterface({ input: child.stdout }).on('line', (line) => {
    const m = JSON.parse(line) as { type: string; id?: string };
    if (m.type === 'ready') ready();
    else if (m.type === 'result' || m.type === 'error') waiting.get(m.id as string)?.();
  });
  const send = (m: unknown): void => void child.stdin.write(`${JSON.stringify(m)}\n`);
  send({
    type: 'hello',
    protocol: 1,
    agent: { id: 'direct', name: 'direct', capabilities: [], concurrency: cfg.inFlight },
    node: 'bench',
  });
  await isReady;
  const out = await drive(async (i) => {
    const t = task(i);
    await new Promise<void>((resolve) => {
      waiting.set(t.id, resolve);
      send({ type: 'task', task: t });
    });
    waiting.delete(t.id);
  });
  child.stdin.end();
  return out;
}

async function directExec(): Promise<{ latencies: number[]; wallMs: number }> {
  return drive(
    (i) =>
      new Promise<void>((resolve, reject) => {
        const child = spawn(cfg.command as string, cfg.args ?? [], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
        const out: Buffer[] = [];
        child.stdout.on('data', (c: Buffer) => out.push(c));
        child.once('error', reject);
        child.once('close', (code) => {
          if (code !== 0) reject(new Error(`exit ${code}`));
          else {
            JSON.parse(Buffer.concat(out).toString('utf8'));
            resolve();
          }
        });
        child.stdin.end(`${JSON.stringify(task(i))}\n`);
      }),
  );
}

async function directMcp(): Promise<{ latencies: number[]; wallMs: number }> {
  const client = new Client({ name: 'bench', version: '0' });
  await client.connect(
    new StdioClientTransport({ command: cfg.command as string, args: cfg.args ?? [], stderr: 'ignore' }),
  );
  const out = await drive(async () => {
    const r = await client.callTool({ name: cfg.tool as string, arguments: cfg.payload as Record<string, unknown> });
    if (r.isError === true) throw new Error('tool error');
  });
  await client.close();
  return out;
}

/** The brokered baseline: BullMQ jobs through one redis-server, completion seen by QueueEvents. */
async function viaBullmq(): Promise<{ latencies: number[]; wallMs: number }> {
  const { Queue, QueueEvents } = await import('bullmq');
  const connection = { host: '127.0.0.1', port: cfg.redisPort as number };
  // The events stream must hold every job's events until QueueEvents reads them (default 10k).
  const queue = new Queue(cfg.queue as string, { connection, streams: { events: { maxLen: 1_000_000 } } });
  // From the stream's start (this run's queue is new): with the default '$', completions that
  // land before the reader's first XREAD are never seen and the producer waits forever.
  const events = new QueueEvents(cfg.queue as string, { connection, lastEventId: '0-0' });
  await events.waitUntilReady();
  const waiting = new Map<string, () => void>();
  events.on('completed', ({ jobId }) => waiting.get(jobId)?.());
  const out = await drive(async (i) => {
    const t = task(i);
    const done = new Promise<void>((resolve) => waiting.set(t.id, resolve));
    await queue.add('bench', t.payload, { jobId: t.id, removeOnComplete: true, removeOnFail: true });
    await done;
    waiting.delete(t.id);
  });
  await events.close();
  await queue.close();
  return out;
}

const run = {
  api: viaApi,
  'direct-stdio': directStdio,
  'direct-exec': directExec,
  'direct-mcp': directMcp,
  bullmq: viaBullmq,
}[cfg.mode];
const result = await run();
// Exit once the (large) line is flushed: the pipe to the harness is asynchronous.
process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
