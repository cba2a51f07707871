import type { Logger } from '../util/log.js';
import type { ApiClient } from './api-client.js';

/** Most events kept; older ones are dropped first. */
export const RECENT_EVENTS_CAPACITY = 500;
/** Reconnection delays after the event stream fails or ends: doubling from 1 s to 30 s. */
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;

export interface RecentEvent {
  /** Position in this buffer (1, 2, ...): pass the last one seen as `since` to get only newer. */
  seq: number;
  kind: string;
  id: string;
  origin: string | null;
  local: boolean;
  at: number;
  /** A compact summary of the record's new value (see `summarize`). */
  value: Record<string, unknown>;
}

/**
 * The last RECENT_EVENTS_CAPACITY agent and task changes a node streamed on `GET /v1/events`,
 * since this buffer started (node heartbeats, one per node per second, are left out: noise for
 * an LLM). It reconnects with backoff when the stream fails, so it survives node restarts; events
 * during a gap are missed, as they would be by any live subscriber.
 */
export class RecentEvents {
  private readonly events: RecentEvent[] = [];
  private seq = 0;
  private readonly waiters = new Set<() => void>();
  private readonly controller = new AbortController();
  private running: Promise<void> | undefined;

  constructor(
    private readonly client: ApiClient,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.running ??= this.loop();
  }

  async close(): Promise<void> {
    this.controller.abort();
    for (const w of this.waiters) w();
    await this.running;
  }

  /** Events after `since` (optionally of one kind), oldest first, at most `limit` (the newest). */
  after(since: number, limit: number, kind?: string): RecentEvent[] {
    const out = this.events.filter((e) => e.seq > since && (kind === undefined || e.kind === kind));
    return out.slice(Math.max(0, out.length - limit));
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Resolves when an event arrives, `ms` pass, or `signal` fires, whichever is first. */
  waitForNext(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  private push(kind: string, data: string): void {
    let e: { id?: unknown; value?: unknown; origin?: unknown; local?: unknown; at?: unknown };
    try {
      e = JSON.parse(data) as typeof e;
    } catch {
      return;
    }
    if (typeof e.id !== 'string') return;
    this.events.push({
      seq: ++this.seq,
      kind,
      id: e.id,
      origin: typeof e.origin === 'string' ? e.origin : null,
      local: e.local === true,
      at: typeof e.at === 'number' ? e.at : Date.now(),
      value: summarize(kind, e.value),
    });
    if (this.events.length > RECENT_EVENTS_CAPACITY) this.events.shift();
    for (const w of [...this.waiters]) w();
  }

  private async loop(): Promise<void> {
    const signal = this.controller.signal;
    let delay = RETRY_MIN_MS;
    while (!signal.aborted) {
      try {
        const res = await fetch(`${this.client.base}/v1/events?kind=agent,task`, {
          headers: this.client.headers(false),
          signal,
        });
        if (!res.ok || res.body === null) throw new Error(`GET /v1/events: ${res.status}`);
        delay = RETRY_MIN_MS;
        await this.read(res.body);
      } catch (err) {
        if (signal.aborted) return;
        this.log.debug({ err: (err as Error).message }, 'event stream failed; reconnecting');
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
      });
      delay = Math.min(RETRY_MAX_MS, delay * 2);
    }
  }

  /** Parses the SSE wire format: `event:` and `data:` lines, a blank line ends a frame. */
  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buf = '';
    let event = 'message';
    let data: string[] = [];
    for await (const chunk of body) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (line === '') {
          if (data.length > 0 && (event === 'agent' || event === 'task')) this.push(event, data.join('\n'));
          event = 'message';
          data = [];
        } else if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
    }
  }
}

/**
 * What an LLM needs of a change, not the whole record (a task's payload, result and log can be
 * kilobytes each): for a task its status, holder, progress and the error code; for an agent its
 * state, node, load and capabilities. `get_task` has the rest.
 */
export function summarize(kind: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object') return {};
  const v = value as Record<string, unknown>;
  const pick = (keys: string[]): Record<string, unknown> =>
    Object.fromEntries(keys.filter((k) => k in v).map((k) => [k, v[k]]));
  if (kind === 'task') {
    const error = v.error as { code?: unknown } | null | undefined;
    return {
      ...pick(['type', 'title', 'status', 'assignee', 'node', 'progress', 'attempt']),
      ...(error && typeof error === 'object' && typeof error.code === 'string' ? { errorCode: error.code } : {}),
    };
  }
  return pick(['name', 'owner', 'state', 'health', 'load', 'capacity', 'capabilities', 'removed']);
}
