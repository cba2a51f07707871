import { MeshError } from '../util/errors.js';

/** Stable codes of agent control across the mesh (the HTTP API maps them to statuses). */
export const ControlErrorCode = {
  /** No agent of that id in the replicated registry (or it was removed). */
  AGENT_NOT_FOUND: 'AGENT_NOT_FOUND',
  /** The agent's hosting node is dead to the failure detector, or cannot be dialled. */
  AGENT_NODE_UNREACHABLE: 'AGENT_NODE_UNREACHABLE',
  /** The hosting node took the request but did not answer in time. */
  AGENT_CONTROL_TIMEOUT: 'AGENT_CONTROL_TIMEOUT',
  /** The hosting node answered with something that is not a valid answer, or failed inside. */
  AGENT_CONTROL_FAILED: 'AGENT_CONTROL_FAILED',
} as const;
export type ControlErrorCode = (typeof ControlErrorCode)[keyof typeof ControlErrorCode];

export class ControlError extends MeshError<ControlErrorCode> {}

export function isControlError(err: unknown, code?: ControlErrorCode): err is ControlError {
  return err instanceof ControlError && (code === undefined || err.code === code);
}
