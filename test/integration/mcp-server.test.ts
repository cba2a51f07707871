import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { MeshProcess, processGone, REPO_ROOT, shutdownNodes, waitFor } from '../helpers/mesh-process.js';

const MESH_JS = join(REPO_ROOT, 'dist/mesh.js');

interface Task {
  id: string;
  status: string;
  result: unknown;
  assignee: string | null;
}

/** The JSON a tool answered with (its one text content), asserting it is not an error. */
function json<T>(r: CallToolResult): T {
  const text = (r.content[0] as { type: string; text: string }).text;
  assert.notEqual(r.isError, true, text);
  return JSON.parse(text) as T;
}

function errorText(r: CallToolResult): string {
  assert.equal(r.isError, true, JSON.stringify(r.content));
  return (r.content[0] as { text: string }).text;
}

/**
 * `mesh mcp` as an LLM client uses it: the MCP SDK's client spawns `node dist/mesh.js mcp --api
 * <url>` on stdio, against a real node running the example agents (examples/agents.json).
 */
describe('mesh mcp', { timeout: 90_000 }, () => {
  let node: MeshProcess;
  let client: Client;
  let transport: StdioClientTransport;
  const stderr: string[] = [];
  let completedId = '';

  before(async () => {
    node = await new MeshProcess({
      name: 'mcp-node',
      extraArgs: ['--agents', join(REPO_ROOT, 'examples/agents.json')],
    }).start();
    await waitFor(
      async () =>
        (await node.get<Array<{ state: string }>>('/v1/agents')).filter((x) => x.state === 'RUNNING').length === 3,
      20_000,
      'the three example agents RUNNING',
    );
    transport = new StdioClientTransport({
      command: process.execPath,
      args: [MESH_JS, 'mcp', '--api', node.api],
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (d: Buffer) => stderr.push(d.toString()));
    client = new Client({ name: 'agentmesh-test', version: '0.0.0' });
    await client.connect(transport);
  });

  after(async () => {
    await client?.close().catch(() => {});
    await shutdownNodes(node ? [node] : []);
  });

  const call = (name: string, args: Record<string, unknown> = {}) =>
    client.callTool({ name, arguments: args }) as Promise<CallToolResult>;

  it('lists its tools, each with a description and an input schema', async () => {
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name).sort();
    assert.deepEqual(names, [
      'cancel_task',
      'get_task',
      'list_agents',
      'list_capabilities',
      'list_tasks',
      'recent_changes',
      'submit_task',
    ]);
    for (const t of tools) {
      assert.ok((t.description ?? '').length > 20, `${t.name} is described`);
      assert.equal(t.inputSchema.type, 'object');
    }
    const submit = tools.find((t) => t.name === 'submit_task');
    assert.deepEqual(submit?.inputSchema.required, ['type']);
  });

  it('lists agents and capabilities', async () => {
    const agents = json<Array<{ id: string; owner: string }>>(await call('list_agents'));
    assert.deepEqual(agents.map((a) => a.id).sort(), ['echo', 'hello', 'wordcount']);
    assert.ok(agents.every((a) => a.owner === node.id));
    const caps = json<Array<{ capability: string; agents: number; available: number }>>(
      await call('list_capabilities'),
    );
    const echo = caps.find((c) => c.capability === 'echo');
    assert.deepEqual(echo, { capability: 'echo', agents: 2, available: 2 }, 'wordcount and echo both offer echo');
    const filtered = json<Array<{ id: string }>>(await call('list_agents', { capability: 'hello' }));
    assert.deepEqual(
      filtered.map((a) => a.id),
      ['hello'],
    );
  });

  it('submits a task and waits for its result', async () => {
    const task = json<Task>(
      await call('submit_task', {
        type: 'wordcount',
        title: 'count',
        capabilities: ['wordcount'],
        payload: { text: 'one two three\nfour' },
        wait: true,
        timeoutSeconds: 30,
      }),
    );
    assert.equal(task.status, 'COMPLETED', JSON.stringify(task));
    assert.equal(task.assignee, 'wordcount');
    assert.deepEqual(task.result, { words: 4, lines: 2, characters: 18 });
    completedId = task.id;
    const again = json<Task>(await call('get_task', { id: task.id }));
    assert.equal(again.status, 'COMPLETED');
    const completed = json<Task[]>(await call('list_tasks', { status: 'COMPLETED' }));
    assert.ok(completed.some((t) => t.id === task.id));
  });

  it('cancels a task, and reports API errors as tool errors with the API message', async () => {
    // Nobody offers this capability: the task stays PENDING until cancelled.
    const pending = json<Task>(await call('submit_task', { type: 'x', capabilities: ['nobody-offers-this'] }));
    assert.equal(pending.status, 'PENDING');
    const cancelled = json<Task>(await call('cancel_task', { id: pending.id }));
    assert.equal(cancelled.status, 'CANCELLED');
    assert.equal(json<Task>(await call('get_task', { id: pending.id })).status, 'CANCELLED');

    assert.match(errorText(await call('get_task', { id: 'no-such-task' })), /^NOT_FOUND: task no-such-task not found/);
    assert.equal(json<Task>(await call('cancel_task', { id: pending.id })).status, 'CANCELLED', 'idempotent');
    assert.ok(completedId !== '', 'the task of the previous test');
    assert.match(
      errorText(await call('cancel_task', { id: completedId })),
      new RegExp(`^INVALID_TRANSITION: task ${completedId} is COMPLETED`),
    );
    // The API validates what the tool's schema leaves to it (the per-attempt limit is one day).
    const bad = errorText(await call('submit_task', { type: 'x', timeoutMs: 10 ** 9 }));
    assert.match(bad, /^INVALID_INPUT: invalid body: body.timeoutMs: /);
  });

  it('reads recent changes, newer than a seq, and waits for the next one', async () => {
    const all = json<{
      changes: Array<{ seq: number; kind: string; id: string; value: { status?: string } }>;
      lastSeq: number;
    }>(await call('recent_changes', { kind: 'task' }));
    assert.ok(all.changes.length > 0, 'the tasks above changed while the server ran');
    assert.ok(all.changes.every((c) => c.kind === 'task'));
    assert.ok(all.changes.some((c) => c.value.status === 'COMPLETED'));
    const none = json<{ changes: unknown[] }>(await call('recent_changes', { since: all.lastSeq, kind: 'task' }));
    assert.deepEqual(none.changes, []);
    // A change made while the call waits is returned by it.
    const waiting = call('recent_changes', { since: all.lastSeq, kind: 'task', waitSeconds: 20 });
    const created = await node.call<Task>('POST', '/v1/tasks', { id: 'mcp-watch', type: 'x', capabilities: ['none'] });
    assert.equal(created.status, 201);
    const next = json<{ changes: Array<{ id: string; seq: number }> }>(await waiting);
    assert.ok(
      next.changes.some((c) => c.id === 'mcp-watch' && c.seq > all.lastSeq),
      JSON.stringify(next.changes),
    );
  });

  it('ends when the client closes its stdin', async () => {
    const pid = transport.pid;
    assert.ok(pid !== null && pid !== undefined);
    await client.close();
    await waitFor(() => processGone(pid), 10_000, 'the mcp process to exit');
    assert.doesNotMatch(stderr.join(''), /"level":(50|60)/, 'no error logged');
  });
});
