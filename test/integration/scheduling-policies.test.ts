import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encode } from '../../src/codec/index.js';
import { createHost, type MeshHost } from '../../src/net/index.js';
import { meshSchemaFor } from '../../src/node/schemas.js';
import { Replica } from '../../src/replica/index.js';
import { initialRun, SPEC_DEFAULTS, taskKey } from '../../src/tasks/tasks.js';
import { type RunValue, type TaskSpecRecord, taskSchema } from '../../src/tasks/task-schema.js';
import { MeshProcess, metric, shutdownNodes, until, waitFor, writeAgentsFile } from '../helpers/mesh-process.js';
import {
  getTask,
  listTasks,
  readRuns,
  schedAgent,
  settled,
  startCounts,
  submit,
  type TaskJson,
} from '../helpers/scheduling.js';

const TOPIC = 'agentmesh/default/deltas/1';

/**
 * Three nodes: p0 hosts no agent (every task is submitted there), p1 hosts `worker` (work,
 * concurrency 4), `solo` (prio, concurrency 1), `caller` (orchestrate) and `near-1` (sum-near), p2
 * hosts `adder` (sum, the only one) and `near-2` (sum-near).
 */
describe('scheduling policies, tool calls and forged writes', { timeout: 120_000 }, () => {
  let dir = '';
  const nodes: MeshProcess[] = [];
  let p0: MeshProcess;
  let p1: MeshProcess;
  let p2: MeshProcess;
  const log = (agent: string): string => join(dir, `runs-${agent}.log`);
  const runsOf = (...agents: string[]) => readRuns(agents.map(log));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-sched-policies-'));
    const a1 = writeAgentsFile(
      dir,
      [
        schedAgent('worker', ['work'], log('worker'), { concurrency: 4 }),
        schedAgent('solo', ['prio'], log('solo'), { concurrency: 1 }),
        schedAgent('caller', ['orchestrate'], log('caller'), { concurrency: 4 }),
        schedAgent('near-1', ['sum-near'], log('near-1'), { concurrency: 4 }),
      ],
      'agents-p1.json',
    );
    const a2 = writeAgentsFile(
      dir,
      [
        schedAgent('adder', ['sum'], log('adder'), { concurrency: 4 }),
        schedAgent('near-2', ['sum-near'], log('near-2'), { concurrency: 4 }),
      ],
      'agents-p2.json',
    );
    p0 = await new MeshProcess({ name: 'p0' }).start();
    nodes.push(p0);
    [p1, p2] = await Promise.all([
      new MeshProcess({ name: 'p1', join: [p0.addr], extraArgs: ['--agents', a1] }).start(),
      new MeshProcess({ name: 'p2', join: [p0.addr], extraArgs: ['--agents', a2] }).start(),
    ]);
    nodes.push(p1, p2);
    await waitFor(
      async () => {
        for (const n of nodes) {
          const agents = await n.get<Array<{ state: string; reachable: boolean }>>('/v1/agents');
          if (agents.filter((a) => a.state === 'RUNNING' && a.reachable).length !== 6) return false;
        }
        return true;
      },
      30_000,
      'the six agents RUNNING and reachable on every node',
    );
  });

  after(async () => {
    await shutdownNodes(nodes);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a retryable failure is retried with a growing backoff until it succeeds', async () => {
    const backoffMs = 600;
    await submit(p0, {
      id: 'retry-1',
      type: 'flaky',
      capabilities: ['work'],
      payload: { failUntilAttempt: 4 },
      maxRetries: 3,
      retry: { backoffMs, maxBackoffMs: 60_000 },
    });
    const t = await settled(p0, 'retry-1', 30_000);
    assert.equal(t.status, 'COMPLETED', JSON.stringify(t));
    assert.equal(t.attempt, 4, 'the fourth attempt succeeded');
    assert.equal(t.result?.attempt, 4, "the result is the fourth attempt's");
    assert.equal(t.attempts.length, 3, 'three failed attempts in the history');
    for (const [i, a] of t.attempts.entries()) {
      assert.equal(a.attempt, i + 1, `history ${i}: attempt number`);
      assert.equal(a.status, 'FAILED', `history ${i}: status`);
      assert.equal(a.error?.code, 'FLAKY', `history ${i}: the agent's error`);
    }
    // The gap before attempt k+1 is the backoff of attempt k: backoffMs * 2^(k-1), jittered
    // into [half of it, all of it], plus scheduling latency.
    const starts = [...t.attempts.slice(1).map((a) => a.startedAt as number), t.startedAt as number];
    const gaps = t.attempts.map((a, i) => (starts[i] as number) - a.endedAt);
    for (const [i, gap] of gaps.entries()) {
      assert.ok(gap >= (backoffMs * 2 ** i) / 2, `gap ${i + 1} (${gap} ms) at least half of ${backoffMs * 2 ** i} ms`);
    }
    assert.ok((gaps[2] as number) > (gaps[0] as number), `the backoff grows: gaps ${gaps.join(', ')} ms`);
    assert.deepEqual(
      runsOf('worker')
        .filter((r) => r.task === 'retry-1')
        .map((r) => r.attempt),
      [1, 2, 3, 4],
      'each attempt ran once',
    );
    console.log(`retries: gaps between attempts ${gaps.join(', ')} ms (backoff ${backoffMs} ms doubling)`);
  });

  it('an attempt over its timeout is killed and retried', async () => {
    await submit(p0, {
      id: 'timeout-1',
      type: 'slow',
      capabilities: ['work'],
      payload: { sleepMs: 30_000, slowUntilAttempt: 2 },
      timeoutMs: 500,
      retry: { backoffMs: 100 },
    });
    const t = await settled(p0, 'timeout-1', 20_000);
    assert.equal(t.status, 'COMPLETED', JSON.stringify(t));
    assert.equal(t.attempt, 2, 'the second attempt completed');
    assert.equal(t.attempts[0]?.error?.code, 'TIMEOUT', JSON.stringify(t.attempts));
  });

  it('a deadline that passes fails the task with DEADLINE_EXCEEDED, running or never claimed', async () => {
    // Far enough ahead that a slow submission still lands before it.
    const deadline = Date.now() + 2500;
    await submit(p0, {
      id: 'deadline-run',
      type: 'slow',
      capabilities: ['work'],
      payload: { sleepMs: 30_000 },
      deadline,
    });
    await submit(p0, { id: 'deadline-wait', type: 'orphan', capabilities: ['nobody-has-this'], deadline });
    for (const id of ['deadline-run', 'deadline-wait']) {
      const t = await settled(p0, id, 15_000);
      assert.equal(t.status, 'FAILED', `${id}: ${JSON.stringify(t)}`);
      assert.equal(t.error?.code, 'DEADLINE_EXCEEDED', `${id}: ${JSON.stringify(t.error)}`);
      assert.ok(t.updatedAt >= deadline, `${id} failed after its deadline`);
    }
    assert.equal(runsOf('worker').filter((r) => r.task === 'deadline-run').length, 1, 'the running one ran once');
    // Refused on submit: a deadline already past, a dependency or parent that does not exist.
    for (const input of [
      { id: 'bad-deadline', type: 'x', deadline: Date.now() - 1000 },
      { id: 'bad-dep', type: 'x', dependencies: ['no-such-task'] },
      { id: 'bad-parent', type: 'x', parent: 'no-such-task' },
    ]) {
      const r = await p0.call<{ error: { code: string } }>('POST', '/v1/tasks', input);
      assert.equal(r.status, 400, `${input.id}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'INVALID_REFERENCE', input.id);
    }
  });

  it('a dependency chain runs in order: B after A completes, C after B', async () => {
    await submit(p0, { id: 'chain-a', type: 'step', capabilities: ['work'], payload: { sleepMs: 1500 } });
    await submit(p0, { id: 'chain-b', type: 'step', capabilities: ['work'], dependencies: ['chain-a'] });
    await submit(p0, { id: 'chain-c', type: 'step', capabilities: ['work'], dependencies: ['chain-b'] });
    await until(
      () => getTask(p0, 'chain-a'),
      (t) => t.status === 'IN_PROGRESS',
      10_000,
      'chain-a to run',
    );
    for (const id of ['chain-b', 'chain-c']) {
      assert.equal((await getTask(p0, id)).status, 'PENDING', `${id} waits while chain-a runs`);
    }
    const [a, b, c] = [await settled(p0, 'chain-a'), await settled(p0, 'chain-b'), await settled(p0, 'chain-c')] as [
      TaskJson,
      TaskJson,
      TaskJson,
    ];
    for (const t of [a, b, c]) assert.equal(t.status, 'COMPLETED', `${t.id}: ${JSON.stringify(t)}`);
    assert.ok(
      (b.startedAt as number) >= a.updatedAt,
      `chain-b started (${b.startedAt}) after chain-a completed (${a.updatedAt})`,
    );
    assert.ok(
      (c.startedAt as number) >= b.updatedAt,
      `chain-c started (${c.startedAt}) after chain-b completed (${b.updatedAt})`,
    );
    const order = runsOf('worker')
      .filter((r) => r.task.startsWith('chain-'))
      .map((r) => r.task);
    assert.deepEqual(order, ['chain-a', 'chain-b', 'chain-c'], 'each ran once, in order');
  });

  it('a failed dependency cancels its dependents, transitively, with the reason', async () => {
    await submit(p0, {
      id: 'broken',
      type: 'step',
      capabilities: ['work'],
      payload: { fail: 'BROKEN', sleepMs: 300 },
    });
    await submit(p0, { id: 'needs-broken', type: 'step', capabilities: ['work'], dependencies: ['broken'] });
    await submit(p0, { id: 'needs-needs', type: 'step', capabilities: ['work'], dependencies: ['needs-broken'] });
    const broken = await settled(p0, 'broken');
    assert.equal(broken.status, 'FAILED', JSON.stringify(broken));
    assert.equal(broken.error?.code, 'BROKEN', 'not retried: the agent said it is not retryable');
    for (const [id, dep, status] of [
      ['needs-broken', 'broken', 'FAILED'],
      ['needs-needs', 'needs-broken', 'CANCELLED'],
    ] as const) {
      for (const n of nodes) {
        const t = await settled(n, id);
        assert.equal(t.status, 'CANCELLED', `${id} on ${n.options.name}`);
        assert.equal(t.error?.message, `dependency ${dep} ended ${status}`, `${id}: the reason on ${n.options.name}`);
      }
    }
    const ran = runsOf('worker').filter((r) => r.task.startsWith('needs-'));
    assert.deepEqual(ran, [], 'the dependents never ran');
  });

  it('under a backlog the higher priorities start first, and FIFO within a priority', async () => {
    const gate = join(dir, 'prio-gate');
    await submit(p0, { id: 'prio-blocker', type: 'block', capabilities: ['prio'], payload: { waitFile: gate } });
    await until(
      () => getTask(p0, 'prio-blocker'),
      (t) => t.status === 'IN_PROGRESS',
      10_000,
      'the blocker to run',
    );
    const priorities = [3, 7, 5, 7, 3, 9, 5, 0, 9, 3, 7, 5, 1, 9];
    const ids = priorities.map((_, i) => `prio-${String(i).padStart(2, '0')}`);
    for (const [i, priority] of priorities.entries()) {
      await submit(p0, { id: ids[i], type: 'queued', capabilities: ['prio'], priority });
    }
    // Every one of them waiting on the agent's node before the agent frees its slot.
    await until(
      () => listTasks(p1, 'capability=prio&status=PENDING'),
      (l) => l.length === priorities.length,
      10_000,
      'p1 to see the backlog PENDING',
    );
    writeFileSync(gate, '');
    await until(
      () => listTasks(p0, 'capability=prio&status=COMPLETED'),
      (l) => l.length === priorities.length + 1,
      30_000,
      'the backlog to drain',
    );
    const started = runsOf('solo')
      .map((r) => r.task)
      .filter((id) => id !== 'prio-blocker');
    const expected = ids
      .map((id, i) => ({ id, i, p: priorities[i] as number }))
      .sort((x, y) => y.p - x.p || x.i - y.i)
      .map((x) => x.id);
    assert.deepEqual(started, expected, 'start order: priority first, then submission order');
  });

  it('an agent on p1 calls `sum`, served only on p2, through a child task; a recursive call is refused', async () => {
    await submit(p0, {
      id: 'calls-sum',
      type: 'orchestrate',
      capabilities: ['orchestrate'],
      payload: { call: { capability: 'sum', payload: { values: [1, 2, 3, 4] } } },
    });
    const t = await settled(p0, 'calls-sum');
    assert.equal(t.status, 'COMPLETED', JSON.stringify(t));
    assert.equal(t.node, p1.id, 'the caller ran on p1');
    const tool = t.result?.tool as { sum: number; node: string; agent: string };
    assert.equal(tool.sum, 10, JSON.stringify(t.result));
    assert.equal(tool.node, p2.id, 'the sum ran on p2');
    assert.equal(tool.agent, 'adder', 'served by the only agent with sum');
    const children = (await listTasks(p0, 'capability=sum')).filter((c) => c.parent === 'calls-sum');
    assert.equal(children.length, 1, 'one child task, recorded with its parent');
    const child = children[0] as TaskJson & { depth: number };
    assert.equal(child.status, 'COMPLETED', JSON.stringify(child));
    assert.equal(child.node, p2.id, 'the child ran on p2');
    assert.equal(child.depth, 1, 'one level of tool calls deep');
    assert.deepEqual(child.result, tool, "the child's result is what the caller got");

    // A tool call prefers agents on the caller's node when several can serve it.
    for (let i = 0; i < 4; i++) {
      await submit(p0, {
        id: `calls-near-${i}`,
        type: 'orchestrate',
        capabilities: ['orchestrate'],
        payload: { call: { capability: 'sum-near', payload: { values: [i, 1] } } },
      });
    }
    for (let i = 0; i < 4; i++) {
      const c = await settled(p0, `calls-near-${i}`);
      assert.equal(c.status, 'COMPLETED', JSON.stringify(c));
      const r = c.result?.tool as { sum: number; node: string };
      assert.equal(r.sum, i + 1, `calls-near-${i}: the sum`);
      assert.equal(r.node, p1.id, `calls-near-${i}: served on the caller's node`);
    }

    // Calling a capability the calling task itself requires would recurse: refused.
    await submit(p0, {
      id: 'calls-itself',
      type: 'orchestrate',
      capabilities: ['orchestrate'],
      payload: { call: { capability: 'orchestrate', payload: {} } },
    });
    const r = await settled(p0, 'calls-itself');
    assert.equal(r.status, 'FAILED', JSON.stringify(r));
    assert.equal(r.error?.code, 'RECURSIVE_CALL', JSON.stringify(r.error));
    assert.equal((await listTasks(p0)).filter((c) => c.parent === 'calls-itself').length, 0, 'no child task');
  });

  describe('forged writes from a test peer', () => {
    let peer: MeshHost;
    let forger: Replica;

    before(async () => {
      peer = await createHost({ listen: ['/ip4/127.0.0.1/tcp/0'], pubsub: { maxMessageSize: 8 * 1024 * 1024 } });
      forger = new Replica({ nodeId: peer.peerId, schemaFor: meshSchemaFor });
      peer.pubsub.subscribe(TOPIC, () => {});
      // Connected to every node, so that each one receives what it then refuses (a refused
      // message is not forwarded).
      for (const n of nodes) await peer.dial(n.addr);
      await waitFor(
        () => nodes.every((n) => peer.pubsub.subscribers(TOPIC).includes(n.id)),
        20_000,
        'every node subscribed to the topic, as the test peer sees it',
      );
    });
    after(async () => {
      await peer?.stop();
    });

    async function publishRun(id: string, run: RunValue, writer = peer.peerId): Promise<void> {
      const d = forger.mutate(taskKey(id), () =>
        taskSchema.delta({ run: taskSchema.fields.run.set(run, forger.clock.now(), writer) }),
      );
      await peer.pubsub.publish(TOPIC, encode([forger.deltaToWire(d)]));
    }

    /** Waits until every node counts `name` above what it did before. */
    async function risesEverywhere(name: string, before: number[]): Promise<void> {
      await waitFor(
        async () => (await Promise.all(nodes.map((n) => metric(n, name)))).every((v, i) => v > (before[i] as number)),
        15_000,
        `${name} to rise on every node`,
      );
    }
    const counts = (name: string) => Promise.all(nodes.map((n) => metric(n, name)));

    it('a run at an old epoch, a foreign writer, an oversized run and a spec in another creator name are refused and counted everywhere', async () => {
      await submit(p0, { id: 'target', type: 'x', capabilities: ['work'] });
      const target = await settled(p0, 'target');
      assert.equal(target.status, 'COMPLETED', JSON.stringify(target));
      assert.ok(target.epoch >= 1, 'claimed at least once');
      await waitFor(
        async () => (await Promise.all(nodes.map((n) => getTask(n, 'target')))).every((t) => t.status === 'COMPLETED'),
        10_000,
        'target COMPLETED on every node',
      );
      const snapshot = await Promise.all(nodes.map((n) => getTask(n, 'target')));
      const forged: RunValue = {
        ...initialRun(target.createdAt),
        status: 'COMPLETED',
        epoch: target.epoch - 1,
        node: peer.peerId,
        agent: 'forger',
        result: 'forged',
        progress: 100,
      };

      // Stale: the test peer's own write, at an epoch the task has moved past.
      const stale = await counts('replica_rejected_total{reason="stale_epoch"}');
      await publishRun('target', forged);
      await risesEverywhere('replica_rejected_total{reason="stale_epoch"}', stale);

      // A run carrying a write by someone else than the delta's origin (p0's name).
      const foreign = await counts('replica_rejected_total{reason="foreign_writer"}');
      await publishRun('target', { ...forged, epoch: target.epoch + 5 }, p0.id);
      await risesEverywhere('replica_rejected_total{reason="foreign_writer"}', foreign);

      // A run at a winning epoch, with a result beyond the cap.
      const big = await counts('replica_rejected_total{reason="too_large"}');
      const huge = Array.from({ length: 1500 }, (_, i) => `${String(i).padStart(8, '0')}${'x'.repeat(40)}`);
      await publishRun('target', { ...forged, epoch: target.epoch + 5, result: huge });
      await risesEverywhere('replica_rejected_total{reason="too_large"}', big);

      // A spec naming p0 as creator, written by the test peer.
      const notCreator = await counts('replica_rejected_total{reason="not_creator"}');
      const spec: TaskSpecRecord = {
        ...SPEC_DEFAULTS,
        type: 'x',
        title: '',
        payload: null,
        capabilities: ['work'],
        priority: 5,
        deadline: null,
        maxRetries: 3,
        parent: null,
        dependencies: [],
        retry: { ...SPEC_DEFAULTS.retry },
        creator: p0.id,
        createdAt: Date.now(),
        createdTs: forger.clock.now(),
      };
      const d = forger.mutate(taskKey('impostor'), () =>
        taskSchema.delta({
          spec: taskSchema.fields.spec.set(spec, forger.clock.now(), peer.peerId),
          run: taskSchema.fields.run.set(initialRun(spec.createdAt), forger.clock.now(), peer.peerId),
        }),
      );
      await peer.pubsub.publish(TOPIC, encode([forger.deltaToWire(d)]));
      await risesEverywhere('replica_rejected_total{reason="not_creator"}', notCreator);

      for (const [i, n] of nodes.entries()) {
        assert.deepEqual(await getTask(n, 'target'), snapshot[i], `target unchanged on ${n.options.name}`);
        assert.equal((await n.call('GET', '/v1/tasks/impostor')).status, 404, `no impostor task on ${n.options.name}`);
      }
      assert.equal(
        startCounts(runsOf('worker')).get('target'),
        1,
        'the target ran once (nothing forged made it run again)',
      );
    });
  });
});
