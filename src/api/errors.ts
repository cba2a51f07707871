import { AgentError, type AgentErrorCode } from '../agents/errors.js';
import { ClockSkewError } from '../membership/clock-sync.js';
import { ControlError, type ControlErrorCode } from '../control/errors.js';
import { RegistryError } from '../registry/errors.js';
import { PolicyError, ReplicaError, ReplicaErrorCode } from '../replica/errors.js';
import { StoreError } from '../store/errors.js';
import { TaskError } from '../tasks/errors.js';
import { MeshError } from '../util/errors.js';

/** Stable codes of the errors the HTTP layer itself produces (domain errors keep their own codes). */
export const ApiErrorCode = {
  /** The body is not valid JSON (or is empty while declared as JSON). */
  BAD_JSON: 'BAD_JSON',
  /** A body, query or path parameter does not match its schema. */
  INVALID_INPUT: 'INVALID_INPUT',
  /** No such route, or no such agent or task. */
  NOT_FOUND: 'NOT_FOUND',
  /** The request body exceeds the server's body limit. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** The body's content type is not JSON. */
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  /** Missing or wrong bearer token. */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** A replica policy refused the change (ownership, immutability, caps); `reason` says which. */
  POLICY_REJECTED: 'POLICY_REJECTED',
  /**
   * Too many writes in flight, or the store too far behind: nothing was changed, retry after the
   * `Retry-After` header's seconds.
   */
  OVERLOADED: 'OVERLOADED',
  /** Anything unexpected; details stay in the server log. */
  INTERNAL: 'INTERNAL',
  /** Start-up refused: the API would listen beyond loopback without a token. */
  TOKEN_REQUIRED: 'TOKEN_REQUIRED',
  /** Start-up refused: bad server options (port, body limit, token). */
  INVALID_OPTIONS: 'INVALID_OPTIONS',
  /** Start-up failed: the server could not listen on the host and port. */
  LISTEN_FAILED: 'LISTEN_FAILED',
} as const;
export type ApiErrorCode = (typeof ApiErrorCode)[keyof typeof ApiErrorCode];

export const API_HTTP_STATUS: Readonly<Record<ApiErrorCode, number>> = {
  BAD_JSON: 400,
  INVALID_INPUT: 400,
  NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNAUTHORIZED: 401,
  POLICY_REJECTED: 409,
  OVERLOADED: 429,
  INTERNAL: 500,
  TOKEN_REQUIRED: 500,
  INVALID_OPTIONS: 500,
  LISTEN_FAILED: 500,
};

export class ApiError extends MeshError<ApiErrorCode> {
  get status(): number {
    return API_HTTP_STATUS[this.code];
  }
}

export function isApiError(err: unknown): err is ApiError {
  return err instanceof ApiError;
}

/** The body of every error response. */
export interface ErrorBody {
  error: {
    code: string;
    message: string;
    /** For POLICY_REJECTED: the policy's reason slug (`not_owner`, `spec_immutable`, ...). */
    reason?: string;
    details?: Record<string, unknown>;
  };
}

export interface ErrorResponse {
  status: number;
  body: ErrorBody;
  /** True for 5xx: the cause belongs in the server log, not in the response. */
  internal: boolean;
}

/** Fastify's own error codes, mapped onto ours. */
const FASTIFY_CODES: Readonly<Record<string, ApiErrorCode>> = {
  FST_ERR_CTP_INVALID_JSON_BODY: ApiErrorCode.BAD_JSON,
  FST_ERR_CTP_EMPTY_JSON_BODY: ApiErrorCode.BAD_JSON,
  FST_ERR_CTP_BODY_TOO_LARGE: ApiErrorCode.PAYLOAD_TOO_LARGE,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: ApiErrorCode.UNSUPPORTED_MEDIA_TYPE,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: ApiErrorCode.INVALID_INPUT,
  FST_ERR_BAD_URL: ApiErrorCode.INVALID_INPUT,
  FST_ERR_NOT_FOUND: ApiErrorCode.NOT_FOUND,
};

function body(code: string, message: string, extra: Omit<ErrorBody['error'], 'code' | 'message'> = {}): ErrorBody {
  return { error: { code, message, ...extra } };
}

/**
 * The store's errors that reach the API through a write: the node could not make it durable, so
 * it was not acknowledged. A full disk is 507 Insufficient Storage; other I/O failures (and a
 * store closing under the request) are 503: retry later or elsewhere.
 */
const STORE_HTTP_STATUS: Readonly<Record<string, number>> = {
  STORE_FULL: 507,
  STORE_IO: 503,
  STORE_CLOSED: 503,
};

/** The HTTP status of the agent host's errors that reach the API (agent control). */
const AGENT_HTTP_STATUS: Partial<Record<AgentErrorCode, number>> = {
  NOT_LOCAL: 404,
  INVALID_STATE: 409,
  SPAWN_FAILED: 502,
  HOOK_FAILED: 502,
};

/**
 * The HTTP status of mesh-wide agent control's errors. Not internal errors, whatever the status:
 * the client needs to know the hosting node is unreachable (503) or slow (504), and which.
 */
const CONTROL_HTTP_STATUS: Record<ControlErrorCode, number> = {
  AGENT_NOT_FOUND: 404,
  AGENT_NODE_UNREACHABLE: 503,
  AGENT_CONTROL_TIMEOUT: 504,
  AGENT_CONTROL_FAILED: 502,
};

function internal(): ErrorResponse {
  return { status: 500, body: body(ApiErrorCode.INTERNAL, 'internal error'), internal: true };
}

/**
 * Maps anything a handler, hook or Fastify itself throws to a status and an error body:
 * typed API and domain errors by their code, policy refusals to 409 with their reason, Fastify's
 * client errors by code, and everything else to a bare 500 (no message, no stack).
 */
export function toErrorResponse(err: unknown): ErrorResponse {
  if (err instanceof ApiError) {
    if (err.status >= 500) return internal();
    const extra = err.details === undefined ? {} : { details: err.details };
    return { status: err.status, body: body(err.code, err.message, extra), internal: false };
  }
  if (err instanceof RegistryError || err instanceof TaskError) {
    const extra = err.details === undefined ? {} : { details: err.details };
    return { status: err.status, body: body(err.code, err.message, extra), internal: false };
  }
  if (err instanceof AgentError) {
    const status = AGENT_HTTP_STATUS[err.code] ?? 500;
    if (status >= 500) return internal();
    const extra = err.details === undefined ? {} : { details: err.details };
    return { status, body: body(err.code, err.message, extra), internal: false };
  }
  if (err instanceof ClockSkewError) {
    const extra = err.details === undefined ? {} : { details: err.details };
    return { status: 503, body: body(err.code, err.message, extra), internal: false };
  }
  if (err instanceof StoreError && STORE_HTTP_STATUS[err.code] !== undefined) {
    const message =
      err.code === 'STORE_FULL'
        ? 'the node is out of disk space; the write was not acknowledged'
        : 'the node cannot write to its store right now; the write was not acknowledged';
    return { status: STORE_HTTP_STATUS[err.code] as number, body: body(err.code, message), internal: false };
  }
  if (err instanceof ControlError) {
    const extra = err.details === undefined ? {} : { details: err.details };
    return { status: CONTROL_HTTP_STATUS[err.code], body: body(err.code, err.message, extra), internal: false };
  }
  if (err instanceof PolicyError) {
    return {
      status: 409,
      body: body(ApiErrorCode.POLICY_REJECTED, err.message, { reason: err.reason }),
      internal: false,
    };
  }
  if (err instanceof ReplicaError && err.code === ReplicaErrorCode.OVERLOADED) {
    const extra = err.details === undefined ? {} : { details: err.details };
    return { status: 429, body: body(ApiErrorCode.OVERLOADED, err.message, extra), internal: false };
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const mapped = typeof code === 'string' ? FASTIFY_CODES[code] : undefined;
    if (mapped !== undefined) {
      return { status: API_HTTP_STATUS[mapped], body: body(mapped, err.message), internal: false };
    }
    // Any other client error Fastify raises (4xx with an FST_ code): keep its status and message.
    const status = (err as { statusCode?: unknown }).statusCode;
    if (
      typeof code === 'string' &&
      code.startsWith('FST_') &&
      typeof status === 'number' &&
      status >= 400 &&
      status < 500
    ) {
      return { status, body: body(ApiErrorCode.INVALID_INPUT, err.message), internal: false };
    }
  }
  return internal();
}
