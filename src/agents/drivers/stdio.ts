import { ExecutionError } from '../errors.js';
import { type AgentProcess, lineReader, spawnAgentProcess } from '../processes.js';
import {
  type AgentMessage,
  type AgentTaskInput,
  DEFAULT_MAX_LINE_BYTES,
  type NodeMessage,
  parseAgentLine,
  PROTOCOL_VERSION,
  type ToolCallMessage,
} from '../protocol.js';
import { abortReason, type AgentDriver, type DriverDeps, type RunContext, Tail } from './driver.js';

/** After a cancel message, how long the agent has to stop the task before it is killed. */
const CANCEL_GRACE_MS = 1000;
const LOG_LINE_BYTES = 16 * 1024;

interface Pending {
  ctx: RunContext;
  resolve(v: unknown): void;
  reject(e: Error): void;
}

/**
 * stdio mode: a persistent process speaking the newline-delimited JSON protocol of
 * `../protocol.ts` (documented in docs/agent-protocol.md), several tasks at once. Bad lines,
 * reports on unknown tasks and oversized lines are counted and logged; the agent carries on. A
 * missed pong, or a cancelled task the agent does not give up within a grace, kills the process
 * (its supervisor decides about a restart).
 */
export function stdioDriver(
  d: DriverDeps,
  onToolCall: (call: ToolCallMessage) => Promise<unknown> = () =>
    Promise.reject(
      new ExecutionError('TOOL_CALLS_UNSUPPORTED', 'tool calls are not supported by this node yet', false),
    ),
): AgentDriver {
  const { def, log } = d;
  let proc: AgentProcess | undefined;
  const pending = new Map<string, Pending>();
  let ready: ((caps: string[]) => void) | undefined;
  let pingSeq = 0;
  let awaitingPong: { seq: number; timer: NodeJS.Timeout } | undefined;
  let pingTimer: NodeJS.Timeout | undefined;
  let stopping = false;
  let killReason: string | undefined;
  const stderrTail = new Tail(2048);
  /** Tasks the agent was sent and has not answered, cancelled ones included. */
  const stillBusy = new Set<string>();

  const send = (m: NodeMessage): void => {
    if (proc === undefined || proc.done) return;
    proc.child.stdin?.write(`${JSON.stringify(m)}\n`);
  };

  const kill = (reason: string): void => {
    if (proc === undefined || proc.done) return;
    killReason ??= reason;
    proc.signal('SIGKILL');
  };

  const onMessage = (m: AgentMessage): void => {
    switch (m.type) {
      case 'ready':
        ready?.(m.capabilities ?? []);
        ready = undefined;
        return;
      case 'pong':
        if (awaitingPong?.seq === m.seq) {
          clearTimeout(awaitingPong.timer);
          awaitingPong = undefined;
        }
        return;
      case 'log': {
        if (m.id === undefined) {
          log.info({ agent: def.id, level: m.level }, m.message);
          return;
        }
        const p = pending.get(m.id);
        if (p === undefined) return unknownTask({ type: m.type, id: m.id });
        p.ctx.log(m.message);
        return;
      }
      case 'progress': {
        const p = pending.get(m.id);
        if (p === undefined) return unknownTask(m);
        p.ctx.progress(m.progress, m.message);
        return;
      }
      case 'result': {
        const p = pending.get(m.id);
        if (p === undefined) return unknownTask(m);
        pending.delete(m.id);
        p.resolve(m.result ?? null);
        return;
      }
      case 'error': {
        const p = pending.get(m.id);
        if (p === undefined) return unknownTask(m);
        pending.delete(m.id);
        p.reject(new ExecutionError(m.code, m.message, m.retryable ?? false));
        return;
      }
      case 'tool_call': {
        d.counters.toolCalls++;
        if (!pending.has(m.task)) {
          unknownTask({ type: m.type, id: m.task });
          send({
            type: 'tool_result',
            id: m.id,
            ok: false,
            error: { code: 'UNKNOWN_TASK', message: `no task ${m.task}` },
          });
          return;
        }
        onToolCall(m).then(
          (result) => send({ type: 'tool_result', id: m.id, ok: true, result }),
          (err: unknown) => {
            const e = err instanceof ExecutionError ? err : new ExecutionError('TOOL_ERROR', String(err), false);
            send({ type: 'tool_result', id: m.id, ok: false, error: { code: e.code, message: e.message } });
          },
        );
        return;
      }
    }
  };

  const unknownTask = (m: { type: string; id: string }): void => {
    // The late answer to a task the node cancelled: expected, not a fault.
    if (stillBusy.has(m.id)) {
      if (m.type === 'result' || m.type === 'error') stillBusy.delete(m.id);
      return;
    }
    d.counters.unknownTask++;
    log.warn(
      { agent: def.id, code: 'UNKNOWN_TASK', type: m.type, task: m.id },
      'agent reported on a task it does not run',
    );
  };

  const ping = (): void => {
    if (awaitingPong !== undefined) return;
    const seq = ++pingSeq;
    const timer = setTimeout(() => {
      d.counters.pingTimeouts++;
      log.warn(
        { agent: def.id, code: 'PING_TIMEOUT', timeoutMs: def.pingTimeoutMs },
        'agent missed a ping; killing it',
      );
      kill('PING_TIMEOUT');
    }, def.pingTimeoutMs);
    timer.unref();
    awaitingPong = { seq, timer };
    send({ type: 'ping', seq });
  };

  return {
    get pid() {
      return proc?.done === false ? proc.pid : undefined;
    },

    async start() {
      stopping = false;
      killReason = undefined;
      const p = await spawnAgentProcess({
        command: def.command,
        args: def.args,
        env: { ...def.env, AGENTMESH_AGENT_ID: def.id, AGENTMESH_NODE_ID: d.nodeId },
        cwd: def.cwd,
        records: d.records,
      });
      proc = p;
      p.child.stdout?.on(
        'data',
        lineReader(
          DEFAULT_MAX_LINE_BYTES,
          (line) => {
            const r = parseAgentLine(line);
            if (r.ok) return onMessage(r.message);
            d.counters.protocolErrors++;
            log.warn(
              { agent: def.id, code: 'PROTOCOL_ERROR', reason: r.reason, line: line.slice(0, 200) },
              'malformed line from agent',
            );
          },
          (bytes) => {
            d.counters.oversized++;
            log.warn(
              { agent: def.id, code: 'OUTPUT_TOO_LARGE', bytes, max: DEFAULT_MAX_LINE_BYTES },
              'agent line too long; dropped',
            );
          },
        ),
      );
      p.child.stderr?.on(
        'data',
        lineReader(
          LOG_LINE_BYTES,
          (line) => {
            stderrTail.push(line);
            log.debug({ agent: def.id }, line);
          },
          () => d.counters.oversized++,
        ),
      );
      const readyOrFail = new Promise<string[]>((resolve, reject) => {
        const timer = setTimeout(() => {
          kill('READY_TIMEOUT');
          reject(
            new ExecutionError('READY_TIMEOUT', `agent did not answer hello within ${def.readyTimeoutMs} ms`, true),
          );
        }, def.readyTimeoutMs);
        ready = (caps) => {
          clearTimeout(timer);
          resolve(caps);
        };
        void p.exited.then((e) => {
          clearTimeout(timer);
          reject(
            new ExecutionError(
              'AGENT_EXITED',
              `agent exited before it was ready (code ${e.code}, signal ${e.signal})`,
              true,
              {
                stderr: stderrTail.toString(),
              },
            ),
          );
        });
      });
      void p.exited.then((e) => {
        if (pingTimer) clearInterval(pingTimer);
        if (awaitingPong) clearTimeout(awaitingPong.timer);
        awaitingPong = undefined;
        const reason = killReason ?? (e.code === null ? `killed by ${e.signal}` : `exited with code ${e.code}`);
        stillBusy.clear();
        for (const [id, pend] of pending) {
          pending.delete(id);
          pend.reject(new ExecutionError('AGENT_EXITED', `agent ${reason} while running the task`, true));
        }
        if (proxy === p) d.events.exit({ abnormal: !stopping && (killReason !== undefined || e.code !== 0), reason });
      });
      const proxy = p;
      send({
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        agent: { id: def.id, name: def.name, capabilities: def.capabilities, concurrency: def.concurrency },
        node: d.nodeId,
      });
      const announced = await readyOrFail;
      pingTimer = setInterval(ping, def.pingIntervalMs);
      pingTimer.unref();
      return { capabilities: def.capabilities.length > 0 ? def.capabilities : announced };
    },

    run(task: AgentTaskInput, ctx: RunContext): Promise<unknown> {
      if (proc === undefined || proc.done) {
        return Promise.reject(new ExecutionError('AGENT_EXITED', 'agent is not running', true));
      }
      if (ctx.signal.aborted) return Promise.reject(abortReason(ctx.signal));
      return new Promise((resolve, reject) => {
        const onAbort = (): void => {
          if (!pending.delete(task.id)) return;
          const reason = abortReason(ctx.signal);
          send({ type: 'cancel', id: task.id, reason: reason.message });
          reject(reason);
          // The node has stopped waiting; an agent that keeps the task past the grace is killed.
          const current = proc;
          const check = setTimeout(() => {
            if (current === proc && stillBusy.has(task.id)) {
              log.warn({ agent: def.id, task: task.id }, 'agent did not stop a cancelled task; killing it');
              kill('CANCEL_IGNORED');
            }
          }, CANCEL_GRACE_MS);
          check.unref();
        };
        const settle = (fn: () => void): void => {
          ctx.signal.removeEventListener('abort', onAbort);
          stillBusy.delete(task.id);
          fn();
        };
        pending.set(task.id, {
          ctx,
          resolve: (v) => settle(() => resolve(v)),
          reject: (e) => settle(() => reject(e)),
        });
        stillBusy.add(task.id);
        ctx.signal.addEventListener('abort', onAbort, { once: true });
        send({ type: 'task', task });
      });
    },

    async stop(graceMs: number) {
      stopping = true;
      if (pingTimer) clearInterval(pingTimer);
      if (proc !== undefined && !proc.done) {
        proc.child.stdin?.end();
        await proc.stop(graceMs);
      }
    },
  };
}
