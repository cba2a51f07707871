import { z } from 'zod';
import type { MeshHost } from '../net/index.js';
import { MeshError } from '../util/errors.js';
import type { Logger } from '../util/log.js';

/**
 * Clock offsets between peers, measured NTP-style over a small request protocol: the asker sends
 * its wall clock `t0`, the peer answers with its own `t1`, the asker notes `t3` on receipt. The
 * peer's offset is `t1 - (t0 + t3) / 2`, with an error of at most half the round trip; of a few
 * samples, the one with the shortest round trip wins (NTP's clock filter, in miniature).
 *
 * Why: the mesh refuses remote writes stamped more than `maxDriftMs` ahead of the receiver's
 * clock (HLC drift bound). A node whose clock runs ahead therefore has every write refused by
 * its peers, and before this module it went on acknowledging writes that never left it, with
 * only counters to show. Now each side warns (one line per peer per state change), the offsets
 * show in `/v1/peers` and `/v1/status`, and a node ahead of MOST of its peers by more than the
 * bound refuses local writes with CLOCK_SKEW (503) instead of acknowledging them.
 *
 * Measured on connect and every `intervalMs` with every connected peer.
 *
 * Wire: one session per sample; request and answer are one JSON frame each: `{"t": <wall ms>}`.
 */
export const clockProtocol = (mesh: string): string => `/agentmesh/${mesh}/clock/1`;

const frameSchema = z.strictObject({ t: z.number().finite().nonnegative() });

export class ClockSkewError extends MeshError<'CLOCK_SKEW'> {}

/** One peer's clock as we measured it. */
export interface PeerClock {
  /** Their clock minus ours (ms): positive = the peer runs ahead. */
  offsetMs: number;
  /** Round trip of the sample the offset comes from: the offset is good to ± rttMs / 2. */
  rttMs: number;
  /** Local wall ms of the measurement. */
  at: number;
}

/** How a peer's clock stands relative to ours, against the drift bound. */
export type ClockRelation = 'ok' | 'ahead' | 'behind';

export interface ClockSyncOptions {
  host: MeshHost;
  meshName: string;
  log: Logger;
  /** The drift bound (the HLC's `maxDriftMs`). */
  maxDriftMs: number;
  /** Wall clock (the one the HLC and heartbeats use). Default Date.now. */
  now?: () => number;
  /** Re-measurement period (default 30 s). */
  intervalMs?: number;
  /** Samples per measurement (default 3). */
  samples?: number;
  /** Called when this node's own skew verdict changes. */
  onSelfChange?: (skewed: boolean) => void;
  /**
   * How far this node's HLC runs ahead of its wall clock (ms). Normally near 0; after a clock
   * that ran ahead was set right, the persisted HLC mark keeps new writes stamped in the future
   * until the wall clock catches up, and peers refuse them just the same.
   */
  logicalLeadMs?: () => number;
}

const DEFAULT_INTERVAL_MS = 30_000;
const REQUEST_TIMEOUT_MS = 2_000;
/** A connect can come before the peer registered the protocol: retry a failed first measurement. */
const RETRY_MS = 1_000;
const MAX_RETRIES = 5;

export class ClockSync {
  private readonly host: MeshHost;
  private readonly log: Logger;
  private readonly now: () => number;
  readonly maxDriftMs: number;
  private readonly intervalMs: number;
  private readonly samples: number;
  private readonly protocol: string;
  private readonly clocks = new Map<string, PeerClock>();
  private readonly relations = new Map<string, ClockRelation>();
  private readonly inFlight = new Set<string>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private timer: NodeJS.Timeout | undefined;
  private offConnect: (() => void) | undefined;
  private offDisconnect: (() => void) | undefined;
  private running = false;
  private selfSkewed = false;
  private logicalAhead = false;
  readonly stats = { measurements: 0, failures: 0, served: 0, badRequests: 0, refusedWrites: 0 };

  constructor(private readonly options: ClockSyncOptions) {
    this.host = options.host;
    this.log = options.log;
    this.now = options.now ?? Date.now;
    this.maxDriftMs = options.maxDriftMs;
    this.intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.samples = options.samples ?? 3;
    this.protocol = clockProtocol(options.meshName);
  }

  async start(): Promise<void> {
    this.running = true;
    await this.host.handle(this.protocol, async (session) => {
      try {
        const frame = await session.receive();
        // Read the clock as close to the request's arrival as we can.
        const t = this.now();
        frameSchema.parse(JSON.parse(Buffer.from(frame).toString('utf8')));
        await session.send(Buffer.from(JSON.stringify({ t })));
        this.stats.served++;
      } catch (err) {
        this.stats.badRequests++;
        this.log.debug({ err: (err as Error).message }, 'bad clock request');
      } finally {
        await session.close().catch(() => {});
      }
    });
    this.offConnect = this.host.on('peer:connect', (peer) => this.measureSoon(peer, 0));
    this.offDisconnect = this.host.on('peer:disconnect', (peer) => {
      clearTimeout(this.retryTimers.get(peer));
      this.retryTimers.delete(peer);
    });
    for (const peer of this.host.connectedPeers()) this.measureSoon(peer, 0);
    this.timer = setInterval(() => {
      for (const peer of this.host.connectedPeers()) void this.measure(peer);
      this.expire();
    }, this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.timer);
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    this.offConnect?.();
    this.offDisconnect?.();
    await this.host.unhandle(this.protocol).catch(() => {});
  }

  /** Our latest measurement of `peer`'s clock, if fresh. */
  peer(peer: string): PeerClock | undefined {
    return this.clocks.get(peer);
  }

  /**
   * This node's clock against the mesh: ours minus the median of the peers' (positive = we run
   * ahead), or null with no measurement.
   */
  selfOffsetMs(): number | null {
    const offsets = [...this.clocks.values()].map((c) => -c.offsetMs).sort((a, b) => a - b);
    if (offsets.length === 0) return null;
    const mid = offsets.length >> 1;
    return Math.round(
      offsets.length % 2 === 1
        ? (offsets[mid] as number)
        : ((offsets[mid - 1] as number) + (offsets[mid] as number)) / 2,
    );
  }

  /**
   * True when our clock runs ahead of MOST measured peers by more than the drift bound (even
   * allowing for the measurement error): they refuse our writes, so we must not acknowledge any.
   * A node behind its peers is not refused by them (it refuses theirs, and warns), so it is not
   * skewed in this sense.
   */
  get skewed(): boolean {
    return this.selfSkewed || this.logicalLead() > this.maxDriftMs;
  }

  /** Whether our own HLC stamps writes beyond the bound (see `logicalLeadMs`); logged on change. */
  private logicalLead(): number {
    const lead = this.options.logicalLeadMs?.() ?? 0;
    const ahead = lead > this.maxDriftMs;
    if (ahead !== this.logicalAhead) {
      this.logicalAhead = ahead;
      if (ahead) {
        this.log.error(
          { logicalLeadMs: lead, maxClockDriftMs: this.maxDriftMs },
          "this node's logical clock runs ahead of its wall clock beyond the drift bound (its clock ran ahead before it was set right): peers refuse its writes, so it refuses local writes (503 CLOCK_SKEW) until the wall clock catches up",
        );
      } else {
        this.log.warn({}, "this node's logical clock is within the drift bound again: local writes are accepted");
      }
    }
    return lead;
  }

  /** Throws CLOCK_SKEW if this node must not acknowledge writes. Counts the refusal. */
  assertWritable(): void {
    const err = this.skewError();
    if (err === undefined) return;
    this.stats.refusedWrites++;
    throw err;
  }

  /** Why this node must not acknowledge writes now, if it must not. */
  skewError(): ClockSkewError | undefined {
    if (!this.skewed) return undefined;
    if (!this.selfSkewed) {
      const lead = Math.round(this.logicalLead());
      return new ClockSkewError(
        'CLOCK_SKEW',
        `this node's logical clock runs ${lead} ms ahead of its wall clock (bound ${this.maxDriftMs} ms): peers would refuse the write`,
        { details: { logicalLeadMs: lead, maxClockDriftMs: this.maxDriftMs } },
      );
    }
    const offset = this.selfOffsetMs();
    return new ClockSkewError(
      'CLOCK_SKEW',
      `this node's clock runs ${offset ?? '?'} ms ahead of most of its peers (bound ${this.maxDriftMs} ms): they would refuse the write`,
      { details: { clockOffsetMs: offset, maxClockDriftMs: this.maxDriftMs } },
    );
  }

  /** How many measured peers see us beyond the bound, of how many measured. */
  verdict(): { behindUs: number; measured: number } {
    let behindUs = 0;
    for (const c of this.clocks.values()) if (this.relationOf(c) === 'behind') behindUs++;
    return { behindUs, measured: this.clocks.size };
  }

  private relationOf(c: PeerClock): ClockRelation {
    const err = c.rttMs / 2;
    if (c.offsetMs - err > this.maxDriftMs) return 'ahead';
    if (c.offsetMs + err < -this.maxDriftMs) return 'behind';
    return 'ok';
  }

  private measureSoon(peer: string, attempt: number): void {
    if (!this.running || this.retryTimers.has(peer)) return;
    if (attempt === 0) {
      void this.measure(peer).then((ok) => {
        if (!ok) this.measureSoon(peer, 1);
      });
      return;
    }
    if (attempt > MAX_RETRIES) return;
    const t = setTimeout(() => {
      this.retryTimers.delete(peer);
      if (!this.running || !this.host.connectedPeers().includes(peer)) return;
      void this.measure(peer).then((ok) => {
        if (!ok) this.measureSoon(peer, attempt + 1);
      });
    }, RETRY_MS * attempt);
    t.unref();
    this.retryTimers.set(peer, t);
  }

  /** Measures one peer; false if no sample succeeded. */
  async measure(peer: string): Promise<boolean> {
    if (!this.running || this.inFlight.has(peer)) return true;
    this.inFlight.add(peer);
    try {
      let best: PeerClock | undefined;
      for (let i = 0; i < this.samples && this.running; i++) {
        const s = await this.sample(peer);
        if (s !== undefined && (best === undefined || s.rttMs < best.rttMs)) best = s;
      }
      if (best === undefined) {
        this.stats.failures++;
        return false;
      }
      this.stats.measurements++;
      this.clocks.set(peer, best);
      this.judge(peer, best);
      return true;
    } finally {
      this.inFlight.delete(peer);
    }
  }

  private async sample(peer: string): Promise<PeerClock | undefined> {
    try {
      const session = await this.host.openSession(peer, this.protocol, {
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      try {
        const t0 = this.now();
        const reply = await session.request(Buffer.from(JSON.stringify({ t: t0 })));
        const t3 = this.now();
        const { t: t1 } = frameSchema.parse(JSON.parse(Buffer.from(reply).toString('utf8')));
        return { offsetMs: Math.round(t1 - (t0 + t3) / 2), rttMs: Math.max(0, t3 - t0), at: t3 };
      } finally {
        await session.close().catch(() => {});
      }
    } catch (err) {
      this.log.debug({ peer, err: (err as Error).message }, 'clock sample failed');
      return undefined;
    }
  }

  /** Drops measurements older than three periods (peers gone or not answering). */
  private expire(): void {
    const cutoff = this.now() - 3 * this.intervalMs;
    for (const [peer, c] of this.clocks) {
      if (c.at < cutoff) {
        this.clocks.delete(peer);
        this.relations.delete(peer);
      }
    }
    this.judgeSelf();
  }

  private judge(peer: string, c: PeerClock): void {
    const relation = this.relationOf(c);
    const before = this.relations.get(peer) ?? 'ok';
    this.relations.set(peer, relation);
    if (relation !== before) {
      const fields = { peer, clockOffsetMs: c.offsetMs, rttMs: c.rttMs, maxClockDriftMs: this.maxDriftMs };
      if (relation === 'ahead') {
        this.log.warn(
          fields,
          "peer's clock runs ahead of ours beyond the drift bound: its writes are refused here; fix its clock (NTP)",
        );
      } else if (relation === 'behind') {
        this.log.warn(
          fields,
          "peer's clock runs behind ours beyond the drift bound: it refuses our writes and we refuse none of its; fix the clock that is wrong (NTP)",
        );
      } else {
        this.log.info(fields, "peer's clock is within the drift bound again");
      }
    }
    this.judgeSelf();
  }

  private judgeSelf(): void {
    const { behindUs, measured } = this.verdict();
    const skewed = measured > 0 && behindUs * 2 > measured;
    if (skewed === this.selfSkewed) return;
    this.selfSkewed = skewed;
    const fields = { clockOffsetMs: this.selfOffsetMs(), peersBehind: behindUs, peersMeasured: measured };
    if (skewed) {
      this.log.error(
        { ...fields, maxClockDriftMs: this.maxDriftMs },
        "this node's clock runs ahead of most of its peers beyond the drift bound: they refuse its writes, so it refuses local writes (503 CLOCK_SKEW) until its clock is fixed (NTP)",
      );
    } else {
      this.log.warn(fields, "this node's clock agrees with its peers again: local writes are accepted");
    }
    this.options.onSelfChange?.(skewed);
  }
}
