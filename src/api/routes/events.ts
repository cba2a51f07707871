import type { FastifyInstance } from 'fastify';
import type { MeshEvent } from '../backend.js';
import { EVENT_KINDS, type EventKind, eventsQuerySchema } from '../schemas.js';
import { SseConnection } from '../sse.js';
import { parseInput, type RouteContext } from './context.js';

/**
 * `GET /v1/events`: a server-sent-event stream with one event per record change (event name =
 * kind, data = the MeshEvent as JSON), optionally only some kinds. Returns the set of open
 * connections so the server can end them when it closes.
 */
export function eventRoutes(app: FastifyInstance, ctx: RouteContext): Set<SseConnection> {
  const { backend, metrics, log, sse } = ctx;
  const open = new Set<SseConnection>();

  // No automatic HEAD twin: a HEAD request must not open a stream that never ends.
  app.get('/v1/events', { exposeHeadRoute: false }, async (request, reply) => {
    const q = parseInput(eventsQuerySchema, request.query, 'query');
    const kinds: ReadonlySet<EventKind> = new Set(q.kind ?? EVENT_KINDS);
    const started = performance.now();

    reply.hijack();
    const res = reply.raw;
    // The stream owns its connection: once it ends, the socket closes rather than going back to a
    // keep-alive pool (where closing the server would have to wait for the client's idle timeout).
    res.shouldKeepAlive = false;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
    });

    // Filled in once subscribed; the connection may close before that (a client already gone).
    const subscription: { off?: () => void } = {};
    const conn = new SseConnection(res, {
      ...sse,
      onClose: (reason) => {
        subscription.off?.();
        open.delete(conn);
        metrics.sseClients.dec();
        if (reason === 'slow') {
          metrics.sseDropped.inc();
          log.warn({ reqId: request.id }, 'event stream client dropped: too slow');
        }
        log.debug({ reqId: request.id, reason }, 'event stream closed');
      },
    });
    open.add(conn);
    metrics.sseClients.inc();
    // A hijacked reply skips onResponse: count the stream here, as opened.
    metrics.observeRequest('GET', '/v1/events', 200, (performance.now() - started) / 1000);

    subscription.off = backend.onEvent((event: MeshEvent) => {
      if (!kinds.has(event.kind)) return;
      let data: string;
      try {
        data = JSON.stringify(event);
      } catch (err) {
        log.error({ err, kind: event.kind, id: event.id }, 'event is not serializable; skipped');
        return;
      }
      if (conn.send(event.kind, data)) metrics.sseEvents.inc();
    });
    // The client may be gone already (its 'close' fired before we listened): do not leak the listener.
    if (res.destroyed || res.socket === null || res.socket.destroyed) {
      conn.close();
      return;
    }
    // Flushes the headers: the client knows it is subscribed once it sees them.
    conn.comment('connected');
  });

  return open;
}
