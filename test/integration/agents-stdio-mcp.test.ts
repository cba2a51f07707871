import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AGENT_FIXTURES,
  EventStream,
  MeshProcess,
  metric,
  REPO_ROOT,
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

interface HostAgent {
  id: string;
  state: string;
  pid: number | null;
  running: string[];
  lastError: string | null;
}

const WORD_COUNT = join(REPO_ROOT, 'examples/agents/word-count.py');
const SERVER_EVERYTHING = join(REPO_ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');

/**
 * Persistent agents (stdio and MCP) on node b of a two-node mesh; tasks are created and assigned
 * on node a and their outcome read there.
 */
describe('stdio and MCP agents', { timeout: 60_000 }, () => {
  let dir = '';
  let a: MeshProcess;
  let b: MeshProcess;
  const nodes: MeshProcess[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mesh-agents-stdio-'));
    const file = writeAgentsFile(dir, [
      { id: 'wc', mode: 'stdio', command: WORD_COUNT, concurrency: 2 },
      { id: 'everything', mode: 'mcp', command: process.execPath, args: [SERVER_EVERYTHING, 'stdio'] },
      { id: 'misbehaving', mode: 'stdio', command: join(AGENT_FIXTURES, 'misbehaving-agent.py') },
      {
        id: 'deaf',
        mode: 'stdio',
        command: join(AGENT_FIXTURES, 'deaf-agent.sh'),
        pingIntervalMs: 300,
        pingTimeoutMs: 300,
        restart: 'temporary',
      },
      { id: 'healthy', mode: 'stdio', command: WORD_COUNT },
    ]);
    a = await new MeshProcess({ name: 'a' }).start();
    nodes.push(a);
    b = await new MeshProcess({ name: 'b', join: [a.addr], extraArgs: ['--agents', file] }).start();
    nodes.push(b);
    await waitFor(
      async () => {
        const agents = await a.get<Array<{ id: string; state: string }>>('/v1/agents');
        return ['wc', 'everything', 'misbehaving', 'healthy'].every((id) =>
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

  async function submit(
    id: string,
    agent: string,
    spec: { type?: string; capabilities?: string[]; payload?: unknown },
  ) {
    // Created already assigned (nothing else may claim it), and without retries: these tests are
    // about one execution on the agent host; scheduling has its own tests.
    const body = { id, type: spec.type ?? 'test', title: id, ...spec, assignee: agent, maxRetries: 0 };
    const created = await a.call('POST', '/v1/tasks', body);
    assert.equal(created.status, 201, `create ${id}: ${JSON.stringify(created.body)}`);
  }

  const settled = (node: MeshProcess, id: string, timeoutMs?: number): Promise<Task> =>
    taskEnded<Task>(node, id, timeoutMs);

  it('the example stdio agent runs two tasks at once, with progress and log visible on the other node', async () => {
    const texts = { 'wc-1': 'the quick brown fox\njumps', 'wc-2': 'one two three four five six' };
    for (const [id, text] of Object.entries(texts)) {
      await submit(id, 'wc', { type: 'wordcount', capabilities: ['wordcount'], payload: { text, sleepMs: 1500 } });
    }
    // Overlap, seen from both sides: b's supervisor runs both, and a sees both IN_PROGRESS at once.
    await until(
      () => b.get<HostAgent[]>('/v1/host/agents').then((l) => l.find((x) => x.id === 'wc')),
      (wc) => wc !== undefined && wc.running.length === 2,
      10_000,
      'wc to run both tasks at once on b',
      25,
    );
    await until(
      () => Promise.all(['wc-1', 'wc-2'].map((id) => a.get<Task>(`/v1/tasks/${id}`))),
      // The log reaches a while the tasks run, not only with their outcome.
      (ts) => ts.every((t) => t.status === 'IN_PROGRESS' && t.log.includes(`attempt 1 of ${t.id}`)),
      10_000,
      'both wc tasks IN_PROGRESS on a at the same time, with their log so far',
      50,
    );

    const expected = {
      'wc-1': { words: 5, lines: 2, characters: 25 },
      'wc-2': { words: 6, lines: 1, characters: 27 },
    };
    for (const id of ['wc-1', 'wc-2'] as const) {
      const t = await settled(a, id);
      assert.equal(t.status, 'COMPLETED', `${id}: ${JSON.stringify(t)}`);
      assert.deepEqual(t.result, expected[id], `${id} result`);
      assert.equal(t.progress, 100);
      assert.deepEqual(
        t.log,
        ['[0%] starting', `attempt 1 of ${id}`, '[50%] counting', '[100%] done'],
        `${id}: progress messages and the agent's log line, in order`,
      );
    }
  });

  it('a cancel on the other node stops a stdio task; the agent gives it up and keeps running', async () => {
    const cancelledBefore = await metric(b, 'agent_tasks_ended_total{outcome="cancelled"}');
    const pidBefore = (await b.get<HostAgent[]>('/v1/host/agents')).find((x) => x.id === 'wc')?.pid;
    await submit('wc-cancel', 'wc', { type: 'echo', capabilities: ['echo'], payload: { sleepMs: 20_000 } });
    await until(
      () => a.get<Task>('/v1/tasks/wc-cancel'),
      (t) => t.status === 'IN_PROGRESS',
      10_000,
      'wc-cancel IN_PROGRESS on a',
    );
    const cancel = await a.call<Task>('POST', '/v1/tasks/wc-cancel/cancel');
    assert.equal(cancel.status, 200, JSON.stringify(cancel.body));
    await until(
      () => b.get<HostAgent[]>('/v1/host/agents').then((l) => l.find((x) => x.id === 'wc')),
      (wc) => wc?.running.length === 0,
      5_000,
      'wc to stop running the cancelled task on b',
      20,
    );
    for (const node of [a, b]) {
      const t = await node.get<Task>('/v1/tasks/wc-cancel');
      assert.equal(t.status, 'CANCELLED', `wc-cancel on ${node.options.name}`);
      assert.equal(t.result, null);
    }
    assert.equal(await metric(b, 'agent_tasks_ended_total{outcome="cancelled"}'), cancelledBefore + 1);
    // The agent honoured the cancel message: no kill, and it takes the next task.
    await submit('wc-after-cancel', 'wc', { type: 'echo', capabilities: ['echo'], payload: { n: 1 } });
    const next = await settled(a, 'wc-after-cancel');
    assert.equal(next.status, 'COMPLETED', JSON.stringify(next));
    assert.deepEqual(next.result, { echo: { n: 1 } });
    const wc = (await b.get<HostAgent[]>('/v1/host/agents')).find((x) => x.id === 'wc');
    assert.equal(wc?.pid, pidBefore, 'the same process: it was not killed');
    assert.equal(wc?.state, 'RUNNING');
  });

  it('an MCP server is an agent: its tools are capabilities, tool results are task results, isError fails', async () => {
    const record = await a.get<{ capabilities: string[]; meta: Record<string, unknown> }>('/v1/agents/everything');
    for (const tool of ['echo', 'get-sum', 'trigger-long-running-operation']) {
      assert.ok(record.capabilities.includes(tool), `capability ${tool} in ${record.capabilities.join(', ')}`);
    }
    assert.equal(record.meta.mode, 'mcp');

    const events = await EventStream.open(a, ['task']);
    try {
      await submit('mcp-sum', 'everything', { capabilities: ['get-sum'], payload: { a: 2, b: 3 } });
      await submit('mcp-echo', 'everything', { capabilities: ['echo'], payload: { message: 'over the mesh' } });
      await submit('mcp-long', 'everything', {
        capabilities: ['trigger-long-running-operation'],
        payload: { duration: 1.2, steps: 3 },
      });
      await submit('mcp-bad', 'everything', { capabilities: ['get-sum'], payload: { a: 'x', b: 3 } });

      const sum = await settled(a, 'mcp-sum');
      assert.equal(sum.status, 'COMPLETED', JSON.stringify(sum));
      assert.deepEqual(sum.result, { content: [{ type: 'text', text: 'The sum of 2 and 3 is 5.' }] });
      const echo = await settled(a, 'mcp-echo');
      assert.equal(echo.status, 'COMPLETED', JSON.stringify(echo));
      assert.deepEqual(echo.result, { content: [{ type: 'text', text: 'Echo: over the mesh' }] });
      const long = await settled(a, 'mcp-long');
      assert.equal(long.status, 'COMPLETED', JSON.stringify(long));
      assert.deepEqual(long.result, {
        content: [{ type: 'text', text: 'Long running operation completed. Duration: 1.2 seconds, Steps: 3.' }],
      });
      // The server's progress notifications reached a while the call ran.
      const midway = await events.waitFor(
        (e) => {
          const v = e.value as unknown as Task;
          return e.id === 'mcp-long' && v.status === 'IN_PROGRESS' && v.progress > 0 && v.progress < 100;
        },
        5_000,
        'an IN_PROGRESS event of mcp-long with progress between 0 and 100',
      );
      assert.equal(midway.local, false, 'the progress came from b');

      const bad = await settled(a, 'mcp-bad');
      assert.equal(bad.status, 'FAILED', JSON.stringify(bad));
      const e = bad.error as Record<string, unknown>;
      assert.equal(e.code, 'TOOL_ERROR');
      assert.equal(e.tool, 'get-sum');
      assert.equal(e.retryable, false);
      assert.equal(e.agent, 'everything');
      assert.equal(e.node, b.id);
      assert.match(
        String(e.message),
        /Invalid arguments for tool get-sum.*expected number/,
        'the tool says what was wrong',
      );
    } finally {
      events.close();
    }
  });

  it('bad agent output is counted and survived: malformed lines, unknown tasks, oversized lines, missed pings', async () => {
    // The deaf agent never answers a ping: killed after one interval plus one timeout, and as a
    // temporary agent it stays down.
    const deaf = await until(
      () => b.get<HostAgent[]>('/v1/host/agents').then((l) => l.find((x) => x.id === 'deaf')),
      (x) => x?.state === 'ERROR',
      10_000,
      'the deaf agent to be killed for a missed ping',
    );
    assert.equal(deaf?.lastError, 'PING_TIMEOUT');
    assert.equal(deaf?.pid, null);
    assert.equal(await metric(b, 'agent_ping_timeouts_total'), 1, 'one missed ping counted');
    await until(
      () => a.get<{ state: string; health: string }>('/v1/agents/deaf'),
      (x) => x.state === 'ERROR' && x.health === 'unhealthy',
      10_000,
      'the deaf agent to show ERROR on a',
    );

    // Nothing so far was a fault: not even wc's late CANCELLED answer to the task cancelled above.
    assert.equal(await metric(b, 'agent_protocol_errors_total'), 0);
    assert.equal(await metric(b, 'agent_unknown_task_messages_total'), 0, "wc's answer to a cancelled task");
    assert.equal(await metric(b, 'agent_output_too_large_total'), 0);
    const misbehavingPid = (await b.get<HostAgent[]>('/v1/host/agents')).find((x) => x.id === 'misbehaving')?.pid;

    await submit('bad-1', 'misbehaving', { payload: {} });
    const t = await settled(a, 'bad-1');
    assert.equal(t.status, 'COMPLETED', `the proper result after the garbage still counts: ${JSON.stringify(t)}`);
    assert.deepEqual(t.result, { ok: true, task: 'bad-1' });
    assert.deepEqual(t.log, [], 'neither the out-of-range progress nor the oversized log line made it in');

    assert.equal(await metric(b, 'agent_protocol_errors_total'), 2, 'the non-JSON line and the out-of-range progress');
    assert.equal(await metric(b, 'agent_unknown_task_messages_total'), 1, 'the result for no task');
    assert.equal(await metric(b, 'agent_output_too_large_total'), 1, 'the line over 1 MiB');

    // The node is up, the misbehaving agent was not restarted for it, and another agent still works.
    assert.deepEqual(await b.get('/v1/health'), { ok: true });
    const host = await b.get<HostAgent[]>('/v1/host/agents');
    const misbehaving = host.find((x) => x.id === 'misbehaving');
    assert.equal(misbehaving?.state, 'RUNNING');
    assert.equal(misbehaving?.pid, misbehavingPid, 'same process as before the bad output');
    await submit('after-bad', 'healthy', {
      type: 'wordcount',
      capabilities: ['wordcount'],
      payload: { text: 'still fine' },
    });
    const fine = await settled(a, 'after-bad');
    assert.equal(fine.status, 'COMPLETED', JSON.stringify(fine));
    assert.deepEqual(fine.result, { words: 2, lines: 1, characters: 10 });
  });
});
