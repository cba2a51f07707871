import { MeshError } from '../util/errors.js';

export const CrdtErrorCode = {
  /** A wire value does not have the shape of the CRDT state it claims to be. */
  INVALID_STATE: 'CRDT_INVALID_STATE',
  /** A remote clock reading is further in the future than the configured bound. */
  CLOCK_DRIFT: 'CLOCK_DRIFT',
  /** A state or delta exceeds a size or cardinality cap. */
  LIMIT_EXCEEDED: 'CRDT_LIMIT_EXCEEDED',
} as const;
export type CrdtErrorCode = (typeof CrdtErrorCode)[keyof typeof CrdtErrorCode];

export class CrdtError extends MeshError<CrdtErrorCode> {}

export class InvalidStateError extends CrdtError {
  constructor(what: string, details?: Record<string, unknown>) {
    super(CrdtErrorCode.INVALID_STATE, `invalid ${what}`, details === undefined ? {} : { details });
  }
}

export class ClockDriftError extends CrdtError {
  constructor(remoteWallMs: number, localWallMs: number, maxDriftMs: number) {
    super(
      CrdtErrorCode.CLOCK_DRIFT,
      `remote clock is ${remoteWallMs - localWallMs} ms ahead of ours (bound ${maxDriftMs} ms)`,
      { details: { remoteWallMs, localWallMs, maxDriftMs } },
    );
  }
}

export class LimitExceededError extends CrdtError {
  constructor(what: string, limit: number, actual: number) {
    super(CrdtErrorCode.LIMIT_EXCEEDED, `${what}: ${actual} exceeds the limit of ${limit}`, {
      details: { limit, actual },
    });
  }
}

export function invalid(what: string, details?: Record<string, unknown>): never {
  throw new InvalidStateError(what, details);
}
