/**
 * `mesh watch`: the node's event stream (`GET /v1/events`), printed as it comes, reconnecting
 * by itself. Each reconnect sends `Last-Event-ID` with the last id seen, so the node replays what
 * was missed from its window; when the window no longer holds it, the node sends a `gap` event,
 * whose message is printed (on stderr) so the user knows that some changes were not seen.
 */
import type { ApiClient } from './api-client.js';
import { query } from './api-client.js';
import { CliError, CliErrorCode } from './errors.js';

/** One server-sent event. */
export interface SseFrame {
  id?: string;
  event?: string;
  data: string;
}

/** Splits a text/event-stream body into frames (comments dropped), per the SSE parsing rules. */
export async function* sseFrames(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseFrame> {
  const decoder = new TextDecoder();
  let buffer = '';
  let frame: { id?: string; event?: string; data: string[] } = { data: [] };
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.search(/\r\n|\n|\r/)) !== -1) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (frame.data.length > 0 || frame.event !== undefined) {
          yield {
            ...(frame.id !== undefined ? { id: frame.id } : {}),
            ...(frame.event !== undefined ? { event: frame.event } : {}),
            data: frame.data.join('\n'),
          };
        }
        frame = { data: [] };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') frame.data.push(value);
      else if (field === 'event') frame.event = value;
      else if (field === 'id' && !value.includes('\0')) frame.id = value;
    }
  }
}

export interface WatchOptions {
  kind?: string | undefined;
  /** Called for every event but `gap`. */
  onEvent(frame: SseFrame): void;
  /** Called with the explanation of a `gap` event, and with reconnect notices. */
  onNotice(message: string): void;
  signal?: AbortSignal;
  /** Backoff between reconnects: doubles from `minBackoffMs` up to `maxBackoffMs`. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** The `gap` event's explanation: its JSON `message`, else the data as it is. */
export function gapMessage(data: string): string {
  try {
    const v = JSON.parse(data) as { message?: unknown };
    if (typeof v.message === 'string') return v.message;
  } catch {
    /* plain text */
  }
  return data || 'some events were missed';
}

/**
 * Streams until `signal` aborts. The first connection must succeed (else the error says why:
 * unreachable, or the API's explanation for a bad `--kind`); later losses are retried with
 * bounded exponential backoff, resuming from the last event id.
 */
export async function watchEvents(client: ApiClient, o: WatchOptions): Promise<void> {
  const min = o.minBackoffMs ?? 250;
  const max = o.maxBackoffMs ?? 2000;
  let lastId: string | undefined;
  let connectedOnce = false;
  let backoff = min;
  const path = `/v1/events${query({ kind: o.kind })}`;
  while (!o.signal?.aborted) {
    let res: Response;
    try {
      res = await client.fetch('GET', path, {
        headers: lastId === undefined ? {} : { 'last-event-id': lastId },
        timeout: false,
        ...(o.signal ? { signal: o.signal } : {}),
      });
    } catch (err) {
      if (o.signal?.aborted) return;
      if (!connectedOnce) throw err;
      o.onNotice(`node unreachable; retrying in ${backoff} ms`);
      await sleep(backoff, o.signal);
      backoff = Math.min(max, backoff * 2);
      continue;
    }
    if (!res.ok || res.body === null) {
      const err = res.ok ? new CliError(CliErrorCode.BAD_RESPONSE, `${path}: no body`) : await client.failure(res);
      // A request the API refuses (bad --kind, bad token) will be refused again: stop.
      if (!connectedOnce || (res.status >= 400 && res.status < 500)) throw err;
      o.onNotice(`${err.message}; retrying in ${backoff} ms`);
      await sleep(backoff, o.signal);
      backoff = Math.min(max, backoff * 2);
      continue;
    }
    if (connectedOnce) o.onNotice(`reconnected${lastId === undefined ? '' : ` (resuming after event ${lastId})`}`);
    connectedOnce = true;
    backoff = min;
    try {
      for await (const frame of sseFrames(res.body)) {
        if (frame.id !== undefined) lastId = frame.id;
        if (frame.event === 'gap') o.onNotice(gapMessage(frame.data));
        else o.onEvent(frame);
      }
    } catch {
      // The connection broke mid-stream (node stopped or restarted): reconnect below.
    }
    if (o.signal?.aborted) return;
    o.onNotice(`stream ended; reconnecting in ${backoff} ms`);
    await sleep(backoff, o.signal);
    backoff = Math.min(max, backoff * 2);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
