import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AGENT_FIXTURES,
  EventStream,
  killAgentGroup,
  MeshProcess,
  metric,
  processGone,
  shutdownNodes,
  until,
  waitFor,
  writeAgentsFile,
} from '../helpers/mesh-process.js';

interface Task {
  id: string;
  status: string;
  error: Record<string, unknown> | null;
}

interface Agent {
  state: string;
  health: string;
  stats: { executions: number; successes: number; failures: number; restarts: number };
}

interface HostAgent {
  id: string;
  state: string;
  pid: number | null;
  running: string[];
  restartsInWindow: number;
  lastError: string | null;
}

const BACKOFF_MS = 100;
const MAX_RESTARTS = 3;

/**
 * Supervision on node b of a two-node mesh, watched from node a: restarts with backoff up to the
 * limit, then ERROR; and a node SIGKILLed under running agents cleans up after itself when it
 * comes back on the same data directory.
 */
describe('agent supervision', { timeout: 90_000 }, () => {
  let dir = '';
  let agentsFile = '';
  let a: MeshProcess;
  let b: MeshProcess;
  const nodes: MeshProcess[] = [];
  const arm = (): string => join(dir, 'crash.arm');
  const crashLog = (): string => join(dir, 'crash.log');

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-agents-sup-'));
    agentsFile = writeAgentsFile(dir, [
      {
        id: 'crasher',
        mode: 'stdio',
        command: join(AGENT_FIXTURES, 'crasher.sh'),
        env: { CRASH_ARM: arm(), CRASH_LOG: crashLog() },
        pingIntervalMs: 600_000,
        restart: { policy: 'permanent', maxRestarts: MAX_RESTARTS, withinMs: 60_000, backoffMs: BACKOFF_MS },
      },
      { id: 'stubborn', mode: 'stdio', command: join(AGENT_FIXTURES, 'stubborn-agent.sh'), pingIntervalMs: 600_000 },
      { id: 'sleeper', mode: 'exec', command: join(AGENT_FIXTURES, 'exec-agent.sh'), env: { PID_DIR: dir } },
    ]);
    a = await new MeshProcess({ name: 'a' }).start();
    nodes.push(a);
    b = await new MeshProcess({ name: 'b', join: [a.addr], extraArgs: ['--agents', agentsFile] }).start();
    nodes.push(b);
    await waitFor(
      async () => {
        const agents = await a.get<Array<{ id: string; state: string }>>('/v1/agents');
        return ['crasher', 'stubborn', 'sleeper'].every((id) =>
          agents.some((x) => x.id === id && x.state === 'RUNNING'),
        );
      },
      20_000,
      "b's agents to show RUNNING on a",
    );
  });

  /** Agent pids a test left running on purpose: killed after the nodes, should the test fail. */
  const leftovers: number[] = [];

  after(async () => {
    await shutdownNodes(nodes);
    for (const pid of leftovers) killAgentGroup(pid, b.dataDir);
    rmSync(dir, { recursive: true, force: true });
  });

  const hostAgent = async (node: MeshProcess, id: string): Promise<HostAgent> => {
    const found = (await node.get<HostAgent[]>('/v1/host/agents')).find((x) => x.id === id);
    assert.ok(found, `${id} is hosted by ${node.options.name}`);
    return found;
  };
  const starts = (): number[] =>
    existsSync(crashLog())
      ? readFileSync(crashLog(), 'utf8')
          .split('\n')
          .filter((l) => l.length > 0)
          .map(Number)
      : [];
  const isState = (state: string) => (e: { id: string; value: Record<string, unknown> }) =>
    e.id === 'crasher' && e.value.state === state;

  it('a crashing agent restarts with growing backoff, then stays in ERROR on every node; restart by hand retries', async (t) => {
    const streams = { a: await EventStream.open(a, ['agent']), b: await EventStream.open(b, ['agent']) };
    try {
      const { pid } = await hostAgent(b, 'crasher');
      assert.ok(pid !== null && pid > 1, `crasher pid ${pid}`);
      // From now on every start of the script exits 1 at once; then the running one crashes. (The
      // script starts healthy so that the crash loop runs while both nodes are connected and
      // watched: a loop at b's start-up could be over before a hears of it.)
      writeFileSync(arm(), '');
      const crashedAt = Date.now();
      process.kill(pid, 'SIGKILL');

      for (const [name, s] of Object.entries(streams)) {
        const restarting = await s.waitFor(isState('RESTARTING'), 10_000, `crasher RESTARTING seen by ${name}`);
        await s.waitFor(
          isState('ERROR'),
          10_000,
          `crasher ERROR after RESTARTING, seen by ${name}`,
          s.events.indexOf(restarting),
        );
      }

      // Each restart is one start of the script: maxRestarts of them, each waiting longer.
      const times = starts();
      assert.equal(times.length, MAX_RESTARTS, `starts after the crash: ${JSON.stringify(times)}`);
      const gaps = [(times[0] as number) - crashedAt, ...times.slice(1).map((x, i) => x - (times[i] as number))];
      t.diagnostic(`gaps between the crash and each restart: ${gaps.join(', ')} ms`);
      // Restart n waits backoff * 2^(n-1), jittered down to no less than half of it: each gap has
      // a floor twice the one before (50, 100, 200 ms), which no jitter or load can undercut.
      // Process start-up adds to every gap (a lot on a loaded machine), so the ceilings are loose,
      // and growth is checked from the first gap to the last, whose windows lie 100 ms apart.
      gaps.forEach((gap, i) => {
        const base = BACKOFF_MS * 2 ** i;
        assert.ok(gap >= base / 2 - 2, `restart ${i + 1} came ${gap} ms after the previous start; want >= ${base / 2}`);
        assert.ok(gap <= base + 1_500, `restart ${i + 1} came ${gap} ms after the previous start; want about ${base}`);
      });
      assert.ok((gaps[2] as number) > (gaps[0] as number), `the backoff grows: gaps ${gaps.join(', ')} ms`);

      const onB = await hostAgent(b, 'crasher');
      assert.equal(onB.state, 'ERROR');
      assert.equal(onB.pid, null);
      assert.equal(onB.restartsInWindow, MAX_RESTARTS);
      assert.match(String(onB.lastError), /exited before it was ready \(code 1/);
      assert.equal(await metric(b, 'agent_restarts_total'), MAX_RESTARTS);
      for (const node of [a, b]) {
        await until(
          () => node.get<Agent>('/v1/agents/crasher'),
          (x) => x.state === 'ERROR' && x.health === 'unhealthy' && x.stats.restarts === MAX_RESTARTS,
          10_000,
          `crasher ERROR with ${MAX_RESTARTS} restarts on ${node.options.name}`,
        );
      }

      // By hand: it tries again (and, still crashing, goes through its restarts once more).
      assert.equal(starts().length, MAX_RESTARTS, 'no start while in ERROR');
      const mark = streams.a.events.length;
      const res = await b.call<HostAgent>('POST', '/v1/agents/crasher/restart');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.state, 'RESTARTING', 'the manual start failed and the supervisor took over again');
      assert.equal(res.body.restartsInWindow, 1, 'the restart history was forgotten');
      const again = await streams.a.waitFor(isState('RESTARTING'), 10_000, 'crasher RESTARTING again on a', mark);
      await streams.a.waitFor(isState('ERROR'), 10_000, 'crasher ERROR again on a', streams.a.events.indexOf(again));
      assert.equal(starts().length, 2 * MAX_RESTARTS + 1, 'the start by hand and its restarts');
      await until(
        () => a.get<Agent>('/v1/agents/crasher'),
        (x) => x.stats.restarts === 2 * MAX_RESTARTS,
        10_000,
        'the restart count on a to include the second round',
      );

      // Fixed, restarted by hand: it runs again, on every node.
      rmSync(arm());
      const mark2 = streams.a.events.length;
      const fixed = await b.call<HostAgent>('POST', '/v1/agents/crasher/restart');
      assert.equal(fixed.status, 200, JSON.stringify(fixed.body));
      assert.equal(fixed.body.state, 'RUNNING');
      assert.ok(fixed.body.pid !== null && !processGone(fixed.body.pid), 'a live process');
      await streams.a.waitFor(isState('RUNNING'), 10_000, 'crasher RUNNING on a', mark2);
    } finally {
      streams.a.close();
      streams.b.close();
    }
  });

  it('a stdio agent that ignores a cancel is killed after the grace and restarted', async (t) => {
    const restartsBefore = await metric(b, 'agent_restarts_total');
    const before = await hostAgent(b, 'stubborn');
    assert.ok(before.pid !== null, 'stubborn has a process');
    const created = await a.call('POST', '/v1/tasks', {
      id: 'ignored',
      type: 'anything',
      assignee: 'stubborn',
      maxRetries: 0,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await until(
      () => a.get<Task>('/v1/tasks/ignored'),
      (x) => x.status === 'IN_PROGRESS',
      10_000,
      'the task IN_PROGRESS on a',
    );

    const cancelledAt = Date.now();
    assert.equal((await a.call('POST', '/v1/tasks/ignored/cancel')).status, 200);
    await until(
      () => b.get<Task>('/v1/tasks/ignored'),
      (x) => x.status === 'CANCELLED',
      10_000,
      'the cancel to reach b',
      10,
    );
    const reachedB = Date.now();
    // The node's own child: once killed it is reaped, and its pid is free.
    await waitFor(
      () => {
        try {
          process.kill(before.pid as number, 0);
          return false;
        } catch (err) {
          return (err as NodeJS.ErrnoException).code === 'ESRCH';
        }
      },
      5_000,
      `the agent that kept the cancelled task (pid ${before.pid}) to be killed`,
      10,
    );
    // The grace starts when b acts on the cancel: after the call on a, before b shows CANCELLED.
    const sinceCall = Date.now() - cancelledAt;
    const sinceB = Date.now() - reachedB;
    t.diagnostic(`agent killed ${sinceB} ms after the cancel reached b, ${sinceCall} ms after the call on a`);
    assert.ok(sinceCall >= 1_000, `killed ${sinceCall} ms after the cancel call: the agent gets a 1 s grace`);
    assert.ok(sinceB < 3_000, `killed ${sinceB} ms after the cancel reached b: want about 1 s`);

    const after = await until(
      () => hostAgent(b, 'stubborn'),
      (x) => x.state === 'RUNNING' && x.pid !== null && x.pid !== before.pid,
      10_000,
      'stubborn restarted with a new process',
    );
    assert.deepEqual(after.running, []);
    assert.equal(await metric(b, 'agent_restarts_total'), restartsBefore + 1);
    await until(
      () => a.get<Agent>('/v1/agents/stubborn'),
      (x) => x.state === 'RUNNING' && x.stats.restarts === 1,
      10_000,
      'stubborn RUNNING with one restart on a',
    );
    assert.equal((await a.get<Task>('/v1/tasks/ignored')).status, 'CANCELLED');
  });

  it('a node SIGKILLed under running agents stops what its last life left when it starts again', async () => {
    const created = await a.call('POST', '/v1/tasks', {
      id: 'interrupted',
      type: 'sleep',
      payload: { mode: 'sleep' },
      assignee: 'sleeper',
      maxRetries: 0,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const pidFile = join(dir, 'interrupted.pids');
    await waitFor(() => existsSync(pidFile), 10_000, 'the sleeping task to write its pids', 20);
    const [shPid, sleepPid] = readFileSync(pidFile, 'utf8').trim().split(' ').map(Number) as [number, number];
    const stubbornPid = (await hostAgent(b, 'stubborn')).pid;
    assert.ok(stubbornPid !== null, 'the stdio agent has a process');
    const pids = { stubborn: stubbornPid, 'exec script': shPid, "exec script's sleep": sleepPid };
    await until(
      () => a.get<Task>('/v1/tasks/interrupted'),
      (x) => x.status === 'IN_PROGRESS',
      10_000,
      'the task IN_PROGRESS on a',
    );

    // Whatever happens below, these die with the test.
    leftovers.push(...Object.values(pids));
    await b.kill('SIGKILL');
    // The agents live in their own process groups: the node's death does not take them along.
    for (const [what, pid] of Object.entries(pids)) {
      assert.equal(processGone(pid), false, `${what} (pid ${pid}) outlives its node's SIGKILL`);
    }

    const b2 = await new MeshProcess({ name: 'b', dataDir: b.dataDir, extraArgs: ['--agents', agentsFile] }).start();
    nodes.push(b2);
    assert.equal(b2.id, b.id, 'same node identity');
    // The reaper runs before the node reports ready; allow the kernel a moment to finish the kills.
    await until(
      () => Object.fromEntries(Object.entries(pids).map(([what, pid]) => [what, processGone(pid) ? 'gone' : 'alive'])),
      (states) => Object.values(states).every((x) => x === 'gone'),
      3_000,
      'every process of the previous life to be gone',
      20,
    );
    assert.equal(
      await metric(b2, 'agent_leftover_processes_stopped_total'),
      2,
      'two process groups stopped: the stdio agent and the exec task',
    );

    // The task that was running when the node died failed as INTERRUPTED, seen on both nodes.
    for (const node of [b2, a]) {
      const task = await until(
        () => node.get<Task>('/v1/tasks/interrupted'),
        (x) => x.status === 'FAILED',
        15_000,
        `the interrupted task FAILED on ${node === a ? 'a' : 'b (restarted)'}`,
      );
      assert.equal(task.error?.code, 'INTERRUPTED', JSON.stringify(task.error));
      assert.equal(task.error?.agent, 'sleeper');
      assert.equal(task.error?.node, b.id);
    }
    assert.equal(await metric(b2, 'agent_tasks_interrupted_total'), 1);

    // The restarted node runs its agents afresh.
    const stubborn = await until(
      () => hostAgent(b2, 'stubborn'),
      (x) => x.state === 'RUNNING',
      10_000,
      'the stdio agent RUNNING on the restarted node',
    );
    assert.ok(stubborn.pid !== null && stubborn.pid !== stubbornPid, `a new process (${stubborn.pid})`);
  });
});
