/**
 * Framed request/response sessions over libp2p 3 streams.
 *
 * Wire format: each frame is an unsigned LEB128 varint length followed by that many bytes (the same
 * framing as `it-length-prefixed`). A session is one libp2p stream carrying a multi-round conversation:
 * either side sends frames and receives frames in order; `close()` half-closes the writable end and the
 * other side sees a clean end of stream.
 *
 * libp2p 3 streams are event based (`message`, `remoteCloseWrite`, `end`, `close` events, `send()`
 * returning false for back-pressure, `pause()`/`resume()` for read flow control), not the duplex
 * source/sink iterables of libp2p 1/2; this module turns them into awaitable `send`/`receive`.
 */
import { isPeerId } from '@libp2p/interface';
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { LengthPrefixedDecoder } from '@libp2p/utils';
import * as lp from 'it-length-prefixed';
import type { Uint8ArrayList } from 'uint8arraylist';
import type { Logger } from '../util/log.js';
import { NetError, errorFromSignal, toNetError, type NetErrorCode } from './errors.js';

export const DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024;
export const DEFAULT_OPERATION_TIMEOUT_MS = 10_000;
export const DEFAULT_SESSION_TIMEOUT_MS = 120_000;

export interface SessionOptions {
  /** Largest frame this side accepts AND sends. Default 4 MiB. */
  maxFrameSize?: number;
  /**
   * Default deadline (ms) of each send (while waiting for back-pressure to clear) and each receive.
   * Default 10 s. An operation that times out aborts the whole session with STREAM_TIMEOUT.
   */
  timeoutMs?: number;
}

export interface OperationOptions {
  /** Aborting this signal fails the operation (STREAM_TIMEOUT for a timeout reason, else ABORTED). */
  signal?: AbortSignal;
  /** Overrides the session's per-operation timeout. */
  timeoutMs?: number;
}

export interface OpenSessionOptions extends SessionOptions {
  /**
   * Governs the whole session: dialling, protocol negotiation and every later operation. When it fires
   * the session is aborted (STREAM_TIMEOUT if it is an `AbortSignal.timeout()`, else ABORTED).
   */
  signal?: AbortSignal;
  /** Deadline for dialling + protocol negotiation when `signal` does not fire first. Default 10 s. */
  openTimeoutMs?: number;
}

export interface HandleOptions extends SessionOptions {
  /** Concurrent inbound sessions for this protocol per connection. Default 16. */
  maxInboundStreams?: number;
  /** Concurrent outbound sessions for this protocol per connection. Default 16. */
  maxOutboundStreams?: number;
  /** Deadline for a whole inbound session (the handler run). Default 120 s. */
  sessionTimeoutMs?: number;
}

export type SessionHandler = (session: Session, remotePeer: string) => void | Promise<void>;

/** Aggregated counters for one protocol (both directions). */
export interface ProtocolStats {
  sessionsOpened: number;
  sessionsAccepted: number;
  bytesSent: number;
  bytesReceived: number;
  framesSent: number;
  framesReceived: number;
  errors: Partial<Record<NetErrorCode, number>>;
}

function newProtocolStats(): ProtocolStats {
  return {
    sessionsOpened: 0,
    sessionsAccepted: 0,
    bytesSent: 0,
    bytesReceived: 0,
    framesSent: 0,
    framesReceived: 0,
    errors: {},
  };
}

/** Bytes of the unsigned LEB128 varint that prefixes a frame of `n` bytes. */
function headerLength(n: number): number {
  let len = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 0x80)) len++;
  return len;
}

/** One frame on the wire: its varint length, then its bytes (it-length-prefixed's format). */
export function encodeFrame(frame: Uint8Array, maxFrameSize: number): Uint8ArrayList {
  return lp.encode.single(frame, { maxDataLength: maxFrameSize });
}

/**
 * Incremental decoder of varint-length-prefixed frames over @libp2p/utils' LengthPrefixedDecoder:
 * it refuses a frame as soon as its header declares more than `maxFrameSize` bytes, before
 * buffering its body. (The library skips empty frames, so sessions never send one.)
 *
 * Why not `lpStream` itself: it reads through `byteStream`, which takes every incoming chunk into
 * its buffer and aborts the stream when the buffer passes its limit. A session instead pauses the
 * stream while the frames it holds pass a high-water mark, so a fast sender (a sync transfer of
 * many record chunks) is slowed by the muxer's window rather than cut off.
 */
export class FrameDecoder {
  readonly #decoder: LengthPrefixedDecoder;
  readonly #max: number;
  #in = 0;
  #out = 0;

  constructor(maxFrameSize: number) {
    this.#max = maxFrameSize;
    // The buffer holds one frame in progress plus the chunk that arrived (everything complete is
    // taken out at once); the muxer may hand over a whole window in one chunk. The bound only
    // stops an endless varint, which the library reads as "not enough bytes yet".
    this.#decoder = new LengthPrefixedDecoder({
      maxDataLength: maxFrameSize,
      maxBufferSize: 2 * maxFrameSize + 16 * 1024 * 1024,
    });
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#in - this.#out;
  }

  /**
   * Takes `chunk` and returns the frames it completed. Throws NetError FRAME_TOO_LARGE; the
   * decoder is unusable afterwards.
   */
  push(chunk: Uint8Array | Uint8ArrayList): Uint8Array[] {
    this.#in += chunk.byteLength;
    const frames: Uint8Array[] = [];
    try {
      for (const f of this.#decoder.decode(chunk)) {
        this.#out += headerLength(f.byteLength) + f.byteLength;
        // slice() copies: the frame must not alias transport buffers that may be reused.
        frames.push(f.slice());
      }
    } catch (err) {
      throw new NetError('FRAME_TOO_LARGE', `incoming frame exceeds ${this.#max} bytes`, {
        cause: err,
        details: { max: this.#max },
      });
    }
    return frames;
  }
}

interface Waiter {
  allowEnd: boolean;
  resolve(frame: Uint8Array | undefined): void;
  reject(err: NetError): void;
}

interface SessionInit extends SessionOptions {
  remotePeer: string;
  protocol: string;
  log: Logger;
  stats: ProtocolStats;
}

/**
 * One framed conversation on one libp2p stream. Frames are delivered in order; one frame per `receive()`.
 * Any failure (timeout, reset, oversized or malformed frame) is terminal: the stream is aborted, pending
 * and later operations reject with the same NetError, and `signal` fires with it as reason.
 */
export class Session {
  readonly protocol: string;
  readonly remotePeer: string;
  readonly direction: 'inbound' | 'outbound';
  readonly maxFrameSize: number;
  readonly timeoutMs: number;

  readonly #stream: Stream;
  readonly #log: Logger;
  readonly #stats: ProtocolStats;
  readonly #decoder: FrameDecoder;
  readonly #frames: Uint8Array[] = [];
  readonly #waiters: Waiter[] = [];
  readonly #done = new AbortController();
  readonly #highWater: number;
  #queuedBytes = 0;
  #remoteClosedWrite = false;
  #eof = false;
  #localClosed = false;
  #error: NetError | undefined;
  #bytesSent = 0;
  #bytesReceived = 0;
  #framesSent = 0;
  #framesReceived = 0;

  constructor(stream: Stream, init: SessionInit) {
    this.#stream = stream;
    this.protocol = init.protocol;
    this.remotePeer = init.remotePeer;
    this.direction = stream.direction;
    this.maxFrameSize = init.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.timeoutMs = init.timeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS;
    this.#log = init.log;
    this.#stats = init.stats;
    this.#decoder = new FrameDecoder(this.maxFrameSize);
    this.#highWater = Math.max(1024 * 1024, this.maxFrameSize);
    // While paused for back-pressure libp2p buffers up to maxReadBufferLength and then resets the
    // stream; yamux stops granting window while paused, so the remote can have at most one window
    // (<= 16 MiB) in flight.
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, 16 * 1024 * 1024 + this.maxFrameSize);

    stream.addEventListener('message', (evt) => this.#onData(evt.data));
    stream.addEventListener('remoteCloseWrite', () => {
      this.#remoteClosedWrite = true;
    });
    stream.addEventListener('end', () => this.#onEnd());
    stream.addEventListener('close', (evt) => {
      if (evt.error !== undefined) {
        this.#fail(
          new NetError('STREAM_CLOSED', `stream ${evt.local === true ? 'aborted' : 'reset by remote'}`, {
            cause: evt.error,
            details: { local: evt.local === true },
          }),
        );
      } else {
        this.#onEnd();
      }
    });
  }

  get bytesSent(): number {
    return this.#bytesSent;
  }

  get bytesReceived(): number {
    return this.#bytesReceived;
  }

  get framesSent(): number {
    return this.#framesSent;
  }

  get framesReceived(): number {
    return this.#framesReceived;
  }

  /** Fires (with the NetError as reason) when the session fails or is aborted. */
  get signal(): AbortSignal {
    return this.#done.signal;
  }

  /** The terminal error, if the session failed. */
  get error(): NetError | undefined {
    return this.#error;
  }

  /**
   * Send one frame. Resolves once the frame is handed to the muxer (waiting for back-pressure to clear
   * if needed). Throws FRAME_TOO_LARGE (the session stays usable), STREAM_CLOSED, STREAM_TIMEOUT, ABORTED.
   */
  async send(frame: Uint8Array, options: OperationOptions = {}): Promise<void> {
    if (this.#error !== undefined) throw this.#error;
    if (this.#localClosed) throw new NetError('STREAM_CLOSED', 'session is closed for writing');
    if (frame.byteLength > this.maxFrameSize) {
      throw new NetError('FRAME_TOO_LARGE', `frame of ${frame.byteLength} bytes exceeds the limit`, {
        details: { size: frame.byteLength, max: this.maxFrameSize },
      });
    }
    if (frame.byteLength === 0) throw new NetError('PROTOCOL_ERROR', 'a frame cannot be empty');
    const wire = encodeFrame(frame, this.maxFrameSize);
    let ready: boolean;
    try {
      ready = this.#stream.send(wire);
    } catch (err) {
      throw this.#fail(toNetError(err, 'send', undefined, 'STREAM_CLOSED'));
    }
    const n = wire.byteLength;
    this.#bytesSent += n;
    this.#framesSent++;
    this.#stats.bytesSent += n;
    this.#stats.framesSent++;
    if (!ready) await this.#drain(options);
  }

  /** Receive the next frame. Throws STREAM_CLOSED at the end of the stream, and on any failure. */
  async receive(options: OperationOptions = {}): Promise<Uint8Array> {
    const frame = await this.#next(false, options);
    if (frame === undefined) throw new NetError('STREAM_CLOSED', 'remote closed the stream');
    return frame;
  }

  /** Receive the next frame, or undefined when the remote has cleanly closed its writable end. */
  async receiveOrEnd(options: OperationOptions = {}): Promise<Uint8Array | undefined> {
    return this.#next(true, options);
  }

  /** Send a request frame and receive the response frame. */
  async request(frame: Uint8Array, options: OperationOptions = {}): Promise<Uint8Array> {
    await this.send(frame, options);
    return this.receive(options);
  }

  /**
   * Half-close: no more frames will be sent; the remote sees the end of the stream. Resolves once queued
   * frames are flushed. Frames the remote still sends can be received. If the remote does not close its
   * side within the operation timeout, the stream is aborted to release it.
   */
  async close(options: OperationOptions = {}): Promise<void> {
    if (this.#error !== undefined || this.#localClosed) return;
    this.#localClosed = true;
    const { signal, cleanup } = this.#operationSignal(options);
    try {
      await this.#stream.close({ signal });
    } catch (err) {
      const e = signal.aborted
        ? errorFromSignal(signal, 'close')
        : toNetError(err, 'close', undefined, 'STREAM_CLOSED');
      this.#fail(e);
      this.#stream.abort(e);
      return;
    } finally {
      cleanup();
    }
    if (this.#stream.status === 'open' || this.#stream.status === 'closing') {
      const linger = setTimeout(() => {
        if (this.#stream.status === 'open' || this.#stream.status === 'closing') {
          this.abort(new NetError('STREAM_TIMEOUT', 'remote did not close its side of the stream'));
        }
      }, options.timeoutMs ?? this.timeoutMs);
      linger.unref();
      this.#stream.addEventListener('close', () => clearTimeout(linger), { once: true });
    }
  }

  /** Abort the session and reset the stream. Pending operations reject with `err` (as a NetError). */
  abort(err?: unknown): void {
    const e =
      err instanceof NetError
        ? err
        : new NetError('ABORTED', err instanceof Error ? err.message : 'session aborted', { cause: err });
    this.#fail(e);
    if (this.#stream.status === 'open' || this.#stream.status === 'closing') this.#stream.abort(e);
  }

  #next(allowEnd: boolean, options: OperationOptions): Promise<Uint8Array | undefined> {
    const frame = this.#frames.shift();
    if (frame !== undefined) {
      this.#dequeued(frame);
      return Promise.resolve(frame);
    }
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#eof) {
      return allowEnd
        ? Promise.resolve(undefined)
        : Promise.reject(new NetError('STREAM_CLOSED', 'remote closed the stream'));
    }
    if (options.signal?.aborted === true) {
      return Promise.reject(this.#failFromSignal(options.signal, 'receive'));
    }
    return new Promise<Uint8Array | undefined>((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? this.timeoutMs;
      const onAbort = (): void => {
        settle();
        reject(this.#failFromSignal(options.signal as AbortSignal, 'receive'));
      };
      const timer = setTimeout(() => {
        settle();
        reject(this.#abortWith(new NetError('STREAM_TIMEOUT', `receive timed out after ${timeoutMs} ms`)));
      }, timeoutMs);
      const waiter: Waiter = {
        allowEnd,
        resolve: (f) => {
          settle();
          resolve(f);
        },
        reject: (e) => {
          settle();
          reject(e);
        },
      };
      const settle = (): void => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Abort with `err` (if not already failed) and return the session's terminal error. */
  #abortWith(err: NetError): NetError {
    this.abort(err);
    return this.#error ?? err;
  }

  #failFromSignal(signal: AbortSignal, what: string): NetError {
    return this.#abortWith(errorFromSignal(signal, what));
  }

  async #drain(options: OperationOptions): Promise<void> {
    const { signal, cleanup } = this.#operationSignal(options);
    try {
      await this.#stream.onDrain({ signal });
    } catch (err) {
      throw this.#abortWith(
        signal.aborted ? errorFromSignal(signal, 'send') : toNetError(err, 'send', undefined, 'STREAM_CLOSED'),
      );
    } finally {
      cleanup();
    }
  }

  #operationSignal(options: OperationOptions): { signal: AbortSignal; cleanup: () => void } {
    const controller = new AbortController();
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const timer = setTimeout(() => {
      controller.abort(new DOMException(`timed out after ${timeoutMs} ms`, 'TimeoutError'));
    }, timeoutMs);
    const onAbort = (): void => controller.abort(options.signal?.reason);
    if (options.signal?.aborted === true) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    const onDone = (): void => controller.abort(this.#done.signal.reason);
    this.#done.signal.addEventListener('abort', onDone, { once: true });
    return {
      signal: controller.signal,
      cleanup: () => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        this.#done.signal.removeEventListener('abort', onDone);
      },
    };
  }

  #onData(data: Uint8Array | Uint8ArrayList): void {
    if (this.#error !== undefined) return;
    this.#bytesReceived += data.byteLength;
    this.#stats.bytesReceived += data.byteLength;
    let frames: Uint8Array[];
    try {
      frames = this.#decoder.push(data);
    } catch (err) {
      const e = err as NetError;
      this.#log.warn(
        { remote: this.remotePeer, protocol: this.protocol, code: e.code, details: e.details },
        `bad frame: ${e.message}`,
      );
      this.abort(e);
      return;
    }
    for (const frame of frames) {
      this.#framesReceived++;
      this.#stats.framesReceived++;
      const waiter = this.#waiters.shift();
      if (waiter !== undefined) {
        waiter.resolve(frame);
        continue;
      }
      this.#frames.push(frame);
      this.#queuedBytes += frame.byteLength;
      if (this.#queuedBytes > this.#highWater && this.#stream.readStatus === 'readable') {
        this.#stream.pause();
      }
    }
  }

  #dequeued(frame: Uint8Array): void {
    this.#queuedBytes -= frame.byteLength;
    if (this.#queuedBytes <= this.#highWater / 2 && this.#stream.readStatus === 'paused') {
      this.#stream.resume();
    }
  }

  #onEnd(): void {
    if (this.#error !== undefined || this.#eof) return;
    const status = this.#stream.status;
    if (status === 'reset' || status === 'aborted') {
      this.#fail(new NetError('STREAM_CLOSED', `stream ${status}`));
      return;
    }
    if (!this.#remoteClosedWrite) {
      this.#fail(new NetError('STREAM_CLOSED', 'stream closed before the remote finished (connection lost?)'));
      return;
    }
    if (this.#decoder.buffered > 0) {
      this.abort(new NetError('PROTOCOL_ERROR', `stream ended inside a frame (${this.#decoder.buffered} bytes)`));
      return;
    }
    this.#eof = true;
    for (const waiter of this.#waiters.splice(0)) {
      if (waiter.allowEnd) waiter.resolve(undefined);
      else waiter.reject(new NetError('STREAM_CLOSED', 'remote closed the stream'));
    }
  }

  /** Record the terminal error (first one wins) and reject everything pending. */
  #fail(err: NetError): NetError {
    if (this.#error !== undefined) return this.#error;
    this.#error = err;
    this.#stats.errors[err.code] = (this.#stats.errors[err.code] ?? 0) + 1;
    this.#frames.length = 0;
    this.#queuedBytes = 0;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(err);
    this.#done.abort(err);
    return err;
  }
}

/** Registers framed protocols on a libp2p node and opens sessions; keeps per-protocol counters. */
export class SessionRegistry {
  readonly #libp2p: Libp2p;
  readonly #log: Logger;
  readonly #stats = new Map<string, ProtocolStats>();
  readonly #handlerOptions = new Map<string, HandleOptions>();
  readonly #active = new Set<Session>();

  constructor(libp2p: Libp2p, log: Logger) {
    this.#libp2p = libp2p;
    this.#log = log;
  }

  /**
   * Serve `protocol`: every inbound stream becomes a Session passed to `handler`. When the handler
   * resolves the session is closed gracefully; when it throws (or exceeds `sessionTimeoutMs`) the
   * session is aborted. Throws NetError ALREADY_HANDLED if the protocol is already served.
   */
  async handle(protocol: string, handler: SessionHandler, options: HandleOptions = {}): Promise<void> {
    if (this.#handlerOptions.has(protocol)) {
      throw new NetError('ALREADY_HANDLED', `a handler for ${protocol} is already registered`);
    }
    this.#handlerOptions.set(protocol, options);
    const stats = this.stats(protocol);
    const sessionTimeoutMs = options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS;
    try {
      await this.#libp2p.handle(
        protocol,
        async (stream: Stream, connection: Connection) => {
          const remotePeer = connection.remotePeer.toString();
          const session = new Session(stream, { ...options, protocol, remotePeer, log: this.#log, stats });
          stats.sessionsAccepted++;
          this.#active.add(session);
          const deadline = setTimeout(() => {
            session.abort(new NetError('STREAM_TIMEOUT', `session exceeded ${sessionTimeoutMs} ms`));
          }, sessionTimeoutMs);
          try {
            await handler(session, remotePeer);
            await session.close();
          } catch (err) {
            const e =
              err instanceof NetError
                ? err
                : new NetError('HANDLER_FAILED', `${protocol} handler failed: ${(err as Error).message}`, {
                    cause: err,
                  });
            this.#log.debug({ err, remote: remotePeer, protocol, code: e.code }, 'inbound session failed');
            session.abort(e);
          } finally {
            clearTimeout(deadline);
            this.#active.delete(session);
          }
        },
        {
          maxInboundStreams: options.maxInboundStreams ?? 16,
          maxOutboundStreams: options.maxOutboundStreams ?? 16,
        },
      );
    } catch (err) {
      this.#handlerOptions.delete(protocol);
      throw err;
    }
  }

  async unhandle(protocol: string): Promise<void> {
    this.#handlerOptions.delete(protocol);
    await this.#libp2p.unhandle(protocol);
  }

  /**
   * Open a session with `peer` on `protocol` (dialling if not connected). Throws NetError DIAL_FAILED,
   * DENIED, UNSUPPORTED_PROTOCOL, TOO_MANY_STREAMS, STREAM_TIMEOUT or ABORTED.
   */
  async open(peer: PeerId | Multiaddr, protocol: string, options: OpenSessionOptions = {}): Promise<Session> {
    const stats = this.stats(protocol);
    const handled = this.#handlerOptions.get(protocol);
    const openSignal = AbortSignal.any([
      ...(options.signal === undefined ? [] : [options.signal]),
      AbortSignal.timeout(options.openTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS),
    ]);
    let stream: Stream;
    try {
      stream = await this.#libp2p.dialProtocol(peer, protocol, {
        signal: openSignal,
        ...(handled?.maxOutboundStreams === undefined ? {} : { maxOutboundStreams: handled.maxOutboundStreams }),
      });
    } catch (err) {
      const e = toNetError(err, `open ${protocol}`, openSignal);
      stats.errors[e.code] = (stats.errors[e.code] ?? 0) + 1;
      throw e;
    }
    const remotePeer = isPeerId(peer) ? peer.toString() : remotePeerOf(stream, this.#libp2p, peer);
    const session = new Session(stream, {
      maxFrameSize: options.maxFrameSize ?? handled?.maxFrameSize,
      timeoutMs: options.timeoutMs ?? handled?.timeoutMs,
      protocol,
      remotePeer,
      log: this.#log,
      stats,
    });
    stats.sessionsOpened++;
    this.#active.add(session);
    session.signal.addEventListener('abort', () => this.#active.delete(session), { once: true });
    stream.addEventListener('close', () => this.#active.delete(session), { once: true });
    const signal = options.signal;
    if (signal !== undefined) {
      const onAbort = (): void => session.abort(errorFromSignal(signal, 'session'));
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        stream.addEventListener('close', () => signal.removeEventListener('abort', onAbort), { once: true });
      }
    }
    return session;
  }

  /** Counters for `protocol` (live object). */
  stats(protocol: string): ProtocolStats {
    let s = this.#stats.get(protocol);
    if (s === undefined) {
      s = newProtocolStats();
      this.#stats.set(protocol, s);
    }
    return s;
  }

  allStats(): Record<string, ProtocolStats> {
    return Object.fromEntries([...this.#stats].map(([p, s]) => [p, { ...s, errors: { ...s.errors } }]));
  }

  /** Abort every open session (used when the host stops). */
  abortAll(err: NetError): void {
    for (const session of [...this.#active]) session.abort(err);
    this.#active.clear();
  }
}

function remotePeerOf(stream: Stream, libp2p: Libp2p, addr: Multiaddr): string {
  for (const conn of libp2p.getConnections()) {
    if (conn.streams.includes(stream)) return conn.remotePeer.toString();
  }
  const p2p = addr.getComponents().findLast((c) => c.name === 'p2p');
  return p2p?.value ?? 'unknown';
}
