/** What an SSE connection writes to: a ServerResponse, or any Writable in tests. */
export interface SseSink {
  write(chunk: string): boolean;
  end(chunk?: string): unknown;
  destroy(): unknown;
  /** Bytes queued in the sink and not yet flushed to the socket. */
  readonly writableLength: number;
  readonly destroyed: boolean;
  on(event: 'close', fn: () => void): unknown;
  once(event: 'drain' | 'close', fn: () => void): unknown;
  removeListener(event: 'drain' | 'close', fn: () => void): unknown;
}

export interface SseOptions {
  /** Bytes a client may have queued before it is dropped as too slow (default 1 MiB). */
  maxBufferBytes?: number;
  /** Interval of the keep-alive comment (default 15 s). */
  heartbeatMs?: number;
  /** Time a dropped client gets to take its final event before the socket is destroyed (default 2 s). */
  closeGraceMs?: number;
  /** Called once when the connection ends, whatever the cause. */
  onClose?: (reason: SseCloseReason) => void;
}

export type SseCloseReason = 'client' | 'slow' | 'server';

export const DEFAULT_SSE_BUFFER_BYTES = 1024 * 1024;
export const DEFAULT_SSE_HEARTBEAT_MS = 15_000;
const DEFAULT_CLOSE_GRACE_MS = 2_000;

/**
 * One frame of the SSE wire format; multi-line data is split into several `data:` lines. With an
 * `id`, the frame starts with an `id:` line (the client's Last-Event-ID after it).
 */
export function sseFrame(event: string, data: string, id?: string): string {
  const lines = data.split(/\r\n|\r|\n/);
  const idLine = id === undefined ? '' : `id: ${id.replace(/[\r\n\0]+/g, '')}\n`;
  return `${idLine}event: ${event}\n${lines.map((l) => `data: ${l}\n`).join('')}\n`;
}

/**
 * One server-sent-event stream. Writes go straight to the sink; the bytes the sink still holds
 * (a client not reading) are bounded by `maxBufferBytes`: past it the client gets a final
 * `error` event and the connection is closed, so a slow consumer never grows the server's memory
 * without bound. A comment every `heartbeatMs` keeps proxies and idle timers from cutting the
 * stream.
 */
export class SseConnection {
  private readonly sink: SseSink;
  private readonly maxBufferBytes: number;
  private readonly closeGraceMs: number;
  private readonly onClose: ((reason: SseCloseReason) => void) | undefined;
  private readonly heartbeat: NodeJS.Timeout;
  private graceTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly closeWaiters = new Set<() => void>();
  /** Frames written (events and comments). */
  sent = 0;

  constructor(sink: SseSink, options: SseOptions = {}) {
    this.sink = sink;
    this.maxBufferBytes = options.maxBufferBytes ?? DEFAULT_SSE_BUFFER_BYTES;
    this.closeGraceMs = options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
    this.onClose = options.onClose;
    this.heartbeat = setInterval(() => this.comment('ping'), options.heartbeatMs ?? DEFAULT_SSE_HEARTBEAT_MS);
    this.heartbeat.unref();
    sink.on('close', () => this.finish('client'));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends one event; false if the connection is closed or was just dropped for being too slow. */
  send(event: string, data: string): boolean {
    return this.write(sseFrame(event, data));
  }

  /** Sends a frame built elsewhere (see EventLog: each event is serialized once for all clients). */
  sendFrame(frame: string): boolean {
    return this.write(frame);
  }

  /**
   * A comment; with `id`, the same frame also carries an `id:` line, which sets the client's
   * Last-Event-ID without dispatching an event (the SSE spec's dispatch step 1 precedes the
   * empty-data check).
   */
  comment(text: string, id?: string): boolean {
    const idLine = id === undefined ? '' : `id: ${id.replace(/[\r\n\0]+/g, '')}\n`;
    return this.write(`: ${text.replace(/[\r\n]+/g, ' ')}\n${idLine}\n`);
  }

  /** Bytes the client has not taken yet. */
  get queuedBytes(): number {
    return this.sink.writableLength;
  }

  /**
   * Resolves true once the client took some of what is queued, false if the connection closed
   * first. A sink emits 'drain' only after a write it refused, and ours may hold less than its
   * high-water mark, so this also re-checks every `pollMs`.
   */
  drained(pollMs = 10): Promise<boolean> {
    if (this.closed || this.sink.destroyed) return Promise.resolve(false);
    const before = this.sink.writableLength;
    if (before === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onDrain = (): void => settle(true);
      const onClose = (): void => settle(false);
      const timer = setInterval(() => {
        if (this.sink.writableLength < before) settle(true);
      }, pollMs);
      const settle = (v: boolean): void => {
        clearInterval(timer);
        this.sink.removeListener('drain', onDrain);
        this.sink.removeListener('close', onClose);
        this.closeWaiters.delete(onClose);
        resolve(v);
      };
      this.sink.once('drain', onDrain);
      this.sink.once('close', onClose);
      this.closeWaiters.add(onClose);
    });
  }

  /** Ends the stream from the server side, optionally with a last event. */
  close(final?: { event: string; data: string }, reason: SseCloseReason = 'server'): void {
    if (this.closed) return;
    const sink = this.sink;
    this.finish(reason);
    if (sink.destroyed) return;
    sink.end(final === undefined ? undefined : sseFrame(final.event, final.data));
    // A client that does not read will never take the final bytes: do not wait for it forever.
    this.graceTimer = setTimeout(() => {
      if (!sink.destroyed) sink.destroy();
    }, this.closeGraceMs);
    this.graceTimer.unref();
  }

  private write(frame: string): boolean {
    if (this.closed || this.sink.destroyed) return false;
    if (this.sink.writableLength + Buffer.byteLength(frame) > this.maxBufferBytes) {
      this.close(
        {
          event: 'error',
          data: JSON.stringify({
            error: { code: 'SLOW_CONSUMER', message: `client fell behind by more than ${this.maxBufferBytes} bytes` },
          }),
        },
        'slow',
      );
      return false;
    }
    this.sink.write(frame);
    this.sent++;
    return true;
  }

  private finish(reason: SseCloseReason): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    for (const w of [...this.closeWaiters]) w();
    this.onClose?.(reason);
  }
}
