import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeMsgpack, encodeMsgpack } from '../../src/codec/index.js';
import type { Register, RecordState } from '../../src/crdt/index.js';
import type { Replica } from '../../src/replica/index.js';
import { type Delta, PolicyError } from '../../src/replica/index.js';
import {
  MAX_PAYLOAD_BYTES,
  MAX_RESULT_BYTES,
  MAX_TOOL_DEPTH,
  newTaskId,
  type RunValue,
  TASK_HTTP_STATUS,
  TASK_STATUSES,
  TASK_TRANSITIONS,
  TaskBoard,
  TaskError,
  taskKey,
  taskSchema,
  type TaskSpecRecord,
  type TaskStatus,
  type TaskView,
  TERMINAL_STATUSES,
} from '../../src/tasks/index.js';
import { meshReplica } from '../helpers/api-backend.js';
import { fcParams } from '../helpers/fc.js';

interface Node {
  id: string;
  replica: Replica;
  board: TaskBoard;
  /** Every delta this node produced, in order. */
  out: Delta[];
}

interface NodeOptions {
  /** The board's wall clock (default Date.now). */
  now?: () => number;
  /** The physical clock of the replica's HLC (default Date.now). */
  hlc?: () => number;
}

/** Agents and the nodes hosting them, for manual assignments (`ownerOf`). */
const OWNERS: Record<string, string> = {
  'agent-1': 'node-a',
  'agent-2': 'node-b',
  'agent-a': 'node-a',
  'agent-b': 'node-b',
  'agent-c': 'node-c',
};

function meshNode(id: string, options: NodeOptions = {}): Node {
  const replica = meshReplica(id, options.hlc);
  const out: Delta[] = [];
  const mutate = async (k: string, b: Parameters<Replica['mutate']>[1]) => {
    const d = replica.mutate(k, b);
    out.push(d);
    return d;
  };
  const board = new TaskBoard({
    replica,
    mutate,
    ownerOf: (agent) => OWNERS[agent],
    ...(options.now ? { now: options.now } : {}),
  });
  return { id, replica, out, board };
}

/** Delivers every delta `from` produced (again: duplicates are no-ops) to each of `to`. */
function deliver(from: Node, ...to: Node[]): void {
  for (const n of to) for (const d of from.out) n.replica.applyDelta(d, from.id);
}

function isTaskError(code: string) {
  return (e: unknown) => e instanceof TaskError && e.code === code;
}
function isPolicyError(reason: string) {
  return (e: unknown) => e instanceof PolicyError && e.reason === reason;
}

function forged(target: Replica, key: string, origin: string, state: RecordState): Delta {
  return { key, origin, seq: target.dots.max(origin) + 1, state };
}

/** A delta as the receiver decodes it: through msgpack and the validating wire decoder. */
function viaWire(target: Replica, d: Delta): Delta {
  return target.deltaFromWire(decodeMsgpack(encodeMsgpack(target.deltaToWire(d))));
}

function specOf(r: Replica, key: string): Register<TaskSpecRecord> | undefined {
  const s = r.get(key);
  return s === undefined ? undefined : taskSchema.get(s, 'spec');
}

function runOf(r: Replica, key: string): Register<RunValue> | undefined {
  const s = r.get(key);
  return s === undefined ? undefined : taskSchema.get(s, 'run');
}

function assertConverged(nodes: Node[], key: string): void {
  const first = nodes[0] as Node;
  const ref = first.replica.get(key) as RecordState;
  for (const n of nodes) {
    const s = n.replica.get(key);
    assert.ok(s !== undefined, `${n.id} has ${key}`);
    assert.ok(taskSchema.equals(s, ref), `${n.id} and ${first.id} hold equal ${key}`);
  }
}

/** How to bring a fresh task to each status through local transitions (the API's PATCH). */
const PATHS: Record<TaskStatus, Array<Parameters<TaskBoard['transition']>[1]>> = {
  PENDING: [],
  ASSIGNED: [{ status: 'ASSIGNED', assignee: 'agent-1' }],
  IN_PROGRESS: [{ status: 'ASSIGNED', assignee: 'agent-1' }, { status: 'IN_PROGRESS' }],
  COMPLETED: [{ status: 'ASSIGNED', assignee: 'agent-1' }, { status: 'IN_PROGRESS' }, { status: 'COMPLETED' }],
  FAILED: [{ status: 'ASSIGNED', assignee: 'agent-1' }, { status: 'IN_PROGRESS' }, { status: 'FAILED' }],
  CANCELLED: [{ status: 'CANCELLED' }],
};

/**
 * The expected outcome of transition(from -> to) on a task at attempt 1 with retries left, brought
 * to `from` by PATHS (epoch 0 for PENDING and CANCELLED, 1 otherwise): the resulting
 * [status, attempt, epoch], or 'reject' for INVALID_TRANSITION (409). A manual assignment and a
 * return to the pool each take a new epoch; everything else stays in the current one.
 */
const TABLE: Record<TaskStatus, Record<TaskStatus, [TaskStatus, number, number] | 'reject'>> = {
  PENDING: {
    PENDING: ['PENDING', 1, 0],
    ASSIGNED: ['ASSIGNED', 1, 1],
    IN_PROGRESS: ['IN_PROGRESS', 1, 0],
    COMPLETED: 'reject',
    FAILED: 'reject',
    CANCELLED: ['CANCELLED', 1, 0],
  },
  ASSIGNED: {
    PENDING: ['PENDING', 2, 2], // unassign: a new attempt and a new epoch
    ASSIGNED: ['ASSIGNED', 1, 2], // reassign: a new claim
    IN_PROGRESS: ['IN_PROGRESS', 1, 1],
    COMPLETED: 'reject',
    FAILED: ['FAILED', 1, 1], // the agent refused it (pre_task hook) or could not start it
    CANCELLED: ['CANCELLED', 1, 1],
  },
  IN_PROGRESS: {
    PENDING: 'reject',
    ASSIGNED: 'reject',
    IN_PROGRESS: ['IN_PROGRESS', 1, 1],
    COMPLETED: ['COMPLETED', 1, 1],
    FAILED: ['FAILED', 1, 1],
    CANCELLED: ['CANCELLED', 1, 1],
  },
  COMPLETED: {
    PENDING: 'reject',
    ASSIGNED: 'reject',
    IN_PROGRESS: 'reject',
    COMPLETED: 'reject',
    FAILED: 'reject',
    CANCELLED: 'reject',
  },
  FAILED: {
    PENDING: ['PENDING', 2, 2], // retry
    ASSIGNED: 'reject',
    IN_PROGRESS: 'reject',
    COMPLETED: 'reject',
    FAILED: 'reject',
    CANCELLED: 'reject',
  },
  CANCELLED: {
    PENDING: 'reject',
    ASSIGNED: 'reject',
    IN_PROGRESS: 'reject',
    COMPLETED: 'reject',
    FAILED: 'reject',
    CANCELLED: ['CANCELLED', 1, 0], // idempotent
  },
};

async function bringTo(board: TaskBoard, id: string, status: TaskStatus): Promise<void> {
  for (const patch of PATHS[status]) await board.transition(id, patch);
  assert.equal(board.get(id)?.status, status, `brought ${id} to ${status}`);
}

/** Whether a local `transition(id, { status: to })` from `from` at `attempt` is allowed. */
function allowed(from: TaskStatus, to: TaskStatus, attempt: number, maxRetries: number): boolean {
  if (from === 'CANCELLED') return to === 'CANCELLED';
  if (TERMINAL_STATUSES.has(from) && to === from) return false;
  if (to !== from && !TASK_TRANSITIONS[from].includes(to)) return false;
  if (to === 'PENDING' && from !== 'PENDING' && attempt > maxRetries) return false;
  return true;
}

describe('task board', () => {
  it('creates PENDING tasks with defaults, a time-sortable id, and replicates them', async () => {
    let now = 5_000;
    const a = meshNode('node-a', { now: () => now });
    const b = meshNode('node-b');
    const t = await a.board.create({ type: 'summarize', payload: { text: 'hi', skip: undefined } });
    assert.match(t.id, /^[0-9a-z]{9}-[0-9a-f]{12}$/);
    assert.deepEqual(t, {
      id: t.id,
      type: 'summarize',
      title: '',
      payload: { text: 'hi' },
      capabilities: [],
      priority: 5,
      deadline: null,
      maxRetries: 3,
      parent: null,
      dependencies: [],
      claim: 'any',
      retry: { backoffMs: 1000, maxBackoffMs: 60_000 },
      timeoutMs: null,
      depth: 0,
      creator: 'node-a',
      createdAt: 5_000,
      status: 'PENDING',
      epoch: 0,
      attempt: 1,
      assignee: null,
      node: null,
      claimRank: 0,
      leaseUntil: null,
      notBefore: null,
      progress: 0,
      result: null,
      error: null,
      log: [],
      updatedAt: 5_000,
      startedAt: null,
      attempts: [],
    });
    now = 6_000;
    const t2 = await a.board.create({ type: 'x' });
    assert.ok(t.id < t2.id, 'ids sort by creation time');
    assert.ok(newTaskId(1) < newTaskId(36 ** 8), 'fixed-width time prefix');
    deliver(a, b);
    assert.deepEqual(b.board.get(t.id), t, 'the replica holds the same view');
    const full = await a.board.create({
      id: 'job-1',
      type: 'build',
      title: 'Build it',
      payload: [1, 'two'],
      capabilities: ['cc', 'cc', 'ld'],
      priority: 9,
      deadline: 99_000,
      maxRetries: 0,
      parent: t.id,
      dependencies: [t2.id, t2.id],
      claim: 'quorum',
      retry: { backoffMs: 250 },
      timeoutMs: 5_000,
    });
    assert.deepEqual(
      [
        full.capabilities,
        full.priority,
        full.deadline,
        full.maxRetries,
        full.parent,
        full.dependencies,
        full.claim,
        full.retry,
        full.timeoutMs,
        full.depth,
      ],
      [['cc', 'ld'], 9, 99_000, 0, t.id, [t2.id], 'quorum', { backoffMs: 250, maxBackoffMs: 60_000 }, 5_000, 0],
      'every given field is kept; duplicates are dropped; the retry policy is merged with the defaults',
    );
    const tool = await a.board.create({ type: 'tool', parent: full.id }, { depth: MAX_TOOL_DEPTH });
    assert.equal(tool.depth, MAX_TOOL_DEPTH, 'tool-call depth is the caller’s');
    await assert.rejects(
      a.board.create({ type: 'tool' }, { depth: MAX_TOOL_DEPTH + 1 }),
      isTaskError('INVALID_TASK'),
      'tool calls nest at most MAX_TOOL_DEPTH deep',
    );
  });

  it('refuses an existing id with TASK_EXISTS (409), locally and once replicated', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    await a.board.create({ id: 'dup', type: 'x' });
    await assert.rejects(a.board.create({ id: 'dup', type: 'y' }), isTaskError('TASK_EXISTS'));
    deliver(a, b);
    const err = await b.board.create({ id: 'dup', type: 'y' }).then(
      () => assert.fail('should be refused'),
      (e: unknown) => e as TaskError,
    );
    assert.equal(err.code, 'TASK_EXISTS');
    assert.equal(err.status, 409);
    assert.equal(b.out.length, 0, 'a refused creation writes nothing');
    assert.equal(a.board.get('dup')?.type, 'x', 'the first creation stays');
  });

  it('validates task input with typed errors', async () => {
    const a = meshNode('node-a', { now: () => 10_000 });
    const cases: Array<[unknown, string]> = [
      [{}, 'INVALID_TASK'],
      [null, 'INVALID_TASK'],
      [{ type: '' }, 'INVALID_TASK'],
      [{ type: 'x', id: 'bad id' }, 'INVALID_TASK'],
      [{ type: 'x', title: 't'.repeat(257) }, 'INVALID_TASK'],
      [{ type: 'x', capabilities: Array.from({ length: 33 }, (_, i) => `c${i}`) }, 'INVALID_TASK'],
      [{ type: 'x', capabilities: ['c'.repeat(65)] }, 'INVALID_TASK'],
      [{ type: 'x', dependencies: Array.from({ length: 65 }, (_, i) => `d${i}`) }, 'INVALID_TASK'],
      [{ type: 'x', priority: 10 }, 'INVALID_TASK'],
      [{ type: 'x', priority: -1 }, 'INVALID_TASK'],
      [{ type: 'x', priority: 1.5 }, 'INVALID_TASK'],
      [{ type: 'x', deadline: 'tomorrow' }, 'INVALID_TASK'],
      [{ type: 'x', deadline: -1 }, 'INVALID_TASK'],
      [{ type: 'x', maxRetries: -1 }, 'INVALID_TASK'],
      [{ type: 'x', maxRetries: 1000 }, 'INVALID_TASK'],
      [{ type: 'x', parent: 5 }, 'INVALID_TASK'],
      [{ id: 'self', type: 'x', dependencies: ['self'] }, 'INVALID_TASK'],
      [{ id: 'self', type: 'x', parent: 'self' }, 'INVALID_TASK'],
      [{ type: 'x', claim: 'majority' }, 'INVALID_TASK'],
      [{ type: 'x', retry: { backoffMs: -1 } }, 'INVALID_TASK'],
      [{ type: 'x', retry: { maxBackoffMs: 1.5 } }, 'INVALID_TASK'],
      [{ type: 'x', timeoutMs: 0 }, 'INVALID_TASK'],
      [{ type: 'x', payload: { n: 1n } }, 'INVALID_TASK'],
      [{ type: 'x', payload: 'p'.repeat(MAX_PAYLOAD_BYTES) }, 'TOO_LARGE'],
      // References: what this node does not know, and deadlines already past.
      [{ type: 'x', dependencies: ['nowhere'] }, 'INVALID_REFERENCE'],
      [{ type: 'x', parent: 'nobody' }, 'INVALID_REFERENCE'],
      [{ type: 'x', deadline: 10_000 }, 'INVALID_REFERENCE'],
      [{ type: 'x', deadline: 9_999 }, 'INVALID_REFERENCE'],
    ];
    for (const [input, code] of cases) {
      await assert.rejects(
        a.board.create(input as never),
        isTaskError(code),
        JSON.stringify(input, (_k, v: unknown) => (typeof v === 'bigint' ? 'n' : v)),
      );
    }
    assert.equal(a.replica.size, 0, 'nothing refused was written');
    assert.equal(TASK_HTTP_STATUS.TOO_LARGE, 413);
    assert.equal(TASK_HTTP_STATUS.INVALID_TASK, 400);
    assert.equal(TASK_HTTP_STATUS.INVALID_REFERENCE, 400);
    // Exactly at the limits is fine (the dependencies must exist).
    const deps: string[] = [];
    for (let i = 0; i < 64; i++) deps.push((await a.board.create({ id: `d${i}`, type: 'dep' })).id);
    const payload = 'p'.repeat(MAX_PAYLOAD_BYTES - 2);
    const t = await a.board.create({
      type: 'x',
      title: 't'.repeat(256),
      payload,
      capabilities: Array.from({ length: 32 }, (_, i) => `c${i}`),
      dependencies: deps,
      deadline: 10_001,
    });
    assert.equal(t.payload, payload);
    assert.equal(t.dependencies.length, 64);
  });

  it('implements the transition table: every pair of statuses is allowed (with its epoch) or 409', async () => {
    const a = meshNode('node-a');
    for (const from of TASK_STATUSES) {
      for (const to of TASK_STATUSES) {
        const { id } = await a.board.create({ type: 'x', maxRetries: 3 });
        await bringTo(a.board, id, from);
        const before = a.board.get(id) as TaskView;
        const expected = TABLE[from][to];
        const run = a.board.transition(id, { status: to, ...(to === 'ASSIGNED' ? { assignee: 'agent-2' } : {}) });
        if (expected === 'reject') {
          const err = await run.then(
            () => assert.fail(`${from} -> ${to} should be refused`),
            (e: unknown) => e as TaskError,
          );
          assert.ok(err instanceof TaskError, `${from} -> ${to}`);
          assert.equal(err.code, 'INVALID_TRANSITION', `${from} -> ${to}`);
          assert.equal(err.status, 409, `${from} -> ${to}`);
          assert.deepEqual(a.board.get(id), before, `${from} -> ${to}: unchanged`);
        } else {
          const v = await run;
          assert.deepEqual([v.status, v.attempt, v.epoch], expected, `${from} -> ${to}`);
          if (to === 'ASSIGNED') {
            assert.deepEqual([v.assignee, v.node, v.claimRank], ['agent-2', 'node-b', 0], `${from} -> ${to}: holder`);
          }
        }
      }
    }
  });

  it('retries failed tasks while attempts remain, each retry a new attempt and a new epoch', async () => {
    let now = 1_000;
    const a = meshNode('node-a', { now: () => now });
    const { id } = await a.board.create({ type: 'x', maxRetries: 2 });
    for (let attempt = 1; attempt <= 3; attempt++) {
      now += 1_000;
      const before = a.board.get(id) as TaskView;
      assert.equal(before.attempt, attempt, `attempt ${attempt}`);
      const assigned = await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-1' });
      assert.equal(assigned.epoch, before.epoch + 1, `attempt ${attempt}: the assignment is a new epoch`);
      await a.board.transition(id, { status: 'IN_PROGRESS', progress: 40 });
      const failed = await a.board.transition(id, { status: 'FAILED', error: { message: `boom ${attempt}` } });
      assert.deepEqual(
        [failed.status, failed.error, failed.assignee, failed.epoch],
        ['FAILED', { message: `boom ${attempt}` }, 'agent-1', assigned.epoch],
        `attempt ${attempt}: failed in the assignment's epoch`,
      );
      if (attempt < 3) {
        const retried = await a.board.transition(id, { status: 'PENDING' });
        assert.deepEqual(
          [retried.status, retried.attempt, retried.epoch],
          ['PENDING', attempt + 1, failed.epoch + 1],
          `attempt ${attempt}: the retry is a new attempt at a new epoch`,
        );
        assert.deepEqual(
          retried.attempts.at(-1),
          {
            attempt,
            epoch: failed.epoch,
            node: 'node-a',
            agent: 'agent-1',
            status: 'FAILED',
            error: { message: `boom ${attempt}` },
            startedAt: failed.startedAt,
            endedAt: now,
          },
          `attempt ${attempt}: recorded in the history`,
        );
      }
    }
    await assert.rejects(a.board.transition(id, { status: 'PENDING' }), isTaskError('INVALID_TRANSITION'));
    assert.deepEqual([a.board.get(id)?.status, a.board.get(id)?.attempt], ['FAILED', 3], 'the budget is spent');
    const once = await a.board.create({ type: 'x', maxRetries: 0 });
    await a.board.transition(once.id, { status: 'IN_PROGRESS' });
    await a.board.transition(once.id, { status: 'FAILED' });
    await assert.rejects(a.board.transition(once.id, { status: 'PENDING' }), isTaskError('INVALID_TRANSITION'));
  });

  it(
    'resets the attempt’s fields (holder, lease, progress, error) when a transition returns the task to the pool',
    {},
    async () => {
      const a = meshNode('node-a');
      const { id } = await a.board.create({ type: 'x', maxRetries: 2 });
      await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-1', leaseUntil: Date.now() + 60_000 });
      await a.board.transition(id, { status: 'IN_PROGRESS', progress: 40 });
      await a.board.transition(id, { status: 'FAILED', error: { message: 'boom' } });
      const retried = await a.board.transition(id, { status: 'PENDING' });
      assert.deepEqual(
        [retried.assignee, retried.node, retried.leaseUntil, retried.progress, retried.error, retried.startedAt],
        [null, null, null, 0, null, null],
        'a retried task is unheld and starts from scratch',
      );
      assert.deepEqual(a.board.list({ assignee: 'agent-1' }), [], 'a PENDING task is nobody’s');
    },
  );

  it('unassigns as a new attempt, which outranks what the old assignee does concurrently', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    const { id } = await a.board.create({ type: 'x', maxRetries: 1 });
    const assigned = await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-b' });
    assert.deepEqual([assigned.node, assigned.epoch], ['node-b', 1], 'the agent’s node holds the lease');
    deliver(a, b);
    // Concurrently: B's agent starts and finishes attempt 1 (epoch 1); A unassigns (attempt 2, epoch 2).
    await b.board.start(id, 1, Date.now() + 60_000);
    await b.board.finish(id, 1, { ok: true, result: 'late' });
    const un = await a.board.transition(id, { status: 'PENDING' });
    assert.deepEqual([un.status, un.attempt, un.epoch], ['PENDING', 2, 2]);
    deliver(a, b);
    deliver(b, a);
    for (const n of [a, b]) {
      const v = n.board.get(id) as TaskView;
      assert.deepEqual([v.status, v.attempt, v.epoch, v.result], ['PENDING', 2, 2, null], n.id);
    }
    assertConverged([a, b], taskKey(id));
    assert.equal(a.replica.stats.rejectedByReason.stale_epoch, 2, 'B’s start and finish at epoch 1 were fenced on A');
    // The budget is shared with retries: attempt 2 of maxRetries 1 is the last one.
    await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-a' });
    await assert.rejects(a.board.transition(id, { status: 'PENDING' }), isTaskError('INVALID_TRANSITION'));
  });

  it('validates patches: assignee for ASSIGNED, progress range, sizes, epochs, unknown ids', async () => {
    let now = 1_000;
    const a = meshNode('node-a', { now: () => now });
    const { id } = await a.board.create({ type: 'x' });
    await assert.rejects(a.board.transition(id, { status: 'ASSIGNED' }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { status: 'ASSIGNED', assignee: null }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { progress: 101 }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { progress: -1 }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { status: 'DONE' as never }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { assignee: 'no spaces' }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { epoch: -1 }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { epoch: 0.5 }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { result: 'r'.repeat(MAX_RESULT_BYTES) }), isTaskError('TOO_LARGE'));
    await assert.rejects(a.board.transition(id, { epoch: 1, progress: 5 }), isTaskError('STALE_EPOCH'));
    await assert.rejects(a.board.transition('missing', { status: 'CANCELLED' }), isTaskError('NOT_FOUND'));
    await assert.rejects(a.board.cancel('missing'), isTaskError('NOT_FOUND'));
    assert.equal(a.board.get(id)?.updatedAt, 1_000, 'no refused patch wrote anything');
    now = 2_000;
    await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-1' });
    const started = await a.board.transition(id, { status: 'IN_PROGRESS', epoch: 1 });
    assert.deepEqual([started.status, started.startedAt, started.leaseUntil], ['IN_PROGRESS', 2_000, 32_000]);
    now = 3_000;
    const p = await a.board.transition(id, { progress: 55.5, leaseUntil: 90_000, log: ['a', 'b'], epoch: 1 });
    assert.deepEqual(
      [p.status, p.progress, p.leaseUntil, p.updatedAt, p.assignee, p.log, p.epoch],
      ['IN_PROGRESS', 55.5, 90_000, 3_000, 'agent-1', ['a', 'b'], 1],
    );
    const done = await a.board.transition(id, { status: 'COMPLETED', result: { answer: 42 }, leaseUntil: null });
    assert.deepEqual([done.progress, done.result, done.leaseUntil, done.epoch], [100, { answer: 42 }, null, 1]);
    await assert.rejects(a.board.transition(id, { progress: 1 }), isTaskError('INVALID_TRANSITION'));
  });

  it('applies a patch that shortens or clears the lease, with the rest of the patch', {}, async () => {
    const now = 1_000;
    const a = meshNode('node-a', { now: () => now });
    const { id } = await a.board.create({ type: 'x' });
    await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-1' });
    await a.board.transition(id, { status: 'IN_PROGRESS' });
    const p = await a.board.transition(id, { progress: 55, leaseUntil: 9_000 });
    assert.deepEqual([p.progress, p.leaseUntil], [55, 9_000], 'the patch took effect');
    const cleared = await a.board.transition(id, { progress: 60, leaseUntil: null });
    assert.deepEqual([cleared.progress, cleared.leaseUntil], [60, null], 'the lease was cleared');
  });

  it('honours the status of a patch that names an assignee (PENDING -> IN_PROGRESS)', {}, async () => {
    const a = meshNode('node-a');
    const { id } = await a.board.create({ type: 'x' });
    const v = await a.board.transition(id, { status: 'IN_PROGRESS', assignee: 'agent-1' });
    assert.deepEqual([v.status, v.assignee, v.node], ['IN_PROGRESS', 'agent-1', 'node-a']);
  });

  it('never silently drops an assignee patch on a running task (reassigns or refuses)', {}, async () => {
    const a = meshNode('node-a');
    const { id } = await a.board.create({ type: 'x' });
    await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-1' });
    await a.board.transition(id, { status: 'IN_PROGRESS' });
    const outcome = await a.board.transition(id, { assignee: 'agent-c' }).then(
      (v) => v,
      (e: unknown) => e as TaskError,
    );
    assert.ok(
      outcome instanceof TaskError || outcome.assignee === 'agent-c',
      `either refused or applied; got assignee ${(outcome as TaskView).assignee}`,
    );
  });

  it('fences a cancel through transition with a stale epoch (STALE_EPOCH)', {}, async () => {
    const a = meshNode('node-a');
    const { id } = await a.board.create({ type: 'x' });
    await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-1' });
    await assert.rejects(a.board.transition(id, { status: 'CANCELLED', epoch: 0 }), isTaskError('STALE_EPOCH'));
    assert.equal(a.board.get(id)?.status, 'ASSIGNED', 'still held');
  });

  it('cancels idempotently, and refuses to cancel finished tasks with 409', async () => {
    const a = meshNode('node-a');
    const { id } = await a.board.create({ type: 'x' });
    const c = await a.board.cancel(id, 'no longer needed');
    assert.deepEqual([c.status, c.error], ['CANCELLED', { code: 'CANCELLED', message: 'no longer needed' }]);
    const n = a.out.length;
    assert.deepEqual(await a.board.cancel(id), c, 'cancelling again returns the same view');
    assert.deepEqual(await a.board.transition(id, { status: 'CANCELLED' }), c, 'also through a patch');
    assert.equal(a.out.length, n, 'cancelling twice writes nothing');
    for (const end of ['COMPLETED', 'FAILED'] as const) {
      const t = await a.board.create({ type: 'x' });
      await bringTo(a.board, t.id, end);
      await assert.rejects(a.board.cancel(t.id), isTaskError('INVALID_TRANSITION'), end);
    }
  });

  it('resolves a cancel/complete race to CANCELLED on every node, whatever the delivery order', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    const c = meshNode('node-c');
    const d = meshNode('node-d');
    const { id } = await a.board.create({ type: 'x' });
    await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-b' });
    deliver(a, b, c, d);
    const nA = a.out.length;
    const nB = b.out.length;
    // The holder (node-b) completes; node-a cancels, concurrently.
    await b.board.finish(id, 1, { ok: true, result: 'ok' });
    await a.board.cancel(id);
    const cancel = a.out.slice(nA);
    const complete = b.out.slice(nB);
    for (const x of cancel) b.replica.applyDelta(x, 'node-a');
    for (const x of complete) a.replica.applyDelta(x, 'node-b');
    for (const x of [...cancel, ...complete]) c.replica.applyDelta(x);
    for (const x of [...complete, ...cancel]) d.replica.applyDelta(x);
    for (const n of [a, b, c, d]) assert.equal(n.board.get(id)?.status, 'CANCELLED', n.id);
    assertConverged([a, b, c, d], taskKey(id));
    await assert.rejects(b.board.transition(id, { status: 'FAILED' }), isTaskError('INVALID_TRANSITION'));
    await assert.rejects(b.board.finish(id, 1, { ok: true, result: 'again' }), isTaskError('INVALID_TRANSITION'));
  });

  it('accepts remote jumps the local state machine would refuse (lost intermediate deltas)', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    const c = meshNode('node-c');
    const { id } = await a.board.create({ type: 'x' });
    deliver(a, b, c);
    const n = b.out.length;
    await b.board.transition(id, { status: 'IN_PROGRESS' });
    await b.board.transition(id, { status: 'COMPLETED', result: 1 });
    // Only PENDING -> COMPLETED reaches C.
    assert.equal(c.replica.applyDelta(b.out[n + 1] as Delta, 'node-b'), 'applied');
    assert.deepEqual([c.board.get(id)?.status, c.board.get(id)?.result], ['COMPLETED', 1]);
    // The late IN_PROGRESS (same epoch) changes nothing, and is not a fenced write.
    assert.equal(c.replica.applyDelta(b.out[n] as Delta, 'node-b'), 'unchanged');
    assert.equal(c.board.get(id)?.status, 'COMPLETED');
    assert.equal(c.replica.stats.rejected, 0, 'a reordered write of the same epoch is not rejected');
  });

  it('never lets the run regress, whatever the transitions and delivery order (property)', async () => {
    const local = fc.record({
      kind: fc.constant('local' as const),
      node: fc.nat(2),
      to: fc.constantFrom(...TASK_STATUSES),
    });
    const command = fc.oneof(
      local,
      fc.record({ kind: fc.constant('deliver' as const), node: fc.nat(2), pick: fc.nat() }),
    );
    // The first command always has something to do: node-a (the creator) moves the task along.
    const first = fc.record({
      kind: fc.constant('local' as const),
      node: fc.constant(0),
      to: fc.constantFrom<TaskStatus>('ASSIGNED', 'IN_PROGRESS', 'CANCELLED'),
    });
    let attempted = 0;
    let succeeded = 0;
    const compareRun = taskSchema.fields.run.compare;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 3 }),
        first,
        fc.array(command, { maxLength: 40, size: 'medium' }),
        async (maxRetries, head, tail) => {
          const nodes = ['node-a', 'node-b', 'node-c'].map((n) => meshNode(n));
          const [a] = nodes as [Node];
          const { id } = await a.board.create({ type: 'x', maxRetries });
          const key = taskKey(id);
          const log: Array<[Delta, string]> = a.out.map((d) => [d, 'node-a']);
          const applied = nodes.map((_n, i) => new Set<Delta>(i === 0 ? a.out : []));
          const last = nodes.map((): Register<RunValue> | undefined => undefined);
          let ok = 0;
          const check = (step: string) =>
            nodes.forEach((n, i) => {
              const run = runOf(n.replica, key);
              const prev = last[i];
              if (prev !== undefined) {
                assert.ok(run !== undefined && compareRun(run, prev) >= 0, `${step}: ${n.id}'s run regressed`);
                if (run.v.status !== 'CANCELLED') {
                  assert.ok(run.v.epoch >= prev.v.epoch, `${step}: ${n.id}'s epoch went back`);
                }
                if (prev.v.status === 'CANCELLED') assert.equal(run.v.status, 'CANCELLED', `${step}: ${n.id}`);
              }
              last[i] = run;
            });
          for (const [step, c] of [head, ...tail].entries()) {
            const n = nodes[c.node] as Node;
            const label = `step ${step} ${JSON.stringify(c)}`;
            if (c.kind === 'local') {
              attempted++;
              const before = n.board.get(id);
              const outcome = await n.board
                .transition(id, {
                  status: c.to,
                  ...(c.to === 'ASSIGNED' ? { assignee: `agent-${'abc'[c.node]}` } : {}),
                })
                .then(
                  (v) => v,
                  (e: unknown) => {
                    if (!(e instanceof TaskError)) throw e;
                    return e;
                  },
                );
              // Exactly the generated command's legitimate refusals: the task has not reached
              // this node yet, or the table (with the retry budget) does not allow the change.
              if (before === undefined) {
                assert.ok(outcome instanceof TaskError && outcome.code === 'NOT_FOUND', `${label}: ${String(outcome)}`);
              } else if (allowed(before.status, c.to, before.attempt, maxRetries)) {
                assert.ok(!(outcome instanceof TaskError), `${label} from ${before.status}: ${String(outcome)}`);
                ok++;
              } else {
                assert.ok(
                  outcome instanceof TaskError && outcome.code === 'INVALID_TRANSITION',
                  `${label} from ${before.status}: ${String(outcome)}`,
                );
              }
              for (const d of n.out.filter((x) => !log.some(([y]) => y === x))) {
                log.push([d, n.id]);
                applied[c.node]?.add(d);
              }
            } else {
              const pending = log.filter(([d]) => !applied[c.node]?.has(d));
              if (pending.length === 0) continue;
              const [d, from] = pending[c.pick % pending.length] as [Delta, string];
              n.replica.applyDelta(d, from);
              applied[c.node]?.add(d);
            }
            check(label);
          }
          for (const [i, n] of nodes.entries()) {
            for (const [d, from] of log) if (!applied[i]?.has(d)) n.replica.applyDelta(d, from);
          }
          check('after full delivery');
          assertConverged(nodes, key);
          const views = nodes.map((n) => n.board.get(id) as TaskView);
          for (const [i, v] of views.entries()) assert.deepEqual(v, views[0], `${nodes[i]?.id}'s view`);
          assert.ok((views[0] as TaskView).attempt <= maxRetries + 1, 'attempts within the budget');
          for (const n of nodes) {
            assert.equal(
              n.replica.stats.rejected,
              n.replica.stats.rejectedByReason.stale_epoch ?? 0,
              `${n.id}: honest deltas are never refused, only fenced (counted, changing nothing)`,
            );
          }
          assert.ok(ok > 0, 'at least the first transition succeeded');
          succeeded += ok;
        },
      ),
      { ...fcParams, numRuns: Math.min(fcParams.numRuns, 300) },
    );
    assert.ok(succeeded > 0 && succeeded >= attempted * 0.2, `${succeeded} of ${attempted} transitions succeeded`);
  });

  it('keeps the earliest spec: later specs for an existing id lose the merge, never refused', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    const { id } = await a.board.create({ type: 'x', maxRetries: 1, payload: { v: 1 } });
    deliver(a, b);
    const key = taskKey(id);
    const S = taskSchema;
    const original = a.replica.get(key) as RecordState;
    const spec = (specOf(a.replica, key) as Register<TaskSpecRecord>).v;
    const t = () => b.replica.clock.now();

    // A later spec for the same id, by another node or by the creator itself, is honest-looking
    // input: accepted, and a no-op, because the earlier creation outranks it.
    for (const [origin, sp] of [
      ['node-b', { ...spec, payload: { v: 2 }, creator: 'node-b', createdTs: t() }],
      ['node-a', { ...spec, priority: 9, createdTs: t() }],
    ] as const) {
      const d = forged(b.replica, key, origin, S.delta({ spec: S.fields.spec.set(sp, t(), origin) }));
      assert.equal(b.replica.applyDelta(d, origin), 'unchanged', origin);
    }
    const later = S.merge(
      original,
      S.delta({ spec: S.fields.spec.set({ ...spec, title: 'x', createdTs: t() }, t(), 'node-a') }),
    );
    assert.equal(b.replica.mergeRecord(key, later, 'node-a'), false);
    assert.ok(S.equals(b.replica.get(key) as RecordState, original), 'state unchanged');
    assert.equal(b.replica.stats.rejected, 0);
    await assert.rejects(b.board.create({ id, type: 'y' }), isTaskError('TASK_EXISTS'));
  });

  it('refuses specs not written by their creator and oversized input', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    const { id } = await a.board.create({ type: 'x', maxRetries: 1, payload: { v: 1 } });
    deliver(a, b);
    const key = taskKey(id);
    const S = taskSchema;
    const original = a.replica.get(key) as RecordState;
    const spec = (specOf(a.replica, key) as Register<TaskSpecRecord>).v;
    const run = (runOf(a.replica, key) as Register<RunValue>).v;
    const t = () => b.replica.clock.now();

    // B writes a spec naming A as creator: refused as a delta, as a full record, and on a node
    // that has never seen the task (where it would otherwise win: it is earlier).
    const inAsName = S.delta({ spec: S.fields.spec.set({ ...spec, createdTs: spec.createdTs - 1 }, t(), 'node-b') });
    assert.throws(
      () => b.replica.applyDelta(forged(b.replica, key, 'node-b', inAsName), 'node-b'),
      isPolicyError('not_creator'),
    );
    assert.throws(
      () => b.replica.mergeRecord(key, S.merge(original, inAsName), 'node-b'),
      isPolicyError('not_creator'),
    );
    const c = meshNode('node-c');
    assert.throws(
      () => c.replica.applyDelta(forged(c.replica, key, 'node-b', inAsName), 'node-b'),
      isPolicyError('not_creator'),
    );
    assert.throws(() => c.replica.mutate(key, () => inAsName), isPolicyError('not_creator'));
    assert.equal(c.replica.stats.rejectedByReason.not_creator, 2);
    assert.equal(c.replica.has(key), false);
    assert.equal(b.replica.stats.rejectedByReason.not_creator, 2);

    // A run beyond this spec's maxRetries + 1 is not refused by the policy: whether it is out of
    // bounds depends on which of two concurrent specs a replica holds, and refusing it would
    // keep replicas apart. (Local writes respect the limit; decode caps attempts.)
    const beyond = S.delta({ run: S.fields.run.set({ ...run, epoch: 5, attempt: 3 }, t(), 'node-b') });
    const d = meshNode('node-d');
    deliver(a, d);
    assert.equal(d.replica.applyDelta(forged(d.replica, key, 'node-b', beyond), 'node-b'), 'applied');
    assert.equal(d.board.get(id)?.attempt, 3);
    // Oversized results and specs are refused whoever writes them; the decoder refuses them too.
    const big = S.delta({
      run: S.fields.run.set({ ...run, epoch: 9, result: 'r'.repeat(MAX_RESULT_BYTES) }, t(), 'node-b'),
    });
    assert.throws(
      () => b.replica.applyDelta(forged(b.replica, key, 'node-b', big), 'node-b'),
      isPolicyError('too_large'),
    );
    const hugeSpec = S.delta({
      spec: S.fields.spec.set({ ...spec, creator: 'node-b', payload: 'p'.repeat(MAX_PAYLOAD_BYTES) }, t(), 'node-b'),
    });
    assert.throws(
      () => b.replica.applyDelta(forged(b.replica, key, 'node-b', hugeSpec), 'node-b'),
      isPolicyError('too_large'),
    );
    assert.throws(() => viaWire(c.replica, forged(c.replica, key, 'node-b', hugeSpec)), /invalid delta state/);
    const { createdTs: _drop, ...noTs } = spec;
    const malformed = [key, 'node-b', 1, [[{ ...noTs, creator: 'node-b' }, t(), 'node-b'], null]];
    assert.throws(() => c.replica.deltaFromWire(decodeMsgpack(encodeMsgpack(malformed))), /invalid delta state/);
    const badRun = [key, 'node-b', 1, [null, [{ ...run, epoch: -1 }, t(), 'node-b']]];
    assert.throws(() => c.replica.deltaFromWire(decodeMsgpack(encodeMsgpack(badRun))), /invalid delta state/);
    assert.ok(S.equals(b.replica.get(key) as RecordState, original), 'nothing refused changed B');
    // The genuine history still applies everywhere.
    for (const x of a.out) c.replica.applyDelta(viaWire(c.replica, x), 'node-a');
    assert.deepEqual(c.board.get(id), a.board.get(id));
  });

  it('converges when two nodes create the same task id concurrently: the earlier creation wins whole', async () => {
    let ms = 2_000_000;
    const a = meshNode('node-a', { now: () => 111, hlc: () => ms });
    const b = meshNode('node-b', { now: () => 222, hlc: () => ms + 3 });
    const [c, d, e, f] = ['node-c', 'node-d', 'node-e', 'node-f'].map((id) => meshNode(id, { hlc: () => ms })) as [
      Node,
      Node,
      Node,
      Node,
    ];
    await a.board.create({ id: 'job', type: 'build', title: 'from a', payload: { a: 1 }, maxRetries: 2, priority: 1 });
    await b.board.create({ id: 'job', type: 'test', title: 'from b', capabilities: ['gpu'], maxRetries: 3 });
    ms += 10;
    // Both work on it before they hear of each other: B assigns its agent, A assigns and starts.
    await b.board.transition('job', { status: 'ASSIGNED', assignee: 'agent-b' });
    await a.board.transition('job', { status: 'ASSIGNED', assignee: 'agent-a' });
    await a.board.transition('job', { status: 'IN_PROGRESS', progress: 10 });
    const expected = (specOf(a.replica, taskKey('job')) as Register<TaskSpecRecord>).v;

    deliver(a, b);
    deliver(b, a);
    deliver(b, c);
    deliver(a, c);
    deliver(a, d);
    deliver(b, d);
    const mixed = [b.out[0], a.out[1], a.out[0], b.out[1], a.out[2]] as Delta[];
    for (const x of [...mixed, ...mixed]) e.replica.applyDelta(viaWire(e.replica, x), x.origin);
    const key = taskKey('job');
    f.replica.mergeRecord(key, f.replica.decodeRecord(key, b.replica.encodeRecord(key)), 'node-b');
    f.replica.mergeRecord(key, f.replica.decodeRecord(key, c.replica.encodeRecord(key)), 'node-c');
    const all = [a, b, c, d, e, f];
    assertConverged(all, key);
    for (const n of all) {
      const v = n.board.get('job') as TaskView;
      assert.deepEqual(specOf(n.replica, key)?.v, expected, `${n.id}: A's whole spec`);
      assert.deepEqual(
        [v.creator, v.createdAt, v.type, v.title, v.capabilities, v.maxRetries],
        ['node-a', 111, 'build', 'from a', [], 2],
        n.id,
      );
      // At one epoch IN_PROGRESS outranks ASSIGNED, and the holder travels with the run that won.
      assert.deepEqual(
        [v.status, v.assignee, v.node, v.attempt, v.epoch, v.progress],
        ['IN_PROGRESS', 'agent-a', 'node-a', 1, 1, 10],
        n.id,
      );
      // Never refused; a creation arriving after the other's claim loses whole and is only
      // counted as fenced (its run is at epoch 0).
      assert.equal(
        n.replica.stats.rejected,
        n.replica.stats.rejectedByReason.stale_epoch ?? 0,
        `${n.id}: honest concurrent creations are never refused`,
      );
    }
    await assert.rejects(b.board.create({ id: 'job', type: 'test' }), isTaskError('TASK_EXISTS'));
  });

  it('keeps the holder consistent with the run that wins a concurrent assign/start', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    const { id } = await a.board.create({ type: 'x' });
    deliver(a, b);
    const nA = a.out.length;
    const nB = b.out.length;
    // Concurrently at epoch 1: B assigns agent-b and starts it; A assigns agent-a (later clock).
    await b.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-b' });
    await b.board.transition(id, { status: 'IN_PROGRESS' });
    await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-a' });
    for (const x of a.out.slice(nA)) b.replica.applyDelta(x, 'node-a');
    for (const x of b.out.slice(nB)) a.replica.applyDelta(x, 'node-b');
    for (const n of [a, b]) {
      const v = n.board.get(id) as TaskView;
      assert.deepEqual([v.status, v.assignee, v.node, v.epoch], ['IN_PROGRESS', 'agent-b', 'node-b', 1], n.id);
    }
    assertConverged([a, b], taskKey(id));
    // A reassignment of an ASSIGNED task is a new claim (epoch + 1), and replicates.
    const other = await a.board.create({ type: 'x' });
    await a.board.transition(other.id, { status: 'ASSIGNED', assignee: 'agent-a' });
    const re = await a.board.transition(other.id, { assignee: 'agent-c' });
    assert.deepEqual([re.status, re.assignee, re.node, re.epoch], ['ASSIGNED', 'agent-c', 'node-c', 2]);
    deliver(a, b);
    assert.deepEqual(b.board.get(other.id), re);
  });

  it('lists tasks by status, capability, assignee, creator and node, in creation order, with a limit', async () => {
    let now = 100;
    const clock = () => now;
    const a = meshNode('node-a', { now: clock });
    const b = meshNode('node-b', { now: clock });
    now = 300;
    await a.board.create({ id: 't3', type: 'x', capabilities: ['gpu'] });
    now = 100;
    await b.board.create({ id: 't1', type: 'x', capabilities: ['gpu', 'net'] });
    now = 200;
    await a.board.create({ id: 't2b', type: 'x' });
    await a.board.create({ id: 't2a', type: 'x', capabilities: ['net'] });
    await a.board.transition('t2a', { status: 'ASSIGNED', assignee: 'agent-b' });
    deliver(a, b);
    deliver(b, a);
    for (const n of [a, b]) {
      const ids = (filter?: Parameters<TaskBoard['list']>[0]) => n.board.list(filter).map((t) => t.id);
      assert.deepEqual(ids(), ['t1', 't2a', 't2b', 't3'], n.id);
      assert.deepEqual(ids({ status: 'PENDING' }), ['t1', 't2b', 't3'], n.id);
      assert.deepEqual(ids({ capability: 'gpu' }), ['t1', 't3'], n.id);
      assert.deepEqual(ids({ assignee: 'agent-b' }), ['t2a'], n.id);
      assert.deepEqual(ids({ node: 'node-b' }), ['t2a'], n.id);
      assert.deepEqual(ids({ creator: 'node-b' }), ['t1'], n.id);
      assert.deepEqual(ids({ capability: 'net', status: 'ASSIGNED' }), ['t2a'], n.id);
      assert.deepEqual(ids({ limit: 2 }), ['t1', 't2a'], n.id);
      assert.deepEqual(ids({ limit: 0 }), [], n.id);
    }
    assert.throws(() => a.board.list({ limit: -1 }), isTaskError('INVALID_TASK'));
  });
});
