import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { VERSION } from '../../util/version.js';
import { ExecutionError } from '../errors.js';
import { type AgentProcess, lineReader, spawnAgentProcess, type SpawnOptions } from '../processes.js';
import type { AgentTaskInput } from '../protocol.js';
import { abortReason, type AgentDriver, type DriverDeps, type RunContext, Tail } from './driver.js';

/**
 * The SDK's stdio transport spawns its server in the node's own process group; this one starts it
 * through `spawnAgentProcess`, so it gets its own group and is recorded for the reaper like every
 * other agent process. The framing is the SDK's own (ReadBuffer, serializeMessage).
 */
class GroupStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  proc: AgentProcess | undefined;
  private readonly buffer = new ReadBuffer();

  constructor(
    private readonly spawnOptions: SpawnOptions,
    private readonly onStderr: (line: string) => void,
  ) {}

  async start(): Promise<void> {
    const p = await spawnAgentProcess(this.spawnOptions);
    this.proc = p;
    p.child.stdout?.on('data', (chunk: Buffer) => {
      this.buffer.append(chunk);
      for (;;) {
        let message: JSONRPCMessage | null;
        try {
          message = this.buffer.readMessage();
        } catch (err) {
          this.onerror?.(err as Error);
          continue;
        }
        if (message === null) break;
        this.onmessage?.(message);
      }
    });
    p.child.stderr?.on(
      'data',
      lineReader(16 * 1024, this.onStderr, () => {}),
    );
    void p.exited.then(() => this.onclose?.());
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve) => {
      const stdin = this.proc?.child.stdin;
      if (stdin === undefined || stdin === null || this.proc?.done) return resolve();
      if (stdin.write(serializeMessage(message))) resolve();
      else stdin.once('drain', resolve);
    });
  }

  async close(): Promise<void> {
    this.proc?.child.stdin?.end();
  }
}

interface ToolResult {
  content?: Array<{ type: string; text?: string }>;
  structuredContent?: unknown;
  isError?: boolean;
}

/** The text parts of a tool result, joined: what an isError result says went wrong. */
function textOf(r: ToolResult): string {
  return (r.content ?? [])
    .filter((c) => c.type === 'text' && typeof c.text === 'string')
    .map((c) => c.text)
    .join('\n');
}

/**
 * mcp mode: any Model Context Protocol stdio server is an agent. Its tools are its capabilities
 * (with the definition's optional prefix), refreshed when the server says its list changed. A
 * task calls the tool its capabilities name (else the tool named like its type) with its payload
 * as arguments; the tool's result is the task's result, `isError` a failure, progress
 * notifications the task's progress; aborting the call sends MCP's cancellation notification.
 */
export function mcpDriver(d: DriverDeps): AgentDriver {
  const { def, log } = d;
  let client: Client | undefined;
  let transport: GroupStdioTransport | undefined;
  let tools = new Set<string>();
  let stopping = false;
  let pingTimer: NodeJS.Timeout | undefined;
  let killReason: string | undefined;
  const stderrTail = new Tail(2048);

  const capabilitiesOf = (names: Iterable<string>): string[] => [...names].map((n) => `${def.toolPrefix}${n}`);

  const toolFor = (task: AgentTaskInput): string | undefined => {
    for (const c of task.capabilities) {
      if (c.startsWith(def.toolPrefix) && tools.has(c.slice(def.toolPrefix.length))) {
        return c.slice(def.toolPrefix.length);
      }
    }
    return tools.has(task.type) ? task.type : undefined;
  };

  return {
    get pid() {
      return transport?.proc?.done === false ? transport.proc.pid : undefined;
    },

    async start() {
      stopping = false;
      killReason = undefined;
      const t = new GroupStdioTransport(
        {
          command: def.command,
          args: def.args,
          env: { ...def.env, AGENTMESH_AGENT_ID: def.id, AGENTMESH_NODE_ID: d.nodeId },
          cwd: def.cwd,
          records: d.records,
        },
        (line) => {
          stderrTail.push(line);
          log.debug({ agent: def.id }, line);
        },
      );
      transport = t;
      const c = new Client(
        { name: 'agentmesh', version: VERSION },
        {
          listChanged: {
            tools: {
              onChanged: (err, list) => {
                if (err !== null || list === null) {
                  log.warn({ agent: def.id, err }, 'cannot refresh the MCP tool list');
                  return;
                }
                tools = new Set(list.map((x) => x.name));
                d.events.capabilities(capabilitiesOf(tools));
              },
            },
          },
        },
      );
      client = c;
      t.onerror = (err) => {
        d.counters.protocolErrors++;
        log.warn({ agent: def.id, code: 'PROTOCOL_ERROR', err: err.message }, 'malformed message from MCP server');
      };
      const timeout = { timeout: def.readyTimeoutMs };
      try {
        await c.connect(t, timeout);
        const listed = await c.listTools(undefined, timeout);
        tools = new Set(listed.tools.map((x) => x.name));
      } catch (err) {
        t.proc?.signal('SIGKILL');
        throw new ExecutionError('READY_TIMEOUT', `MCP server did not start: ${(err as Error).message}`, true, {
          stderr: stderrTail.toString(),
        });
      }
      const proc = t.proc as AgentProcess;
      void proc.exited.then((e) => {
        if (pingTimer) clearInterval(pingTimer);
        if (transport !== t) return;
        const reason = killReason ?? (e.code === null ? `killed by ${e.signal}` : `exited with code ${e.code}`);
        d.events.exit({ abnormal: !stopping && (killReason !== undefined || e.code !== 0), reason });
      });
      pingTimer = setInterval(() => {
        c.ping({ timeout: def.pingTimeoutMs }).catch(() => {
          if (stopping || proc.done) return;
          d.counters.pingTimeouts++;
          log.warn({ agent: def.id, code: 'PING_TIMEOUT' }, 'MCP server missed a ping; killing it');
          killReason ??= 'PING_TIMEOUT';
          proc.signal('SIGKILL');
        });
      }, def.pingIntervalMs);
      pingTimer.unref();
      return { capabilities: def.capabilities.length > 0 ? def.capabilities : capabilitiesOf(tools) };
    },

    async run(task: AgentTaskInput, ctx: RunContext): Promise<unknown> {
      const c = client;
      if (c === undefined || transport?.proc?.done !== false) {
        throw new ExecutionError('AGENT_EXITED', 'MCP server is not running', true);
      }
      const tool = toolFor(task);
      if (tool === undefined) {
        throw new ExecutionError(
          'NO_TOOL',
          `no tool of this MCP server matches capabilities ${task.capabilities.join(', ')}`,
          false,
        );
      }
      const args =
        task.payload !== null && typeof task.payload === 'object' && !Array.isArray(task.payload)
          ? (task.payload as Record<string, unknown>)
          : {};
      let result: ToolResult;
      try {
        result = (await c.callTool({ name: tool, arguments: args }, undefined, {
          signal: ctx.signal,
          // The host enforces the task's timeout itself; the SDK's default 60 s would cut it short.
          timeout: def.timeoutMs,
          resetTimeoutOnProgress: true,
          onprogress: (p) => {
            const pct = p.total !== undefined && p.total > 0 ? (100 * p.progress) / p.total : p.progress;
            ctx.progress(Math.max(0, Math.min(100, pct)), p.message);
          },
        })) as ToolResult;
      } catch (err) {
        if (ctx.signal.aborted) throw abortReason(ctx.signal);
        throw new ExecutionError('AGENT_ERROR', `tool ${tool} failed: ${(err as Error).message}`, true);
      }
      if (result.isError === true) {
        throw new ExecutionError('TOOL_ERROR', textOf(result) || `tool ${tool} reported an error`, false, { tool });
      }
      return result.structuredContent !== undefined
        ? { content: result.content ?? [], structuredContent: result.structuredContent }
        : { content: result.content ?? [] };
    },

    async stop(graceMs: number) {
      stopping = true;
      if (pingTimer) clearInterval(pingTimer);
      const proc = transport?.proc;
      if (proc !== undefined && !proc.done) {
        proc.child.stdin?.end();
        await proc.stop(graceMs);
      }
      await client?.close().catch(() => {});
    },
  };
}
