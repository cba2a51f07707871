/**
 * A small SDK for writing a persistent stdio agent in TypeScript (`import { runAgent } from
 * 'agentmesh/agent'`). It speaks the stdio agent protocol v1 (`docs/agent-protocol.md`) on stdin
 * and stdout, so an agent is one handler:
 *
 * ```ts
 * runAgent({
 *   capabilities: ['echo'],
 *   async handle(ctx) {
 *     ctx.progress(50, 'halfway');
 *     return { echo: ctx.task.payload };
 *   },
 * });
 * ```
 *
 * What it does for the handler: answers `hello` with `ready` (announcing `capabilities`) and
 * `ping` with `pong`; runs every `task` at once as it arrives (the node keeps them within the
 * agent's concurrency); answers each with exactly one `result` (the handler's value, `null` for
 * `undefined`) or `error` (an `AgentError`'s code, message and retryable; `AGENT_ERROR` for any
 * other throw); on `cancel` aborts the task's `signal` and answers `error` `CANCELLED` once the
 * handler settles, whatever it returns; pairs `tool_call`s with their `tool_result`s by id; and
 * writes every message as one line. When stdin ends (the node is done with the agent) or `stop()`
 * is called it stops reading, aborts the running tasks and resolves `done` when their handlers
 * have settled; nothing else keeps the process alive, so it then exits on its own.
 *
 * Problems with the node's lines (not JSON, unknown type, wrong fields) are reported through
 * `onWarning` (default: stderr, which the node keeps as the agent's log) and otherwise ignored,
 * except a malformed `task` with an id, which is answered with `error` `INVALID_TASK`.
 */
import { createInterface } from 'node:readline';
import type { AgentMessage, AgentTaskInput, HelloMessage, NodeMessage } from './wire.js';
import {
  MAX_CAPABILITIES,
  MAX_CAPABILITY_LENGTH,
  MAX_ID_LENGTH,
  MAX_LINE_BYTES,
  MAX_PROGRESS_MESSAGE_LENGTH,
  PROTOCOL_VERSION,
  encodeAgentMessage,
  parseNodeLine,
} from './wire.js';
import { AgentError, AgentErrorCode, errorFields } from './errors.js';

export { AgentError, AgentErrorCode, isAgentError, type AgentErrorFields } from './errors.js';
export { MAX_LINE_BYTES, PROTOCOL_VERSION, parseNodeLine } from './wire.js';
export type { AgentMessage, AgentTaskInput, HelloMessage, NodeMessage };

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Cancellation of a wait: aborting it rejects the returned promise with the signal's reason. */
export interface AbortOptions {
  signal?: AbortSignal;
}

/** What a task handler gets. Its methods do nothing (or reject) once the task has been answered. */
export interface TaskContext {
  /** The task as the node sent it (`task.task`): id, type, title, payload, capabilities, ... */
  readonly task: AgentTaskInput;
  /** Aborted when the node cancels the task or the agent stops; its reason is an `AgentError`. */
  readonly signal: AbortSignal;
  /** The node's `hello`, or undefined if a task came before it. */
  readonly hello: HelloMessage | undefined;
  /** Reports progress, clamped to 0..100 (a non-finite value is ignored). */
  progress(pct: number, message?: string): void;
  /** A line of the task's log on the node. */
  log(message: string, level?: LogLevel): void;
  /**
   * Asks the node to run `capability` on the task's behalf and resolves with its result, or
   * rejects with an `AgentError` carrying the node's code (`RECURSIVE_CALL`, the child task's error code...).
   * Aborting `options.signal` or the task's signal rejects the wait; a late `tool_result` is
   * ignored. The node is not told (the protocol has no message for it).
   */
  callTool(capability: string, payload?: unknown, options?: AbortOptions): Promise<unknown>;
}

export type TaskHandler = (ctx: TaskContext) => Promise<unknown> | unknown;

export interface AgentOptions {
  /** Announced in `ready`; the node uses them when the agent's definition lists none. */
  capabilities?: string[];
  handle: TaskHandler;
  /** Where the node's lines come from; default `process.stdin`. */
  input?: NodeJS.ReadableStream;
  /** Where the agent's lines go; default `process.stdout`. Nothing else may write to it. */
  output?: NodeJS.WritableStream;
  /** Protocol problems the SDK noticed; default: a line on `process.stderr`. */
  onWarning?: (message: string) => void;
}

export interface RunningAgent {
  /** Resolves once input has ended (or `stop()`) and every running handler has settled. */
  readonly done: Promise<void>;
  /** Stops reading input and aborts the running tasks (each is still answered, `CANCELLED`). */
  stop(): void;
  /** A line of the agent's own log (not tied to a task). */
  log(message: string, level?: LogLevel): void;
}

/** Log messages are cut to this many characters so that a line stays far below 1 MiB. */
const MAX_LOG_MESSAGE_LENGTH = 64 * 1024;

interface RunningTask {
  readonly controller: AbortController;
  /** Tool calls waiting for their result, dropped when the task is answered. */
  readonly calls: Set<string>;
  finished: boolean;
}

interface PendingCall {
  readonly task: string;
  resolve(value: unknown): void;
  reject(err: unknown): void;
  /** Forgets the call and leaves its promise pending (its task has been answered). */
  drop(): void;
}

function checkCapabilities(capabilities: string[] | undefined): void {
  if (capabilities === undefined) return;
  if (capabilities.length > MAX_CAPABILITIES) {
    throw new RangeError(`at most ${MAX_CAPABILITIES} capabilities can be announced`);
  }
  for (const c of capabilities) {
    if (typeof c !== 'string' || c.length < 1 || c.length > MAX_CAPABILITY_LENGTH) {
      throw new RangeError(`capability ${JSON.stringify(c)} must be 1..${MAX_CAPABILITY_LENGTH} characters`);
    }
  }
}

/** Runs a stdio agent until its input ends. Throws synchronously only for bad `capabilities`. */
export function runAgent(options: AgentOptions): RunningAgent {
  checkCapabilities(options.capabilities);
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stdout;
  const warn = options.onWarning ?? ((m: string) => void process.stderr.write(`agent-sdk: ${m}\n`));

  const tasks = new Map<string, RunningTask>();
  const calls = new Map<string, PendingCall>();
  let hello: HelloMessage | undefined;
  let nextCall = 0;
  let stopping = false;
  let outputBroken = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));

  /** Writes one line; false if it could not be (too long, or the output is gone). */
  function writeLine(line: string, what: string): boolean {
    if (outputBroken) return false;
    if (Buffer.byteLength(line, 'utf8') - 1 > MAX_LINE_BYTES) {
      warn(`${what} is longer than ${MAX_LINE_BYTES} bytes; not sent`);
      return false;
    }
    output.write(line);
    return true;
  }
  function send(message: AgentMessage): boolean {
    return writeLine(encodeAgentMessage(message), message.type);
  }

  function sendLog(id: string | undefined, message: string, level: LogLevel | undefined): void {
    const text = message.length > MAX_LOG_MESSAGE_LENGTH ? message.slice(0, MAX_LOG_MESSAGE_LENGTH) + '…' : message;
    send({
      type: 'log',
      ...(id === undefined ? {} : { id }),
      ...(level === undefined ? {} : { level }),
      message: text,
    });
  }

  function answer(
    id: string,
    task: RunningTask,
    outcome: { ok: true; value: unknown } | { ok: false; error: unknown },
  ) {
    if (task.controller.signal.aborted) {
      const reason: unknown = task.controller.signal.reason;
      const message = reason instanceof Error ? reason.message : 'cancelled';
      send({ type: 'error', id, code: AgentErrorCode.CANCELLED, message, retryable: false });
      return;
    }
    if (outcome.ok) {
      let line: string;
      try {
        line = encodeAgentMessage({ type: 'result', id, result: outcome.value === undefined ? null : outcome.value });
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        send({ type: 'error', id, code: AgentErrorCode.AGENT_ERROR, message: `result is not JSON: ${why}` });
        return;
      }
      if (!writeLine(line, `result of task ${id}`) && !outputBroken) {
        send({
          type: 'error',
          id,
          code: AgentErrorCode.RESULT_TOO_LARGE,
          message: `the result is longer than the protocol's ${MAX_LINE_BYTES}-byte line limit`,
          retryable: false,
        });
      }
      return;
    }
    if (!(outcome.error instanceof AgentError) && outcome.error instanceof Error && outcome.error.stack) {
      sendLog(id, outcome.error.stack, 'error');
    }
    send({ type: 'error', id, ...errorFields(outcome.error) });
  }

  function callTool(id: string, task: RunningTask, capability: string, payload: unknown, opts: AbortOptions) {
    if (task.finished) {
      return Promise.reject(new AgentError(AgentErrorCode.TASK_FINISHED, `task ${id} has already been answered`));
    }
    if (typeof capability !== 'string' || capability.length < 1 || capability.length > MAX_CAPABILITY_LENGTH) {
      return Promise.reject(new RangeError(`capability must be 1..${MAX_CAPABILITY_LENGTH} characters`));
    }
    const signal = opts.signal ? AbortSignal.any([opts.signal, task.controller.signal]) : task.controller.signal;
    if (signal.aborted) return Promise.reject(signal.reason);
    const callId = `call-${++nextCall}`;
    let line: string;
    try {
      line = encodeAgentMessage({
        type: 'tool_call',
        id: callId,
        task: id,
        capability,
        ...(payload === undefined ? {} : { payload }),
      });
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<unknown>((resolve, reject) => {
      const onAbort = () => settle(() => reject(signal.reason));
      const settle = (then: () => void) => {
        signal.removeEventListener('abort', onAbort);
        calls.delete(callId);
        task.calls.delete(callId);
        then();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      calls.set(callId, {
        task: id,
        resolve: (value) => settle(() => resolve(value)),
        reject: (err) => settle(() => reject(err)),
        drop: () => settle(() => undefined),
      });
      task.calls.add(callId);
      if (!writeLine(line, `tool_call ${callId}`)) {
        const why = outputBroken ? 'the output is closed' : `it is longer than ${MAX_LINE_BYTES} bytes`;
        calls.get(callId)?.reject(new AgentError(AgentErrorCode.AGENT_ERROR, `tool_call not sent: ${why}`));
      }
    });
  }

  function startTask(input: AgentTaskInput): void {
    const id = input.id;
    if (tasks.has(id)) {
      warn(`task ${id} is already running; the duplicate is ignored`);
      return;
    }
    const task: RunningTask = { controller: new AbortController(), calls: new Set(), finished: false };
    tasks.set(id, task);
    const ctx: TaskContext = {
      task: input,
      signal: task.controller.signal,
      hello,
      progress(pct, message) {
        if (task.finished || !Number.isFinite(pct)) return;
        const progress = Math.min(100, Math.max(0, pct));
        const text = message?.slice(0, MAX_PROGRESS_MESSAGE_LENGTH);
        send({ type: 'progress', id, progress, ...(text === undefined ? {} : { message: text }) });
      },
      log(message, level) {
        if (!task.finished) sendLog(id, String(message), level);
      },
      callTool: (capability, payload, opts = {}) => callTool(id, task, capability, payload, opts),
    };
    void (async () => {
      let outcome: { ok: true; value: unknown } | { ok: false; error: unknown };
      try {
        outcome = { ok: true, value: await options.handle(ctx) };
      } catch (error) {
        outcome = { ok: false, error };
      }
      task.finished = true;
      tasks.delete(id);
      // A call the handler left behind is dropped, not rejected: nobody may be listening, and an
      // unhandled rejection would take the whole agent down. A late tool_result is then ignored.
      for (const callId of [...task.calls]) calls.get(callId)?.drop();
      answer(id, task, outcome);
      if (stopping && tasks.size === 0) resolveDone();
    })();
  }

  function onMessage(message: NodeMessage): void {
    switch (message.type) {
      case 'hello':
        hello = message;
        if (message.protocol !== PROTOCOL_VERSION) {
          warn(`the node speaks protocol ${message.protocol}, this SDK ${PROTOCOL_VERSION}`);
        }
        send({
          type: 'ready',
          protocol: PROTOCOL_VERSION,
          ...(options.capabilities === undefined ? {} : { capabilities: options.capabilities }),
        });
        return;
      case 'task':
        if (message.task.id === '' || message.task.id.length > MAX_ID_LENGTH) {
          warn(`task id ${JSON.stringify(message.task.id.slice(0, 300))} is not 1..${MAX_ID_LENGTH} characters`);
          return;
        }
        if (stopping) {
          send({
            type: 'error',
            id: message.task.id,
            code: AgentErrorCode.CANCELLED,
            message: 'the agent is stopping',
          });
          return;
        }
        startTask(message.task);
        return;
      case 'cancel':
        // An unknown id is a task already answered: the cancel crossed our answer.
        tasks
          .get(message.id)
          ?.controller.abort(new AgentError(AgentErrorCode.CANCELLED, message.reason || 'cancelled'));
        return;
      case 'ping':
        send({ type: 'pong', seq: message.seq });
        return;
      case 'tool_result': {
        const call = calls.get(message.id);
        if (call === undefined) {
          warn(`tool_result for unknown call ${JSON.stringify(message.id)} ignored`);
        } else if (message.ok) {
          call.resolve(message.result);
        } else {
          call.reject(new AgentError(message.error.code, message.error.message));
        }
        return;
      }
    }
  }

  const lines = createInterface({ input, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (line.trim() === '') return;
    const parsed = parseNodeLine(line);
    if (parsed.ok) {
      onMessage(parsed.message);
      return;
    }
    warn(`ignoring a line from the node (${parsed.reason}): ${line.slice(0, 200)}`);
    if (parsed.taskId !== undefined && parsed.taskId.length <= MAX_ID_LENGTH && !tasks.has(parsed.taskId)) {
      send({
        type: 'error',
        id: parsed.taskId,
        code: AgentErrorCode.INVALID_TASK,
        message: parsed.reason,
        retryable: false,
      });
    }
  });

  function shutdown(reason: string): void {
    if (stopping) return;
    stopping = true;
    lines.close();
    // Aborting a task also rejects its waiting tool calls (with the same reason).
    for (const task of tasks.values()) task.controller.abort(new AgentError(AgentErrorCode.CANCELLED, reason));
    if (tasks.size === 0) resolveDone();
  }
  lines.on('close', () => shutdown('the agent is stopping: its input ended'));
  input.on('error', (err: Error) => {
    warn(`input failed: ${err.message}`);
    shutdown('the agent is stopping: its input failed');
  });
  output.on('error', (err: Error) => {
    // Typically EPIPE: the node is gone, so nobody can read an answer any more.
    outputBroken = true;
    warn(`output failed: ${err.message}`);
    shutdown('the agent is stopping: its output failed');
  });

  return {
    done,
    stop: () => shutdown('the agent is stopping'),
    log: (message, level) => sendLog(undefined, String(message), level),
  };
}
