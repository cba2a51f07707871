/**
 * An incremental parser of the event-stream format (WHATWG HTML, "Server-sent events"): fields
 * `event`, `data`, `id`, `retry`; comments; CR, LF or CRLF line ends. Pure, so it is unit-tested
 * in Node (test/unit/dashboard-parsers.test.ts).
 */
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
