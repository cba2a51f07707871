import { MeshError } from '../util/errors.js';

export const ReplicaErrorCode = {
  /** No schema is registered for the key's prefix. */
  UNKNOWN_SCHEMA: 'UNKNOWN_SCHEMA',
  /** A delta or record on the wire is malformed. */
  INVALID_DELTA: 'INVALID_DELTA',
  /** A higher layer's policy refused the change (ownership, transitions, caps, origin). */
  POLICY_REJECTED: 'POLICY_REJECTED',
  /**
   * A local write refused before it was made: the store is this far behind (a disk slower than
   * the writes offered). Nothing was changed; retry later.
   */
  OVERLOADED: 'OVERLOADED',
} as const;
export type ReplicaErrorCode = (typeof ReplicaErrorCode)[keyof typeof ReplicaErrorCode];

export class ReplicaError extends MeshError<ReplicaErrorCode> {}

/**
 * Thrown by a policy hook to refuse a change. `reason` is a short stable slug used as a counter
 * label (`not_owner`, `spec_immutable`, `status_regression`, ...).
 */
export class PolicyError extends ReplicaError {
  constructor(
    readonly reason: string,
    message: string,
    details?: Record<string, unknown>,
  ) {
    super(ReplicaErrorCode.POLICY_REJECTED, message, details === undefined ? {} : { details: { reason, ...details } });
  }
}
