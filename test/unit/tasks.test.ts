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
  newTaskId,
  statusRank,
  TASK_HTTP_STATUS,
  TASK_STATUSES,
  TaskBoard,
  TaskError,
  taskKey,
  taskSchema,
  type TaskSpecRecord,
  type TaskStatus,
  type TaskView,
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

/** `hlc`: the physical clock of the replica's HLC (default Date.now). */
function meshNode(id: string, now?: () => number, hlc?: () => number): Node {
  const replica = meshReplica(id, hlc);
  const out: Delta[] = [];
  const mutate = async (k: string, b: Parameters<Replica['mutate']>[1]) => {
    const d = replica.mutate(k, b);
    out.push(d);
    return d;
  };
  return { id, replica, out, board: new TaskBoard({ replica, mutate, ...(now ? { now } : {}) }) };
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

function assertConverged(nodes: Node[], key: string): void {
  const first = nodes[0] as Node;
  const ref = first.replica.get(key) as RecordState;
  for (const n of nodes) {
    const s = n.replica.get(key);
    assert.ok(s !== undefined, `${n.id} has ${key}`);
    assert.ok(taskSchema.equals(s, ref), `${n.id} and ${first.id} hold equal ${key}`);
  }
}

/** How to bring a fresh task to each status through local transitions. */
const PATHS: Record<TaskStatus, TaskStatus[]> = {
  PENDING: [],
  ASSIGNED: ['ASSIGNED'],
  IN_PROGRESS: ['IN_PROGRESS'],
  COMPLETED: ['IN_PROGRESS', 'COMPLETED'],
  FAILED: ['IN_PROGRESS', 'FAILED'],
  CANCELLED: ['CANCELLED'],
};

/**
 * The expected outcome of transition(from -> to) on a task at attempt 1 with retries left:
 * the resulting [status, attempt], or 'reject' for INVALID_TRANSITION (409).
 */
const TABLE: Record<TaskStatus, Record<TaskStatus, [TaskStatus, number] | 'reject'>> = {
  PENDING: {
    PENDING: ['PENDING', 1],
    ASSIGNED: ['ASSIGNED', 1],
    IN_PROGRESS: ['IN_PROGRESS', 1],
    COMPLETED: 'reject',
    FAILED: 'reject',
    CANCELLED: ['CANCELLED', 1],
  },
  ASSIGNED: {
    PENDING: ['PENDING', 2], // unassign: a new attempt
    ASSIGNED: ['ASSIGNED', 1],
    IN_PROGRESS: ['IN_PROGRESS', 1],
    COMPLETED: 'reject',
    FAILED: ['FAILED', 1], // the agent refused it (pre_task hook) or could not start it
    CANCELLED: ['CANCELLED', 1],
  },
  IN_PROGRESS: {
    PENDING: 'reject',
    ASSIGNED: 'reject',
    IN_PROGRESS: ['IN_PROGRESS', 1],
    COMPLETED: ['COMPLETED', 1],
    FAILED: ['FAILED', 1],
    CANCELLED: ['CANCELLED', 1],
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
    PENDING: ['PENDING', 2], // retry
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
    CANCELLED: ['CANCELLED', 1], // idempotent
  },
};

async function bringTo(board: TaskBoard, id: string, status: TaskStatus): Promise<void> {
  for (const s of PATHS[status]) await board.transition(id, { status: s, assignee: 'agent-1' });
}

describe('task board', () => {
  it('creates PENDING tasks with defaults, a time-sortable id, and replicates them', async () => {
    let now = 5_000;
    const a = meshNode('node-a', () => now);
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
      creator: 'node-a',
      createdAt: 5_000,
      status: 'PENDING',
      attempt: 1,
      assignee: null,
      leaseUntil: null,
      progress: 0,
      result: null,
      error: null,
      updatedAt: 5_000,
      log: [],
    });
    now = 6_000;
    const t2 = await a.board.create({ type: 'x' });
    assert.ok(t.id < t2.id, 'ids sort by creation time');
    assert.ok(newTaskId(1) < newTaskId(36 ** 8), 'fixed-width time prefix');
    deliver(a, b);
    assert.deepEqual(b.board.get(t.id), t);
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
      dependencies: [t2.id],
    });
    assert.deepEqual(
      [full.capabilities, full.priority, full.deadline, full.maxRetries, full.parent, full.dependencies],
      [['cc', 'ld'], 9, 99_000, 0, t.id, [t2.id]],
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
    assert.equal(b.out.length, 0);
    assert.equal(a.board.get('dup')?.type, 'x');
  });

  it('validates task input with typed errors', async () => {
    const a = meshNode('node-a');
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
      [{ type: 'x', payload: { n: 1n } }, 'INVALID_TASK'],
      [{ type: 'x', payload: 'p'.repeat(MAX_PAYLOAD_BYTES) }, 'TOO_LARGE'],
    ];
    for (const [input, code] of cases) {
      await assert.rejects(
        a.board.create(input as never),
        isTaskError(code),
        JSON.stringify(input, (_k, v: unknown) => (typeof v === 'bigint' ? 'n' : v)),
      );
    }
    assert.equal(a.replica.size, 0);
    assert.equal(TASK_HTTP_STATUS.TOO_LARGE, 413);
    assert.equal(TASK_HTTP_STATUS.INVALID_TASK, 400);
    // Exactly at the limits is fine.
    const payload = 'p'.repeat(MAX_PAYLOAD_BYTES - 2);
    const t = await a.board.create({
      type: 'x',
      title: 't'.repeat(256),
      payload,
      capabilities: Array.from({ length: 32 }, (_, i) => `c${i}`),
      dependencies: Array.from({ length: 64 }, (_, i) => `d${i}`),
    });
    assert.equal(t.payload, payload);
  });

  it('implements the transition table: every pair of statuses is allowed or 409', async () => {
    const a = meshNode('node-a');
    for (const from of TASK_STATUSES) {
      for (const to of TASK_STATUSES) {
        const { id } = await a.board.create({ type: 'x', maxRetries: 3 });
        await bringTo(a.board, id, from);
        assert.equal(a.board.get(id)?.status, from);
        const expected = TABLE[from][to];
        const run = a.board.transition(id, { status: to, ...(to === 'ASSIGNED' ? { assignee: 'agent-2' } : {}) });
        if (expected === 'reject') {
          const err = await run.then(
            () => assert.fail(`${from} -> ${to} should be refused`),
            (e: unknown) => e as TaskError,
          );
          assert.ok(err instanceof TaskError, `${from} -> ${to}`);
          assert.equal(err.code, 'INVALID_TRANSITION', `${from} -> ${to}`);
          assert.equal(err.status, 409);
          assert.equal(a.board.get(id)?.status, from, 'unchanged');
        } else {
          const v = await run;
          assert.deepEqual([v.status, v.attempt], expected, `${from} -> ${to}`);
        }
      }
    }
  });

  it('retries failed tasks while attempts remain, resetting the attempt’s fields', async () => {
    const a = meshNode('node-a');
    const { id } = await a.board.create({ type: 'x', maxRetries: 2 });
    for (let attempt = 1; attempt <= 3; attempt++) {
      assert.equal(a.board.get(id)?.attempt, attempt);
      await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-1', leaseUntil: 10_000 });
      await a.board.transition(id, { status: 'IN_PROGRESS', progress: 40 });
      const failed = await a.board.transition(id, { status: 'FAILED', error: { message: `boom ${attempt}` } });
      assert.deepEqual(
        [failed.status, failed.error, failed.assignee],
        ['FAILED', { message: `boom ${attempt}` }, 'agent-1'],
      );
      if (attempt < 3) {
        const retried = await a.board.transition(id, { status: 'PENDING' });
        assert.deepEqual(
          [retried.status, retried.attempt, retried.assignee, retried.leaseUntil, retried.progress, retried.error],
          ['PENDING', attempt + 1, null, null, 0, null],
        );
      }
    }
    await assert.rejects(a.board.transition(id, { status: 'PENDING' }), isTaskError('INVALID_TRANSITION'));
    assert.deepEqual([a.board.get(id)?.status, a.board.get(id)?.attempt], ['FAILED', 3]);
    const once = await a.board.create({ type: 'x', maxRetries: 0 });
    await a.board.transition(once.id, { status: 'IN_PROGRESS' });
    await a.board.transition(once.id, { status: 'FAILED' });
    await assert.rejects(a.board.transition(once.id, { status: 'PENDING' }), isTaskError('INVALID_TRANSITION'));
  });

  it('unassigns as a new attempt, which outranks what the old assignee does concurrently', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    const { id } = await a.board.create({ type: 'x', maxRetries: 1 });
    await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-b' });
    deliver(a, b);
    // Concurrently: B's agent starts and finishes attempt 1; A unassigns (attempt 2).
    await b.board.transition(id, { status: 'IN_PROGRESS' });
    await b.board.transition(id, { status: 'COMPLETED', result: 'late' });
    const un = await a.board.transition(id, { status: 'PENDING' });
    assert.deepEqual([un.status, un.attempt, un.assignee], ['PENDING', 2, null]);
    deliver(a, b);
    deliver(b, a);
    for (const n of [a, b]) assert.deepEqual([n.board.get(id)?.status, n.board.get(id)?.attempt], ['PENDING', 2]);
    // The budget is shared with retries: attempt 2 of maxRetries 1 is the last one.
    await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-a' });
    await assert.rejects(a.board.transition(id, { status: 'PENDING' }), isTaskError('INVALID_TRANSITION'));
  });

  it('validates patches: assignee for ASSIGNED, progress range, sizes, unknown ids', async () => {
    let now = 1_000;
    const a = meshNode('node-a', () => now);
    const { id } = await a.board.create({ type: 'x' });
    await assert.rejects(a.board.transition(id, { status: 'ASSIGNED' }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { progress: 101 }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { progress: -1 }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { status: 'DONE' as never }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { assignee: 'no spaces' }), isTaskError('INVALID_TASK'));
    await assert.rejects(a.board.transition(id, { result: 'r'.repeat(MAX_RESULT_BYTES) }), isTaskError('TOO_LARGE'));
    await assert.rejects(a.board.transition('missing', { status: 'CANCELLED' }), isTaskError('NOT_FOUND'));
    await assert.rejects(a.board.cancel('missing'), isTaskError('NOT_FOUND'));
    assert.equal(a.board.get(id)?.updatedAt, 1_000);
    now = 2_000;
    await a.board.transition(id, { status: 'IN_PROGRESS', assignee: 'agent-1' });
    now = 3_000;
    const p = await a.board.transition(id, { progress: 55.5, leaseUntil: 9_000 });
    assert.deepEqual(
      [p.status, p.progress, p.leaseUntil, p.updatedAt, p.assignee],
      ['IN_PROGRESS', 55.5, 9_000, 3_000, 'agent-1'],
    );
    const done = await a.board.transition(id, { status: 'COMPLETED', result: { answer: 42 }, leaseUntil: null });
    assert.deepEqual([done.progress, done.result, done.leaseUntil], [100, { answer: 42 }, null]);
    await assert.rejects(a.board.transition(id, { progress: 1 }), isTaskError('INVALID_TRANSITION'));
  });

  it('cancels idempotently, and refuses to cancel finished tasks with 409', async () => {
    const a = meshNode('node-a');
    const { id } = await a.board.create({ type: 'x' });
    const c = await a.board.cancel(id);
    assert.equal(c.status, 'CANCELLED');
    const n = a.out.length;
    assert.deepEqual(await a.board.cancel(id), c);
    assert.equal(a.out.length, n, 'cancelling twice writes nothing');
    for (const end of ['COMPLETED', 'FAILED'] as const) {
      const t = await a.board.create({ type: 'x' });
      await bringTo(a.board, t.id, end);
      await assert.rejects(a.board.cancel(t.id), isTaskError('INVALID_TRANSITION'));
    }
  });

  it('resolves a cancel/complete race to CANCELLED on every node, whatever the delivery order', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    const c = meshNode('node-c');
    const d = meshNode('node-d');
    const { id } = await a.board.create({ type: 'x' });
    await a.board.transition(id, { status: 'IN_PROGRESS', assignee: 'agent-1' });
    deliver(a, b, c, d);
    const nA = a.out.length;
    const nB = b.out.length;
    await b.board.transition(id, { status: 'COMPLETED', result: 'ok' });
    await a.board.cancel(id);
    const cancel = a.out.slice(nA);
    const complete = b.out.slice(nB);
    for (const x of cancel) b.replica.applyDelta(x, 'node-a');
    for (const x of complete) a.replica.applyDelta(x, 'node-b');
    for (const x of [...cancel, ...complete]) c.replica.applyDelta(x);
    for (const x of [...complete, ...cancel]) d.replica.applyDelta(x);
    for (const n of [a, b, c, d]) {
      assert.equal(n.board.get(id)?.status, 'CANCELLED', n.id);
      assert.ok(
        taskSchema.equals(n.replica.get(taskKey(id)) as RecordState, a.replica.get(taskKey(id)) as RecordState),
      );
    }
    await assert.rejects(b.board.transition(id, { status: 'FAILED' }), isTaskError('INVALID_TRANSITION'));
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
    c.replica.applyDelta(b.out[n + 1] as Delta, 'node-b'); // only PENDING -> COMPLETED reaches C
    assert.deepEqual([c.board.get(id)?.status, c.board.get(id)?.result], ['COMPLETED', 1]);
    c.replica.applyDelta(b.out[n] as Delta, 'node-b'); // the late IN_PROGRESS changes nothing
    assert.equal(c.board.get(id)?.status, 'COMPLETED');
  });

  it('never lets the status regress, whatever the transitions and delivery order (property)', async () => {
    const command = fc.oneof(
      fc.record({ kind: fc.constant('local' as const), node: fc.nat(2), to: fc.constantFrom(...TASK_STATUSES) }),
      fc.record({ kind: fc.constant('deliver' as const), node: fc.nat(2), pick: fc.nat() }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 3 }),
        fc.array(command, { maxLength: 40 }),
        async (maxRetries, cmds) => {
          const nodes = ['node-a', 'node-b', 'node-c'].map((n) => meshNode(n));
          const [a] = nodes as [Node];
          const { id } = await a.board.create({ type: 'x', maxRetries });
          const key = taskKey(id);
          const log: Array<[Delta, string]> = a.out.map((d) => [d, 'node-a']);
          const applied = nodes.map((n, i) => new Set<Delta>(i === 0 ? a.out : []));
          const ranks = nodes.map(() => -1);
          const check = () =>
            nodes.forEach((n, i) => {
              const s = n.replica.get(key);
              const st = s === undefined ? undefined : taskSchema.get(s, 'status');
              const r = st === undefined ? -1 : statusRank(st.v);
              assert.ok(r >= (ranks[i] as number), `${n.id} regressed`);
              ranks[i] = r;
            });
          for (const c of cmds) {
            const n = nodes[c.node] as Node;
            if (c.kind === 'local') {
              const before = n.out.length;
              await n.board
                .transition(id, { status: c.to, ...(c.to === 'ASSIGNED' ? { assignee: `agent-${c.node}` } : {}) })
                .catch((e: unknown) => {
                  if (!(e instanceof TaskError)) throw e;
                });
              for (const d of n.out.slice(before)) {
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
            check();
          }
          for (const [i, n] of nodes.entries())
            for (const [d, from] of log) if (!applied[i]?.has(d)) n.replica.applyDelta(d, from);
          check();
          const views = nodes.map((n) => n.board.get(id) as TaskView);
          for (const v of views) assert.deepEqual(v, views[0]);
          assert.ok((views[0] as TaskView).attempt <= maxRetries + 1);
          for (const n of nodes) assert.equal(n.replica.stats.rejected, 0, 'honest deltas are never refused');
        },
      ),
      { ...fcParams, numRuns: Math.min(fcParams.numRuns, 300) },
    );
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
      assert.equal(b.replica.applyDelta(d, origin), 'unchanged');
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

    // A status beyond this spec's maxRetries + 1 is not refused by the policy: whether it is
    // out of bounds depends on which of two concurrent specs a replica holds, and refusing it
    // would keep replicas apart. (Local transitions respect the limit; decode caps attempts.)
    const beyond = S.delta({
      status: S.fields.status.set({ status: 'PENDING', attempt: 3, assignee: null }, t(), 'node-b'),
    });
    const d = meshNode('node-d');
    deliver(a, d);
    assert.equal(d.replica.applyDelta(forged(d.replica, key, 'node-b', beyond), 'node-b'), 'applied');
    // Oversized results and specs are refused whoever writes them; the decoder refuses them too.
    const big = S.delta({ result: S.fields.result.set('r'.repeat(MAX_RESULT_BYTES), t(), 'node-b') });
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
    const malformed = [
      key,
      'node-b',
      1,
      [[{ ...noTs, creator: 'node-b' }, t(), 'node-b'], null, null, null, null, null, null],
    ];
    assert.throws(() => c.replica.deltaFromWire(decodeMsgpack(encodeMsgpack(malformed))), /invalid delta state/);
    assert.ok(S.equals(b.replica.get(key) as RecordState, original));
    // The genuine history still applies everywhere.
    for (const d of a.out) c.replica.applyDelta(viaWire(c.replica, d), 'node-a');
    assert.deepEqual(c.board.get(id), a.board.get(id));
  });

  it('converges when two nodes create the same task id concurrently: the earlier creation wins whole', async () => {
    let ms = 2_000_000;
    const a = meshNode(
      'node-a',
      () => 111,
      () => ms,
    );
    const b = meshNode(
      'node-b',
      () => 222,
      () => ms + 3,
    );
    const [c, d, e, f] = ['node-c', 'node-d', 'node-e', 'node-f'].map((id) => meshNode(id, undefined, () => ms)) as [
      Node,
      Node,
      Node,
      Node,
    ];
    await a.board.create({ id: 'job', type: 'build', title: 'from a', payload: { a: 1 }, maxRetries: 2, priority: 1 });
    await b.board.create({ id: 'job', type: 'test', title: 'from b', capabilities: ['gpu'], maxRetries: 3 });
    ms += 10;
    // Both work on it before they hear of each other.
    await b.board.transition('job', { status: 'ASSIGNED', assignee: 'agent-b' });
    await a.board.transition('job', { status: 'IN_PROGRESS', assignee: 'agent-a', progress: 10 });
    const expected = (specOf(a.replica, taskKey('job')) as Register<TaskSpecRecord>).v;

    deliver(a, b);
    deliver(b, a);
    deliver(b, c);
    deliver(a, c);
    deliver(a, d);
    deliver(b, d);
    const mixed = [b.out[0], a.out[1], a.out[0], b.out[1]] as Delta[];
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
      // IN_PROGRESS outranks ASSIGNED, and the assignee travels with the status that won.
      assert.deepEqual([v.status, v.assignee, v.attempt], ['IN_PROGRESS', 'agent-a', 1], n.id);
      assert.equal(n.replica.stats.rejected, 0, `${n.id}: honest concurrent creations are never refused`);
    }
    await assert.rejects(b.board.create({ id: 'job', type: 'test' }), isTaskError('TASK_EXISTS'));
  });

  it('keeps the assignee consistent with the status that wins a concurrent assign/start', async () => {
    const a = meshNode('node-a');
    const b = meshNode('node-b');
    const { id } = await a.board.create({ type: 'x' });
    deliver(a, b);
    const nA = a.out.length;
    const nB = b.out.length;
    // Concurrently: A reassigns (ASSIGNED to agent-a, later clock), B starts it for agent-b.
    await b.board.transition(id, { status: 'IN_PROGRESS', assignee: 'agent-b' });
    await a.board.transition(id, { status: 'ASSIGNED', assignee: 'agent-a' });
    for (const x of a.out.slice(nA)) b.replica.applyDelta(x, 'node-a');
    for (const x of b.out.slice(nB)) a.replica.applyDelta(x, 'node-b');
    for (const n of [a, b]) {
      const v = n.board.get(id) as TaskView;
      assert.deepEqual([v.status, v.assignee], ['IN_PROGRESS', 'agent-b'], n.id);
    }
    assertConverged([a, b], taskKey(id));
    // A field-only reassignment within the same status is last-writer-wins.
    await a.board.transition(id, { assignee: 'agent-c' });
    deliver(a, b);
    assert.equal(b.board.get(id)?.assignee, 'agent-c');
  });

  it('lists tasks by status, capability, assignee and creator, in creation order, with a limit', async () => {
    let now = 100;
    const clock = () => now;
    const a = meshNode('node-a', clock);
    const b = meshNode('node-b', clock);
    now = 300;
    await a.board.create({ id: 't3', type: 'x', capabilities: ['gpu'] });
    now = 100;
    await b.board.create({ id: 't1', type: 'x', capabilities: ['gpu', 'net'] });
    now = 200;
    await a.board.create({ id: 't2b', type: 'x' });
    await a.board.create({ id: 't2a', type: 'x', capabilities: ['net'] });
    await a.board.transition('t2a', { status: 'ASSIGNED', assignee: 'agent-9' });
    deliver(a, b);
    deliver(b, a);
    for (const n of [a, b]) {
      const ids = (f?: Parameters<TaskBoard['list']>[0]) => n.board.list(f).map((t) => t.id);
      assert.deepEqual(ids(), ['t1', 't2a', 't2b', 't3']);
      assert.deepEqual(ids({ status: 'PENDING' }), ['t1', 't2b', 't3']);
      assert.deepEqual(ids({ capability: 'gpu' }), ['t1', 't3']);
      assert.deepEqual(ids({ assignee: 'agent-9' }), ['t2a']);
      assert.deepEqual(ids({ creator: 'node-b' }), ['t1']);
      assert.deepEqual(ids({ capability: 'net', status: 'ASSIGNED' }), ['t2a']);
      assert.deepEqual(ids({ limit: 2 }), ['t1', 't2a']);
      assert.deepEqual(ids({ limit: 0 }), []);
    }
    assert.throws(() => a.board.list({ limit: -1 }), isTaskError('INVALID_TASK'));
  });
});
