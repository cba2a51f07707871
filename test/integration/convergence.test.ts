import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type MeshProcess, startMesh, waitFor } from '../helpers/mesh-process.js';

interface Status {
  merkleRoot: string;
  keys: number;
}

/** Merkle roots equal on every node, read twice in a row (heartbeats keep the keyspace moving). */
async function rootsAgree(nodes: MeshProcess[]): Promise<boolean> {
  const roots = await Promise.all(nodes.map((n) => n.get<Status>('/v1/status').then((s) => s.merkleRoot)));
  return new Set(roots).size === 1;
}

describe('five-node mesh', { timeout: 120_000 }, () => {
  let nodes: MeshProcess[] = [];
  before(async () => {
    nodes = await startMesh(5, ['--heartbeat-ms', '2000']);
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.dispose()));
  });

  it('converges: 100 agents and 300 tasks written across all nodes appear everywhere with equal Merkle roots', async () => {
    const writes: Array<Promise<{ status: number }>> = [];
    for (let i = 0; i < 100; i++) {
      const node = nodes[i % 5] as MeshProcess;
      writes.push(
        node.call('PUT', `/v1/agents/agent-${i}`, {
          name: `Agent ${i}`,
          type: i % 2 ? 'worker' : 'planner',
          capabilities: [`cap-${i % 7}`, 'common'],
          meta: { i },
        }),
      );
    }
    for (let i = 0; i < 300; i++) {
      const node = nodes[i % 5] as MeshProcess;
      writes.push(
        node.call('POST', '/v1/tasks', { id: `task-${i}`, type: 'demo', title: `Task ${i}`, payload: { i } }),
      );
    }
    const results = await Promise.all(writes);
    results.forEach((r, i) => assert.ok(r.status === 200 || r.status === 201, `write ${i} failed with ${r.status}`));

    await waitFor(
      async () => {
        for (const n of nodes) {
          const agents = await n.get<unknown[]>('/v1/agents');
          const tasks = await n.get<unknown[]>('/v1/tasks?limit=1000');
          if (agents.length !== 100 || tasks.length !== 300) return false;
        }
        return rootsAgree(nodes);
      },
      60_000,
      'every node to hold 100 agents and 300 tasks with one Merkle root',
      250,
    );
    // Same lists everywhere, record for record.
    const lists = await Promise.all(nodes.map((n) => n.get<unknown[]>('/v1/tasks?limit=1000')));
    for (const l of lists.slice(1)) assert.deepEqual(l, lists[0]);
    const agentLists = await Promise.all(nodes.map((n) => n.get<Array<{ reachable?: boolean }>>('/v1/agents')));
    const strip = (l: Array<{ reachable?: boolean }>) => l.map(({ reachable: _r, ...rest }) => rest);
    for (const l of agentLists.slice(1)) assert.deepEqual(strip(l), strip(agentLists[0] as never));
  });

  it('resolves concurrent conflicting writes to one value everywhere, and task status never regresses', async () => {
    const [a, b, c] = nodes as [MeshProcess, MeshProcess, MeshProcess];
    // Two nodes register the same agent id at the same moment: one owner's profile must win everywhere.
    await Promise.all([
      a.call('PUT', '/v1/agents/contested', { name: 'from-a', type: 'worker', capabilities: ['x'] }),
      b.call('PUT', '/v1/agents/contested', { name: 'from-b', type: 'worker', capabilities: ['y'] }),
    ]);
    // One task, moved forward concurrently on three nodes with conflicting outcomes.
    assert.equal((await a.call('POST', '/v1/tasks', { id: 'race', type: 'demo', title: 'race' })).status, 201);
    await waitFor(async () => (await c.call('GET', '/v1/tasks/race')).status === 200, 20_000, 'task to reach c');
    await waitFor(async () => (await b.call('GET', '/v1/tasks/race')).status === 200, 20_000, 'task to reach b');
    await Promise.all([
      a.call('PATCH', '/v1/tasks/race', { status: 'IN_PROGRESS', assignee: 'agent-a' }),
      b.call('PATCH', '/v1/tasks/race', { status: 'IN_PROGRESS', assignee: 'agent-b' }),
      c.call('PATCH', '/v1/tasks/race', { status: 'ASSIGNED', assignee: 'agent-c' }),
    ]);
    await Promise.all([
      a.call('PATCH', '/v1/tasks/race', { status: 'COMPLETED', result: { by: 'a' } }),
      b.call('PATCH', '/v1/tasks/race', { status: 'FAILED', error: { by: 'b' } }),
    ]);
    const rank: Record<string, number> = {
      PENDING: 0,
      ASSIGNED: 1,
      IN_PROGRESS: 2,
      COMPLETED: 3,
      FAILED: 3,
      CANCELLED: 3,
    };
    const lastRank = new Map<string, number>();
    await waitFor(
      async () => {
        const tasks = await Promise.all(nodes.map((n) => n.get<{ status: string; attempt: number }>('/v1/tasks/race')));
        tasks.forEach((t, i) => {
          const r = t.attempt * 4 + (rank[t.status] as number);
          assert.ok(r >= (lastRank.get(`${i}`) ?? 0), `node ${i}: status regressed to ${t.status}`);
          lastRank.set(`${i}`, r);
        });
        const agents = await Promise.all(
          nodes.map((n) => n.get<{ owner: string; name: string }>('/v1/agents/contested')),
        );
        const sameTask = new Set(tasks.map((t) => JSON.stringify(t))).size === 1;
        const sameAgent = new Set(agents.map((x) => `${x.owner}:${x.name}`)).size === 1;
        return sameTask && sameAgent && ['COMPLETED', 'FAILED'].includes(tasks[0]?.status as string);
      },
      30_000,
      'one value for the contested agent and the raced task on every node',
      200,
    );
    const agent = await c.get<{ owner: string; name: string }>('/v1/agents/contested');
    assert.ok(
      (agent.owner === a.id && agent.name === 'from-a') || (agent.owner === b.id && agent.name === 'from-b'),
      'the winner is one whole registration, not a mix',
    );
  });
});
