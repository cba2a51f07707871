import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { AgentResponse, TaskView } from '../api/schemas.js';
import { AGENT_STATES } from '../registry/agent-schema.js';
import { TASK_STATUSES } from '../tasks/task-schema.js';
import { type Logger, logger } from '../util/log.js';
import { VERSION } from '../util/version.js';
import { ApiCallError, ApiClient, type ApiClientOptions, query } from './api-client.js';
import { RecentEvents } from './recent-events.js';

/** Longest a `submit_task` with `wait` or a `recent_changes` with `waitSeconds` may block. */
export const MAX_WAIT_SECONDS = 300;
const MAX_CHANGES_WAIT_SECONDS = 30;
const POLL_MS = 200;
const FINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

const ok = (value: unknown): CallToolResult => ({ content: [{ type: 'text', text: JSON.stringify(value, null, 2) }] });

/** An API error becomes a tool error the model can read: the API's code and message. */
function failed(err: unknown): CallToolResult {
  const text = err instanceof ApiCallError ? err.message : `internal error: ${(err as Error).message}`;
  return { isError: true, content: [{ type: 'text', text }] };
}

async function tool(run: () => Promise<unknown>): Promise<CallToolResult> {
  try {
    return ok(await run());
  } catch (err) {
    return failed(err);
  }
}

const idSchema = z.string().min(1).max(128);

/**
 * The mesh as MCP tools, over one node's HTTP API: agents and capabilities, tasks (submit and
 * optionally wait for the result, get, list, cancel) and a window of recent changes. Every tool
 * is a thin call of the API, so the node's own validation and errors apply; an API error comes
 * back as a tool error (`isError`) with the API's code and message.
 */
export function createMcpServer(client: ApiClient, events: RecentEvents): McpServer {
  const server = new McpServer(
    { name: 'agentmesh', version: VERSION },
    {
      instructions:
        'agentmesh is a peer-to-peer mesh of nodes running agents. Agents advertise capabilities; a ' +
        'task names the capabilities it needs and the mesh runs it on a capable agent. Use ' +
        'list_capabilities to see what can be done, submit_task (with wait) to get work done, and ' +
        'recent_changes to follow what happens.',
    },
  );

  server.registerTool(
    'list_agents',
    {
      title: 'List agents',
      description:
        'Agents registered in the mesh, with their hosting node, state (RUNNING, PAUSED, ERROR, ...), ' +
        'capabilities, load and capacity, and whether their node is reachable. Filters are optional.',
      inputSchema: {
        capability: z.string().max(64).optional().describe('only agents with this capability'),
        state: z.enum(AGENT_STATES).optional().describe('only agents in this state'),
        node: z.string().max(128).optional().describe('only agents hosted by this node (peer id)'),
      },
      annotations: { readOnlyHint: true },
    },
    async (args) => tool(() => client.call('GET', `/v1/agents${query(args)}`)),
  );

  server.registerTool(
    'list_capabilities',
    {
      title: 'List capabilities',
      description:
        'Every capability some agent in the mesh offers, with how many agents offer it and how many ' +
        'of those are RUNNING on a reachable node (those can take a task now).',
      inputSchema: {},
      annotations: { readOnlyHint: true },
    },
    async () =>
      tool(async () => {
        const agents = await client.call<AgentResponse[]>('GET', '/v1/agents');
        const caps = new Map<string, { agents: number; available: number }>();
        for (const a of agents) {
          for (const c of a.capabilities) {
            const e = caps.get(c) ?? { agents: 0, available: 0 };
            e.agents++;
            if (a.state === 'RUNNING' && a.reachable) e.available++;
            caps.set(c, e);
          }
        }
        return [...caps].sort(([a], [b]) => (a < b ? -1 : 1)).map(([capability, n]) => ({ capability, ...n }));
      }),
  );

  server.registerTool(
    'submit_task',
    {
      title: 'Submit a task',
      description:
        'Submits a task to the mesh; it runs on an agent having every capability listed (or on the ' +
        'agent named in `agent`). With `wait`, blocks until the task ends (COMPLETED with `result`, ' +
        `FAILED with \`error\`, or CANCELLED) or \`timeoutSeconds\` pass (at most ${MAX_WAIT_SECONDS}), ` +
        'and returns the task; without, returns the new task at once (poll it with get_task).',
      inputSchema: {
        type: z.string().min(1).max(128).describe('what kind of task (agents may use it to pick a tool)'),
        title: z.string().max(256).optional(),
        payload: z.unknown().optional().describe("the task's input, any JSON (an mcp agent's tool arguments)"),
        capabilities: z.array(z.string().min(1).max(64)).max(32).optional().describe('capabilities it needs'),
        priority: z.number().int().min(0).max(9).optional().describe('0 (lowest) to 9; default 5'),
        agent: idSchema.optional().describe('run it on this agent (no scheduling)'),
        timeoutMs: z.number().int().positive().optional().describe('per-attempt time limit'),
        wait: z.boolean().optional().describe('wait for the task to end'),
        timeoutSeconds: z
          .number()
          .positive()
          .max(MAX_WAIT_SECONDS)
          .optional()
          .describe(`with wait: give up waiting after this long (default 60, at most ${MAX_WAIT_SECONDS})`),
      },
    },
    async (args, extra) =>
      tool(async () => {
        const task = await client.call<TaskView>('POST', '/v1/tasks', {
          type: args.type,
          ...(args.title !== undefined ? { title: args.title } : {}),
          ...(args.payload !== undefined ? { payload: args.payload } : {}),
          ...(args.capabilities !== undefined ? { capabilities: args.capabilities } : {}),
          ...(args.priority !== undefined ? { priority: args.priority } : {}),
          ...(args.agent !== undefined ? { assignee: args.agent } : {}),
          ...(args.timeoutMs !== undefined ? { timeoutMs: args.timeoutMs } : {}),
        });
        if (args.wait !== true) return task;
        return waitForEnd(client, task, (args.timeoutSeconds ?? 60) * 1000, extra.signal);
      }),
  );

  server.registerTool(
    'get_task',
    {
      title: 'Get a task',
      description: 'One task: status, holder, progress, result or error, log tail and attempts.',
      inputSchema: { id: idSchema.describe('the task id') },
      annotations: { readOnlyHint: true },
    },
    async ({ id }) => tool(() => client.call('GET', `/v1/tasks/${encodeURIComponent(id)}`)),
  );

  server.registerTool(
    'list_tasks',
    {
      title: 'List tasks',
      description: 'Tasks, oldest first, optionally by status or required capability; at most `limit` (default 50).',
      inputSchema: {
        status: z.enum(TASK_STATUSES).optional(),
        capability: z.string().max(64).optional(),
        limit: z.number().int().min(1).max(500).optional(),
      },
      annotations: { readOnlyHint: true },
    },
    async ({ status, capability, limit }) =>
      tool(() => client.call('GET', `/v1/tasks${query({ status, capability, limit: limit ?? 50 })}`)),
  );

  server.registerTool(
    'cancel_task',
    {
      title: 'Cancel a task',
      description:
        'Cancels a task that has not ended; a running execution is stopped on whichever node runs it. ' +
        'Cancelling an ended task is an error.',
      inputSchema: { id: idSchema.describe('the task id') },
      annotations: { destructiveHint: true },
    },
    async ({ id }) => tool(() => client.call('POST', `/v1/tasks/${encodeURIComponent(id)}/cancel`)),
  );

  server.registerTool(
    'recent_changes',
    {
      title: 'Recent changes',
      description:
        'Recent changes to agents and tasks anywhere in the mesh, as this node saw them since the MCP ' +
        'server started (the last 500 at most), oldest first, each with a `seq`. Pass the highest ' +
        '`seq` seen as `since` to get only newer ones; with `waitSeconds`, waits (up to ' +
        `${MAX_CHANGES_WAIT_SECONDS} s) for the next change when there is none yet.`,
      inputSchema: {
        since: z.number().int().min(0).optional().describe('only changes with a greater seq'),
        kind: z.enum(['agent', 'task']).optional(),
        limit: z.number().int().min(1).max(200).optional().describe('at most this many, the newest (default 50)'),
        waitSeconds: z.number().min(0).max(MAX_CHANGES_WAIT_SECONDS).optional(),
      },
      annotations: { readOnlyHint: true },
    },
    async ({ since, kind, limit, waitSeconds }, extra) =>
      tool(async () => {
        const from = since ?? 0;
        const n = limit ?? 50;
        let changes = events.after(from, n, kind);
        const deadline = Date.now() + (waitSeconds ?? 0) * 1000;
        while (changes.length === 0 && Date.now() < deadline && !extra.signal.aborted) {
          await events.waitForNext(deadline - Date.now(), extra.signal);
          changes = events.after(from, n, kind);
        }
        return { changes, lastSeq: events.lastSeq };
      }),
  );

  return server;
}

/** Polls the task until it ends, `timeoutMs` pass, or the client cancels the call. */
async function waitForEnd(client: ApiClient, task: TaskView, timeoutMs: number, signal: AbortSignal): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  let t = task;
  const path = `/v1/tasks/${encodeURIComponent(task.id)}`;
  while (!FINAL.has(t.status)) {
    if (Date.now() >= deadline || signal.aborted) {
      return { ...t, waited: `the task had not ended after ${Math.round(timeoutMs / 1000)} s; poll it with get_task` };
    }
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS, Math.max(0, deadline - Date.now()))));
    t = await client.call<TaskView>('GET', path, undefined, signal);
  }
  return t;
}

/**
 * `mesh mcp`: the MCP server on stdio, until the client closes stdin. stdout carries the MCP
 * protocol only; logs go to stderr.
 */
export async function runMcpServer(options: ApiClientOptions, log: Logger = logger('mesh:mcp')): Promise<void> {
  const client = new ApiClient(options);
  const events = new RecentEvents(client, log);
  const server = createMcpServer(client, events);
  events.start();
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    // The SDK's transport does not watch for the end of stdin: a client that exits ends us too.
    process.stdin.once('end', () => resolve());
    process.stdin.once('close', () => resolve());
  });
  await server.connect(transport);
  log.info({ api: client.base }, 'MCP server on stdio');
  await closed;
  await server.close().catch(() => {});
  await events.close();
}
