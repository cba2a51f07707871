/**
 * The API benchmark's writer, run as its own process (never inside a node): writes agents and
 * tasks through a mesh node's HTTP API (`PUT /v1/agents/:id`, `POST /v1/tasks`, `PATCH
 * /v1/tasks/:id`, or `POST /v1/batch`) over keep-alive connections, or the same values into a
 * NATS JetStream KV bucket (the brokered baseline), and records each write's send and ack time.
 * Usage: api-writer.ts '<json config>'. Prints `ready` once connected, starts on a `go` line on
 * stdin, writes its records to `cfg.out` and prints one JSON summary line (WriterSummary).
 */
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';
import {
  agentBody,
  completePatch,
  type Kind,
  keyOf,
  now,
  startPatch,
  taskBody,
  type WriteRecord,
  type WriterSummary,
} from './api-workload.js';

export interface WriterConfig {
  target: 'mesh' | 'nats';
  /** The nodes (mesh) or slots (NATS) this writer drives; `api` is the node's base URL. */
  slots: Array<{ index: number; api?: string }>;
  natsPort?: number;
  bucket?: string;
  /** mixed: agent PUTs, task creations and transitions; register: each pool agent once; heartbeat: pool agents in turn. */
  workload: 'mixed' | 'register' | 'heartbeat';
  /** Closed loop: this many writes (or batches) in flight per slot. */
  inFlight?: number;
  /** Open loop: writes per second offered by this writer (over all its slots), whatever is in flight. */
  rate?: number;
  durationMs: number;
  /** Ops per `POST /v1/batch` request (mesh only); absent: one write per request. */
  batchOps?: number;
  /** Agent pool per slot: ids `${agentPrefix}-${slot}-${i}`, each hosted by (written to) its slot's node. */
  agentPrefix: string;
  agentsPerSlot: number;
  /** Task ids start with this (unique per run). */
  taskPrefix: string;
  /** Most writes in flight in this process (open loop; bounds memory); past it a due write is not sent. */
  maxInFlight?: number;
  out: string;
}

interface Op {
  kind: Kind;
  id: string;
  version: number;
  method: 'PUT' | 'POST' | 'PATCH';
  path: string;
  body: Record<string, unknown>;
  /** The batch route's form of this write. */
  batch: Record<string, unknown>;
  /** The value the NATS baseline stores under the key. */
  value: Record<string, unknown>;
  done(ok: boolean): void;
}

interface TaskState {
  id: string;
  i: number;
  /** 0: created (next: take it), 1: taken (next: complete it). */
  step: 0 | 1;
  agent: string;
  value: Record<string, unknown>;
}

const MIXED: Array<'agent' | 'create' | 'step'> = ['agent', 'create', 'agent', 'step', 'step'];

/** The writes one slot (one node) gets, keeping each key's writes sequential (see api-workload.ts). */
class SlotWorkload {
  private readonly agents: string[];
  private readonly idle: string[];
  private readonly busy = new Set<string>();
  private readonly lastVersion = new Map<string, number>();
  private readonly ready: TaskState[] = [];
  private next = 0;
  private tasks = 0;
  private turn = 0;
  /** Writes left, for `register` (each agent once). */
  private left: number;

  constructor(
    private readonly cfg: WriterConfig,
    private readonly slot: number,
  ) {
    this.agents = Array.from({ length: cfg.agentsPerSlot }, (_, i) => `${cfg.agentPrefix}-${slot}-${i}`);
    // Mixed writes take agents from this queue; the in-turn workloads only check `busy`.
    this.idle = cfg.workload === 'mixed' ? [...this.agents] : [];
    this.left = cfg.workload === 'register' ? this.agents.length : Number.POSITIVE_INFINITY;
  }

  get exhausted(): boolean {
    return this.left <= 0;
  }

  /** The next write, or undefined when every key it could write is busy (or, for register, all done). */
  take(): Op | undefined {
    if (this.left <= 0) return undefined;
    const w = this.cfg.workload;
    if (w === 'register' || w === 'heartbeat') {
      // In turn, so that with `rate` = agents / interval each agent writes once per interval.
      const id = this.agents[this.next % this.agents.length] as string;
      // A heartbeat whose previous one is still in flight is skipped (its turn passes).
      if (this.busy.has(id)) {
        if (w === 'heartbeat') this.next++;
        return undefined;
      }
      this.next++;
      this.left--;
      return this.agentOp(id);
    }
    const want = MIXED[this.turn++ % MIXED.length];
    if (want === 'step' && this.ready.length > 0) return this.stepOp(this.ready.shift() as TaskState);
    if (want !== 'create' && this.idle.length > 0) return this.agentOp(this.idle.shift() as string);
    return this.createOp();
  }

  private agentOp(id: string): Op {
    const version = Math.max(Math.round(now() * 1000), (this.lastVersion.get(id) ?? 0) + 1);
    this.lastVersion.set(id, version);
    this.busy.add(id);
    const body = agentBody(id, version, version % 8);
    return {
      kind: 'agent',
      id,
      version,
      method: 'PUT',
      path: `/v1/agents/${id}`,
      body,
      batch: { op: 'agent.put', id, agent: body },
      value: body,
      done: () => {
        this.busy.delete(id);
        if (this.cfg.workload === 'mixed') this.idle.push(id);
      },
    };
  }

  private createOp(): Op {
    const i = this.tasks++;
    const id = `${this.cfg.taskPrefix}-${this.slot}-${i}`;
    const body = taskBody(id, i);
    const agent = this.agents[i % this.agents.length] as string;
    const value = { ...body, status: 'PENDING' };
    return {
      kind: 'task',
      id,
      version: 1,
      method: 'POST',
      path: '/v1/tasks',
      body,
      batch: { op: 'task.create', task: body },
      value,
      done: (ok) => {
        if (ok) this.ready.push({ id, i, step: 0, agent, value });
      },
    };
  }

  private stepOp(t: TaskState): Op {
    const patch = t.step === 0 ? startPatch(t.agent) : completePatch(t.i);
    const value = { ...t.value, ...patch };
    return {
      kind: 'task',
      id: t.id,
      version: t.step === 0 ? 3 : 4,
      method: 'PATCH',
      path: `/v1/tasks/${t.id}`,
      body: patch,
      batch: { op: 'task.patch', id: t.id, patch },
      value,
      done: (ok) => {
        if (ok && t.step === 0) this.ready.push({ ...t, step: 1, value });
      },
    };
  }
}

type Send = (slot: number, ops: Op[]) => Promise<boolean[]>;

const REQUEST_TIMEOUT_MS = 30_000;
/** Open loop: past the window's end by this much, writes still due are counted as not sent. */
const LATE_LIMIT_MS = 30_000;

/** Mesh transport: node:http with one keep-alive agent per node. */
function meshTransport(cfg: WriterConfig, errors: string[], flags: { batchMissing: boolean }): Send {
  const agents = new Map<number, { agent: Agent; url: URL }>();
  for (const s of cfg.slots) {
    agents.set(s.index, {
      agent: new Agent({ keepAlive: true, maxSockets: cfg.inFlight ?? 256 }),
      url: new URL(s.api as string),
    });
  }
  const call = (slot: number, method: string, path: string, body: unknown): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const { agent, url } = agents.get(slot) as { agent: Agent; url: URL };
      const data = JSON.stringify(body);
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          method,
          path,
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
          timeout: REQUEST_TIMEOUT_MS,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out after ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(data);
    });
  const note = (msg: string): void => {
    if (errors.length < 10) errors.push(msg);
  };
  return async (slot, ops) => {
    try {
      if (cfg.batchOps === undefined) {
        const op = ops[0] as Op;
        const r = await call(slot, op.method, op.path, op.body);
        if (r.status !== 200 && r.status !== 201) note(`${op.method} ${op.path}: ${r.status} ${r.text.slice(0, 200)}`);
        return [r.status === 200 || r.status === 201];
      }
      const r = await call(slot, 'POST', '/v1/batch', { ops: ops.map((o) => o.batch) });
      if (r.status === 404) flags.batchMissing = true;
      if (r.status !== 200) {
        note(`POST /v1/batch: ${r.status} ${r.text.slice(0, 200)}`);
        return ops.map(() => false);
      }
      const results = (JSON.parse(r.text) as { results: Array<{ ok: boolean; error?: unknown }> }).results;
      return ops.map((_, i) => {
        const res = results[i];
        if (res?.ok !== true) note(`batch op ${i}: ${JSON.stringify(res?.error ?? 'no result').slice(0, 200)}`);
        return res?.ok === true;
      });
    } catch (err) {
      note((err as Error).message);
      return ops.map(() => false);
    }
  };
}

/** NATS transport: one connection per slot, a put of the write's JSON value under `agents.<id>` / `tasks.<id>`. */
async function natsTransport(cfg: WriterConfig, errors: string[]): Promise<{ send: Send; close: () => Promise<void> }> {
  const { connect } = await import('@nats-io/transport-node');
  const { Kvm } = await import('@nats-io/kv');
  const conns = new Map<number, { close(): Promise<void> }>();
  const kvs = new Map<number, { put(k: string, v: string): Promise<number> }>();
  for (const s of cfg.slots) {
    const nc = await connect({ servers: `127.0.0.1:${cfg.natsPort}` });
    conns.set(s.index, nc);
    kvs.set(s.index, await new Kvm(nc).open(cfg.bucket as string));
  }
  const send: Send = async (slot, ops) => {
    const op = ops[0] as Op;
    try {
      await kvs.get(slot)?.put(`${op.kind}s.${op.id}`, JSON.stringify(op.value));
      return [true];
    } catch (err) {
      if (errors.length < 10) errors.push((err as Error).message);
      return [false];
    }
  };
  return { send, close: async () => void (await Promise.all([...conns.values()].map((c) => c.close()))) };
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] as string) as WriterConfig;
  const errors: string[] = [];
  const flags = { batchMissing: false };
  let send: Send;
  let close = async (): Promise<void> => {};
  if (cfg.target === 'nats') ({ send, close } = await natsTransport(cfg, errors));
  else send = meshTransport(cfg, errors, flags);
  const slots = cfg.slots.map((s) => ({ index: s.index, work: new SlotWorkload(cfg, s.index) }));
  const records: WriteRecord[] = [];
  let acked = 0;
  let failed = 0;
  let notSent = 0;
  let inFlight = 0;
  /** Open loop: the latest a write went out after its due time (ms), and writes taken in turn. */
  let late = 0;
  let scheduled = 0;

  /** Sends one request (one write, or one batch) for `slot`; false if no write was available. */
  const fire = (slot: (typeof slots)[number]): Promise<void> | undefined => {
    const ops: Op[] = [];
    const want = cfg.batchOps ?? 1;
    while (ops.length < want) {
      const op = slot.work.take();
      if (op === undefined) break;
      ops.push(op);
    }
    if (ops.length === 0) return undefined;
    inFlight += ops.length;
    const sent = now();
    return send(slot.index, ops).then((oks) => {
      const at = now();
      inFlight -= ops.length;
      ops.forEach((op, i) => {
        const ok = oks[i] === true;
        if (ok) acked++;
        else failed++;
        records.push([keyOf(op.kind, op.id), op.version, sent, at, slot.index, ok ? 1 : 0]);
        op.done(ok);
      });
    });
  };

  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin });
  await new Promise<void>((resolve, reject) => {
    lines.once('line', () => resolve());
    lines.once('close', () => reject(new Error('stdin closed before go')));
  });
  const start = now();
  const end = start + cfg.durationMs;
  const pending = new Set<Promise<void>>();
  const track = (p: Promise<void> | undefined): void => {
    if (p === undefined) return;
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
  if (cfg.rate !== undefined) {
    // Open loop: write k is due at start + k / rate, whatever is still in flight, so a slow
    // system cannot slow the offered load down; writes are dealt to the slots in turn.
    // Every write due within the window is sent, late if this process fell behind (it shares
    // the CPU with the nodes); how late is reported, since latency runs from the actual send.
    const cap = cfg.maxInFlight ?? 5000;
    const total = Math.floor((cfg.durationMs * cfg.rate) / 1000);
    const hardStop = end + LATE_LIMIT_MS;
    for (let k = 0; k < total && now() < hardStop; k++) {
      const due = start + (k * 1000) / cfg.rate;
      const wait = due - now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      else if (k % 64 === 0) await new Promise((r) => setImmediate(r)); // let responses in while catching up
      late = Math.max(late, now() - due);
      const slot = slots[k % slots.length] as (typeof slots)[number];
      if (inFlight >= cap) notSent++;
      else {
        const p = fire(slot);
        if (p === undefined) notSent++;
        else track(p);
      }
      scheduled++;
    }
    notSent += total - scheduled;
  } else {
    // Closed loop: `inFlight` requests per slot, each starting the next when it ends.
    const loop = async (slot: (typeof slots)[number]): Promise<void> => {
      while (now() < end && !slot.work.exhausted) {
        const p = fire(slot);
        if (p === undefined) await new Promise((r) => setTimeout(r, 1));
        else await p;
      }
    };
    await Promise.all(slots.flatMap((s) => Array.from({ length: cfg.inFlight ?? 16 }, () => loop(s))));
  }
  // Drain what is still in flight (each request has its own timeout).
  await Promise.all([...pending]);
  const stop = now();
  await close();
  writeFileSync(cfg.out, JSON.stringify(records));
  const summary: WriterSummary = {
    acked,
    failed,
    notSent,
    lateMs: late,
    errors,
    start,
    end: stop,
    ...(flags.batchMissing ? { batchMissing: true } : {}),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`, () => process.exit(0));
}

await main();
