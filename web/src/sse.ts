/**
 * Server-sent events read with fetch, so that the request can carry the bearer token
 * (EventSource cannot set headers; see api.ts). The reader reconnects with backoff and sends
 * `Last-Event-ID` so that a node that keeps a replay buffer can fill the gap.
 */
import { authHeaders } from './api.js';
import { type SseMessage, SseParser } from './sse-parser.js';

export type { SseMessage };

export type StreamState = 'connecting' | 'open' | 'retrying' | 'unauthorized';

export interface EventStreamOptions {
  onMessage(m: SseMessage): void;
  /**
   * Called on every (re)connection once the response headers arrived; `resumed` when it carried
   * a Last-Event-ID that the node accepted (it replays what was missed, or sends `gap`).
   */
  onOpen(resumed: boolean): void;
  onState(state: StreamState, detail?: string): void;
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 10_000;

/** Reads `url` as an event stream until `stop()`, reconnecting after failures. */
export function openEventStream(url: string, options: EventStreamOptions): { stop(): void } {
  const abort = new AbortController();
  let lastEventId: string | undefined;
  let backoff = MIN_BACKOFF_MS;

  const loop = async (): Promise<void> => {
    while (!abort.signal.aborted) {
      options.onState('connecting');
      let failure = 'the stream ended';
      try {
        const res = await fetch(url, {
          headers: {
            ...authHeaders(),
            accept: 'text/event-stream',
            ...(lastEventId ? { 'last-event-id': lastEventId } : {}),
          },
          signal: abort.signal,
          cache: 'no-store',
        });
        if (res.status === 401) {
          options.onState('unauthorized');
          return; // the app asks for a token and opens a new stream
        }
        if (res.status === 400 && lastEventId !== undefined) {
          // The node refuses the id (say, one it never issued): start afresh without it.
          lastEventId = undefined;
          await res.body?.cancel();
          throw new Error('the node refused the last event id');
        }
        if (!res.ok || res.body === null) {
          await res.body?.cancel();
          throw new Error(`HTTP ${res.status}`);
        }
        options.onState('open');
        options.onOpen(lastEventId !== undefined);
        backoff = MIN_BACKOFF_MS;
        const parser = new SseParser(options.onMessage);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(value);
          lastEventId = parser.lastEventId ?? lastEventId;
          if (parser.retryMs !== undefined) backoff = Math.max(MIN_BACKOFF_MS, parser.retryMs);
        }
      } catch (err) {
        if (abort.signal.aborted) return;
        failure = (err as Error).message;
      }
      options.onState('retrying', failure);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff);
        abort.signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
    }
  };
  void loop();
  return { stop: () => abort.abort() };
}
