import { randomBytes } from 'node:crypto';
import type { MeshEvent } from './backend.js';
import type { EventKind } from './schemas.js';
import { sseFrame } from './sse.js';

/**
 * The event stream's shared window: every MeshEvent is numbered, serialized once into its SSE
 * frame (`id:`, `event:`, `data:`), and kept in a bounded in-memory window that every stream
 * client reads from, live or replaying after a reconnect.
 *
 * Ids are `<run>-<seq>`: `run` is random per server instance (a node restart gets a new one, so an
 * id from an earlier run is recognised rather than misread), `seq` counts up from 1. A seq is
 * skipped whenever the log stops listening (idle, see `retainIdleMs`), so a client whose last id
 * precedes a stretch the log did not record sees a gap rather than a silent hole.
 */

export interface LoggedEvent {
  readonly seq: number;
  readonly kind: EventKind;
  /** The whole SSE frame, written as is to every client that wants this kind. */
  readonly frame: string;
  readonly bytes: number;
}

export interface EventLogOptions {
  /** Most events held (default 10,000). */
  maxEvents?: number;
  /** Most frame bytes held (default 8 MiB). */
  maxBytes?: number;
  /**
   * How long the log keeps listening (and holding its window) after the last stream closed
   * (default 10 min): a watcher that reconnects within it misses nothing. Past it the node stops
   * building event views (they cost CPU at high write rates) until a stream opens again.
   */
  retainIdleMs?: number;
  /** Fixed run prefix (tests); random otherwise. */
  runId?: string;
  /** Called with an event JSON.stringify refused (the event is skipped). */
  onUnserializable?: (event: MeshEvent, err: unknown) => void;
}

export const DEFAULT_EVENT_WINDOW = 10_000;
export const DEFAULT_EVENT_WINDOW_BYTES = 8 * 1024 * 1024;
export const DEFAULT_EVENT_RETAIN_IDLE_MS = 10 * 60_000;

/** Where a resuming client starts: after `after`, optionally preceded by a gap event. */
export interface ResumePoint {
  /** The seq the client has (or is deemed to have): replay starts at after + 1. */
  after: number;
  gap?: GapInfo;
}

/** What the `gap` event says. */
export interface GapInfo {
  /** `restart`: the id is from an earlier run of the node (or another node); `evicted`: the window no longer holds what followed it. */
  reason: 'restart' | 'evicted';
  /** The id the client resumed from. */
  lastEventId: string;
  /** The oldest id still held, the first replayed after the gap (null if the window is empty). */
  firstAvailable: string | null;
}

const ID_PATTERN = /^([a-z0-9]{1,32})-(\d{1,15})$/;

export class EventLog {
  readonly runId: string;
  private readonly maxEvents: number;
  private readonly maxBytes: number;
  private readonly retainIdleMs: number;
  private readonly onUnserializable: ((event: MeshEvent, err: unknown) => void) | undefined;
  private entries: LoggedEvent[] = [];
  private head = 0;
  private heldBytes = 0;
  private nextSeq = 1;
  private readonly subscribers = new Set<(e: LoggedEvent) => void>();
  private unsubscribeSource: (() => void) | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  readonly stats = { appended: 0, evicted: 0, unserializable: 0 };

  constructor(
    private readonly source: (listener: (event: MeshEvent) => void) => () => void,
    options: EventLogOptions = {},
  ) {
    this.runId = options.runId ?? randomBytes(5).readUIntBE(0, 5).toString(36);
    if (!/^[a-z0-9]{1,32}$/.test(this.runId)) throw new RangeError(`bad run id ${this.runId}`);
    this.maxEvents = options.maxEvents ?? DEFAULT_EVENT_WINDOW;
    this.maxBytes = options.maxBytes ?? DEFAULT_EVENT_WINDOW_BYTES;
    this.retainIdleMs = options.retainIdleMs ?? DEFAULT_EVENT_RETAIN_IDLE_MS;
    this.onUnserializable = options.onUnserializable;
  }

  /** The id of `seq` in this run. */
  idOf(seq: number): string {
    return `${this.runId}-${seq}`;
  }

  /** The last seq assigned (0 before any). */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** The oldest seq held; `lastSeq + 1` when the window is empty. */
  get firstSeq(): number {
    const first = this.entries[this.head];
    return first === undefined ? this.nextSeq : first.seq;
  }

  get size(): number {
    return this.entries.length - this.head;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  /** The held event with this seq, if any. */
  entry(seq: number): LoggedEvent | undefined {
    const first = this.entries[this.head];
    if (first === undefined || seq < first.seq) return undefined;
    return this.entries[this.head + (seq - first.seq)];
  }

  /**
   * Adds a stream client: `fn` gets every event appended from now on, synchronously. Starts
   * listening to the node if the log was idle. Returns the unsubscribe function.
   */
  subscribe(fn: (e: LoggedEvent) => void): () => void {
    if (this.closed) return () => {};
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.unsubscribeSource ??= this.source((event) => this.append(event));
    this.subscribers.add(fn);
    return () => {
      if (!this.subscribers.delete(fn) || this.subscribers.size > 0 || this.closed) return;
      this.idleTimer = setTimeout(() => this.stopListening(), this.retainIdleMs);
      this.idleTimer.unref();
    };
  }

  /**
   * Where a client with `lastEventId` resumes. Returns undefined for an id that cannot have come
   * from any node (malformed) or that this run has not issued yet: the caller refuses it.
   */
  resume(lastEventId: string): ResumePoint | undefined {
    const m = ID_PATTERN.exec(lastEventId);
    if (m === null) return undefined;
    const seq = Number(m[2]);
    const firstAvailable = this.size > 0 ? this.idOf(this.firstSeq) : null;
    if (m[1] !== this.runId) {
      return { after: this.firstSeq - 1, gap: { reason: 'restart', lastEventId, firstAvailable } };
    }
    if (seq > this.lastSeq) return undefined;
    if (seq + 1 < this.firstSeq) {
      return { after: this.firstSeq - 1, gap: { reason: 'evicted', lastEventId, firstAvailable } };
    }
    return { after: seq };
  }

  /** Stops listening and drops the window and every subscriber (server close). */
  close(): void {
    this.closed = true;
    this.subscribers.clear();
    this.stopListening();
  }

  private stopListening(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.unsubscribeSource === undefined) return;
    this.unsubscribeSource();
    this.unsubscribeSource = undefined;
    this.entries = [];
    this.head = 0;
    this.heldBytes = 0;
    // Events from now until a stream opens again are not recorded: skip a seq so that a client
    // resuming from before this point sees a gap (its seq + 1 < firstSeq), never a silent hole.
    this.nextSeq += 1;
  }

  private append(event: MeshEvent): void {
    let data: string;
    try {
      data = JSON.stringify(event);
    } catch (err) {
      this.stats.unserializable += 1;
      this.onUnserializable?.(event, err);
      return;
    }
    const seq = this.nextSeq++;
    const frame = sseFrame(event.kind, data, this.idOf(seq));
    const entry: LoggedEvent = { seq, kind: event.kind, frame, bytes: Buffer.byteLength(frame) };
    this.entries.push(entry);
    this.heldBytes += entry.bytes;
    this.stats.appended += 1;
    while (this.size > 1 && (this.size > this.maxEvents || this.heldBytes > this.maxBytes)) {
      const old = this.entries[this.head] as LoggedEvent;
      this.heldBytes -= old.bytes;
      this.head += 1;
      this.stats.evicted += 1;
    }
    // Compact once the dead prefix is as long as the live part: amortized O(1) per event.
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    for (const fn of this.subscribers) fn(entry);
  }
}
