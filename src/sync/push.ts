import { encode } from '../codec/index.js';
import { type MeshHost, NetError, type Session } from '../net/index.js';
import type { DeltaWire, Replica } from '../replica/index.js';
import { type Logger, logger } from '../util/log.js';
import type { DeltaLog } from './delta-log.js';
import { DeltaIngest, type IngestStats } from './ingest.js';

/**
 * Direct delta push: every node keeps one long-lived stream to each connected peer and writes its
 * own deltas to it, as soon as they are durable.
 *
 * Why not gossipsub alone: a CPU profile of a node under API load spent most of its time in
 * gossipsub's per-message work (a signature check per message with the key rebuilt each time,
 * duplicate copies from flood publish plus mesh forwarding, a yamux/noise frame per tiny message).
 * A push stream needs none of it: the noise channel already authenticates the remote peer, so a
 * stream carries only its sender's own deltas (anything else is refused whole); there are no
 * duplicates; and everything made durable in one turn of the event loop (one group commit) is
 * encoded once into one frame for all peers. Gossipsub stays for members no stream reaches (a mesh
 * that is not fully connected), and anti-entropy repairs whatever a broken stream lost (the
 * receiver sees the gap in the sender's seqs at its next delta).
 *
 * Wire: `/agentmesh/<mesh>/push/1`, one stream per direction per peer pair, length-prefixed frames
 * (see net/stream.ts); a frame is a codec-encoded array of delta wires; an empty array is a
 * keep-alive, sent after `keepaliveMs` of silence so the receiver can tell a dead stream from a
 * quiet one.
 */
export const pushProtocol = (mesh: string): string => `/agentmesh/${mesh}/push/1`;

export interface PushOptions {
  replica: Replica;
  host: MeshHost;
  meshName: string;
  deltaLog: DeltaLog;
  /** Called when an applied delta reveals missing seqs of its origin. */
  onGap?: (origin: string, peer: string) => void;
  /** Most deltas in one frame (default 512). */
  maxBatch?: number;
  /** Largest frame sent or accepted (default 4 MiB). */
  maxFrameSize?: number;
  /**
   * Bytes queued for one peer whose stream is blocked (a peer not reading) before that stream is
   * dropped and reopened; anti-entropy delivers what it lost. Default 16 MiB.
   */
  maxQueuedBytes?: number;
  /** Keep-alive after this much silence (default 5 s); a receiver gives up after 4x without a frame. */
  keepaliveMs?: number;
  log?: Logger;
}

export interface PushStats extends IngestStats {
  linksOpened: number;
  /** Connected peers that refused the protocol: another mesh, or a node of another version. */
  peersUnsupported: number;
  linkFailures: number;
  /** Streams dropped because the peer did not take what was queued for it. */
  linksOverflowed: number;
  framesSent: number;
  deltasSent: number;
  bytesSent: number;
}

const REOPEN_MIN_MS = 250;
/** A keep-alive is an empty batch (the framing drops empty frames). */
const KEEPALIVE = encode([]);
const REOPEN_MAX_MS = 30_000;

/** One outbound stream to one peer, with the frames it has not taken yet. */
class PushLink {
  session: Session | undefined;
  readonly frames: Uint8Array[] = [];
  queuedBytes = 0;
  pumping = false;
  lastSentAt = Date.now();
  attempts = 0;
  timer: NodeJS.Timeout | undefined;
  closed = false;

  constructor(readonly peer: string) {}
}

export class DeltaPush {
  private readonly ingest: DeltaIngest;
  private readonly links = new Map<string, PushLink>();
  /** Peers that do not speak the protocol (another mesh, an older version): gossip reaches them. */
  private readonly unsupported = new Set<string>();
  private readonly sendStats = {
    linksOpened: 0,
    peersUnsupported: 0,
    linkFailures: 0,
    linksOverflowed: 0,
    framesSent: 0,
    deltasSent: 0,
    bytesSent: 0,
  };
  private readonly maxBatch: number;
  private readonly maxFrameSize: number;
  private readonly maxQueuedBytes: number;
  private readonly keepaliveMs: number;
  private readonly log: Logger;
  private pending: DeltaWire[] = [];
  private flushScheduled = false;
  private keepalive: NodeJS.Timeout | undefined;
  private offs: Array<() => void> = [];
  private running = false;

  constructor(private readonly options: PushOptions) {
    this.maxBatch = options.maxBatch ?? 512;
    this.maxFrameSize = options.maxFrameSize ?? 4 * 1024 * 1024;
    this.maxQueuedBytes = options.maxQueuedBytes ?? 16 * 1024 * 1024;
    this.keepaliveMs = options.keepaliveMs ?? 5_000;
    this.log = options.log ?? logger('mesh:push');
    this.ingest = new DeltaIngest({
      replica: options.replica,
      deltaLog: options.deltaLog,
      maxBatch: this.maxBatch * 2,
      onGap: options.onGap,
    });
  }

  get protocol(): string {
    return pushProtocol(this.options.meshName);
  }

  get stats(): PushStats {
    return { ...this.ingest.stats, ...this.sendStats };
  }

  /** Whether a push stream to `peer` is open (its deltas reach it directly). */
  reaches(peer: string): boolean {
    return this.links.get(peer)?.session !== undefined;
  }

  async start(): Promise<void> {
    const { host } = this.options;
    this.running = true;
    await host.handle(this.protocol, (session, remote) => this.serve(session, remote), {
      maxFrameSize: this.maxFrameSize,
      timeoutMs: this.keepaliveMs * 4,
      // One stream per peer and direction is the norm; a few more cover a reopen racing the old one.
      maxInboundStreams: 4,
      maxOutboundStreams: 4,
      // The stream lives as long as the connection; the keep-alive timeout ends a dead one.
      sessionTimeoutMs: 2 ** 31 - 1,
    });
    this.offs.push(
      host.on('peer:connect', (peer) => this.connect(peer)),
      host.on('peer:disconnect', (peer) => this.disconnect(peer)),
    );
    for (const peer of host.connectedPeers()) this.connect(peer);
    this.keepalive = setInterval(() => this.keepAlive(), Math.max(50, this.keepaliveMs / 2));
    this.keepalive.unref();
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const off of this.offs.splice(0)) off();
    clearInterval(this.keepalive);
    this.flush();
    for (const peer of [...this.links.keys()]) this.disconnect(peer);
    await this.options.host.unhandle(this.protocol).catch(() => {});
  }

  /** Queues a local, durable delta for every push stream; they go out on the next turn. */
  publish(wire: DeltaWire): void {
    if (this.links.size === 0) return;
    this.pending.push(wire);
    if (this.pending.length >= this.maxBatch) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Encodes what is pending, once, and hands the frames to every open stream. */
  flush(): void {
    this.flushScheduled = false;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxBatch);
      for (const [frame, count] of this.framesOf(batch)) {
        for (const link of this.links.values()) {
          if (link.session === undefined) continue;
          this.sendStats.deltasSent += count;
          this.enqueue(link, frame);
        }
      }
    }
  }

  /** `batch` as frames within the size limit (halving only when a batch of large deltas needs it). */
  private framesOf(batch: DeltaWire[]): Array<[Uint8Array, number]> {
    const frame = encode(batch);
    if (frame.length <= this.maxFrameSize) return [[frame, batch.length]];
    if (batch.length === 1) {
      this.log.warn({ bytes: frame.length }, 'a delta larger than a push frame; anti-entropy will carry it');
      return [];
    }
    const half = batch.length >> 1;
    return [...this.framesOf(batch.slice(0, half)), ...this.framesOf(batch.slice(half))];
  }

  private connect(peer: string): void {
    if (!this.running || this.links.has(peer) || this.unsupported.has(peer)) return;
    const link = new PushLink(peer);
    this.links.set(peer, link);
    void this.open(link);
  }

  private disconnect(peer: string): void {
    const link = this.links.get(peer);
    if (link === undefined) return;
    link.closed = true;
    clearTimeout(link.timer);
    this.links.delete(peer);
    link.session?.abort(new NetError('ABORTED', 'peer disconnected'));
  }

  private async open(link: PushLink): Promise<void> {
    if (link.closed || !this.running) return;
    link.attempts++;
    let session: Session;
    try {
      session = await this.options.host.openSession(link.peer, this.protocol, {
        maxFrameSize: this.maxFrameSize,
        timeoutMs: this.keepaliveMs * 4,
        openTimeoutMs: 5_000,
      });
    } catch (err) {
      if (link.closed) return;
      if (err instanceof NetError && err.code === 'UNSUPPORTED_PROTOCOL') {
        // Not one of ours (or not this mesh): never retry while it stays connected.
        this.unsupported.add(link.peer);
        this.links.delete(link.peer);
        this.sendStats.peersUnsupported++;
        this.log.info(
          { peer: link.peer, mesh: this.options.meshName },
          'connected peer does not speak this mesh (another --mesh name, or another version): nothing is exchanged with it',
        );
        return;
      }
      this.sendStats.linkFailures++;
      this.retry(link, err);
      return;
    }
    if (link.closed) {
      session.abort(new NetError('ABORTED', 'peer disconnected'));
      return;
    }
    this.sendStats.linksOpened++;
    link.session = session;
    link.attempts = 0;
    link.lastSentAt = Date.now();
    session.signal.addEventListener(
      'abort',
      () => {
        if (link.session !== session) return;
        link.session = undefined;
        link.frames.length = 0;
        link.queuedBytes = 0;
        if (link.closed) return;
        this.sendStats.linkFailures++;
        this.retry(link, session.error);
      },
      { once: true },
    );
  }

  private retry(link: PushLink, err: unknown): void {
    if (link.closed || !this.running) return;
    const base = Math.min(REOPEN_MAX_MS, REOPEN_MIN_MS * 2 ** Math.min(10, link.attempts - 1));
    const delay = base / 2 + Math.random() * (base / 2);
    this.log.debug({ peer: link.peer, err: (err as Error | undefined)?.message, delay }, 'push stream lost; reopening');
    link.timer = setTimeout(() => void this.open(link), delay);
    link.timer.unref();
  }

  private enqueue(link: PushLink, frame: Uint8Array): void {
    if (link.queuedBytes + frame.length > this.maxQueuedBytes) {
      this.sendStats.linksOverflowed++;
      this.log.warn(
        { peer: link.peer, queuedBytes: link.queuedBytes },
        'peer is not taking its deltas; dropping the stream (anti-entropy will catch it up)',
      );
      link.session?.abort(new NetError('ABORTED', 'push queue overflow'));
      return;
    }
    link.frames.push(frame);
    link.queuedBytes += frame.length;
    if (!link.pumping) void this.pump(link);
  }

  private async pump(link: PushLink): Promise<void> {
    link.pumping = true;
    try {
      for (;;) {
        const session = link.session;
        const frame = link.frames.shift();
        if (frame === undefined || session === undefined) return;
        link.queuedBytes -= frame.length;
        await session.send(frame);
        link.lastSentAt = Date.now();
        this.sendStats.framesSent++;
        this.sendStats.bytesSent += frame.length;
      }
    } catch {
      // The session failed: its abort listener counts it and reopens.
    } finally {
      link.pumping = false;
    }
  }

  private keepAlive(): void {
    const now = Date.now();
    for (const link of this.links.values()) {
      if (link.session !== undefined && !link.pumping && now - link.lastSentAt >= this.keepaliveMs) {
        this.enqueue(link, KEEPALIVE);
      }
    }
  }

  /** An inbound stream: the remote peer's own deltas, until it closes or goes silent. */
  private async serve(session: Session, remote: string): Promise<void> {
    for (;;) {
      const frame = await session.receiveOrEnd();
      if (frame === undefined) return;
      const outcome = this.ingest.ingest(frame, remote, remote);
      if (outcome.kind === 'rejected') {
        this.log.warn(
          { from: remote, reason: outcome.reason, err: outcome.error.message },
          'rejected a push frame; closing the stream',
        );
        throw new NetError('PROTOCOL_ERROR', `push frame rejected: ${outcome.reason}`);
      }
    }
  }
}
