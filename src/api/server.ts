import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { isIPv4, isIPv6 } from 'node:net';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { type Logger, logger } from '../util/log.js';
import type { ApiBackend } from './backend.js';
import { ApiError, ApiErrorCode, toErrorResponse } from './errors.js';
import { ApiMetrics } from './metrics.js';
import { adminRoutes } from './routes/admin.js';
import { agentRoutes } from './routes/agents.js';
import { batchRoutes } from './routes/batch.js';
import { dashboardRoutes } from './routes/dashboard.js';
import type { RouteContext } from './routes/context.js';
import { eventRoutes } from './routes/events.js';
import { nodeRoutes } from './routes/node.js';
import { openApiRoutes } from './routes/openapi.js';
import { taskRoutes } from './routes/tasks.js';
import { DEFAULT_SSE_BUFFER_BYTES, DEFAULT_SSE_HEARTBEAT_MS } from './sse.js';

export const DEFAULT_BODY_LIMIT = 256 * 1024;
/** The largest body limit the server accepts as an option. */
export const MAX_BODY_LIMIT = 64 * 1024 * 1024;
const MAX_TOKEN_LENGTH = 4096;
export const DEFAULT_MAX_INFLIGHT_WRITES = 4096;
const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Seconds a client told OVERLOADED waits before it retries. */
const RETRY_AFTER_SECONDS = 1;

export interface ApiServerOptions {
  host: string;
  /** 0 picks a free port (see the returned url). */
  port: number;
  /** Bearer token every route but `GET /v1/health` requires; mandatory off loopback. */
  token?: string | undefined;
  /** Largest accepted request body in bytes (default 256 KiB); larger gets 413. */
  bodyLimit?: number | undefined;
  log?: Logger | undefined;
  /**
   * Write requests (POST, PUT, PATCH, DELETE) in progress past which new ones get 429 OVERLOADED
   * with Retry-After, instead of queueing in memory without bound (default 4096).
   */
  maxInflightWrites?: number | undefined;
  /**
   * Event-stream tuning (defaults: 1 MiB per-client buffer, 15 s heartbeat; a replay window of
   * 10,000 events / 8 MiB kept 10 min after the last client left).
   */
  sse?:
    | {
        maxBufferBytes?: number | undefined;
        heartbeatMs?: number | undefined;
        windowEvents?: number | undefined;
        windowBytes?: number | undefined;
        retainIdleMs?: number | undefined;
      }
    | undefined;
}

export interface ApiServer {
  /** Base URL, e.g. `http://127.0.0.1:7070` (no trailing slash). */
  readonly url: string;
  readonly port: number;
  /** Ends open event streams and stops the server. Idempotent. */
  close(): Promise<void>;
}

/**
 * Whether `host` is a loopback address: `localhost`, 127.0.0.0/8, `::1` (any spelling, bracketed
 * or not) or an IPv4-mapped 127.0.0.0/8. Anything else (names, wildcards, LAN addresses) is not.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  if (isIPv4(h)) return h.split('.')[0] === '127';
  if (isIPv6(h) && !h.includes('%')) {
    // The WHATWG URL parser gives IPv6 literals their canonical (compressed, hex) form.
    const canonical = new URL(`http://[${h}]/`).hostname.slice(1, -1);
    return canonical === '::1' || /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(canonical);
  }
  return false;
}

/** The guard of start-up: a token is required whenever the API listens beyond loopback. */
export function tokenRequired(host: string): boolean {
  return !isLoopbackHost(host);
}

function optionsError(message: string): ApiError {
  return new ApiError(ApiErrorCode.INVALID_OPTIONS, message);
}

function checkOptions(options: ApiServerOptions): void {
  if (typeof options.host !== 'string' || options.host.trim().length === 0) throw optionsError('host is required');
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    throw optionsError(`port must be an integer from 0 to 65535, got ${String(options.port)}`);
  }
  const { token, bodyLimit } = options;
  if (token !== undefined) {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw optionsError(`token must be 1-${MAX_TOKEN_LENGTH} characters`);
    }
    if (!/^[\x21-\x7e]+$/.test(token)) throw optionsError('token must be printable ASCII without spaces');
  }
  if (bodyLimit !== undefined && (!Number.isInteger(bodyLimit) || bodyLimit < 1 || bodyLimit > MAX_BODY_LIMIT)) {
    throw optionsError(`bodyLimit must be an integer from 1 to ${MAX_BODY_LIMIT}`);
  }
  if (token === undefined && tokenRequired(options.host)) {
    throw new ApiError(
      ApiErrorCode.TOKEN_REQUIRED,
      `the API would listen on ${options.host}, beyond loopback: a bearer token is required`,
      { details: { host: options.host } },
    );
  }
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * A constant-time bearer check: both sides are hashed to 32 bytes first, so neither the
 * comparison nor an early length mismatch says anything about the token.
 */
export function bearerChecker(token: string): (authorization: string | undefined) => boolean {
  const expected = sha256(token);
  return (authorization) => {
    if (typeof authorization !== 'string') return false;
    const m = /^Bearer +(\S+) *$/i.exec(authorization);
    if (m === null) return false;
    return timingSafeEqual(sha256(m[1] ?? ''), expected);
  };
}

const isPublic = (request: FastifyRequest): boolean =>
  (request.routeOptions.url === '/v1/health' && (request.method === 'GET' || request.method === 'HEAD')) ||
  request.routeOptions.config?.public === true;

function send(reply: FastifyReply, err: unknown): void {
  const r = toErrorResponse(err);
  void reply.code(r.status).send(r.body);
}

/**
 * The API as a Fastify instance, routes registered, not listening (createApiServer listens).
 * Throws INVALID_OPTIONS or TOKEN_REQUIRED for options it refuses.
 */
export function buildApi(backend: ApiBackend, options: ApiServerOptions): FastifyInstance {
  checkOptions(options);
  const log = options.log ?? logger('mesh:api');
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the generic parameters differ only in their defaults.
    loggerInstance: log as FastifyBaseLogger,
    // Requests are counted in metrics; errors are logged by the error handler below.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1024 },
    // Errors Fastify raises before routing (malformed URL encoding): same shape as the rest.
    frameworkErrors: (err, _request, reply) => send(reply, err),
  });
  // JSON only: any other body type gets 415 rather than reaching a handler as a string.
  app.removeContentTypeParser('text/plain');

  const metrics = new ApiMetrics(() => backend.metrics());
  const ctx: RouteContext = {
    backend,
    metrics,
    log,
    sse: {
      maxBufferBytes: options.sse?.maxBufferBytes ?? DEFAULT_SSE_BUFFER_BYTES,
      heartbeatMs: options.sse?.heartbeatMs ?? DEFAULT_SSE_HEARTBEAT_MS,
    },
    eventLog: {
      ...(options.sse?.windowEvents !== undefined ? { maxEvents: options.sse.windowEvents } : {}),
      ...(options.sse?.windowBytes !== undefined ? { maxBytes: options.sse.windowBytes } : {}),
      ...(options.sse?.retainIdleMs !== undefined ? { retainIdleMs: options.sse.retainIdleMs } : {}),
    },
  };

  if (options.token !== undefined) {
    const authorized = bearerChecker(options.token);
    app.addHook('onRequest', async (request) => {
      if (isPublic(request) || authorized(request.headers.authorization)) return;
      throw new ApiError(ApiErrorCode.UNAUTHORIZED, 'missing or invalid bearer token');
    });
  }

  // Back-pressure: a bound on writes in progress. Each one holds a request, a body and a place in
  // the store's queue; past the bound a client learns at once that it should slow down.
  const maxInflightWrites = options.maxInflightWrites ?? DEFAULT_MAX_INFLIGHT_WRITES;
  let inflightWrites = 0;
  app.addHook('onRequest', async (request, reply) => {
    if (!WRITE_METHODS.has(request.method)) return;
    if (inflightWrites >= maxInflightWrites) {
      throw new ApiError(
        ApiErrorCode.OVERLOADED,
        `${inflightWrites} writes in progress; retry in ${RETRY_AFTER_SECONDS} s`,
        { details: { inflight: inflightWrites, max: maxInflightWrites } },
      );
    }
    inflightWrites++;
    reply.raw.once('close', () => inflightWrites--);
  });

  app.addHook('onResponse', async (request, reply) => {
    metrics.observeRequest(
      request.method,
      request.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
  });

  app.setErrorHandler((err, request, reply) => {
    const r = toErrorResponse(err);
    if (r.internal) {
      request.log.error({ err, method: request.method, url: request.url }, 'request failed');
    } else {
      request.log.debug({ code: r.body.error.code, method: request.method, url: request.url }, r.body.error.message);
    }
    if (r.status === 401) void reply.header('www-authenticate', 'Bearer');
    if (r.status === 429) void reply.header('retry-after', String(RETRY_AFTER_SECONDS));
    return reply.code(r.status).send(r.body);
  });

  app.setNotFoundHandler((request, reply) => {
    send(reply, new ApiError(ApiErrorCode.NOT_FOUND, `no route ${request.method} ${request.url.split('?')[0]}`));
  });

  // First: it records every route registered after it, for the OpenAPI document.
  const describeRoutes = openApiRoutes(app, ctx, { auth: options.token !== undefined });
  nodeRoutes(app, ctx);
  agentRoutes(app, ctx);
  taskRoutes(app, ctx);
  batchRoutes(app, ctx);
  const streams = eventRoutes(app, ctx);
  if (backend.faults !== undefined) adminRoutes(app, ctx, backend.faults);
  describeRoutes();
  // Not part of the JSON API (and so not in its OpenAPI document): the dashboard's page and assets.
  dashboardRoutes(app, ctx);

  // Connections that have not sent a request yet (clients open them ahead of time) have no
  // response to wait for, but would hold close() until the client's idle timeout: track them.
  const fresh = new Set<Socket>();
  let closing = false;
  app.server.on('connection', (socket: Socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    fresh.add(socket);
    socket.once('close', () => fresh.delete(socket));
  });
  app.server.on('request', (req: IncomingMessage) => fresh.delete(req.socket));

  app.addHook('preClose', async () => {
    closing = true;
    // Event streams never end on their own: end them so that close() does not wait forever.
    for (const conn of [...streams]) conn.close();
    for (const socket of fresh) socket.destroy();
  });
  return app;
}

function urlOf(host: string, address: AddressInfo): string {
  const h = host.trim().replace(/^\[(.*)\]$/, '$1');
  let shown: string;
  if (h === 'localhost') shown = 'localhost';
  else if (address.address === '0.0.0.0') shown = '127.0.0.1';
  else if (address.address === '::') shown = '::1';
  else shown = address.address;
  return `http://${isIPv6(shown) ? `[${shown}]` : shown}:${address.port}`;
}

/**
 * Starts the HTTP API (JSON, under /v1) over `backend`. Refuses to start beyond loopback without a
 * token (TOKEN_REQUIRED); LISTEN_FAILED when the address cannot be bound.
 */
export async function createApiServer(backend: ApiBackend, options: ApiServerOptions): Promise<ApiServer> {
  const app = buildApi(backend, options);
  try {
    await app.listen({ host: options.host, port: options.port });
  } catch (err) {
    await app.close().catch(() => {});
    throw new ApiError(
      ApiErrorCode.LISTEN_FAILED,
      `cannot listen on ${options.host}:${options.port}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const address = app.server.address() as AddressInfo;
  const url = urlOf(options.host, address);
  let closing: Promise<void> | undefined;
  return {
    url,
    port: address.port,
    close: () => (closing ??= app.close()),
  };
}
