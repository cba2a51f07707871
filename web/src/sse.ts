/**
 * Server-sent events read with fetch, so that the request can carry the bearer token
 * (EventSource cannot set headers; see api.ts). The parser follows the WHATWG event-stream rules
 * (fields `event`, `data`, `id`, `retry`; comments; CR, LF or CRLF line ends); the reader
 * reconnects with backoff and sends `Last-Event-ID` so that a node that keeps a replay buffer can
 * fill the gap.
 */
import { authHeaders } from './api.js';

export interface SseMessage {
  event: string;
  data: string;
  id: string | undefined;
}

/** Incremental event-stream parser: feed it text as it arrives, it calls `emit` per event. */
export class SseParser {
  private buffer = '';
  private event = '';
  private data: string[] = [];
  private id: string | undefined;
  /** The last `id` seen (kept across events, as the spec's last event ID buffer). */
  lastEventId: string | undefined;
  /** A `retry` the server asked for, in ms. */
  retryMs: number | undefined;

  constructor(private readonly emit: (m: SseMessage) => void) {}

  push(text: string): void {
    this.buffer += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      // A lone CR at the end may be the first half of a CRLF: wait for more.
      if (m === null || (m[0] === '\r' && m.index === this.buffer.length - 1)) return;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      if (this.id !== undefined) this.lastEventId = this.id;
      if (this.data.length > 0) {
        this.emit({ event: this.event || 'message', data: this.data.join('\n'), id: this.lastEventId });
      }
      this.event = '';
      this.data = [];
      this.id = undefined;
      return;
    }
    if (line.startsWith(':')) return; // a comment: keep-alive
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'retry' && /^[0-9]+$/.test(value)) this.retryMs = Number(value);
  }
}

export type StreamState = 'connecting' | 'open' | 'retrying' | 'unauthorized';

export interface EventStreamOptions {
  onMessage(m: SseMessage): void;
  /** Called on every (re)connection once the response headers arrived. */
  onOpen(reconnect: boolean): void;
  onState(state: StreamState, detail?: string): void;
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 10_000;

/** Reads `url` as an event stream until `stop()`, reconnecting after failures. */
export function openEventStream(url: string, options: EventStreamOptions): { stop(): void } {
  const abort = new AbortController();
  let lastEventId: string | undefined;
  let backoff = MIN_BACKOFF_MS;
  let connections = 0;

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
        if (!res.ok || res.body === null) throw new Error(`HTTP ${res.status}`);
        options.onState('open');
        options.onOpen(connections++ > 0);
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
