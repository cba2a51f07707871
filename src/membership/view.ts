import { Emitter } from '../util/emitter.js';
import { PhiAccrualDetector, type PhiOptions } from './phi.js';

/**
 * - `alive`: heartbeats arrive as expected, or a live connection vouches for the peer.
 * - `suspect`: φ crossed `suspectPhi`; still reachable, a fresh heartbeat makes it alive again.
 * - `dead`: suspect, disconnected and silent for `deadAfterMs`; not reachable.
 * - `unknown`: no evidence either way (never seen, only an old heartbeat seen, or forgotten).
 */
export type PeerState = 'alive' | 'suspect' | 'dead' | 'unknown';

export interface PeerInfo {
  readonly id: string;
  readonly state: PeerState;
  readonly phi: number;
  /** The highest heartbeat value seen in the peer's own record (its clock, not ours). */
  readonly lastHeartbeatMs: number | null;
  /** Local time at which the latest fresh heartbeat was observed. */
  readonly lastSeenAt: number | null;
  readonly connected: boolean;
}

export type MembershipEvents = {
  state: { readonly peerId: string; readonly from: PeerState; readonly to: PeerState };
};

export interface MembershipOptions {
  readonly selfId: string;
  /** Local clock in milliseconds; injected so tests drive time. */
  readonly now?: () => number;
  /** How often every node bumps its record's heartbeat; also the detector's first estimate. */
  readonly heartbeatIntervalMs?: number;
  /** φ at which a peer becomes suspect (Akka and Cassandra both default to 8). */
  readonly suspectPhi?: number;
  /**
   * Silence after which a suspect, disconnected peer is dead. Default 10 × heartbeatIntervalMs.
   * A time bound rather than a second φ threshold: φ is a log scale, and for a regular peer (sd at
   * its 100 ms floor) it climbs from 8 to 16 in about 0.2 s, so a "dead φ" would add no grace.
   * Death has costly consequences (the node's agents become unreachable), so it waits for a
   * bound an operator can read: ~4.5 s to suspect, 10 s to dead with the defaults.
   */
  readonly deadAfterMs?: number;
  /** How long a peer stays dead before it is dropped from the view. Default 1 hour. */
  readonly forgetAfterMs?: number;
  /** Default 3 × heartbeatIntervalMs (Akka cluster: 3 s for a 1 s interval). */
  readonly acceptableHeartbeatPauseMs?: number;
  /** Default 100 ms (Akka `min-std-deviation`). */
  readonly minStdDeviationMs?: number;
  /** Default 100 inter-arrival samples per peer. */
  readonly maxSampleSize?: number;
  readonly onListenerError?: (err: unknown) => void;
}

interface Entry {
  state: PeerState;
  connected: boolean;
  /** Created on the first fresh heartbeat; an entry with only a baseline value has none. */
  detector: PhiAccrualDetector | undefined;
  lastSeenAt: number | null;
  /** Local time the entry was created: how long we have been watching a silent peer. */
  readonly since: number;
  deadSince: number | null;
}

type Transition = MembershipEvents['state'];

/**
 * The local view of which peers are alive, fed by the heartbeats in replicated node records and by
 * connection hints. Pure and time-injected: states change only in `observe`, `connected`, `tick`
 * and `forget`; `start`/`stop` merely call `tick` on a timer.
 *
 * Liveness evidence is a heartbeat value *newer* than any seen before from that peer. Replicated
 * state is replayed by anti-entropy and loaded from disk at start, so an old value proves nothing:
 * the first value seen for a peer is only a baseline, and each later one must exceed it. A peer
 * that never beats while we watch it for `deadAfterMs` is declared dead.
 */
export class MembershipView {
  readonly events: Emitter<MembershipEvents>;
  readonly selfId: string;
  private readonly now: () => number;
  private readonly suspectPhi: number;
  private readonly deadAfterMs: number;
  private readonly forgetAfterMs: number;
  private readonly detectorOptions: PhiOptions;
  private readonly heartbeatIntervalMs: number;
  private readonly entries = new Map<string, Entry>();
  /** Highest heartbeat value per peer; outlives `forget` so replays cannot resurrect a peer. */
  private readonly watermarks = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(options: MembershipOptions) {
    const interval = options.heartbeatIntervalMs ?? 1000;
    if (!(interval > 0)) throw new RangeError('heartbeatIntervalMs must be > 0');
    this.selfId = options.selfId;
    this.now = options.now ?? Date.now;
    this.heartbeatIntervalMs = interval;
    this.suspectPhi = options.suspectPhi ?? 8;
    this.deadAfterMs = options.deadAfterMs ?? 10 * interval;
    this.forgetAfterMs = options.forgetAfterMs ?? 60 * 60_000;
    this.detectorOptions = {
      firstHeartbeatEstimateMs: interval,
      acceptableHeartbeatPauseMs: options.acceptableHeartbeatPauseMs ?? 3 * interval,
      minStdDeviationMs: options.minStdDeviationMs ?? 100,
      maxSampleSize: options.maxSampleSize ?? 100,
      threshold: this.suspectPhi,
    };
    new PhiAccrualDetector(this.detectorOptions); // validate once, here, rather than on the first heartbeat
    this.events = new Emitter(options.onListenerError);
  }

  /**
   * Feeds the heartbeat value from `peerId`'s replicated node record. Returns true if it was fresh
   * evidence of life (strictly newer than every value seen before, and not the first one seen).
   */
  observe(peerId: string, heartbeat: number): boolean {
    if (peerId === this.selfId || !Number.isFinite(heartbeat)) return false;
    const previous = this.watermarks.get(peerId);
    if (previous !== undefined && heartbeat <= previous) return false;
    this.watermarks.set(peerId, heartbeat);
    const now = this.now();
    const entry = this.entry(peerId, now);
    if (previous !== undefined) {
      entry.detector ??= new PhiAccrualDetector(this.detectorOptions);
      entry.detector.heartbeat(now);
      entry.lastSeenAt = now;
    }
    this.emitAll([this.update(peerId, entry, now)]);
    return previous !== undefined;
  }

  /** A hint from the transport: a live connection keeps a peer reachable (alive or suspect, never dead). */
  connected(peerId: string, up: boolean): void {
    if (peerId === this.selfId) return;
    const now = this.now();
    let entry = this.entries.get(peerId);
    if (entry === undefined && !up) return;
    entry ??= this.entry(peerId, now);
    entry.connected = up;
    if (!up && !this.watermarks.has(peerId)) {
      // Known only through the connection: nothing is left to judge it by.
      this.forget(peerId);
      return;
    }
    this.emitAll([this.update(peerId, entry, now)]);
  }

  /** Recomputes every peer's state at the current time and drops peers dead for `forgetAfterMs`. */
  tick(): void {
    const now = this.now();
    const changes: Array<Transition | undefined> = [];
    for (const [id, entry] of this.entries) changes.push(this.update(id, entry, now));
    this.emitAll(changes);
    for (const [id, entry] of [...this.entries]) {
      if (entry.state === 'dead' && entry.deadSince !== null && now - entry.deadSince >= this.forgetAfterMs) {
        this.forget(id);
      }
    }
  }

  /**
   * Drops a peer from the view (its state becomes `unknown`). The highest heartbeat seen is kept,
   * so only a genuinely newer heartbeat brings the peer back.
   */
  forget(peerId: string): void {
    const entry = this.entries.get(peerId);
    if (entry === undefined) return;
    this.entries.delete(peerId);
    this.emitAll([{ peerId, from: entry.state, to: 'unknown' }]);
  }

  state(peerId: string): PeerState {
    if (peerId === this.selfId) return 'alive';
    return this.entries.get(peerId)?.state ?? 'unknown';
  }

  /** Self always; other nodes while alive or suspect. Dead and unknown nodes are not reachable. */
  isReachable(nodeId: string): boolean {
    const s = this.state(nodeId);
    return s === 'alive' || s === 'suspect';
  }

  /** Peers not considered dead (self excluded), without computing phi: cheap enough for hot paths. */
  *liveIds(): IterableIterator<string> {
    for (const [id, e] of this.entries) if (e.state !== 'dead') yield id;
  }

  /** Every peer in the view (self excluded), in first-seen order, as of the last state change. */
  peers(): PeerInfo[] {
    const now = this.now();
    return [...this.entries].map(([id, e]) => ({
      id,
      state: e.state,
      phi: e.detector?.phi(now) ?? 0,
      lastHeartbeatMs: this.watermarks.get(id) ?? null,
      lastSeenAt: e.lastSeenAt,
      connected: e.connected,
    }));
  }

  /**
   * Calls `tick` every `intervalMs` (default: the heartbeat interval, like Akka's
   * `unreachable-nodes-reaper-interval` of 1 s). The timer does not keep the process alive.
   */
  start(intervalMs = this.heartbeatIntervalMs): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private entry(peerId: string, now: number): Entry {
    let entry = this.entries.get(peerId);
    if (entry === undefined) {
      entry = {
        state: 'unknown',
        connected: false,
        detector: undefined,
        lastSeenAt: null,
        since: now,
        deadSince: null,
      };
      this.entries.set(peerId, entry);
    }
    return entry;
  }

  private evaluate(entry: Entry, now: number): PeerState {
    const { detector } = entry;
    const suspicious = detector !== undefined && detector.phi(now) >= this.suspectPhi;
    if (entry.connected) return suspicious ? 'suspect' : 'alive';
    if (detector === undefined) return now - entry.since >= this.deadAfterMs ? 'dead' : 'unknown';
    if (!suspicious) return 'alive';
    return now - (entry.lastSeenAt ?? entry.since) >= this.deadAfterMs ? 'dead' : 'suspect';
  }

  private update(peerId: string, entry: Entry, now: number): Transition | undefined {
    const from = entry.state;
    const to = this.evaluate(entry, now);
    if (to === from) return undefined;
    entry.state = to;
    entry.deadSince = to === 'dead' ? now : null;
    return { peerId, from, to };
  }

  private emitAll(changes: ReadonlyArray<Transition | undefined>): void {
    for (const change of changes) if (change !== undefined) this.events.emit('state', change);
  }
}
