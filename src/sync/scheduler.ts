import type { MeshHost } from '../net/index.js';
import { type Logger, logger } from '../util/log.js';
import type { StrategyChoice, SyncProtocol, SyncReport } from './protocol.js';

export interface SyncSchedulerOptions {
  protocol: SyncProtocol;
  host: MeshHost;
  /** Adaptive interval bounds (ms): halves after a sync that found differences, grows 1.5x after a clean one. */
  minIntervalMs?: number;
  maxIntervalMs?: number;
  /** Delay before syncing with a freshly connected peer, and after a gap was seen. */
  connectDelayMs?: number;
  gapDelayMs?: number;
  strategy?: StrategyChoice;
  onReport?: (report: SyncReport) => void;
  log?: Logger;
}

/**
 * Decides when to run anti-entropy: right after a connection opens (so a joining or returning
 * node catches up at once), shortly after gossip revealed a gap, and periodically with a random
 * connected peer at an interval that shrinks while replicas keep differing and grows while they
 * agree. At most one session per peer runs at a time.
 */
export class SyncScheduler {
  private readonly running = new Map<string, Promise<SyncReport | undefined>>();
  private readonly pendingGap = new Set<string>();
  private interval: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly stopController = new AbortController();
  private readonly offConnect: () => void;
  private readonly log: Logger;
  private readonly min: number;
  private readonly max: number;

  constructor(private readonly options: SyncSchedulerOptions) {
    this.min = options.minIntervalMs ?? 500;
    this.max = options.maxIntervalMs ?? 15_000;
    this.interval = Math.min(this.max, Math.max(this.min, 2_000));
    this.log = options.log ?? logger('mesh:sync');
    // Both ends see the connection; the lower peer id syncs at once and the other only if no
    // session happened meanwhile, so a joining node is not sent everything twice.
    this.offConnect = options.host.on('peer:connect', (peer) => {
      const delay = options.connectDelayMs ?? 50;
      this.later(peer, options.host.peerId < peer ? delay : delay + 1500, undefined, performance.now());
    });
  }

  get currentIntervalMs(): number {
    return this.interval;
  }

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.offConnect();
    this.stopController.abort();
    if (this.timer !== undefined) clearTimeout(this.timer);
    await Promise.allSettled(this.running.values());
  }

  /** Gossip saw a gap in some origin's seqs: reconcile with the peer that relayed it. */
  gap(peer: string): void {
    if (this.pendingGap.has(peer)) return;
    this.pendingGap.add(peer);
    this.later(peer, this.options.gapDelayMs ?? 200, () => this.pendingGap.delete(peer));
  }

  /** Runs a session with peer unless one is already running; resolves with its report. */
  syncNow(peer: string): Promise<SyncReport | undefined> {
    const existing = this.running.get(peer);
    if (existing) return existing;
    if (this.stopController.signal.aborted) return Promise.resolve(undefined);
    const p = this.options.protocol
      .syncWith(peer, {
        signal: this.stopController.signal,
        ...(this.options.strategy ? { strategy: this.options.strategy } : {}),
      })
      .then(
        (report) => {
          this.options.onReport?.(report);
          return report;
        },
        (err: unknown) => {
          if (!this.stopController.signal.aborted) this.log.debug({ peer, err: (err as Error).message }, 'sync failed');
          return undefined;
        },
      )
      .finally(() => this.running.delete(peer));
    this.running.set(peer, p);
    return p;
  }

  /** Syncs with peer after a delay, unless a session with it started after `unlessSince`. */
  private later(peer: string, delayMs: number, after?: () => void, unlessSince?: number): void {
    const t = setTimeout(() => {
      after?.();
      if (unlessSince !== undefined && this.options.protocol.lastSessionAt(peer) >= unlessSince) return;
      if (this.options.host.connectedPeers().includes(peer)) void this.syncNow(peer);
    }, delayMs);
    t.unref();
  }

  private schedule(): void {
    if (this.stopController.signal.aborted) return;
    // Jitter so that nodes started together do not sync in lockstep.
    const delay = this.interval * (0.75 + Math.random() * 0.5);
    this.timer = setTimeout(() => void this.tick(), delay);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const peers = this.options.host.connectedPeers();
    if (peers.length > 0) {
      const peer = peers[Math.floor(Math.random() * peers.length)] as string;
      const report = await this.syncNow(peer);
      if (report !== undefined) {
        const changed = report.recordsReceived + report.recordsSent + report.deltasReceived > 0;
        this.interval = changed ? Math.max(this.min, this.interval / 2) : Math.min(this.max, this.interval * 1.5);
      }
    }
    this.schedule();
  }
}
