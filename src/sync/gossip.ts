import { CodecError, decode, encode } from '../codec/index.js';
import type { MeshPubsub, PubsubMessage, ValidationResult } from '../net/index.js';
import { type Delta, type DeltaWire, PolicyError, type Replica, ReplicaError } from '../replica/index.js';
import { type Logger, logger } from '../util/log.js';
import type { DeltaLog } from './delta-log.js';

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
  log?: Logger;
}

export interface GossipStats {
  messagesPublished: number;
  deltasPublished: number;
  bytesPublished: number;
  publishFailures: number;
  messagesReceived: number;
  bytesReceived: number;
  deltasApplied: number;
  deltasUnchanged: number;
  deltasDuplicate: number;
  /** Messages dropped before any delta was applied, by reason. */
  rejectedMessages: Record<string, number>;
  /** Individual deltas refused by policy, by reason. */
  rejectedDeltas: Record<string, number>;
}

/**
 * Eager delta dissemination over gossipsub. Local deltas are batched for a few milliseconds,
 * encoded with the codec and published on the mesh topic; gossipsub signs them (StrictSign) and
 * receivers only accept a delta whose origin is the signer, so no peer can speak for another.
 * Validation and application happen in the gossipsub validator, so a bad message is neither
 * applied nor forwarded.
 */
export class DeltaGossip {
  readonly stats: GossipStats = {
    messagesPublished: 0,
    deltasPublished: 0,
    bytesPublished: 0,
    publishFailures: 0,
    messagesReceived: 0,
    bytesReceived: 0,
    deltasApplied: 0,
    deltasUnchanged: 0,
    deltasDuplicate: 0,
    rejectedMessages: {},
    rejectedDeltas: {},
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

  /** Queues a local (already durable) delta for publication. */
  publish(delta: Delta): void {
    const wire = this.options.replica.deltaToWire(delta);
    this.options.deltaLog.add(delta.origin, delta.seq, wire);
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
          this.stats.publishFailures++;
          this.log.error({ err }, 'could not publish a delta batch; anti-entropy will deliver it');
        });
    }
    return this.inflight;
  }

  private async send(batch: DeltaWire[]): Promise<void> {
    const data = encode(batch);
    if (data.length > this.options.pubsub.maxMessageSize && batch.length > 1) {
      const half = batch.length >> 1;
      await this.send(batch.slice(0, half));
      await this.send(batch.slice(half));
      return;
    }
    try {
      await this.options.pubsub.publish(this.options.topic, data);
      this.stats.messagesPublished++;
      this.stats.deltasPublished += batch.length;
      this.stats.bytesPublished += data.length;
    } catch (err) {
      // No subscribed peer yet, or a peer dropped mid-publish: anti-entropy delivers it later.
      this.stats.publishFailures++;
      this.log.debug({ err }, 'publish failed');
    }
  }

  private rejectMessage(reason: string, err: unknown, from: string): ValidationResult {
    this.stats.rejectedMessages[reason] = (this.stats.rejectedMessages[reason] ?? 0) + 1;
    this.log.warn({ from, reason, err: (err as Error).message }, 'rejected gossip message');
    return 'reject';
  }

  private receive(msg: PubsubMessage): ValidationResult {
    this.stats.messagesReceived++;
    this.stats.bytesReceived += msg.data.length;
    const { replica, deltaLog, onGap } = this.options;
    let wires: unknown;
    try {
      wires = decode(msg.data, { validate: (v): v is unknown[] => Array.isArray(v) && v.length <= this.maxBatch * 2 });
    } catch (err) {
      return this.rejectMessage(err instanceof CodecError ? err.code.toLowerCase() : 'malformed', err, msg.from);
    }
    // Decode and authenticate everything before applying anything: a malformed or forged message
    // is refused whole. Deltas then apply one by one; one refused by policy is skipped (and the
    // message is not forwarded), the others stand.
    const deltas: Array<[Delta, DeltaWire]> = [];
    for (const w of wires as unknown[]) {
      let d: Delta;
      try {
        d = replica.deltaFromWire(w);
      } catch (err) {
        return this.rejectMessage(err instanceof ReplicaError ? err.code.toLowerCase() : 'malformed', err, msg.from);
      }
      if (d.origin !== msg.from) {
        return this.rejectMessage(
          'origin_mismatch',
          new Error(`delta origin ${d.origin} signed by ${msg.from}`),
          msg.from,
        );
      }
      deltas.push([d, w as DeltaWire]);
    }
    let refused = false;
    let onlyClock = true;
    for (const [d, w] of deltas) {
      try {
        const outcome = replica.applyDelta(d, msg.from);
        if (outcome === 'applied') this.stats.deltasApplied++;
        else if (outcome === 'unchanged') this.stats.deltasUnchanged++;
        else {
          this.stats.deltasDuplicate++;
          continue;
        }
        deltaLog.add(d.origin, d.seq, w);
        if (onGap !== undefined && replica.dots.base(d.origin) < d.seq - 1) onGap(d.origin, msg.relayedBy);
      } catch (err) {
        if (!(err instanceof PolicyError)) throw err;
        refused = true;
        if (err.reason !== 'clock_drift') onlyClock = false;
        this.stats.rejectedDeltas[err.reason] = (this.stats.rejectedDeltas[err.reason] ?? 0) + 1;
      }
    }
    // A clock a little too far ahead is a fault of the origin's host, not of the relaying peer:
    // drop without penalising the relayer's gossip score.
    if (!refused) return 'accept';
    return onlyClock ? 'ignore' : 'reject';
  }
}
