import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AGENT_FIXTURES,
  MeshProcess,
  metric,
  processGone,
  shutdownNodes,
  until,
  waitFor,
  writeAgentsFile,
  taskEnded,
} from '../helpers/mesh-process.js';

interface Task {
  id: string;
  status: string;
  attempt: number;
  assignee: string | null;
  progress: number;
  result: unknown;
  error: Record<string, unknown> | null;
  log: string[];
}

interface Agent {
  state: string;
  owner: string;
  stats: { executions: number; successes: number; failures: number; restarts: number };
  meta: Record<string, unknown>;
}

/** What a hook gets on stdin (the fields these tests read). */
interface HookInput {
  event: string;
  agent: { id: string; node: string };
  task: { id: string; payload: unknown };
  outcome?: 'success' | 'failure';
  result?: unknown;
  error?: { code: string; exitCode?: number; node: string };
  durationMs?: number;
}

const EXEC_AGENT = join(AGENT_FIXTURES, 'exec-agent.sh');
const HOOK = join(AGENT_FIXTURES, 'hook.sh');

/**
 * Exec-mode agents on node b of a two-node mesh; every task is created and assigned on node a, so
 * each result travels a -> b (the assignment) and b -> a (the outcome) through replication.
 */
describe('exec agents', { timeout: 60_000 }, () => {
  let dir = '';
  let a: MeshProcess;
  let b: MeshProcess;
  const nodes: MeshProcess[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-agents-exec-'));
    const file = writeAgentsFile(dir, [
      { id: 'worker', mode: 'exec', command: EXEC_AGENT, concurrency: 2, env: { PID_DIR: dir } },
      {
        id: 'guarded',
        mode: 'exec',
        command: EXEC_AGENT,
        hooks: {
          pre_task: { command: HOOK, args: ['veto', join(dir, 'pre_task.jsonl')] },
          post_task: { command: HOOK, args: ['record', join(dir, 'post_task.jsonl')] },
          on_error: { command: HOOK, args: ['record', join(dir, 'on_error.jsonl')] },
        },
      },
      { id: 'small-output', mode: 'exec', command: EXEC_AGENT, maxOutputBytes: 1000 },
      { id: 'slow', mode: 'exec', command: EXEC_AGENT, timeoutMs: 1000, env: { PID_DIR: dir } },
    ]);
    a = await new MeshProcess({ name: 'a' }).start();
    nodes.push(a);
    b = await new MeshProcess({ name: 'b', join: [a.addr], extraArgs: ['--agents', file] }).start();
    nodes.push(b);
    // After its API address, a node prints one line per agent it hosts.
    await until(
      () => b.lines,
      (lines) =>
        ['worker', 'guarded', 'small-output', 'slow'].every((id) => lines.includes(`agent ${id} exec RUNNING`)),
      5_000,
      'b to list its agents on stdout',
      20,
    );
    // a knows b's agents (their records replicated) before any test assigns a task from a.
    await waitFor(
      async () => {
        const agents = await a.get<Array<{ id: string; state: string }>>('/v1/agents');
        return ['worker', 'guarded', 'small-output', 'slow'].every((id) =>
          agents.some((x) => x.id === id && x.state === 'RUNNING'),
        );
      },
      20_000,
      "b's agents to show RUNNING on a",
    );
  });

  after(async () => {
    await shutdownNodes(nodes);
    rmSync(dir, { recursive: true, force: true });
  });

  /** Creates a task on a, assigned to an agent b hosts. */
  async function submit(id: string, agent: string, payload: unknown): Promise<void> {
    // Created already assigned (nothing else may claim it), and without retries: these tests are
    // about one execution on the agent host; scheduling has its own tests.
    const body = { id, type: 'exec-test', title: id, payload, assignee: agent, maxRetries: 0 };
    const created = await a.call('POST', '/v1/tasks', body);
    assert.equal(created.status, 201, `create ${id}: ${JSON.stringify(created.body)}`);
  }

  const settled = (node: MeshProcess, id: string, timeoutMs?: number): Promise<Task> =>
    taskEnded<Task>(node, id, timeoutMs);

  it('runs a task assigned on another node and reports the script output, its stderr and the stats there', async () => {
    const before = await a.get<Agent>('/v1/agents/worker');
    assert.equal(before.owner, b.id, 'worker is hosted by b');
    assert.deepEqual(before.meta, { hosted: true, mode: 'exec' });
    const payload = { words: ['one', 'two'], n: 7 };
    await submit('exec-ok', 'worker', payload);

    const t = await settled(a, 'exec-ok');
    assert.equal(t.status, 'COMPLETED', `exec-ok: ${JSON.stringify(t)}`);
    assert.equal(t.assignee, 'worker');
    assert.equal(t.progress, 100);
    const result = t.result as {
      task: string;
      agent: string;
      node: string;
      dataDir: string;
      input: Task & { payload: unknown };
    };
    assert.equal(result.task, 'exec-ok', 'AGENTMESH_TASK_ID');
    assert.equal(result.agent, 'worker', 'AGENTMESH_AGENT_ID');
    assert.equal(result.node, b.id, 'AGENTMESH_NODE_ID: the task ran on b');
    assert.equal(result.dataDir, resolve(b.dataDir), 'AGENTMESH_DATA_DIR');
    assert.equal(result.input.id, 'exec-ok', 'the task JSON on stdin');
    assert.equal(result.input.attempt, 1);
    assert.deepEqual(result.input.payload, payload, 'the payload reached the script intact');
    assert.deepEqual(t.log, [`exec-agent: task exec-ok on ${b.id}`], 'the stderr line is the task log');

    // The agent's execution counters replicate back to a.
    await until(
      () => a.get<Agent>('/v1/agents/worker'),
      (x) =>
        x.stats.executions === before.stats.executions + 1 &&
        x.stats.successes === before.stats.successes + 1 &&
        x.stats.failures === before.stats.failures,
      10_000,
      "worker's stats on a to count one success",
    );
    // And b's view is the same record.
    const onB = await settled(b, 'exec-ok');
    assert.deepEqual(onB, t, 'b and a hold the same task');
  });

  it('fails a task whose script exits non-zero with EXIT_NONZERO, the exit code and the stderr tail', async () => {
    const before = await a.get<Agent>('/v1/agents/worker');
    const failedBefore = await metric(b, 'agent_tasks_ended_total{outcome="failed"}');
    await submit('exec-fail', 'worker', { mode: 'fail' });

    const t = await settled(a, 'exec-fail');
    assert.equal(t.status, 'FAILED', `exec-fail: ${JSON.stringify(t)}`);
    const e = t.error as Record<string, unknown>;
    assert.equal(e.code, 'EXIT_NONZERO');
    assert.equal(e.exitCode, 3);
    assert.equal(e.retryable, true);
    assert.equal(e.agent, 'worker');
    assert.equal(e.node, b.id);
    assert.match(String(e.message), /exited with code 3/);
    assert.equal(e.stderr, 'exec-agent: starting exec-fail\nexec-agent: disk on fire', 'stderr tail');
    assert.deepEqual(t.log, ['exec-agent: starting exec-fail', 'exec-agent: disk on fire']);
    assert.equal(
      await metric(b, 'agent_tasks_ended_total{outcome="failed"}'),
      failedBefore + 1,
      'b counts the failure',
    );
    await until(
      () => a.get<Agent>('/v1/agents/worker'),
      (x) => x.stats.executions === before.stats.executions + 1 && x.stats.failures === before.stats.failures + 1,
      10_000,
      "worker's stats on a to count one failure",
    );
  });

  it('fails a task whose stdout exceeds maxOutputBytes with OUTPUT_TOO_LARGE', async () => {
    const oversizedBefore = await metric(b, 'agent_output_too_large_total');
    await submit('exec-flood', 'small-output', { mode: 'flood' });
    const t = await settled(a, 'exec-flood');
    assert.equal(t.status, 'FAILED', `exec-flood: ${JSON.stringify(t)}`);
    const e = t.error as Record<string, unknown>;
    assert.equal(e.code, 'OUTPUT_TOO_LARGE');
    assert.equal(e.maxBytes, 1000);
    assert.equal(e.agent, 'small-output');
    assert.equal(t.result, null, 'no partial output is kept as the result');
    assert.equal(await metric(b, 'agent_output_too_large_total'), oversizedBefore + 1);
  });

  it('kills a script that runs past timeoutMs and fails the task with TIMEOUT', async () => {
    const timedOutBefore = await metric(b, 'agent_tasks_timed_out_total');
    await submit('exec-timeout', 'slow', { mode: 'sleep' });
    const pidFile = join(dir, 'exec-timeout.pids');
    await waitFor(() => existsSync(pidFile), 10_000, 'the slow script to write its pids', 20);
    const t = await settled(a, 'exec-timeout');
    assert.equal(t.status, 'FAILED', `exec-timeout: ${JSON.stringify(t)}`);
    const e = t.error as Record<string, unknown>;
    assert.equal(e.code, 'TIMEOUT');
    assert.equal(e.message, 'the attempt ran longer than 1000 ms');
    assert.equal(e.retryable, true);
    assert.equal(e.agent, 'slow');
    assert.equal(await metric(b, 'agent_tasks_timed_out_total'), timedOutBefore + 1);
    const [shPid, sleepPid] = readFileSync(pidFile, 'utf8').trim().split(' ').map(Number) as [number, number];
    await waitFor(
      () => processGone(shPid) && processGone(sleepPid),
      2_000,
      `the timed-out script (${shPid}) and its sleep (${sleepPid}) to be gone`,
      20,
    );
  });

  it('hooks: a pre_task veto fails the task with REFUSED and its reason; post_task and on_error get their JSON', async () => {
    const vetoesBefore = await metric(b, 'agent_hook_vetoes_total');
    await submit('hook-deny', 'guarded', { deny: true });
    const denied = await settled(a, 'hook-deny');
    assert.equal(denied.status, 'FAILED', `hook-deny: ${JSON.stringify(denied)}`);
    const e = denied.error as Record<string, unknown>;
    assert.equal(e.code, 'REFUSED');
    assert.equal(e.message, 'refused by policy: guarded does not take deny tasks', "the hook's first stdout line");
    assert.equal(e.hookExitCode, 1);
    assert.equal(e.agent, 'guarded');
    assert.equal(e.node, b.id);
    assert.equal(await metric(b, 'agent_hook_vetoes_total'), vetoesBefore + 1);

    await submit('hook-ok', 'guarded', { deny: false, n: 1 });
    const ok = await settled(a, 'hook-ok');
    assert.equal(ok.status, 'COMPLETED', `hook-ok: ${JSON.stringify(ok)}`);
    await submit('hook-fail', 'guarded', { mode: 'fail' });
    const failed = await settled(a, 'hook-fail');
    assert.equal(failed.status, 'FAILED', `hook-fail: ${JSON.stringify(failed)}`);
    assert.equal((failed.error as Record<string, unknown>).code, 'EXIT_NONZERO');

    // post_task and on_error run after the outcome is recorded: wait for their files to fill.
    const lines = (name: string): HookInput[] => {
      const file = join(dir, `${name}.jsonl`);
      if (!existsSync(file)) return [];
      return readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as HookInput);
    };
    const post = await until(
      () => lines('post_task'),
      (l) => l.length >= 2,
      10_000,
      'two post_task hook inputs',
    );
    const onError = await until(
      () => lines('on_error'),
      (l) => l.length >= 1,
      10_000,
      'an on_error hook input',
    );

    const pre = lines('pre_task');
    assert.deepEqual(
      pre.map((x) => [x.event, x.agent.id, x.task.id]),
      [
        ['pre_task', 'guarded', 'hook-deny'],
        ['pre_task', 'guarded', 'hook-ok'],
        ['pre_task', 'guarded', 'hook-fail'],
      ],
      'pre_task saw every task, in order',
    );
    assert.deepEqual(pre[1]?.task.payload, { deny: false, n: 1 });
    assert.equal(pre[1]?.agent.node, b.id);

    const postOk = post.find((x) => x.task.id === 'hook-ok');
    assert.ok(postOk, `post_task for hook-ok: ${JSON.stringify(post)}`);
    assert.equal(postOk.event, 'post_task');
    assert.equal(postOk.agent.id, 'guarded');
    assert.equal(postOk.outcome, 'success');
    assert.deepEqual(postOk.result, ok.result, 'post_task gets the result');
    assert.equal(typeof postOk.durationMs, 'number');

    const postFail = post.find((x) => x.task.id === 'hook-fail');
    assert.ok(postFail, `post_task for hook-fail: ${JSON.stringify(post)}`);
    assert.equal(postFail.outcome, 'failure');
    assert.equal(postFail.error?.code, 'EXIT_NONZERO');
    assert.equal(
      post.some((x) => x.task.id === 'hook-deny'),
      false,
      'a vetoed task never ran, so no post_task for it',
    );

    assert.equal(onError.length, 1, `on_error inputs: ${JSON.stringify(onError)}`);
    const err = onError[0] as HookInput;
    assert.equal(err.event, 'on_error');
    assert.equal(err.agent.id, 'guarded');
    assert.equal(err.task.id, 'hook-fail');
    assert.equal(err.error?.code, 'EXIT_NONZERO');
    assert.equal(err.error?.exitCode, 3);
    assert.equal(err.error?.node, b.id);
  });

  it('a cancel on another node kills the running script within moments', async (t) => {
    const cancelledBefore = await metric(b, 'agent_tasks_ended_total{outcome="cancelled"}');
    await submit('exec-cancel', 'worker', { mode: 'sleep' });
    const pidFile = join(dir, 'exec-cancel.pids');
    await waitFor(() => existsSync(pidFile), 10_000, 'the sleeping script to write its pids', 20);
    const [shPid, sleepPid] = readFileSync(pidFile, 'utf8').trim().split(' ').map(Number) as [number, number];
    assert.ok(shPid > 1 && sleepPid > 1, `pids ${shPid} ${sleepPid}`);
    assert.equal(processGone(shPid), false, 'the script runs before the cancel');
    await until(
      () => a.get<Task>('/v1/tasks/exec-cancel'),
      (t) => t.status === 'IN_PROGRESS',
      10_000,
      'exec-cancel to show IN_PROGRESS on a',
    );

    const cancelledAt = Date.now();
    const cancel = await a.call<Task>('POST', '/v1/tasks/exec-cancel/cancel');
    assert.equal(cancel.status, 200, JSON.stringify(cancel.body));
    assert.equal(cancel.body.status, 'CANCELLED');
    await until(
      () => b.get<Task>('/v1/tasks/exec-cancel'),
      (t) => t.status === 'CANCELLED',
      10_000,
      'the cancel to reach b',
      10,
    );
    const reachedB = Date.now();
    // The script is b's own child: once killed, b reaps it and its pid is free (ESRCH).
    await waitFor(
      () => {
        try {
          process.kill(shPid, 0);
          return false;
        } catch (err) {
          return (err as NodeJS.ErrnoException).code === 'ESRCH';
        }
      },
      5_000,
      `the cancelled script (pid ${shPid}) to be gone`,
      10,
    );
    const tookMs = Date.now() - reachedB;
    t.diagnostic(
      `script gone ${tookMs} ms after the cancel reached b (${Date.now() - cancelledAt} ms after the cancel call on a)`,
    );
    assert.ok(tookMs < 2_000, `the script was killed ${tookMs} ms after the cancel reached b (want < 2000)`);
    // Its child went with its group.
    await waitFor(() => processGone(sleepPid), 2_000, `the script's sleep (pid ${sleepPid}) to be gone`, 10);

    for (const node of [a, b]) {
      const task = await node.get<Task>('/v1/tasks/exec-cancel');
      assert.equal(task.status, 'CANCELLED', `exec-cancel on ${node.options.name}`);
      assert.equal(task.result, null);
    }
    await waitFor(
      async () => (await metric(b, 'agent_tasks_ended_total{outcome="cancelled"}')) === cancelledBefore + 1,
      5_000,
      'b to count the cancelled run',
    );
    const host = await b.get<Array<{ id: string; running: string[] }>>('/v1/host/agents');
    assert.deepEqual(host.find((x) => x.id === 'worker')?.running, [], 'worker runs nothing any more');
  });
});
