import { encode } from '../codec/index.js';
import type { MeshPubsub, PubsubMessage, ValidationResult } from '../net/index.js';
import type { DeltaWire, Replica } from '../replica/index.js';
import { type Logger, logger } from '../util/log.js';
import type { DeltaLog } from './delta-log.js';
import { DeltaIngest, type IngestStats } from './ingest.js';

export interface GossipOptions {
  replica: Replica;
  pubsub: MeshPubsub;
  /** One topic per mesh, e.g. `agentmesh/<mesh name>/deltas/1`. */
  topic: string;
  deltaLog: DeltaLog;
  /**
   * How long local deltas wait for company before they are published (ms). 0 (the default)
   * publishes on the next turn of the event loop: everything made durable in the same turn (one
   * group commit acknowledges many writes at once) still goes out as one message, and an idle
   * node pays no timer delay.
   */
  batchMs?: number;
  /** Most deltas in one message. */
  maxBatch?: number;
  /** Called when an applied delta reveals missing seqs of its origin (`peer` relayed it). */
  onGap?: (origin: string, peer: string) => void;
  /**
   * Whether a batch must go out over gossipsub at all. The direct push streams carry every local
   * delta to connected peers; gossip is needed only for members that no push stream reaches
   * (a mesh that is not fully connected). Default: always.
   */
  needed?: () => boolean;
  log?: Logger;
}

export interface GossipStats extends IngestStats {
  messagesPublished: number;
  deltasPublished: number;
  bytesPublished: number;
  publishFailures: number;
  /** Batches not published because every member was reached by a direct push stream. */
  batchesSkipped: number;
}

/**
 * Eager delta dissemination over gossipsub. Local deltas are batched for a few milliseconds,
 * encoded with the codec and published on the mesh topic; gossipsub signs them (StrictSign) and
 * receivers only accept a delta whose origin is the signer, so no peer can speak for another.
 * Validation and application happen in the gossipsub validator, so a bad message is neither
 * applied nor forwarded.
 */
export class DeltaGossip {
  private readonly ingest: DeltaIngest;
  private readonly publishStats = {
    messagesPublished: 0,
    deltasPublished: 0,
    bytesPublished: 0,
    publishFailures: 0,
    batchesSkipped: 0,
  };
  private readonly batchMs: number;
  private readonly maxBatch: number;
  private readonly log: Logger;
  private queue: DeltaWire[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private inflight: Promise<void> = Promise.resolve();
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly options: GossipOptions) {
    this.batchMs = options.batchMs ?? 0;
    this.maxBatch = options.maxBatch ?? 512;
    this.log = options.log ?? logger('mesh:gossip');
    this.ingest = new DeltaIngest({
      replica: options.replica,
      deltaLog: options.deltaLog,
      maxBatch: this.maxBatch * 2,
      onGap: options.onGap,
    });
  }

  get stats(): GossipStats {
    return { ...this.ingest.stats, ...this.publishStats };
  }

  start(): void {
    this.unsubscribe = this.options.pubsub.subscribe(this.options.topic, () => {}, {
      validate: (msg) => this.receive(msg),
    });
  }

  /** Publishes what is queued and stops listening. */
  async stop(): Promise<void> {
    await this.flush();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** Queues a local (already durable) delta, in wire form, for publication. */
  publish(wire: DeltaWire): void {
    this.queue.push(wire);
    if (this.queue.length >= this.maxBatch) void this.flush();
    else
      this.timer ??=
        this.batchMs > 0 ? setTimeout(() => void this.flush(), this.batchMs) : setImmediate(() => void this.flush());
  }

  /** Publishes every queued delta now; resolves when the publishes have been handed to gossipsub. */
  flush(): Promise<void> {
    if (this.timer !== undefined) {
      if (this.batchMs > 0) clearTimeout(this.timer as NodeJS.Timeout);
      else clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = undefined;
    }
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      // A batch that cannot be sent must not wedge the chain for every later one.
      this.inflight = this.inflight
        .then(() => this.send(batch))
        .catch((err: unknown) => {
          this.publishStats.publishFailures++;
          this.log.error({ err }, 'could not publish a delta batch; anti-entropy will deliver it');
        });
    }
    return this.inflight;
  }

  private async send(batch: DeltaWire[]): Promise<void> {
    if (this.options.needed !== undefined && !this.options.needed()) {
      this.publishStats.batchesSkipped++;
      return;
    }
    const data = encode(batch);
    if (data.length > this.options.pubsub.maxMessageSize && batch.length > 1) {
      const half = batch.length >> 1;
      await this.send(batch.slice(0, half));
      await this.send(batch.slice(half));
      return;
    }
    try {
      await this.options.pubsub.publish(this.options.topic, data);
      this.publishStats.messagesPublished++;
      this.publishStats.deltasPublished += batch.length;
      this.publishStats.bytesPublished += data.length;
    } catch (err) {
      // No subscribed peer yet, or a peer dropped mid-publish: anti-entropy delivers it later.
      this.publishStats.publishFailures++;
      this.log.debug({ err }, 'publish failed');
    }
  }

  private receive(msg: PubsubMessage): ValidationResult {
    const outcome = this.ingest.ingest(msg.data, msg.from, msg.relayedBy);
    if (outcome.kind === 'accepted') return 'accept';
    if (outcome.kind === 'rejected') {
      this.log.warn({ from: msg.from, reason: outcome.reason, err: outcome.error.message }, 'rejected gossip message');
      return 'reject';
    }
    // A clock a little too far ahead is a fault of the origin's host, not of the relaying peer:
    // drop without penalising the relayer's gossip score.
    return outcome.onlyClock ? 'ignore' : 'reject';
  }
}
