import { MeshError } from '../util/errors.js';

/** Stable codes of every error the networking layer raises. */
export const NetErrorCode = {
  /** A frame's declared length exceeds the negotiated maximum (sender or receiver side). */
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
  /** A pubsub payload exceeds the configured maximum message size. */
  MESSAGE_TOO_LARGE: 'MESSAGE_TOO_LARGE',
  /** An operation did not complete before its deadline. */
  STREAM_TIMEOUT: 'STREAM_TIMEOUT',
  /** The stream ended (remote close, reset or connection loss) before the operation completed. */
  STREAM_CLOSED: 'STREAM_CLOSED',
  /** The caller aborted the operation (an AbortSignal fired with a reason other than a timeout). */
  ABORTED: 'ABORTED',
  /** The remote sent bytes that do not follow the framing rules (bad varint, truncated frame). */
  PROTOCOL_ERROR: 'PROTOCOL_ERROR',
  /** The remote does not speak the requested protocol. */
  UNSUPPORTED_PROTOCOL: 'UNSUPPORTED_PROTOCOL',
  /** A per-connection stream limit (maxInboundStreams / maxOutboundStreams) was hit. */
  TOO_MANY_STREAMS: 'TOO_MANY_STREAMS',
  /** No connection to the peer could be established. */
  DIAL_FAILED: 'DIAL_FAILED',
  /** The connection gater refused the peer. */
  DENIED: 'DENIED',
  /** libp2p could not listen on a configured address (in use, unsupported, not local). */
  LISTEN_FAILED: 'LISTEN_FAILED',
  /** The host is stopped (or stopping). */
  HOST_STOPPED: 'HOST_STOPPED',
  /** A multiaddr or peer id string could not be parsed. */
  INVALID_ADDRESS: 'INVALID_ADDRESS',
  /** Identity key bytes could not be decoded. */
  INVALID_IDENTITY: 'INVALID_IDENTITY',
  /** A pre-shared key is not in the libp2p pnet key-file format. */
  INVALID_PSK: 'INVALID_PSK',
  /** Publishing a pubsub message failed. */
  PUBLISH_FAILED: 'PUBLISH_FAILED',
  /** An inbound session handler threw something that is not a NetError. */
  HANDLER_FAILED: 'HANDLER_FAILED',
  /** A handler is already registered for the protocol. */
  ALREADY_HANDLED: 'ALREADY_HANDLED',
} as const;

export type NetErrorCode = (typeof NetErrorCode)[keyof typeof NetErrorCode];

export class NetError extends MeshError<NetErrorCode> {}

export function isNetError(err: unknown, code?: NetErrorCode): err is NetError {
  return err instanceof NetError && (code === undefined || err.code === code);
}

function errorName(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'name' in err && typeof err.name === 'string') return err.name;
  return undefined;
}

/**
 * The error to raise when an AbortSignal fires: STREAM_TIMEOUT for `AbortSignal.timeout()` (reason is a
 * DOMException named TimeoutError) or a libp2p TimeoutError, ABORTED otherwise. A NetError reason is kept.
 */
export function errorFromSignal(signal: AbortSignal, what: string): NetError {
  const reason: unknown = signal.reason;
  if (reason instanceof NetError) return reason;
  if (errorName(reason) === 'TimeoutError') {
    return new NetError('STREAM_TIMEOUT', `${what} timed out`, { cause: reason });
  }
  return new NetError('ABORTED', `${what} aborted`, { cause: reason });
}

/**
 * Map an error thrown by libp2p onto a NetError. `signal` is the signal the operation ran under; when it
 * has fired its reason decides between STREAM_TIMEOUT and ABORTED. Unrecognised errors get `fallback`.
 */
export function toNetError(
  err: unknown,
  what: string,
  signal?: AbortSignal,
  fallback: NetErrorCode = 'DIAL_FAILED',
): NetError {
  if (err instanceof NetError) return err;
  if (signal?.aborted === true) return errorFromSignal(signal, what);
  const name = errorName(err);
  const message = err instanceof Error ? err.message : String(err);
  switch (name) {
    case 'TimeoutError':
      return new NetError('STREAM_TIMEOUT', `${what} timed out`, { cause: err });
    case 'AbortError':
      return new NetError('ABORTED', `${what} aborted`, { cause: err });
    case 'UnsupportedProtocolError':
      return new NetError('UNSUPPORTED_PROTOCOL', `${what}: ${message}`, { cause: err });
    case 'TooManyOutboundProtocolStreamsError':
    case 'TooManyInboundProtocolStreamsError':
      return new NetError('TOO_MANY_STREAMS', `${what}: ${message}`, { cause: err });
    case 'StreamResetError':
    case 'StreamAbortedError':
    case 'StreamStateError':
    case 'StreamClosedError':
    case 'StreamBufferError':
    case 'ConnectionClosedError':
    case 'ConnectionClosingError':
    case 'MuxerClosedError':
    case 'UnexpectedEOFError':
      return new NetError('STREAM_CLOSED', `${what}: ${message}`, { cause: err });
    case 'DialDeniedError':
    case 'ConnectionDeniedError':
    case 'ConnectionInterceptedError':
      return new NetError('DENIED', `${what}: ${message}`, { cause: err });
    case 'NotStartedError':
      return new NetError('HOST_STOPPED', `${what}: host is not running`, { cause: err });
    case 'InvalidMultiaddrError':
    case 'InvalidPeerIdError':
    case 'InvalidParametersError':
      return new NetError('INVALID_ADDRESS', `${what}: ${message}`, { cause: err });
    default:
      return new NetError(fallback, `${what}: ${message}`, { cause: err });
  }
}
