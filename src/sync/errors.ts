import { MeshError } from '../util/errors.js';

export const SyncErrorCode = {
  /** A peer sent a message that is not valid for the sync protocol at this point. */
  PROTOCOL_ERROR: 'SYNC_PROTOCOL_ERROR',
  /** A gossip delta's origin is not the peer that signed the message. */
  ORIGIN_MISMATCH: 'ORIGIN_MISMATCH',
  /** The peer speaks an incompatible protocol version. */
  VERSION_MISMATCH: 'SYNC_VERSION_MISMATCH',
} as const;
export type SyncErrorCode = (typeof SyncErrorCode)[keyof typeof SyncErrorCode];

export class SyncError extends MeshError<SyncErrorCode> {}

export function protocolError(message: string, cause?: unknown): SyncError {
  return new SyncError(SyncErrorCode.PROTOCOL_ERROR, message, cause === undefined ? {} : { cause });
}
