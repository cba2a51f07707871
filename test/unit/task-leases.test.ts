import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Register } from '../../src/crdt/index.js';
import { type Delta, type Replica } from '../../src/replica/index.js';
import {
  type AttemptRecord,
  type Holder,
  MAX_HISTORY,
  type Outcome,
  type RunValue,
  TaskBoard,
  TaskError,
  taskKey,
  taskSchema,
  type TaskView,
  TERMINAL_STATUSES,
} from '../../src/tasks/index.js';
import { meshReplica } from '../helpers/api-backend.js';
import { fcParams } from '../helpers/fc.js';
import { prng } from '../helpers/replicas.js';

/** A controllable wall clock shared by a test's boards and their replicas' HLCs. */
interface Clock {
  now: number;
}

interface LeaseNode {
  id: string;
  replica: Replica;
  board: TaskBoard;
  /** Every delta this node produced, in order. */
  out: Delta[];
  /** The last value the board's jitter source returned. */
  jitter: { last: number };
}

const START = 1_000_000;

function leaseNode(
  id: string,
  clock: Clock,
  options: { random?: () => number; ownerOf?: (agent: string) => string | undefined; assignLeaseMs?: number } = {},
): LeaseNode {
  const replica = meshReplica(id, () => clock.now);
  const out: Delta[] = [];
  const mutate = async (k: string, b: Parameters<Replica['mutate']>[1]) => {
    const d = replica.mutate(k, b);
    out.push(d);
    return d;
  };
  const random = options.random ?? (() => 0.5);
  const jitter = { last: Number.NaN };
  const board = new TaskBoard({
    replica,
    mutate,
    now: () => clock.now,
    random: () => (jitter.last = random()),
    ...(options.ownerOf ? { ownerOf: options.ownerOf } : {}),
    ...(options.assignLeaseMs !== undefined ? { assignLeaseMs: options.assignLeaseMs } : {}),
  });
  return { id, replica, out, board, jitter };
}

function deliverAll(from: LeaseNode, ...to: LeaseNode[]): void {
  for (const n of to) for (const d of from.out) n.replica.applyDelta(d, from.id);
}

function isTaskError(code: string) {
  return (e: unknown) => e instanceof TaskError && e.code === code;
}

function runOf(r: Replica, id: string): Register<RunValue> {
  const s = r.get(taskKey(id));
  assert.ok(s !== undefined, `${r.nodeId} has task ${id}`);
  const run = taskSchema.get(s, 'run');
  assert.ok(run !== undefined, `${r.nodeId} has the run of ${id}`);
  return run;
}

function assertSameRecord(nodes: LeaseNode[], id: string, label: string): void {
  const ref = nodes[0]?.replica.get(taskKey(id));
  assert.ok(ref !== undefined, `${label}: ${nodes[0]?.id} has ${id}`);
  for (const n of nodes) {
    const s = n.replica.get(taskKey(id));
    assert.ok(
      s !== undefined && taskSchema.equals(s, ref),
      `${label}: ${n.id} holds the same record as ${nodes[0]?.id}`,
    );
  }
}

function holder(node: string, agent: string, claimRank = 0): Holder {
  return { node, agent, claimRank };
}

/** Every ordering of `xs` (small arrays only). */
function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [[...xs]];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

const fail = (retryable: boolean, code = 'E'): Outcome => ({ ok: false, error: { code, message: code }, retryable });

// ---------------------------------------------------------------------------------------------------
// The model: an independent statement of the run register's order and of the board's rules.

const STATUS_RANK: Record<string, number> = {
  PENDING: 0,
  ASSIGNED: 1,
  IN_PROGRESS: 2,
  COMPLETED: 3,
  FAILED: 3,
  CANCELLED: 3,
};

const cmpStr = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The run order as the design states it: a cancel first; then the higher epoch; then the status
 * (PENDING < ASSIGNED < IN_PROGRESS < terminal); then the lower claim rank; then the smaller
 * node, then agent; equal ones (one holder's own writes) by (timestamp, writer).
 */
function modelCompare(a: Register<RunValue>, b: Register<RunValue>): number {
  const ca = a.v.status === 'CANCELLED' ? 1 : 0;
  const cb = b.v.status === 'CANCELLED' ? 1 : 0;
  return (
    ca - cb ||
    a.v.epoch - b.v.epoch ||
    (STATUS_RANK[a.v.status] as number) - (STATUS_RANK[b.v.status] as number) ||
    b.v.claimRank - a.v.claimRank ||
    -cmpStr(a.v.node ?? '', b.v.node ?? '') ||
    -cmpStr(a.v.agent ?? '', b.v.agent ?? '') ||
    a.t - b.t ||
    cmpStr(a.w, b.w)
  );
}

type Kind =
  | 'create'
  | 'claim'
  | 'start'
  | 'renew'
  | 'report'
  | 'finish-ok'
  | 'finish-retry'
  | 'finish-fatal'
  | 'release'
  | 'expire'
  | 'cancel';

interface Write {
  kind: Kind;
  origin: number;
  delta: Delta;
  run: Register<RunValue> | undefined;
}

interface Tally {
  /** Successful writes by kind. */
  ok: Record<string, number>;
  /** Predicted refusals by kind and code. */
  refused: Record<string, number>;
  staleDeliveries: number;
  duplicates: number;
  claimConflicts: number;
  claimsOverExpired: number;
  backoffRefusals: number;
}

interface Model {
  maxRetries: number;
  backoffMs: number;
  maxBackoffMs: number;
  writes: Write[];
  /** Per node: the writes it holds (its own included). */
  seen: Set<number>[];
  /** Per node: the epoch of its last successful claim (what its executor would write with). */
  mine: Array<number | undefined>;
  /** Per node: the stale_epoch rejections it must have counted. */
  stale: number[];
  lastEpoch: number[];
  cancelled: boolean[];
  tally: Tally;
}

interface Real {
  nodes: LeaseNode[];
  clock: Clock;
  id: string;
}

const NODE_IDS = ['node-a', 'node-b', 'node-c'] as const;

function view(m: Model, i: number): Register<RunValue> {
  let best: Register<RunValue> | undefined;
  for (const w of m.seen[i] as Set<number>) {
    const r = (m.writes[w] as Write).run;
    if (r !== undefined && (best === undefined || modelCompare(r, best) > 0)) best = r;
  }
  assert.ok(best !== undefined, `node ${i} holds the creation`);
  return best;
}

/** After every command: each replica holds exactly the model's run, and the invariants hold. */
function checkAll(m: Model, r: Real, label: string): void {
  for (const [i, n] of r.nodes.entries()) {
    const actual = runOf(n.replica, r.id);
    const expected = view(m, i);
    assert.deepEqual(actual, expected, `${label}: ${n.id} holds the run the model orders first`);
    const v = actual.v;
    if (m.cancelled[i]) assert.equal(v.status, 'CANCELLED', `${label}: ${n.id} stays cancelled`);
    if (v.status === 'CANCELLED') m.cancelled[i] = true;
    else {
      assert.ok(v.epoch >= (m.lastEpoch[i] as number), `${label}: ${n.id}'s epoch went back`);
    }
    m.lastEpoch[i] = Math.max(m.lastEpoch[i] as number, v.epoch);
    assert.ok(v.attempt <= m.maxRetries + 1, `${label}: ${n.id} at attempt ${v.attempt} > maxRetries + 1`);
    const stale = n.replica.stats.rejectedByReason.stale_epoch ?? 0;
    assert.equal(stale, m.stale[i], `${label}: ${n.id} counted stale_epoch writes`);
    assert.equal(n.replica.stats.rejected, stale, `${label}: ${n.id} refused nothing but fenced writes`);
    const tv = n.board.get(r.id) as TaskView;
    assert.deepEqual(
      [tv.status, tv.epoch, tv.attempt, tv.node, tv.assignee, tv.leaseUntil],
      [v.status, v.epoch, v.attempt, v.node, v.agent, v.leaseUntil],
      `${label}: ${n.id}'s view shows the run`,
    );
  }
}

type Prediction = { code: string } | { check: (run: RunValue, before: RunValue, now: number) => void };

/**
 * Runs a local write on node `i` and compares it with the prediction: a refusal with exactly
 * that code and no delta, or one delta whose run the model records and `check` inspects.
 */
async function localWrite(
  m: Model,
  r: Real,
  i: number,
  kind: Kind,
  label: string,
  predict: (v: RunValue, now: number) => Prediction,
  call: (n: LeaseNode) => Promise<TaskView>,
): Promise<RunValue | undefined> {
  const n = r.nodes[i] as LeaseNode;
  const before = view(m, i).v;
  const now = r.clock.now;
  const p = predict(before, now);
  const outLen = n.out.length;
  const result = await call(n).then(
    (v) => v,
    (e: unknown) => {
      if (!(e instanceof TaskError)) throw e;
      return e;
    },
  );
  if ('code' in p) {
    assert.ok(result instanceof TaskError, `${label}: expected ${p.code}, got success`);
    assert.equal(result.code, p.code, `${label}: ${result.message}`);
    assert.equal(n.out.length, outLen, `${label}: a refused write produces no delta`);
    m.tally.refused[`${kind}:${p.code}`] = (m.tally.refused[`${kind}:${p.code}`] ?? 0) + 1;
    checkAll(m, r, label);
    return undefined;
  }
  assert.ok(!(result instanceof TaskError), `${label}: expected success, got ${String(result)}`);
  if (kind === 'cancel' && before.status === 'CANCELLED') {
    assert.equal(n.out.length, outLen, `${label}: a second cancel writes nothing`);
    checkAll(m, r, label);
    return before;
  }
  assert.equal(n.out.length, outLen + 1, `${label}: one delta`);
  const delta = n.out[outLen] as Delta;
  const run = taskSchema.get(delta.state, 'run');
  assert.ok(run !== undefined, `${label}: the delta carries the run`);
  p.check(run.v, before, now);
  assert.equal(run.v.updatedAt, now, `${label}: stamped now`);
  m.writes.push({ kind, origin: i, delta, run });
  m.seen[i]?.add(m.writes.length - 1);
  m.tally.ok[kind] = (m.tally.ok[kind] ?? 0) + 1;
  checkAll(m, r, label);
  return run.v;
}

const isHeld = (v: RunValue): boolean => v.status === 'ASSIGNED' || v.status === 'IN_PROGRESS';

/** The common refusals of a holder's write at `epoch` by node `node`. */
function holderRefusal(v: RunValue, epoch: number, node: string): Prediction | undefined {
  if (v.epoch !== epoch) return { code: 'STALE_EPOCH' };
  if (v.node !== node) return { code: 'NOT_HOLDER' };
  if (TERMINAL_STATUSES.has(v.status)) return { code: 'INVALID_TRANSITION' };
  return undefined;
}

type EpochChoice = 'mine' | 'view' | 'older';

function epochFor(m: Model, i: number, which: EpochChoice): number {
  const v = view(m, i).v;
  if (which === 'mine') return m.mine[i] ?? v.epoch;
  if (which === 'older') return Math.max(0, v.epoch - 1);
  return v.epoch;
}

/** The backoff base after attempt `attempt` failed: the delay is within [base/2, base]. */
function backoffBase(m: Model, attempt: number): number {
  return Math.min(m.maxBackoffMs, m.backoffMs * 2 ** (attempt - 1));
}

/** A requeued run: PENDING at epoch + 1 as the next attempt, unheld, not before the backoff. */
function checkRequeue(
  m: Model,
  n: LeaseNode,
  label: string,
  run: RunValue,
  before: RunValue,
  now: number,
  error: unknown,
): void {
  assert.deepEqual(
    [run.status, run.epoch, run.attempt, run.node, run.agent, run.leaseUntil, run.progress, run.result],
    ['PENDING', before.epoch + 1, before.attempt + 1, null, null, null, 0, null],
    `${label}: back to the pool as the next attempt at a new epoch`,
  );
  const base = backoffBase(m, before.attempt);
  const delay = Math.round(base / 2 + (n.jitter.last * base) / 2);
  assert.equal(run.notBefore, delay > 0 ? now + delay : null, `${label}: backoff from the injected random`);
  if (run.notBefore !== null) {
    assert.ok(
      run.notBefore - now >= Math.floor(base / 2) && run.notBefore - now <= base,
      `${label}: delay within [base/2, base] for base ${base}`,
    );
  }
  assert.deepEqual(run.error, error, `${label}: the last error is kept`);
  assert.deepEqual(
    run.history.at(-1),
    {
      attempt: before.attempt,
      epoch: before.epoch,
      node: before.node,
      agent: before.agent,
      status: 'FAILED',
      error,
      startedAt: before.startedAt,
      endedAt: now,
    } satisfies AttemptRecord,
    `${label}: the failed attempt is in the history`,
  );
}

class ClaimCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly node: number,
    readonly agent: number,
    readonly rank: number,
    readonly leaseMs: number,
    readonly persist: boolean,
  ) {}
  /** Mostly skipped once this node sees the task ended: writes then have nothing left to do. */
  check = (m: Readonly<Model>) => this.persist || !ended(m, this.node);
  async run(m: Model, r: Real): Promise<void> {
    const nodeId = NODE_IDS[this.node] as string;
    const h = holder(nodeId, `agent-${this.node}${this.agent}`, this.rank);
    const label = this.toString();
    const overExpired = isHeld(view(m, this.node).v);
    const run = await localWrite(
      m,
      r,
      this.node,
      'claim',
      label,
      (v, now) => {
        const common = (run: RunValue) =>
          assert.deepEqual(
            [run.status, run.epoch, run.node, run.agent, run.claimRank, run.leaseUntil, run.notBefore],
            ['ASSIGNED', v.epoch + 1, h.node, h.agent, h.claimRank, now + this.leaseMs, null],
            `${label}: claimed at epoch + 1`,
          );
        if (v.status === 'PENDING') {
          if (v.notBefore !== null && v.notBefore > now) {
            m.tally.backoffRefusals++;
            return { code: 'NOT_HOLDER' };
          }
          return {
            check: (run) => {
              common(run);
              assert.deepEqual(
                [run.attempt, run.progress, run.startedAt, run.result, run.history],
                [v.attempt, 0, null, null, v.history],
                `${label}: the same attempt, from scratch`,
              );
            },
          };
        }
        if (isHeld(v) && (v.leaseUntil ?? 0) < now) {
          if (v.attempt > m.maxRetries) return { code: 'NOT_HOLDER' };
          return {
            check: (run) => {
              common(run);
              assert.equal(run.attempt, v.attempt + 1, `${label}: a new attempt`);
              assert.equal(run.history.length, Math.min(MAX_HISTORY, v.history.length + 1), `${label}: history`);
              const last = run.history.at(-1) as AttemptRecord;
              assert.deepEqual(
                [last.attempt, last.epoch, last.node, last.agent, last.status, last.endedAt],
                [v.attempt, v.epoch, v.node, v.agent, 'FAILED', now],
                `${label}: the expired attempt is in the history, FAILED`,
              );
              assert.equal((last.error as { code?: unknown }).code, 'LEASE_EXPIRED', `${label}: LEASE_EXPIRED`);
            },
          };
        }
        return { code: 'NOT_HOLDER' };
      },
      (n) => n.board.claim(r.id, h, r.clock.now + this.leaseMs),
    );
    if (run !== undefined) {
      m.mine[this.node] = run.epoch;
      if (overExpired) m.tally.claimsOverExpired++;
    }
  }
  toString = () =>
    `claim(${NODE_IDS[this.node]}, agent-${this.node}${this.agent}, rank ${this.rank}, ${this.leaseMs}ms)`;
}

/** The holder's writes: start, renew, report, finish (ok / retryable / fatal), release. */
class HolderCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly node: number,
    readonly op: 'start' | 'renew' | 'report' | 'finish-ok' | 'finish-retry' | 'finish-fatal' | 'release',
    readonly which: EpochChoice,
    readonly n: number,
    /** Whether to write from a node that believes it holds the task (if any), not `node`. */
    readonly fromHolder: boolean,
    readonly persist: boolean,
  ) {}
  /** The node that wrote (resolved when run). */
  private at: number | undefined;
  /** Mostly skipped once this node sees the task ended: writes then have nothing left to do. */
  check = (m: Readonly<Model>) => this.persist || !ended(m, this.node);
  async run(m: Model, r: Real): Promise<void> {
    const at = this.fromHolder ? believedHolder(m, this.node) : this.node;
    this.at = at;
    const nodeId = NODE_IDS[at] as string;
    const epoch = epochFor(m, at, this.which);
    const label = `${this.toString()} at epoch ${epoch}`;
    const node = r.nodes[at] as LeaseNode;
    const error = { code: 'E', message: `failure ${this.n}` };
    const op = this.op;
    await localWrite(
      m,
      r,
      at,
      op,
      label,
      (v, now) => {
        const refusal = holderRefusal(v, epoch, nodeId);
        if (refusal !== undefined) return refusal;
        const same = (run: RunValue) =>
          assert.deepEqual(
            [run.epoch, run.attempt, run.node, run.agent, run.claimRank],
            [v.epoch, v.attempt, v.node, v.agent, v.claimRank],
            `${label}: same epoch and holder`,
          );
        switch (op) {
          case 'start':
            if (v.status !== 'ASSIGNED') return { code: 'INVALID_TRANSITION' };
            return {
              check: (run) => {
                same(run);
                assert.deepEqual(
                  [run.status, run.leaseUntil, run.startedAt, run.progress],
                  ['IN_PROGRESS', now + this.n, now, 0],
                  label,
                );
              },
            };
          case 'renew':
            return {
              check: (run) => {
                same(run);
                assert.equal(run.status, v.status, label);
                assert.equal(run.leaseUntil, Math.max(now + this.n, v.leaseUntil ?? 0), `${label}: never shortened`);
              },
            };
          case 'report':
            return {
              check: (run) => {
                same(run);
                assert.deepEqual(
                  [run.status, run.progress, run.log],
                  [v.status, this.n % 101, [`line ${this.n}`]],
                  label,
                );
              },
            };
          case 'finish-ok':
            if (!isHeld(v)) return { code: 'INVALID_TRANSITION' };
            return {
              check: (run) => {
                same(run);
                assert.deepEqual(
                  [run.status, run.result, run.error, run.progress],
                  ['COMPLETED', { n: this.n }, null, 100],
                  label,
                );
              },
            };
          case 'finish-retry':
          case 'finish-fatal':
            if (!isHeld(v)) return { code: 'INVALID_TRANSITION' };
            if (op === 'finish-retry' && v.attempt <= m.maxRetries) {
              return { check: (run, before) => checkRequeue(m, node, label, run, before, now, error) };
            }
            return {
              check: (run) => {
                same(run);
                assert.deepEqual([run.status, run.error], ['FAILED', error], `${label}: FAILED for good`);
              },
            };
          case 'release':
            if (v.status !== 'ASSIGNED') return { code: 'INVALID_TRANSITION' };
            return {
              check: (run) =>
                assert.deepEqual(
                  [run.status, run.epoch, run.attempt, run.node, run.agent, run.leaseUntil],
                  ['PENDING', v.epoch + 1, v.attempt, null, null, null],
                  `${label}: back to the pool, same attempt, new epoch`,
                ),
            };
        }
      },
      (n) => {
        const now = r.clock.now;
        switch (op) {
          case 'start':
            return n.board.start(r.id, epoch, now + this.n);
          case 'renew':
            return n.board.renew(r.id, epoch, now + this.n);
          case 'report':
            return n.board.report(r.id, epoch, { progress: this.n % 101, log: [`line ${this.n}`] });
          case 'finish-ok':
            return n.board.finish(r.id, epoch, { ok: true, result: { n: this.n } });
          case 'finish-retry':
            return n.board.finish(r.id, epoch, { ok: false, error, retryable: true });
          case 'finish-fatal':
            return n.board.finish(r.id, epoch, { ok: false, error, retryable: false });
          case 'release':
            return n.board.release(r.id, epoch);
        }
      },
    );
  }
  toString = () =>
    `${this.op}(${NODE_IDS[this.at ?? this.node]}${this.fromHolder ? ' as holder' : ''}, ${this.which} epoch, ${this.n})`;
}

/** Whether node `i` sees the task ended (COMPLETED, FAILED or CANCELLED). */
function ended(m: Readonly<Model>, i: number): boolean {
  return TERMINAL_STATUSES.has(view(m as Model, i).v.status);
}

/** The first node, from `start` on, whose replica names it as the holder; else `start`. */
function believedHolder(m: Model, start: number): number {
  for (let k = 0; k < NODE_IDS.length; k++) {
    const i = (start + k) % NODE_IDS.length;
    if (view(m, i).v.node === NODE_IDS[i]) return i;
  }
  return start;
}

class ExpireCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly node: number,
    readonly which: EpochChoice,
    readonly persist: boolean,
  ) {}
  /** Mostly skipped once this node sees the task ended: writes then have nothing left to do. */
  check = (m: Readonly<Model>) => this.persist || !ended(m, this.node);
  async run(m: Model, r: Real): Promise<void> {
    const epoch = epochFor(m, this.node, this.which === 'mine' ? 'view' : this.which);
    const label = `${this.toString()} at epoch ${epoch}`;
    const node = r.nodes[this.node] as LeaseNode;
    await localWrite(
      m,
      r,
      this.node,
      'expire',
      label,
      (v, now) => {
        if (v.epoch !== epoch) return { code: 'STALE_EPOCH' };
        if (!isHeld(v) || (v.leaseUntil ?? 0) >= now) return { code: 'NOT_HOLDER' };
        const error = {
          code: 'LEASE_EXPIRED',
          message: `the lease of ${v.node ?? 'its holder'} expired`,
          retryable: true,
        };
        if (v.attempt <= m.maxRetries) {
          return { check: (run, before) => checkRequeue(m, node, label, run, before, now, error) };
        }
        return {
          check: (run) =>
            assert.deepEqual(
              [run.status, run.epoch, run.attempt, run.error],
              ['FAILED', v.epoch, v.attempt, error],
              `${label}: the last attempt's lease expired: FAILED`,
            ),
        };
      },
      (n) => n.board.expire(r.id, epoch),
    );
  }
  toString = () => `expire(${NODE_IDS[this.node]}, ${this.which} epoch)`;
}

class CancelCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly node: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const label = this.toString();
    await localWrite(
      m,
      r,
      this.node,
      'cancel',
      label,
      (v) => {
        if (v.status === 'CANCELLED') return { check: () => undefined };
        if (TERMINAL_STATUSES.has(v.status)) return { code: 'INVALID_TRANSITION' };
        return {
          check: (run) =>
            assert.deepEqual(
              [run.status, run.epoch, run.attempt, run.node, run.error],
              ['CANCELLED', v.epoch, v.attempt, v.node, { code: 'CANCELLED', message: 'stop' }],
              `${label}: cancelled in place`,
            ),
        };
      },
      (n) => n.board.cancel(r.id, 'stop'),
    );
  }
  toString = () => `cancel(${NODE_IDS[this.node]})`;
}

/** Applies one of another node's deltas: an unseen one picked at random, or a duplicate. */
class DeliverCmd implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly to: number,
    readonly pick: number,
    readonly duplicate: boolean,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    deliverOne(m, r, this.to, this.pick, this.duplicate, this.toString());
    checkAll(m, r, this.toString());
  }
  toString = () => `deliver(to ${NODE_IDS[this.to]}, #${this.pick}${this.duplicate ? ', duplicate' : ''})`;
}

/** Delivers a write to node `to`; returns false when there is nothing to deliver. */
function deliverOne(m: Model, r: Real, to: number, pick: number, duplicate: boolean, label: string): boolean {
  const seen = m.seen[to] as Set<number>;
  const pool = m.writes.map((w, i) => ({ w, i })).filter(({ w, i }) => w.origin !== to && seen.has(i) === duplicate);
  if (pool.length === 0) return false;
  const { w, i } = pool[pick % pool.length] as { w: Write; i: number };
  const n = r.nodes[to] as LeaseNode;
  let expected: string;
  if (duplicate) {
    expected = 'duplicate';
    m.tally.duplicates++;
  } else {
    const cur = view(m, to);
    if (w.run !== undefined && modelCompare(w.run, cur) > 0) expected = 'applied';
    else {
      expected = 'unchanged';
      // Fenced: a holder's write (not a creation or a return to the pool) at an older epoch.
      if (
        w.run !== undefined &&
        w.run.v.status !== 'CANCELLED' &&
        w.run.v.node !== null &&
        w.run.v.epoch < cur.v.epoch
      ) {
        m.stale[to] = (m.stale[to] as number) + 1;
        m.tally.staleDeliveries++;
      }
    }
    seen.add(i);
  }
  const outcome = n.replica.applyDelta(w.delta, NODE_IDS[w.origin]);
  assert.equal(outcome, expected, `${label}: ${w.kind} by ${NODE_IDS[w.origin]} (epoch ${w.run?.v.epoch})`);
  return true;
}

class AdvanceCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    r.clock.now += this.ms;
    checkAll(m, r, this.toString());
  }
  toString = () => `advance(${this.ms}ms)`;
}

const nodeArb = fc.nat(NODE_IDS.length - 1);
const epochArb = fc.constantFrom<EpochChoice>('mine', 'mine', 'view', 'view', 'older');
const claimArb = fc
  .tuple(nodeArb, fc.nat(1), fc.nat(2), fc.integer({ min: 100, max: 3_000 }))
  .map(([n, a, rank, ms]): fc.AsyncCommand<Model, Real> => new ClaimCmd(n, a, rank, ms, ms % 4 === 0));
const holderArb = fc
  .tuple(
    nodeArb,
    // Mostly the writes that keep the task alive; the ones that end it are rarer.
    fc.constantFrom<HolderCmd['op']>(
      'start',
      'start',
      'start',
      'renew',
      'renew',
      'report',
      'report',
      'finish-retry',
      'finish-retry',
      'finish-ok',
      'finish-fatal',
      'release',
    ),
    epochArb,
    fc.integer({ min: 100, max: 3_000 }),
    fc.nat(3).map((x) => x > 0),
  )
  .map(
    ([n, op, which, x, fromHolder]): fc.AsyncCommand<Model, Real> =>
      new HolderCmd(n, op, which, x, fromHolder, x % 4 === 0),
  );
const expireArb = fc
  .tuple(nodeArb, fc.constantFrom<EpochChoice>('view', 'view', 'older'), fc.nat(3))
  .map(([n, w, p]): fc.AsyncCommand<Model, Real> => new ExpireCmd(n, w, p === 0));
const cancelArb = nodeArb.map((n): fc.AsyncCommand<Model, Real> => new CancelCmd(n));
const deliverArb = fc
  .tuple(nodeArb, fc.nat(), fc.boolean())
  .map(([to, pick, dup]): fc.AsyncCommand<Model, Real> => new DeliverCmd(to, pick, dup && pick % 3 === 0));
const advanceArb = fc.integer({ min: 1, max: 4_000 }).map((ms): fc.AsyncCommand<Model, Real> => new AdvanceCmd(ms));
/** One weighted choice: cancels are rare (a cancel ends everything), deliveries and writes common. */
const commandArbs: Array<fc.Arbitrary<fc.AsyncCommand<Model, Real>>> = [
  fc.oneof(
    { arbitrary: claimArb, weight: 10 },
    { arbitrary: holderArb, weight: 18 },
    { arbitrary: expireArb, weight: 4 },
    { arbitrary: cancelArb, weight: 1 },
    { arbitrary: deliverArb, weight: 14 },
    { arbitrary: advanceArb, weight: 6 },
  ),
];

function emptyTally(): Tally {
  return {
    ok: {},
    refused: {},
    staleDeliveries: 0,
    duplicates: 0,
    claimConflicts: 0,
    claimsOverExpired: 0,
    backoffRefusals: 0,
  };
}

function addTally(into: Tally, t: Tally): void {
  for (const [k, v] of Object.entries(t.ok)) into.ok[k] = (into.ok[k] ?? 0) + v;
  for (const [k, v] of Object.entries(t.refused)) into.refused[k] = (into.refused[k] ?? 0) + v;
  into.staleDeliveries += t.staleDeliveries;
  into.duplicates += t.duplicates;
  into.claimConflicts += t.claimConflicts;
  into.claimsOverExpired += t.claimsOverExpired;
  into.backoffRefusals += t.backoffRefusals;
}

describe('task leases and epochs', () => {
  it('claims from PENDING at epoch + 1; only the holder of the current epoch writes', async () => {
    const clock = { now: START };
    const a = leaseNode('node-a', clock);
    const b = leaseNode('node-b', clock);
    const { id } = await a.board.create({ type: 'x' });
    const claimed = await a.board.claim(id, holder('node-a', 'agent-1', 2), START + 1_000);
    assert.deepEqual(
      [
        claimed.status,
        claimed.epoch,
        claimed.attempt,
        claimed.node,
        claimed.assignee,
        claimed.claimRank,
        claimed.leaseUntil,
      ],
      ['ASSIGNED', 1, 1, 'node-a', 'agent-1', 2, START + 1_000],
    );
    await assert.rejects(
      a.board.claim(id, holder('node-a', 'agent-2'), START + 5_000),
      isTaskError('NOT_HOLDER'),
      'held',
    );
    deliverAll(a, b);
    await assert.rejects(
      b.board.claim(id, holder('node-b', 'agent-3'), START + 5_000),
      isTaskError('NOT_HOLDER'),
      'held',
    );
    await assert.rejects(b.board.start(id, 1, START + 2_000), isTaskError('NOT_HOLDER'), 'another node');
    await assert.rejects(a.board.start(id, 0, START + 2_000), isTaskError('STALE_EPOCH'), 'an older epoch');
    await assert.rejects(a.board.start(id, 2, START + 2_000), isTaskError('STALE_EPOCH'), 'a future epoch');
    clock.now += 10;
    const started = await a.board.start(id, 1, START + 2_000);
    assert.deepEqual(
      [started.status, started.startedAt, started.leaseUntil],
      ['IN_PROGRESS', START + 10, START + 2_000],
    );
    await assert.rejects(a.board.start(id, 1, START + 2_000), isTaskError('INVALID_TRANSITION'), 'started twice');
    await assert.rejects(a.board.release(id, 1), isTaskError('INVALID_TRANSITION'), 'a started task is not released');
    const renewed = await a.board.renew(id, 1, START + 500);
    assert.equal(renewed.leaseUntil, START + 2_000, 'a renewal never shortens the lease');
    assert.equal((await a.board.renew(id, 1, START + 3_000)).leaseUntil, START + 3_000);
    const reported = await a.board.report(id, 1, { progress: 150, log: ['x'.repeat(2_000), 'b'] });
    assert.deepEqual([reported.progress, reported.log.map((l) => l.length)], [100, [1_024, 1]], 'clamped and trimmed');
    const done = await a.board.finish(id, 1, { ok: true, result: { answer: 42 }, log: ['done'] });
    assert.deepEqual(
      [done.status, done.epoch, done.result, done.progress, done.log],
      ['COMPLETED', 1, { answer: 42 }, 100, ['done']],
    );
    for (const [what, write] of [
      ['renew', () => a.board.renew(id, 1, START + 9_000)],
      ['report', () => a.board.report(id, 1, { progress: 1 })],
      ['finish', () => a.board.finish(id, 1, fail(false))],
    ] as const) {
      await assert.rejects(write(), isTaskError('INVALID_TRANSITION'), `${what} after the end`);
    }
    // Release: the same attempt back to the pool at a new epoch, claimable at once.
    const other = await a.board.create({ type: 'x' });
    await a.board.claim(other.id, holder('node-a', 'agent-1'), START + 1_000);
    const released = await a.board.release(other.id, 1);
    assert.deepEqual(
      [released.status, released.epoch, released.attempt, released.node, released.assignee, released.leaseUntil],
      ['PENDING', 2, 1, null, null, null],
    );
    await assert.rejects(a.board.release(other.id, 1), isTaskError('STALE_EPOCH'), 'released twice');
    assert.equal((await a.board.claim(other.id, holder('node-a', 'agent-2'), START + 1_000)).epoch, 3);
  });

  it('resolves concurrent claims at one epoch to one holder: the lower rank, then the smaller node/agent', async () => {
    const cases: Array<{ name: string; claims: Array<[number, Holder]>; winner: number }> = [
      {
        name: 'ranks 2, 0, 1',
        claims: [
          [0, holder('node-a', 'agent-a', 2)],
          [1, holder('node-b', 'agent-b', 0)],
          [2, holder('node-c', 'agent-c', 1)],
        ],
        winner: 1,
      },
      {
        name: 'equal ranks: the smaller node',
        claims: [
          [2, holder('node-c', 'agent-0', 1)],
          [1, holder('node-b', 'agent-9', 1)],
        ],
        winner: 1,
      },
      {
        name: 'one node, two agents: the smaller agent',
        claims: [
          [0, holder('node-a', 'agent-y', 0)],
          [1, holder('node-a', 'agent-x', 0)],
        ],
        winner: 1,
      },
    ];
    for (const c of cases) {
      for (const order of permutations(c.claims.map((_x, i) => i))) {
        const clock = { now: START };
        const nodes = ['node-a', 'node-b', 'node-c'].map((n) => leaseNode(n, clock));
        const [a] = nodes as [LeaseNode];
        const { id } = await a.board.create({ id: 't', type: 'x' });
        deliverAll(a, ...nodes.slice(1));
        const marks = nodes.map((n) => n.out.length);
        for (const [k, [ni, h]] of c.claims.entries()) {
          // Each claimant claims on its own replica, then renews (a losing claimant's renewals
          // must never overtake the winner).
          await nodes[ni]?.board.claim(id, h, START + 1_000 + k);
          if (h.node === NODE_IDS[ni]) await nodes[ni]?.board.renew(id, 1, START + 50_000);
        }
        const fresh = nodes.map((n, i) => n.out.slice(marks[i]));
        const observer = leaseNode('node-z', clock);
        for (const d of a.out.slice(0, marks[0])) observer.replica.applyDelta(d, 'node-a');
        for (const i of order) {
          const [ni] = c.claims[i] as [number, Holder];
          for (const n of [...nodes, observer]) {
            for (const d of fresh[ni] as Delta[]) n.replica.applyDelta(d, NODE_IDS[ni]);
          }
        }
        const label = `${c.name}, delivered in order ${order.join(',')}`;
        assertSameRecord([...nodes, observer], id, label);
        const win = (c.claims[c.winner] as [number, Holder])[1];
        const v = observer.board.get(id) as TaskView;
        assert.deepEqual(
          [v.status, v.epoch, v.node, v.assignee, v.claimRank],
          ['ASSIGNED', 1, win.node, win.agent, win.claimRank],
          label,
        );
        // The losers learn it: their writes at epoch 1 are refused now.
        for (const [ni, h] of c.claims) {
          if (h.node === win.node) continue;
          await assert.rejects(
            nodes[ni]?.board.start(id, 1, START + 9_000) as Promise<unknown>,
            isTaskError('NOT_HOLDER'),
            label,
          );
        }
      }
    }
    // The order ranks the status before the claim rank: a losing claimant that has already
    // started outranks the designated claimant that has not (the settle delay avoids this).
    const clock = { now: START };
    const a = leaseNode('node-a', clock);
    const b = leaseNode('node-b', clock);
    const { id } = await a.board.create({ type: 'x' });
    deliverAll(a, b);
    await a.board.claim(id, holder('node-a', 'agent-a', 0), START + 1_000);
    await b.board.claim(id, holder('node-b', 'agent-b', 3), START + 1_000);
    await b.board.start(id, 1, START + 1_000);
    deliverAll(a, b);
    deliverAll(b, a);
    assertSameRecord([a, b], id, 'started loser');
    assert.deepEqual([a.board.get(id)?.node, a.board.get(id)?.status], ['node-b', 'IN_PROGRESS']);
    await assert.rejects(a.board.start(id, 1, START + 1_000), isTaskError('NOT_HOLDER'));
  });

  it('claims over an expired lease as a new attempt, with a LEASE_EXPIRED history entry', async () => {
    const clock = { now: START };
    const a = leaseNode('node-a', clock);
    const b = leaseNode('node-b', clock);
    const { id } = await a.board.create({ type: 'x', maxRetries: 1 });
    await a.board.claim(id, holder('node-a', 'agent-a'), START + 1_000);
    clock.now += 5;
    await a.board.start(id, 1, START + 1_000);
    deliverAll(a, b);
    await assert.rejects(
      b.board.claim(id, holder('node-b', 'agent-b'), START + 9_000),
      isTaskError('NOT_HOLDER'),
      'the lease is live',
    );
    await assert.rejects(b.board.expire(id, 1), isTaskError('NOT_HOLDER'), 'not expired yet');
    clock.now = START + 1_000;
    await assert.rejects(b.board.expire(id, 1), isTaskError('NOT_HOLDER'), 'a lease is live until its last ms');
    clock.now = START + 1_001;
    const next = await b.board.claim(id, holder('node-b', 'agent-b', 1), START + 9_000);
    assert.deepEqual(
      [next.status, next.epoch, next.attempt, next.node, next.assignee, next.claimRank, next.leaseUntil],
      ['ASSIGNED', 2, 2, 'node-b', 'agent-b', 1, START + 9_000],
    );
    assert.deepEqual(next.attempts, [
      {
        attempt: 1,
        epoch: 1,
        node: 'node-a',
        agent: 'agent-a',
        status: 'FAILED',
        error: { code: 'LEASE_EXPIRED', message: 'the lease of node-a expired', retryable: true },
        startedAt: START + 5,
        endedAt: START + 1_001,
      },
    ]);
    // The last attempt's lease expires: no claim over it; expire() fails the task.
    clock.now = START + 9_001;
    deliverAll(b, a);
    await assert.rejects(
      a.board.claim(id, holder('node-a', 'agent-a'), START + 20_000),
      isTaskError('NOT_HOLDER'),
      'no attempt left',
    );
    await assert.rejects(a.board.expire(id, 1), isTaskError('STALE_EPOCH'), 'expire names the epoch it saw');
    const failed = await a.board.expire(id, 2);
    assert.deepEqual(
      [failed.status, failed.epoch, failed.attempt, (failed.error as { code: string }).code],
      ['FAILED', 2, 2, 'LEASE_EXPIRED'],
    );
  });

  it('expires a lease back to the pool (new attempt, new epoch, backoff), or FAILED on the last attempt', async () => {
    const clock = { now: START };
    const a = leaseNode('node-a', clock, { random: () => 0 });
    const b = leaseNode('node-b', clock);
    const { id } = await a.board.create({ type: 'x', maxRetries: 1, retry: { backoffMs: 400 } });
    await a.board.claim(id, holder('node-a', 'agent-a'), START + 100);
    deliverAll(a, b);
    clock.now = START + 200;
    // Two nodes observe the expiry concurrently: both requeue at epoch 2; they converge.
    const ea = await a.board.expire(id, 1);
    const eb = await b.board.expire(id, 1);
    assert.deepEqual(
      [ea.status, ea.epoch, ea.attempt, ea.node, ea.notBefore, (ea.attempts[0]?.error as { code: string }).code],
      ['PENDING', 2, 2, null, START + 200 + 200, 'LEASE_EXPIRED'],
    );
    assert.deepEqual([eb.status, eb.epoch, eb.attempt], ['PENDING', 2, 2]);
    deliverAll(a, b);
    deliverAll(b, a);
    assertSameRecord([a, b], id, 'concurrent expiries');
    const at = a.board.get(id) as TaskView;
    await assert.rejects(
      a.board.claim(id, holder('node-a', 'agent-a'), START + 10_000),
      isTaskError('NOT_HOLDER'),
      'backing off',
    );
    clock.now = at.notBefore as number;
    const again = await a.board.claim(id, holder('node-a', 'agent-a'), clock.now + 100);
    assert.deepEqual(
      [again.epoch, again.attempt, again.notBefore],
      [3, 2, null],
      'claimable once notBefore is reached',
    );
    clock.now += 101;
    await assert.rejects(b.board.expire(id, 3), isTaskError('STALE_EPOCH'), 'b has not seen epoch 3 yet');
    deliverAll(a, b);
    const last = await b.board.expire(id, 3);
    assert.deepEqual(
      [last.status, last.epoch, last.attempt, last.error],
      ['FAILED', 3, 2, { code: 'LEASE_EXPIRED', message: 'the lease of node-a expired', retryable: true }],
    );
    await assert.rejects(b.board.expire(id, 3), isTaskError('NOT_HOLDER'), 'a FAILED task has no lease');
  });

  it('starts the attempt claimed over an expired lease from scratch (progress, log, startedAt)', {}, async () => {
    const clock = { now: START };
    const a = leaseNode('node-a', clock);
    const { id } = await a.board.create({ type: 'x' });
    await a.board.claim(id, holder('node-a', 'agent-a'), START + 100);
    await a.board.start(id, 1, START + 100);
    await a.board.report(id, 1, { progress: 40, log: ['old attempt'] });
    clock.now = START + 1_000;
    const next = await a.board.claim(id, holder('node-a', 'agent-b'), START + 5_000);
    assert.deepEqual(
      [next.attempt, next.progress, next.log, next.startedAt, next.result, next.error],
      [2, 0, [], null, null, null],
      'the new attempt starts from scratch',
    );
  });

  it('never lets a paused holder’s COMPLETED at the old epoch overwrite the successor’s result, in any delivery order', async () => {
    const setup = async () => {
      const clock = { now: START };
      const a = leaseNode('node-a', clock);
      const b = leaseNode('node-b', clock);
      const { id } = await a.board.create({ id: 't', type: 'x' });
      await a.board.claim(id, holder('node-a', 'agent-a'), START + 100);
      await a.board.start(id, 1, START + 100);
      deliverAll(a, b);
      const base = a.out.length;
      // A pauses past its lease; B claims over it, runs and completes at epoch 2.
      clock.now = START + 500;
      const bBase = b.out.length;
      await b.board.claim(id, holder('node-b', 'agent-b'), START + 5_000);
      await b.board.start(id, 2, START + 5_000);
      await b.board.report(id, 2, { progress: 50 });
      await b.board.finish(id, 2, { ok: true, result: 'from b' });
      // A wakes up, not having heard of it, and completes at epoch 1.
      await a.board.finish(id, 1, { ok: true, result: 'from a' });
      return { clock, a, b, id, base, fromA: a.out.slice(base), fromB: b.out.slice(bBase) };
    };
    const { fromA, fromB } = await setup();
    assert.equal(fromA.length, 1);
    assert.equal(fromB.length, 4);
    let orders = 0;
    // Index 0 is A's COMPLETED at epoch 1; 1-4 are B's claim, start, report and COMPLETED at epoch 2.
    for (const order of permutations([0, 1, 2, 3, 4])) {
      const s = await setup();
      const tagged: Array<[Delta, string]> = [
        ...s.fromA.map((d): [Delta, string] => [d, 'node-a']),
        ...s.fromB.map((d): [Delta, string] => [d, 'node-b']),
      ];
      const deltas = order.map((i) => tagged[i] as [Delta, string]);
      const c = leaseNode('node-c', s.clock);
      for (const d of s.a.out.slice(0, s.base)) c.replica.applyDelta(d, 'node-a');
      // c holds A's history up to the start; now every delta, in this order, twice.
      for (const [d, origin] of [...deltas, ...deltas]) {
        c.replica.applyDelta(d, origin);
        if (origin === 'node-b') s.a.replica.applyDelta(d, origin);
        else s.b.replica.applyDelta(d, origin);
      }
      const label = `order ${order.join(',')}`;
      assertSameRecord([s.a, s.b, c], s.id, label);
      for (const n of [s.a, s.b, c]) {
        const v = n.board.get(s.id) as TaskView;
        assert.deepEqual(
          [v.status, v.epoch, v.result, v.node],
          ['COMPLETED', 2, 'from b', 'node-b'],
          `${label}: ${n.id}`,
        );
      }
      // A's COMPLETED is fenced wherever it arrives after any epoch-2 write.
      const aFirst = order.indexOf(0) === 0;
      assert.equal(c.replica.stats.rejectedByReason.stale_epoch ?? 0, aFirst ? 0 : 1, `${label}: counted on c`);
      assert.equal(s.b.replica.stats.rejectedByReason.stale_epoch, 1, `${label}: counted on b`);
      await assert.rejects(s.a.board.renew(s.id, 1, START + 9_000), isTaskError('STALE_EPOCH'), label);
      orders++;
    }
    assert.equal(orders, 120);
  });

  it('backs off exponentially within [base/2, base] per retry, using the injected random', async () => {
    const draws = [0, 0.999_999, 0.5, 0.25, 0, 0.75];
    let k = 0;
    const clock = { now: START };
    const a = leaseNode('node-a', clock, { random: () => draws[k++ % draws.length] as number });
    const { id } = await a.board.create({ type: 'x', maxRetries: 6, retry: { backoffMs: 100, maxBackoffMs: 2_000 } });
    for (let n = 1; n <= 7; n++) {
      const claimed = await a.board.claim(id, holder('node-a', 'agent-a'), clock.now + 1_000);
      assert.equal(claimed.attempt, n, `attempt ${n}`);
      await a.board.start(id, claimed.epoch, clock.now + 1_000);
      const after = await a.board.finish(id, claimed.epoch, fail(true, `E${n}`));
      if (n === 7) {
        assert.deepEqual([after.status, after.epoch, after.attempt], ['FAILED', claimed.epoch, 7], 'out of retries');
        break;
      }
      const base = Math.min(2_000, 100 * 2 ** (n - 1));
      const delay = (after.notBefore as number) - clock.now;
      assert.equal(delay, Math.round(base / 2 + ((draws[n - 1] as number) * base) / 2), `retry ${n}: jittered delay`);
      assert.ok(delay >= base / 2 && delay <= base, `retry ${n}: ${delay} within [${base / 2}, ${base}]`);
      assert.deepEqual(
        [after.status, after.epoch, after.attempt, after.error],
        ['PENDING', claimed.epoch + 1, n + 1, { code: `E${n}`, message: `E${n}` }],
        `retry ${n}`,
      );
      clock.now = (after.notBefore as number) - 1;
      await assert.rejects(
        a.board.claim(id, holder('node-a', 'agent-a'), clock.now + 1_000),
        isTaskError('NOT_HOLDER'),
        `retry ${n}: not before the backoff`,
      );
      clock.now += 1;
    }
    assert.equal(k, 6, 'one draw per retry');
    // A non-retryable failure ends it at once; a zero backoff retries at once.
    const fatal = await a.board.create({ type: 'x', maxRetries: 5 });
    await a.board.claim(fatal.id, holder('node-a', 'agent-a'), clock.now + 1_000);
    const f = await a.board.finish(fatal.id, 1, fail(false));
    assert.deepEqual([f.status, f.attempt], ['FAILED', 1]);
    const eager = await a.board.create({ type: 'x', retry: { backoffMs: 0 } });
    await a.board.claim(eager.id, holder('node-a', 'agent-a'), clock.now + 1_000);
    const e = await a.board.finish(eager.id, 1, fail(true));
    assert.deepEqual([e.status, e.notBefore], ['PENDING', null]);
    assert.equal((await a.board.claim(eager.id, holder('node-a', 'agent-a'), clock.now + 1_000)).attempt, 2);
  });

  it('fails a task past its deadline whoever holds it, and the holder’s late writes are refused', async () => {
    const clock = { now: START };
    const a = leaseNode('node-a', clock);
    const b = leaseNode('node-b', clock);
    const { id } = await a.board.create({ type: 'x', deadline: START + 1_000 });
    await a.board.claim(id, holder('node-a', 'agent-a'), START + 5_000);
    await a.board.start(id, 1, START + 5_000);
    deliverAll(a, b);
    clock.now = START + 1_001;
    const markA = a.out.length;
    const failed = await b.board.failDeadline(id);
    assert.deepEqual(
      [failed.status, failed.epoch, failed.node, (failed.error as { code: string }).code],
      ['FAILED', 1, 'node-a', 'DEADLINE_EXCEEDED'],
    );
    // Concurrently the holder reports progress at the same epoch: FAILED outranks it.
    await a.board.report(id, 1, { progress: 70 });
    deliverAll(b, a);
    for (const d of a.out.slice(markA)) b.replica.applyDelta(d, 'node-a');
    assertSameRecord([a, b], id, 'deadline');
    assert.equal(a.board.get(id)?.status, 'FAILED');
    await assert.rejects(a.board.finish(id, 1, { ok: true, result: 1 }), isTaskError('INVALID_TRANSITION'));
    await assert.rejects(a.board.failDeadline(id), isTaskError('INVALID_TRANSITION'), 'already over');
  });

  it('fences transition patches by epoch: STALE_EPOCH, 409', async () => {
    const clock = { now: START };
    const a = leaseNode('node-a', clock, { ownerOf: () => 'node-a' });
    const { id } = await a.board.create({ type: 'x' });
    await a.board.claim(id, holder('node-a', 'agent-a'), START + 100);
    await a.board.release(id, 1);
    await a.board.claim(id, holder('node-a', 'agent-b'), START + 100);
    const before = a.board.get(id) as TaskView;
    for (const patch of [
      { epoch: 1, progress: 10 },
      { epoch: 2, status: 'IN_PROGRESS' as const },
      { epoch: 4, log: ['x'] },
      { epoch: 0, status: 'FAILED' as const },
    ]) {
      const err = await a.board.transition(id, patch).then(
        () => assert.fail(`${JSON.stringify(patch)} should be refused`),
        (e: unknown) => e as TaskError,
      );
      assert.ok(err instanceof TaskError, JSON.stringify(patch));
      assert.deepEqual([err.code, err.status], ['STALE_EPOCH', 409], JSON.stringify(patch));
      assert.deepEqual(a.board.get(id), before, `${JSON.stringify(patch)}: nothing written`);
    }
    const ok = await a.board.transition(id, { epoch: 3, status: 'IN_PROGRESS', progress: 5 });
    assert.deepEqual([ok.status, ok.epoch, ok.progress], ['IN_PROGRESS', 3, 5]);
  });

  it('assigns manually through transition: the agent’s node (ownerOf) holds a new epoch', async () => {
    const clock = { now: START };
    const owners: Record<string, string> = { 'agent-b': 'node-b', 'agent-c': 'node-c' };
    const opts = { ownerOf: (agent: string) => owners[agent], assignLeaseMs: 7_000 };
    const a = leaseNode('node-a', clock, opts);
    const b = leaseNode('node-b', clock, opts);
    const { id } = await a.board.create({ type: 'x' });
    await a.board.claim(id, holder('node-a', 'agent-a', 4), START + 100);
    const assigned = await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-b', epoch: 1 });
    assert.deepEqual(
      [assigned.status, assigned.epoch, assigned.node, assigned.assignee, assigned.claimRank, assigned.leaseUntil],
      ['ASSIGNED', 2, 'node-b', 'agent-b', 0, START + 7_000],
    );
    await assert.rejects(a.board.start(id, 1, START + 9_000), isTaskError('STALE_EPOCH'), 'the old holder is fenced');
    await assert.rejects(a.board.start(id, 2, START + 9_000), isTaskError('NOT_HOLDER'), 'node-a does not hold it');
    deliverAll(a, b);
    const started = await b.board.start(id, 2, START + 9_000);
    assert.deepEqual([started.status, started.node], ['IN_PROGRESS', 'node-b'], 'the owner runs it');
    // An agent nobody hosts: assigned with no node, so no node's holder writes apply.
    const other = await a.board.create({ type: 'x' });
    const orphan = await a.board.transition(other.id, { status: 'ASSIGNED', assignee: 'agent-z' });
    assert.deepEqual([orphan.epoch, orphan.node, orphan.assignee], [1, null, 'agent-z']);
    await assert.rejects(a.board.start(other.id, 1, START + 9_000), isTaskError('NOT_HOLDER'));
  });

  it('lets a cancel win over anything, at any epoch, on every replica', async () => {
    const clock = { now: START };
    const a = leaseNode('node-a', clock);
    const b = leaseNode('node-b', clock);
    const { id } = await a.board.create({ type: 'x' });
    await a.board.claim(id, holder('node-a', 'agent-a'), START + 100);
    deliverAll(a, b);
    const markA = a.out.length;
    // B cancels at epoch 1; meanwhile A's lease expires, A claims again (epoch 2) and completes.
    await b.board.cancel(id, 'user');
    clock.now = START + 200;
    const c2 = await a.board.claim(id, holder('node-a', 'agent-a'), START + 5_000);
    await a.board.finish(id, c2.epoch, { ok: true, result: 'done' });
    deliverAll(b, a);
    for (const d of a.out.slice(markA)) b.replica.applyDelta(d, 'node-a');
    assertSameRecord([a, b], id, 'cancel');
    for (const n of [a, b]) {
      const v = n.board.get(id) as TaskView;
      assert.deepEqual([v.status, v.epoch], ['CANCELLED', 1], `${n.id}: the cancel wins even at an older epoch`);
    }
    assert.equal(b.replica.stats.rejectedByReason.stale_epoch ?? 0, 0, 'writes losing to a cancel are not stale');
  });

  it('keeps every replica consistent with the lease model under random claims, writes, expiries and delivery (fc.commands)', async () => {
    const total = emptyTally();
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2 }),
        fc.constantFrom(0, 50, 300),
        fc.integer(),
        fc.commands(commandArbs, { maxCommands: 60, size: 'max' }),
        async (maxRetries, backoffMs, seed, cmds) => {
          const clock = { now: START };
          const rng = prng(seed);
          const nodes = NODE_IDS.map((n) => leaseNode(n, clock, { random: rng }));
          const [a] = nodes as [LeaseNode];
          const { id } = await a.board.create({
            id: 't',
            type: 'x',
            maxRetries,
            retry: { backoffMs, maxBackoffMs: 1_000 },
          });
          deliverAll(a, ...nodes.slice(1));
          const create = a.out[0] as Delta;
          const model: Model = {
            maxRetries,
            backoffMs,
            maxBackoffMs: 1_000,
            writes: [{ kind: 'create', origin: 0, delta: create, run: taskSchema.get(create.state, 'run') }],
            seen: nodes.map(() => new Set([0])),
            mine: nodes.map(() => undefined),
            stale: nodes.map(() => 0),
            lastEpoch: nodes.map(() => 0),
            cancelled: nodes.map(() => false),
            tally: emptyTally(),
          };
          const real: Real = { nodes, clock, id };
          await fc.asyncModelRun(() => ({ model, real }), cmds);

          // Full delivery, in a random order with duplicates: every replica ends identical.
          for (let round = 0; round < 2; round++) {
            for (const [to] of nodes.entries()) {
              while (deliverOne(model, real, to, Math.floor(rng() * 1_000), false, 'final delivery')) {
                if (rng() < 0.3) deliverOne(model, real, to, Math.floor(rng() * 1_000), true, 'final duplicate');
              }
            }
          }
          checkAll(model, real, 'after full delivery');
          assertSameRecord(nodes, id, 'after full delivery');
          const final = runOf(a.replica, id);
          const allRuns = model.writes.map((w) => w.run).filter((x): x is Register<RunValue> => x !== undefined);
          for (const w of allRuns) assert.ok(modelCompare(final, w) >= 0, 'the final run is the greatest write');
          if (allRuns.some((w) => w.v.status === 'CANCELLED'))
            assert.equal(final.v.status, 'CANCELLED', 'a cancel wins');
          // Concurrent claims at the final epoch: one holder, the lower rank, then node/agent.
          const claims = model.writes.filter((w) => w.kind === 'claim' && w.run?.v.epoch === final.v.epoch);
          const holders = new Set(claims.map((w) => `${w.run?.v.node}/${w.run?.v.agent}/${w.run?.v.claimRank}`));
          if (holders.size > 1) {
            model.tally.claimConflicts++;
            if (final.v.status === 'ASSIGNED') {
              const best = claims
                .map((w) => w.run as Register<RunValue>)
                .sort(
                  (x, y) =>
                    x.v.claimRank - y.v.claimRank ||
                    cmpStr(x.v.node ?? '', y.v.node ?? '') ||
                    cmpStr(x.v.agent ?? '', y.v.agent ?? ''),
                )[0] as Register<RunValue>;
              assert.deepEqual(
                [final.v.node, final.v.agent, final.v.claimRank],
                [best.v.node, best.v.agent, best.v.claimRank],
                `one holder among ${[...holders].join(', ')}`,
              );
            }
          }
          addTally(total, model.tally);
          runs++;
        },
      ),
      { ...fcParams, numRuns: Math.min(fcParams.numRuns, 300) },
    );
    // The commands exercised what they are meant to: successes of every kind, refusals for the
    // right reasons, fenced deliveries, conflicts, expiries, backoffs.
    const okTotal = Object.values(total.ok).reduce((x, y) => x + y, 0);
    const refusedTotal = Object.values(total.refused).reduce((x, y) => x + y, 0);
    const summary = JSON.stringify({ runs, ...total });
    assert.ok(okTotal >= 0.25 * (okTotal + refusedTotal), `a healthy fraction of writes succeeded: ${summary}`);
    for (const kind of [
      'claim',
      'start',
      'renew',
      'report',
      'finish-ok',
      'finish-retry',
      'finish-fatal',
      'release',
      'expire',
      'cancel',
    ]) {
      assert.ok((total.ok[kind] ?? 0) > 0, `some ${kind} succeeded: ${summary}`);
    }
    for (const refusal of ['start:STALE_EPOCH', 'renew:NOT_HOLDER', 'claim:NOT_HOLDER', 'expire:STALE_EPOCH']) {
      assert.ok((total.refused[refusal] ?? 0) > 0, `some ${refusal}: ${summary}`);
    }
    for (const k of [
      'staleDeliveries',
      'duplicates',
      'claimConflicts',
      'claimsOverExpired',
      'backoffRefusals',
    ] as const) {
      assert.ok(total[k] > 0, `${k} happened: ${summary}`);
    }
  });
});
