import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MeshProcess, metric, shutdownNodes, until, waitFor, writeAgentsFile } from '../helpers/mesh-process.js';
import {
  finalState,
  getTask,
  readRuns,
  schedAgent,
  startCounts,
  submit,
  type TaskJson,
  TERMINAL,
} from '../helpers/scheduling.js';

const LEASE_MS = 2000;

/**
 * Five nodes with short leases (--lease-ms 2000) and heartbeats (500 ms): n0 hosts no agent;
 * n1..n4 each host one capable agent (`a1`..`a4`, work, concurrency 8, one run log each). The
 * tests run in order on the same mesh: a partition and its heal, then a node SIGKILLed, then a
 * holder paused with SIGSTOP.
 */
describe('scheduling under faults: partition, a killed node, a paused holder', { timeout: 150_000 }, () => {
  let dir = '';
  const nodes: MeshProcess[] = [];
  const live = (): MeshProcess[] => nodes.filter((n) => !dead.has(n));
  const dead = new Set<MeshProcess>();
  const runLogs: string[] = [];
  const agentOf = new Map<string, string>(); // node id -> its agent
  const byId = (id: string | null): MeshProcess | undefined => nodes.find((n) => n.id === id);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-sched-faults-'));
    const args = ['--lease-ms', String(LEASE_MS), '--heartbeat-ms', '500'];
    const n0 = await new MeshProcess({ name: 'n0', extraArgs: args }).start();
    nodes.push(n0);
    const rest = await Promise.all(
      [1, 2, 3, 4].map((i) => {
        const log = join(dir, `runs-a${i}.log`);
        runLogs.push(log);
        // Pings far apart: the paused node must not kill its agent for a missed pong on resume.
        const file = writeAgentsFile(
          dir,
          [schedAgent(`a${i}`, ['work'], log, { concurrency: 8, pingIntervalMs: 60_000 })],
          `agents-n${i}.json`,
        );
        return new MeshProcess({ name: `n${i}`, join: [n0.addr], extraArgs: [...args, '--agents', file] }).start();
      }),
    );
    nodes.push(...rest);
    for (const [i, n] of rest.entries()) agentOf.set(n.id, `a${i + 1}`);
    await waitFor(
      async () => {
        for (const n of nodes) {
          const agents = await n.get<Array<{ state: string; reachable: boolean }>>('/v1/agents');
          const peers = await n.get<Array<{ state: string }>>('/v1/peers');
          if (agents.filter((a) => a.state === 'RUNNING' && a.reachable).length !== 4) return false;
          if (peers.filter((p) => p.state === 'alive').length !== 4) return false;
        }
        return true;
      },
      30_000,
      'every node to see the four others alive and the four agents RUNNING',
    );
  });

  after(async () => {
    // A node the fencing test paused, if it failed midway: a stopped process handles no SIGTERM.
    for (const n of nodes) {
      try {
        if (n.pid !== undefined && !dead.has(n)) process.kill(n.pid, 'SIGCONT');
      } catch {
        // Gone already.
      }
    }
    await shutdownNodes(nodes);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a partition: tasks run on both sides; quorum tasks on the minority wait for the heal and run once; all converge', async () => {
    const [n0, n1, n2, n3, n4] = nodes as [MeshProcess, MeshProcess, MeshProcess, MeshProcess, MeshProcess];
    const majority = [n0, n1, n2];
    const minority = [n3, n4];
    for (const [side, other] of [
      [majority, minority],
      [minority, majority],
    ] as const) {
      for (const n of side) {
        const r = await n.call('POST', '/v1/admin/partition', { peers: other.map((x) => x.id) });
        assert.equal(r.status, 200, `partition on ${n.options.name}`);
      }
    }
    await waitFor(
      async () => {
        for (const [side, other] of [
          [majority, minority],
          [minority, majority],
        ] as const) {
          for (const n of side) {
            const peers = await n.get<Array<{ id: string; state: string }>>('/v1/peers');
            if (peers.some((p) => other.some((o) => o.id === p.id) && p.state === 'alive')) return false;
          }
        }
        return true;
      },
      20_000,
      'each side to stop considering the other alive',
    );

    const ids = {
      majority: Array.from({ length: 6 }, (_, i) => `part-maj-${i}`),
      minority: Array.from({ length: 6 }, (_, i) => `part-min-${i}`),
      quorumMajority: ['part-qmaj-0', 'part-qmaj-1'],
      quorumMinority: Array.from({ length: 6 }, (_, i) => `part-qmin-${i}`),
    };
    for (const id of ids.majority) await submit(n0, { id, type: 'p', capabilities: ['work'] });
    for (const id of ids.minority) await submit(n3, { id, type: 'p', capabilities: ['work'] });
    for (const id of ids.quorumMajority) await submit(n1, { id, type: 'p', capabilities: ['work'], claim: 'quorum' });
    const deniedBefore = await Promise.all(minority.map((n) => metric(n, 'scheduler_quorum_denied_total')));
    for (const id of ids.quorumMinority) await submit(n4, { id, type: 'p', capabilities: ['work'], claim: 'quorum' });

    // Each side runs its own tasks, quorum ones included on the majority side.
    const sideOf = (side: MeshProcess[], list: string[]) =>
      Promise.all(
        side.map((n) =>
          until(
            () => Promise.all(list.map((id) => getTask(n, id))),
            (ts) => ts.every((t) => t.status === 'COMPLETED'),
            20_000,
            `${list[0]}.. COMPLETED on ${n.options.name} during the partition`,
          ),
        ),
      );
    await sideOf(majority, [...ids.majority, ...ids.quorumMajority]);
    await sideOf(minority, ids.minority);
    for (const t of await Promise.all([...ids.majority, ...ids.quorumMajority].map((id) => getTask(n0, id)))) {
      assert.ok(
        majority.some((n) => n.id === t.node),
        `${t.id} ran on the majority side`,
      );
    }
    for (const t of await Promise.all(ids.minority.map((id) => getTask(n3, id)))) {
      assert.ok(
        minority.some((n) => n.id === t.node),
        `${t.id} ran on the minority side`,
      );
    }
    // The minority keeps asking for grants and is denied each time; its quorum tasks wait.
    await waitFor(
      async () => {
        const now = await Promise.all(minority.map((n) => metric(n, 'scheduler_quorum_denied_total')));
        return (
          now.reduce((a, b) => a + b, 0) - deniedBefore.reduce((a, b) => a + b, 0) >= 2 * ids.quorumMinority.length
        );
      },
      20_000,
      'the minority to be denied quorum twice per quorum task',
    );
    for (const n of minority) {
      for (const id of ids.quorumMinority) {
        const t = await getTask(n, id);
        assert.equal(t.status, 'PENDING', `${id} still PENDING on ${n.options.name}: ${JSON.stringify(t)}`);
        assert.equal(t.epoch, 0, `${id} never claimed`);
      }
    }
    const qminRuns = () => readRuns(runLogs).filter((r) => ids.quorumMinority.includes(r.task));
    assert.deepEqual(qminRuns(), [], 'no minority quorum task ran during the partition');
    // Nothing crossed.
    for (const n of majority) {
      for (const id of [...ids.minority, ...ids.quorumMinority]) {
        assert.equal((await n.call('GET', `/v1/tasks/${id}`)).status, 404, `${id} unknown on ${n.options.name}`);
      }
    }

    const healedAt = Date.now();
    for (const n of nodes) assert.equal((await n.call('POST', '/v1/admin/heal', {})).status, 200);
    const all = [...ids.majority, ...ids.minority, ...ids.quorumMajority, ...ids.quorumMinority];
    // Polled as one line per node (status, epoch, holder of each task) so that a timeout shows it all.
    const views = (): Promise<TaskJson[][]> =>
      Promise.all(
        nodes.map((n) => Promise.all(all.map((id) => getTask(n, id).catch(() => ({ id, status: '-' }) as TaskJson)))),
      );
    await until(
      async () =>
        (await views()).map(
          (ts, i) =>
            `${nodes[i]?.options.name}: ${ts.map((t) => `${t.status}/${t.epoch}/${byId(t.node)?.options.name ?? '-'}`).join(' ')}`,
        ),
      (lines) =>
        lines.every((l) => l.slice(4) === lines[0]?.slice(4)) &&
        !/ (PENDING|ASSIGNED|IN_PROGRESS|-)\//.test(lines.join(' ')),
      40_000,
      'every task final, and the same, on all five nodes after the heal',
      250,
    );
    const finals = await views();
    for (const [i, ts] of finals.entries()) {
      assert.deepEqual(
        ts.map(finalState),
        (finals[0] as TaskJson[]).map(finalState),
        `${nodes[i]?.options.name} agrees with n0`,
      );
    }
    const quorumDone = Math.max(
      ...(finals[0] as TaskJson[]).filter((t) => ids.quorumMinority.includes(t.id)).map((t) => t.startedAt as number),
    );
    for (const t of finals[0] as TaskJson[]) assert.equal(t.status, 'COMPLETED', `${t.id}: ${JSON.stringify(t)}`);
    const counts = startCounts(qminRuns());
    for (const id of ids.quorumMinority) {
      assert.equal(counts.get(id), 1, `${id} ran exactly once`);
      assert.ok(
        ((finals[0] as TaskJson[]).find((t) => t.id === id)?.startedAt as number) >= healedAt,
        `${id} ran after the heal`,
      );
    }
    const everyRun = startCounts(readRuns(runLogs).filter((r) => r.task.startsWith('part-')));
    console.log(
      `partition: ${all.length} tasks, starts per task ${JSON.stringify([...new Set(everyRun.values())])}; ` +
        `minority quorum tasks started ${quorumDone - healedAt} ms after the heal`,
    );
  });

  it('a node SIGKILLed while its agents run tasks: those tasks run elsewhere after the lease expires', async () => {
    const n0 = nodes[0] as MeshProcess;
    // Long-running: every task waits for the gate file, which appears only once the failover is
    // measured, so no task can end before the kill whatever the machine's speed.
    const gate = join(dir, 'kill-gate');
    const ids = Array.from({ length: 12 }, (_, i) => `kill-${String(i).padStart(2, '0')}`);
    await Promise.all(
      ids.map((id) =>
        submit(n0, {
          id,
          type: 'long',
          capabilities: ['work'],
          payload: { waitFile: gate },
          retry: { backoffMs: 100 },
        }),
      ),
    );
    const running = await until(
      () => Promise.all(ids.map((id) => getTask(n0, id))),
      (ts) => ts.every((t) => t.status === 'IN_PROGRESS'),
      20_000,
      'all the long tasks IN_PROGRESS',
    );
    // The agent node running most of them.
    const perNode = new Map<string, string[]>();
    for (const t of running) perNode.set(t.node as string, [...(perNode.get(t.node as string) ?? []), t.id]);
    const [victimId, victimTasks] = [...perNode].sort((a, b) => b[1].length - a[1].length)[0] as [string, string[]];
    const victim = byId(victimId) as MeshProcess;
    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    dead.add(victim);

    // From n0: when each of the victim's tasks is IN_PROGRESS on another node.
    const movedAt = new Map<string, number>();
    await until(
      async () => {
        for (const t of await Promise.all(victimTasks.map((id) => getTask(n0, id)))) {
          if (!movedAt.has(t.id) && t.status === 'IN_PROGRESS' && t.node !== victimId) {
            movedAt.set(t.id, Date.now() - killedAt);
          }
        }
        return movedAt.size;
      },
      (n) => n === victimTasks.length,
      30_000,
      `the ${victimTasks.length} tasks of ${victim.options.name} to run elsewhere`,
      25,
    );
    writeFileSync(gate, '');
    const done = await until(
      () => Promise.all(ids.map((id) => getTask(n0, id))),
      (ts) => ts.every((t) => TERMINAL.has(t.status)),
      30_000,
      'every long task to finish',
    );
    for (const t of done) {
      assert.equal(t.status, 'COMPLETED', `${t.id}: ${JSON.stringify(t)}`);
      if (victimTasks.includes(t.id)) {
        assert.notEqual(t.node, victimId, `${t.id} completed away from the killed node`);
        assert.ok(t.attempt >= 2, `${t.id}: a new attempt`);
        assert.equal(t.attempts[0]?.error?.code, 'LEASE_EXPIRED', `${t.id}: ${JSON.stringify(t.attempts)}`);
      } else {
        assert.equal(t.attempt, 1, `${t.id}, not on the killed node, in its first attempt`);
      }
    }
    const counts = startCounts(readRuns(runLogs).filter((r) => ids.includes(r.task)));
    for (const id of ids) {
      if (victimTasks.includes(id)) {
        assert.ok((counts.get(id) ?? 0) >= 2, `${id} ran on the killed node and again elsewhere`);
      } else {
        assert.equal(counts.get(id), 1, `${id}, not on the killed node, ran exactly once`);
      }
    }
    const ms = [...movedAt.values()].sort((a, b) => a - b);
    console.log(
      `failover: ${victim.options.name} SIGKILLed with ${victimTasks.length} of ${ids.length} tasks running; ` +
        `IN_PROGRESS elsewhere after ${ms[0]}..${ms[ms.length - 1]} ms (lease ${LEASE_MS} ms); ` +
        `${[...counts].filter(([, n]) => n > 1).length} tasks ran twice, all of them the killed node's`,
    );
  });

  it('a holder paused past its lease cannot overwrite the result of the attempt that replaced it', async () => {
    const observer = nodes[0] as MeshProcess;
    const gate = join(dir, 'fence-gate');
    const done = join(dir, 'fence-done');
    await submit(observer, {
      id: 'fence-1',
      type: 'long',
      capabilities: ['work'],
      payload: { waitFile: gate, doneFile: done },
      retry: { backoffMs: 100 },
    });
    const first = await until(
      () => getTask(observer, 'fence-1'),
      (t) => t.status === 'IN_PROGRESS',
      15_000,
      'fence-1 to run',
    );
    const holder = byId(first.node) as MeshProcess;
    assert.ok(holder !== undefined && holder !== observer, 'held by an agent node');
    const others = live().filter((n) => n !== holder);
    const stale = async (): Promise<number> =>
      (await Promise.all(others.map((n) => metric(n, 'replica_rejected_total{reason="stale_epoch"}')))).reduce(
        (a, b) => a + b,
        0,
      );
    const staleBefore = await stale();
    const completedBefore = await metric(holder, 'agent_tasks_ended_total{outcome="completed"}');

    const stoppedAt = Date.now();
    process.kill(holder.pid as number, 'SIGSTOP');
    let replaced: TaskJson;
    let completed: TaskJson;
    try {
      replaced = await until(
        () => getTask(observer, 'fence-1'),
        (t) => t.status === 'IN_PROGRESS' && t.epoch > first.epoch && t.node !== holder.id,
        20_000,
        'fence-1 to run elsewhere while its holder is paused',
        50,
      );
      // Both attempts may finish now: the new holder's, and the old one in the paused node's
      // agent (a process of its own, not paused), whose answer waits for the node to read it.
      writeFileSync(gate, '');
      completed = await until(
        () => getTask(observer, 'fence-1'),
        (t) => t.status === 'COMPLETED',
        15_000,
        'the replacing attempt to complete while the old holder is paused',
      );
      await waitFor(() => existsSync(`${done}-${first.attempt}`), 10_000, "the old attempt's answer to be ready");
    } finally {
      process.kill(holder.pid as number, 'SIGCONT');
    }
    const resumedAt = Date.now();
    const newHolder = byId(replaced.node) as MeshProcess;
    assert.equal(completed.node, newHolder.id, 'completed by the new holder');
    // The resumed holder reads its agent's answer and renews at its old epoch: refused locally
    // (it has seen the new epoch by then), or written locally and then fenced off by every other
    // replica, which counts it as stale.
    await waitFor(
      async () =>
        (await stale()) > staleBefore ||
        ((await metric(holder, 'agent_host_running_tasks')) === 0 &&
          (await metric(holder, 'agent_tasks_ended_total{outcome="completed"}')) === completedBefore),
      15_000,
      "the old holder's writes to be fenced: refused locally or counted stale by the others",
    );
    const finals = await until(
      () => Promise.all(live().map((n) => getTask(n, 'fence-1'))),
      (ts) =>
        ts.every((t) => t.status === 'COMPLETED') && new Set(ts.map((t) => JSON.stringify(finalState(t)))).size === 1,
      20_000,
      'fence-1 COMPLETED with one final state on every node, the resumed one included',
    );
    for (const [i, t] of finals.entries()) {
      const name = live()[i]?.options.name;
      assert.deepEqual(finalState(t), finalState(completed), `${name}: the replacing attempt's outcome`);
      assert.equal(t.epoch, replaced.epoch, `${name}: the replacing epoch`);
      assert.equal(t.result?.node, newHolder.id, `${name}: the result is the new holder's`);
      assert.equal(t.result?.agent, agentOf.get(newHolder.id), `${name}: the new holder's agent`);
      assert.equal(t.result?.attempt, replaced.attempt, `${name}: of the replacing attempt`);
    }
    const staleSeen = (await stale()) - staleBefore;
    const completedAfter = await metric(holder, 'agent_tasks_ended_total{outcome="completed"}');
    console.log(
      `fencing: ${holder.options.name} paused ${resumedAt - stoppedAt} ms; fence-1 IN_PROGRESS on ` +
        `${newHolder.options.name} at epoch ${replaced.epoch}, ${(replaced.startedAt as number) - stoppedAt} ms ` +
        `after the pause; old holder's local completions ${completedBefore} -> ${completedAfter}; ` +
        `its stale writes counted by the others: ${staleSeen}`,
    );
  });
});
