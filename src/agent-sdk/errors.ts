/**
 * Errors an agent reports to its node. A task that fails answers `error` with a `code`, a `message`
 * and optionally `retryable` (see `docs/agent-protocol.md`); `AgentError` carries exactly those, so
 * throwing one from a task handler chooses what the node sees.
 */

/** The codes the SDK itself produces; an agent may use any other code (1..64 characters). */
export const AgentErrorCode = {
  /** The node cancelled the task (or the agent is stopping); the task's signal was aborted. */
  CANCELLED: 'CANCELLED',
  /** The handler threw something that is not an `AgentError`. */
  AGENT_ERROR: 'AGENT_ERROR',
  /** The result does not fit in one protocol line (1 MiB), or is not JSON-serializable. */
  RESULT_TOO_LARGE: 'RESULT_TOO_LARGE',
  /** The node does not yet route tool calls across the mesh (its `tool_result` says so). */
  TOOL_CALLS_UNSUPPORTED: 'TOOL_CALLS_UNSUPPORTED',
  /** A `task` message whose task has an id but wrong or missing fields. */
  INVALID_TASK: 'INVALID_TASK',
  /** `callTool` was used after the task had been answered. */
  TASK_FINISHED: 'TASK_FINISHED',
} as const;
export type AgentErrorCode = (typeof AgentErrorCode)[keyof typeof AgentErrorCode];

/** The most characters the protocol allows in an error code (protocol.ts `errorSchema`). */
export const MAX_ERROR_CODE_LENGTH = 64;

/** The `code`, `message` and `retryable` fields of an `error` message. */
export interface AgentErrorFields {
  code: string;
  message: string;
  retryable?: boolean;
}

/**
 * Thrown by a task handler to fail the task with a chosen code; also what `callTool` rejects with
 * when the node answers `ok: false`. A code outside 1..64 characters is sent as `AGENT_ERROR`.
 */
export class AgentError extends Error {
  readonly code: string;
  readonly retryable: boolean | undefined;

  constructor(code: string, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AgentError';
    this.code = code;
    this.retryable = options.retryable;
  }

  toJSON(): AgentErrorFields {
    return this.retryable === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, retryable: this.retryable };
  }
}

export function isAgentError(err: unknown): err is AgentError {
  return err instanceof AgentError;
}

/** What the node is told when a handler fails with `err`. */
export function errorFields(err: unknown): AgentErrorFields {
  if (isAgentError(err)) {
    const fields = err.toJSON();
    if (fields.code.length >= 1 && fields.code.length <= MAX_ERROR_CODE_LENGTH) return fields;
    return { ...fields, code: AgentErrorCode.AGENT_ERROR, message: `${fields.code}: ${fields.message}` };
  }
  return { code: AgentErrorCode.AGENT_ERROR, message: err instanceof Error ? err.message : String(err) };
}
