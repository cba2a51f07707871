import { MeshError } from '../util/errors.js';

/** Stable codes of the agent host's errors; they cross the HTTP boundary and land in task errors. */
export const AgentErrorCode = {
  /** The agents file cannot be read or parsed, or a definition is malformed. */
  INVALID_DEFINITION: 'INVALID_DEFINITION',
  /** More agents than `--max-agents`. */
  TOO_MANY_AGENTS: 'TOO_MANY_AGENTS',
  /** The agent is not one this node runs (it may be hosted elsewhere, or be a plain record). */
  NOT_LOCAL: 'NOT_LOCAL',
  /** The action does not apply in the agent's current state (say, resume of a running agent). */
  INVALID_STATE: 'INVALID_STATE',
  /** The agent's process could not be started. */
  SPAWN_FAILED: 'SPAWN_FAILED',
  /** A persistent agent did not answer `hello` with `ready` in time. */
  READY_TIMEOUT: 'READY_TIMEOUT',
  /** A persistent agent did not answer a ping in time. */
  PING_TIMEOUT: 'PING_TIMEOUT',
  /** A line from an agent is not a protocol message. */
  PROTOCOL_ERROR: 'PROTOCOL_ERROR',
  /** An agent reported on a task it does not run. */
  UNKNOWN_TASK: 'UNKNOWN_TASK',
  /** An agent's line, result or output exceeded its byte cap. */
  OUTPUT_TOO_LARGE: 'OUTPUT_TOO_LARGE',
  /** The agent's process exited while it ran the task. */
  AGENT_EXITED: 'AGENT_EXITED',
  /** An exec agent exited non-zero. */
  EXIT_NONZERO: 'EXIT_NONZERO',
  /** The task ran longer than the agent's `timeoutMs`. */
  TIMEOUT: 'TIMEOUT',
  /** The task was cancelled (or moved to another attempt or agent) while it ran. */
  CANCELLED: 'CANCELLED',
  /** A pre_task hook refused the task. */
  REFUSED: 'REFUSED',
  /** A hook could not run, timed out, or (startup) exited non-zero. */
  HOOK_FAILED: 'HOOK_FAILED',
  /** No tool of the MCP server matches the task. */
  NO_TOOL: 'NO_TOOL',
  /** The MCP tool answered with `isError`. */
  TOOL_ERROR: 'TOOL_ERROR',
  /** Until mesh-wide scheduling lands, an agent's tool_call cannot be served. */
  TOOL_CALLS_UNSUPPORTED: 'TOOL_CALLS_UNSUPPORTED',
  /** The node stopped (or was restarted) while the task ran. */
  INTERRUPTED: 'INTERRUPTED',
} as const;
export type AgentErrorCode = (typeof AgentErrorCode)[keyof typeof AgentErrorCode];

export class AgentError extends MeshError<AgentErrorCode> {}

export function isAgentError(err: unknown, code?: AgentErrorCode): err is AgentError {
  return err instanceof AgentError && (code === undefined || err.code === code);
}

/**
 * Why an execution failed, as the task's `error` records it: a code (the host's own, or the
 * agent's), a message, whether another attempt may succeed, and details (exit code, stderr tail).
 */
export class ExecutionError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ExecutionError';
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, retryable: this.retryable, ...this.details };
  }
}

/** Any rejection as an ExecutionError (unknown errors are retryable AGENT_ERRORs). */
export function toExecutionError(err: unknown): ExecutionError {
  if (err instanceof ExecutionError) return err;
  if (err instanceof AgentError) return new ExecutionError(err.code, err.message, true, err.details ?? {});
  return new ExecutionError('AGENT_ERROR', err instanceof Error ? err.message : String(err), true);
}
