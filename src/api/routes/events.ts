import type { FastifyInstance } from 'fastify';
import { ApiError, ApiErrorCode } from '../errors.js';
import { EventLog, type GapInfo, type LoggedEvent } from '../event-log.js';
import { EVENT_KINDS, type EventKind, eventsQuerySchema } from '../schemas.js';
import { SseConnection, sseFrame } from '../sse.js';
import { parseInput, type RouteContext } from './context.js';

/**
 * `GET /v1/events`: a server-sent-event stream with one event per record change (event name =
 * kind, data = the MeshEvent as JSON, `id:` = `<run>-<seq>`), optionally only some kinds.
 *
 * Resuming: with `Last-Event-ID` (or `?lastEventId=`) the stream first replays, in order and
 * filtered by kind, every event after that id still held in the shared window, then continues
 * live; the switch happens within one turn of the event loop, so nothing is lost or repeated at
 * the seam. When the window no longer reaches back to that id, or the id is from an earlier run
 * of the node, a `gap` event (with an id of its own) says so before whatever the window holds.
 *
 * Returns the set of open connections so the server can end them when it closes.
 */
export function eventRoutes(app: FastifyInstance, ctx: RouteContext): Set<SseConnection> {
  const { backend, metrics, log, sse } = ctx;
  const open = new Set<SseConnection>();
  const events = new EventLog((listener) => backend.onEvent(listener), {
    ...ctx.eventLog,
    onUnserializable: (event, err) =>
      log.error({ err, kind: event.kind, id: event.id }, 'event is not serializable; skipped'),
  });
  app.addHook('onClose', async () => events.close());
  // A replaying (or slow live) client is paused once this many bytes wait in its socket, and
  // resumes on drain: it never trips the slow-consumer bound, which stays as a last guard.
  const replayHighWater = Math.max(1, Math.floor(sse.maxBufferBytes / 2));

  // No automatic HEAD twin: a HEAD request must not open a stream that never ends.
  app.get('/v1/events', { exposeHeadRoute: false }, async (request, reply) => {
    const q = parseInput(eventsQuerySchema, request.query, 'query');
    const kinds: ReadonlySet<EventKind> = new Set(q.kind ?? EVENT_KINDS);
    const header = request.headers['last-event-id'];
    const lastEventId = (Array.isArray(header) ? header[0] : header)?.trim() || q.lastEventId;
    // Checked before the stream opens, so that a bad id is a plain 400.
    if (lastEventId !== undefined && events.resume(lastEventId) === undefined) {
      throw new ApiError(
        ApiErrorCode.INVALID_INPUT,
        /^[a-z0-9]{1,32}-\d{1,15}$/.test(lastEventId)
          ? `Last-Event-ID ${lastEventId} was never issued by this node`
          : `Last-Event-ID must look like <run>-<seq>, got ${lastEventId.slice(0, 64)}`,
      );
    }
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

    // The client may be gone already (its 'close' fired before we listened): do not subscribe.
    if (res.destroyed || res.socket === null || res.socket.destroyed) {
      conn.close();
      return;
    }

    /** The last seq this client has been given or passed over (filtered out). */
    let cursor = 0;
    /** While true, live events are left in the window for the pump to send in order. */
    let replaying = false;
    const deliver = (e: LoggedEvent): void => {
      cursor = e.seq;
      if (kinds.has(e.kind) && conn.sendFrame(e.frame)) metrics.sseEvents.inc();
    };
    const sendGap = (gap: GapInfo, resumeAfter: number): void => {
      metrics.sseGaps.inc();
      log.info({ reqId: request.id, ...gap }, 'event stream resumed with a gap');
      conn.sendFrame(sseFrame('gap', JSON.stringify(gap), events.idOf(resumeAfter)));
    };
    /** Sends held events after the cursor, pausing on a full socket, until caught up. */
    const pump = async (): Promise<void> => {
      while (cursor < events.lastSeq && !conn.isClosed) {
        if (cursor + 1 < events.firstSeq) {
          // Evicted while this client was replaying slowly.
          const gap: GapInfo = {
            reason: 'evicted',
            lastEventId: events.idOf(cursor),
            firstAvailable: events.size > 0 ? events.idOf(events.firstSeq) : null,
          };
          cursor = events.firstSeq - 1;
          sendGap(gap, cursor);
          continue;
        }
        while (conn.queuedBytes >= replayHighWater) if (!(await conn.drained())) return;
        deliver(events.entry(cursor + 1) as LoggedEvent);
      }
      replaying = false;
    };

    const startPump = (): void => {
      pump().catch((err: unknown) => {
        log.error({ err, reqId: request.id }, 'event stream replay failed');
        conn.close();
      });
    };

    // Subscribing and positioning happen in this one synchronous block: no event can fall
    // between the replayed part and the live part.
    subscription.off = events.subscribe((e) => {
      if (replaying) return;
      if (conn.queuedBytes >= replayHighWater) {
        // The client reads slower than events arrive: from here it is fed from the window at
        // its own pace, like a replay. Only a client that falls behind the whole window loses
        // events, and then a gap event says so; none is dropped for a burst.
        replaying = true;
        startPump();
        return;
      }
      deliver(e);
    });
    cursor = events.lastSeq;
    let gap: GapInfo | undefined;
    if (lastEventId !== undefined) {
      const point = events.resume(lastEventId);
      if (point !== undefined) {
        cursor = point.after;
        gap = point.gap;
      }
    }
    // Flushes the headers; the id tells the client where it stands even before any event.
    conn.comment('connected', gap === undefined ? events.idOf(cursor) : undefined);
    if (gap !== undefined) sendGap(gap, cursor);
    if (cursor < events.lastSeq) {
      replaying = true;
      startPump();
    }
  });

  return open;
}
