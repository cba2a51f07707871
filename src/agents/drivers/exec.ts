import { abortReason, type AgentDriver, type DriverDeps, type RunContext, Tail } from './driver.js';
import { ExecutionError } from '../errors.js';
import { lineReader, spawnAgentProcess } from '../processes.js';
import type { AgentTaskInput } from '../protocol.js';

const STDERR_LINE_BYTES = 16 * 1024;
const STDERR_TAIL_BYTES = 2048;
/** Cancel and timeout: SIGTERM to the group, SIGKILL this long after (well under a second). */
const EXEC_KILL_GRACE_MS = 300;

/** A stdout that is JSON becomes that value; anything else is the text (one trailing newline dropped). */
export function parseOutput(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed.length > 0) {
    try {
      return JSON.parse(trimmed) as unknown;
    } catch {
      // Not JSON: the text is the result.
    }
  }
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/**
 * exec mode: one process per task, in its own process group. The task's JSON goes to stdin;
 * exit 0 with stdout as the result; non-zero is a failure with the exit code and stderr's tail;
 * stderr lines are the task's log. Cancel and timeout kill the group.
 */
export function execDriver(d: DriverDeps): AgentDriver {
  const { def } = d;
  return {
    pid: undefined,
    start: async () => ({ capabilities: def.capabilities }),
    stop: async () => {},
    async run(task: AgentTaskInput, ctx: RunContext): Promise<unknown> {
      if (ctx.signal.aborted) throw abortReason(ctx.signal);
      const proc = await spawnAgentProcess({
        command: def.command,
        args: def.args,
        env: { ...def.env, AGENTMESH_AGENT_ID: def.id, AGENTMESH_NODE_ID: d.nodeId, AGENTMESH_TASK_ID: task.id },
        cwd: def.cwd,
        records: d.records,
      });
      const out: Buffer[] = [];
      let outBytes = 0;
      let failure: ExecutionError | undefined;
      const tail = new Tail(STDERR_TAIL_BYTES);
      proc.child.stdout?.on('data', (chunk: Buffer) => {
        outBytes += chunk.length;
        if (outBytes > def.maxOutputBytes) {
          if (failure === undefined) {
            d.counters.oversized++;
            failure = new ExecutionError('OUTPUT_TOO_LARGE', `stdout exceeded ${def.maxOutputBytes} bytes`, false, {
              maxBytes: def.maxOutputBytes,
            });
            proc.signal('SIGKILL');
          }
          return;
        }
        out.push(chunk);
      });
      proc.child.stderr?.on(
        'data',
        lineReader(
          STDERR_LINE_BYTES,
          (line) => {
            tail.push(line);
            ctx.log(line);
          },
          () => d.counters.oversized++,
        ),
      );
      const onAbort = (): void => {
        failure ??= abortReason(ctx.signal) as ExecutionError;
        void proc.stop(EXEC_KILL_GRACE_MS);
      };
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      proc.child.stdin?.end(`${JSON.stringify(task)}\n`);
      const exit = await proc.exited;
      ctx.signal.removeEventListener('abort', onAbort);
      if (failure !== undefined) throw failure;
      if (exit.code === 0) return parseOutput(Buffer.concat(out).toString('utf8'));
      const how = exit.code === null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
      throw new ExecutionError('EXIT_NONZERO', `${def.command} ${how}`, true, {
        exitCode: exit.code,
        signal: exit.signal,
        stderr: tail.toString(),
      });
    },
  };
}
