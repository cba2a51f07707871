import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AGENT_FIXTURES,
  MeshProcess,
  REPO_ROOT,
  shutdownNodes,
  until,
  waitFor,
  writeAgentsFile,
} from '../helpers/mesh-process.js';

interface Status {
  id: string;
  mesh: string;
  private: boolean;
  stateDigest: string;
  merkleRoot: string;
}
interface HostAgent {
  id: string;
  state: string;
  pid: number | null;
}
interface Agent {
  id: string;
  owner: string;
  state: string;
}
interface Task {
  id: string;
  status: string;
  result: unknown;
}

const ECHO = join(REPO_ROOT, 'examples/agents/echo-agent.mjs');

/** The value of one exposition line `name{labels} value` (undefined if absent). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/**
 * The operator's surface on a two-node mesh: a (no agents) and b (an exec agent and a stdio
 * agent). Metrics checked by promtool, the OpenAPI document served, the state digest across
 * nodes, agent control forwarded from a to b.
 */
describe('operator surface', { timeout: 120_000 }, () => {
  let dir = '';
  let a: MeshProcess;
  let b: MeshProcess;
  const nodes: MeshProcess[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-ops-'));
    const file = writeAgentsFile(dir, [
      { id: 'worker', mode: 'exec', command: join(AGENT_FIXTURES, 'exec-agent.sh'), capabilities: ['work'] },
      { id: 'echo', mode: 'stdio', command: process.execPath, args: [ECHO], capabilities: ['echo'] },
    ]);
    a = await new MeshProcess({ name: 'a', extraArgs: ['--mesh', 'ops'] }).start();
    nodes.push(a);
    b = await new MeshProcess({ name: 'b', join: [a.addr], extraArgs: ['--mesh', 'ops', '--agents', file] }).start();
    nodes.push(b);
    await waitFor(
      async () => {
        const agents = await a.get<Agent[]>('/v1/agents');
        return ['worker', 'echo'].every((id) => agents.some((x) => x.id === id && x.state === 'RUNNING'));
      },
      20_000,
      "b's agents RUNNING on a",
    );
  });

  after(async () => {
    await shutdownNodes(nodes);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves Prometheus metrics that promtool accepts, with labelled series and histograms', async () => {
    const created = await a.call<Task>('POST', '/v1/tasks', { type: 'job', title: 'm', capabilities: ['work'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const done = await until(
      () => a.get<Task>(`/v1/tasks/${created.body.id}`),
      (t) => t.status === 'COMPLETED',
      20_000,
      'the task to complete on b, seen from a',
    );
    assert.equal((done.result as { agent: string }).agent, 'worker');

    const scrape = async (n: MeshProcess): Promise<string> => {
      const res = await fetch(`${n.api}/metrics`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      return res.text();
    };
    // b's duration histogram is written before the task's completion reaches a: poll b for it.
    const mb = await until(
      () => scrape(b),
      (t) => (sample(t, 'agentmesh_agent_task_duration_seconds_count{agent="worker",outcome="completed"}') ?? 0) >= 1,
      10_000,
      "b's task duration histogram",
    );
    const ma = await scrape(a);
    for (const [name, text] of [
      ['a', ma],
      ['b', mb],
    ] as const) {
      const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 });
      assert.equal(check.status, 0, `promtool on ${name}: ${check.stdout}${check.stderr}`);
      assert.equal(`${check.stdout}${check.stderr}`.trim(), '', `promtool on ${name} has no findings`);
    }
    // Mesh-wide gauges by label, the same on both nodes once replicated.
    assert.ok((sample(ma, 'agentmesh_tasks{status="COMPLETED"}') ?? 0) >= 1, 'a counts the completed task');
    assert.equal(sample(ma, 'agentmesh_agents{state="RUNNING"}'), 2, "a counts b's two running agents");
    assert.equal(sample(mb, 'agentmesh_agent_host_agents{state="RUNNING"}'), 2);
    assert.equal(sample(ma, 'agentmesh_agent_host_agents{state="RUNNING"}'), undefined, 'a hosts none');
    assert.ok((sample(mb, 'agentmesh_agent_tasks_ended_total{outcome="completed"}') ?? 0) >= 1);
    assert.match(ma, /^# TYPE agentmesh_replica_rejected_total counter$/m);
    assert.match(ma, /^# TYPE agentmesh_sync_sent_bytes_total counter$/m);
    assert.match(ma, /^# TYPE agentmesh_sync_interval_seconds gauge$/m);
    // Write ack on a (the task was created there), apply lag on a for b's task writes.
    assert.ok((sample(ma, 'agentmesh_api_write_ack_seconds_count{op="task_create"}') ?? 0) >= 1);
    const lagCount = sample(ma, 'agentmesh_replica_apply_lag_seconds_count{kind="task"}') ?? 0;
    assert.ok(lagCount >= 1, "a applied b's task deltas");
    const lagSum = sample(ma, 'agentmesh_replica_apply_lag_seconds_sum{kind="task"}') ?? -1;
    assert.ok(lagSum >= 0 && lagSum / lagCount < 5, `a plausible mean lag on loopback: ${lagSum / lagCount} s`);
    assert.equal(sample(ma, 'agentmesh_replica_apply_lag_seconds_bucket{kind="task",le="+Inf"}'), lagCount);
    const duration = sample(mb, 'agentmesh_agent_task_duration_seconds_sum{agent="worker",outcome="completed"}');
    assert.ok(duration !== undefined && duration > 0 && duration < 20, `task duration ${duration} s`);
  });

  it('serves its OpenAPI document', async () => {
    const doc = await a.get<{ openapi: string; paths: Record<string, Record<string, unknown>> }>('/v1/openapi.json');
    assert.equal(doc.openapi, '3.1.0');
    assert.ok(doc.paths['/v1/agents/{id}/{action}']?.post, 'agent control is described');
    assert.ok(doc.paths['/v1/admin/partition']?.post, 'the fault switch is on, so its routes are described');
  });

  it('reports the mesh, its privacy and a state digest that ignores heartbeats and follows real changes', async () => {
    const status = (n: MeshProcess) => n.get<Status>('/v1/status');
    const first = await status(a);
    assert.equal(first.mesh, 'ops');
    assert.equal(first.private, false);
    assert.match(first.stateDigest, /^[0-9a-f]{32}$/);
    const [sa, sb] = await until(
      () => Promise.all([status(a), status(b)]),
      ([x, y]) => x.stateDigest === y.stateDigest,
      20_000,
      'a and b to agree',
    );
    const digest = sa.stateDigest;
    // Heartbeats (node records, agent liveness) keep changing both replicas, not the digest.
    const [la, lb] = await until(
      () => Promise.all([status(a), status(b)]),
      ([x, y]) => x.merkleRoot !== sa.merkleRoot && y.merkleRoot !== sb.merkleRoot,
      10_000,
      'heartbeats to change both Merkle roots',
    );
    assert.equal(la.stateDigest, digest, 'a: same digest after heartbeats');
    assert.equal(lb.stateDigest, digest, 'b: same digest after heartbeats');

    // A real change on a, while b cannot hear of it: the digests differ until it replicates.
    const cut = await b.call('POST', '/v1/admin/partition', { peers: [a.id] });
    assert.equal(cut.status, 200);
    const put = await a.call('PUT', '/v1/agents/ops-probe', { name: 'probe', type: 'probe', capabilities: ['p'] });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const changed = (await status(a)).stateDigest;
    assert.notEqual(changed, digest, "a's digest follows the change");
    assert.equal((await status(b)).stateDigest, digest, 'b, cut off, still has the old state');
    assert.equal((await b.call('POST', '/v1/admin/heal', {})).status, 200);
    await until(
      () => Promise.all([status(a), status(b)]),
      ([x, y]) => x.stateDigest === changed && y.stateDigest === changed,
      20_000,
      'b to catch up after the heal',
    );
  });

  it("controls b's agents through a's API: pause, resume, restart, and the errors", async () => {
    const hosted = async (): Promise<HostAgent> =>
      (await b.get<HostAgent[]>('/v1/host/agents')).find((x) => x.id === 'echo') as HostAgent;
    const before = await hosted();
    assert.equal(before.state, 'RUNNING');
    assert.ok(before.pid !== null, 'a stdio agent has a process');

    const paused = await a.call<HostAgent>('POST', '/v1/agents/echo/pause');
    assert.equal(paused.status, 200, JSON.stringify(paused.body));
    assert.equal(paused.body.state, 'PAUSED', "the answer is b's view of its agent");
    assert.equal((await hosted()).state, 'PAUSED', 'b paused it');
    for (const n of [a, b]) {
      await until(
        () => n.get<Agent>('/v1/agents/echo'),
        (x) => x.state === 'PAUSED',
        10_000,
        `the registry on ${n === a ? 'a' : 'b'} to show echo PAUSED`,
      );
    }
    // b refuses what the state forbids; a passes on b's refusal with its code.
    const again = await a.call<{ error: { code: string; message: string } }>('POST', '/v1/agents/echo/pause');
    assert.equal(again.status, 409, JSON.stringify(again.body));
    assert.equal(again.body.error.code, 'INVALID_STATE');
    assert.equal((await a.call('POST', '/v1/agents/echo/resume')).status, 200);

    const restarted = await a.call<HostAgent>('POST', '/v1/agents/echo/restart', undefined, 40_000);
    assert.equal(restarted.status, 200, JSON.stringify(restarted.body));
    assert.equal(restarted.body.state, 'RUNNING');
    assert.ok(restarted.body.pid !== null && restarted.body.pid !== before.pid, 'a new process');
    assert.equal((await hosted()).pid, restarted.body.pid, "b's host runs the new process");
    for (const n of [a, b]) {
      await until(
        () => n.get<Agent>('/v1/agents/echo'),
        (x) => x.state === 'RUNNING',
        10_000,
        'echo RUNNING again in the registry',
      );
    }

    const unknown = await a.call<{ error: { code: string } }>('POST', '/v1/agents/no-such-agent/restart');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'AGENT_NOT_FOUND');
    const plain = await a.call<{ error: { code: string } }>('POST', '/v1/agents/ops-probe/stop');
    assert.equal(plain.status, 404, 'a record a registered through the API is not a process');
    assert.equal(plain.body.error.code, 'NOT_LOCAL');

    // Cut a off from b: a cannot reach the hosting node, and says so.
    assert.equal((await a.call('POST', '/v1/admin/partition', { peers: [b.id] })).status, 200);
    try {
      const cut = await a.call<{ error: { code: string; message: string } }>('POST', '/v1/agents/echo/pause');
      assert.equal(cut.status, 503, JSON.stringify(cut.body));
      assert.equal(cut.body.error.code, 'AGENT_NODE_UNREACHABLE');
      assert.match(cut.body.error.message, new RegExp(b.id));
      assert.equal((await hosted()).state, 'RUNNING', 'nothing reached b');
    } finally {
      await a.call('POST', '/v1/admin/heal', {});
    }
  });
});
