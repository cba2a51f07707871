import { CodecError, decode } from '../codec/index.js';
import { type Delta, type DeltaWire, PolicyError, type Replica, ReplicaError } from '../replica/index.js';
import type { DeltaLog } from './delta-log.js';

/** Counters of what arrived as delta batches, whatever carried them (push stream or gossip). */
export interface IngestStats {
  messagesReceived: number;
  bytesReceived: number;
  deltasApplied: number;
  deltasUnchanged: number;
  deltasDuplicate: number;
  /** Batches dropped before any delta was applied, by reason. */
  rejectedMessages: Record<string, number>;
  /** Individual deltas refused by policy, by reason. */
  rejectedDeltas: Record<string, number>;
}

export function newIngestStats(): IngestStats {
  return {
    messagesReceived: 0,
    bytesReceived: 0,
    deltasApplied: 0,
    deltasUnchanged: 0,
    deltasDuplicate: 0,
    rejectedMessages: {},
    rejectedDeltas: {},
  };
}

/**
 * How one batch fared: `rejected` (nothing applied: malformed, or a delta by someone other than
 * the authenticated sender), `refused` (some deltas refused by policy, the rest applied; `onlyClock`
 * when every refusal was a clock too far ahead), or `accepted`.
 */
export type IngestOutcome =
  { kind: 'accepted' } | { kind: 'refused'; onlyClock: boolean } | { kind: 'rejected'; reason: string; error: Error };

export interface IngestOptions {
  replica: Replica;
  deltaLog: DeltaLog;
  /** Most deltas accepted in one batch. */
  maxBatch: number;
  /** Called when an applied delta reveals missing seqs of its origin (`peer` relayed it). */
  onGap?: ((origin: string, peer: string) => void) | undefined;
}

/**
 * The one receive path for delta batches (codec-encoded arrays of delta wires), shared by the
 * direct push streams and gossipsub. Everything is decoded and authenticated before anything is
 * applied, so a malformed or forged batch is refused whole; deltas then apply one by one, and one
 * refused by policy is skipped while the others stand.
 */
export class DeltaIngest {
  readonly stats: IngestStats = newIngestStats();

  constructor(private readonly options: IngestOptions) {}

  /**
   * Applies the batch `data` whose deltas must all be by `author` (the authenticated sender: the
   * gossip signer, or the remote peer of a push stream), received from `relayedBy`.
   */
  ingest(data: Uint8Array, author: string, relayedBy: string): IngestOutcome {
    const s = this.stats;
    s.messagesReceived++;
    s.bytesReceived += data.length;
    const { replica, deltaLog, onGap, maxBatch } = this.options;
    let wires: unknown;
    try {
      wires = decode(data, { validate: (v): v is unknown[] => Array.isArray(v) && v.length <= maxBatch });
    } catch (err) {
      return this.reject(err instanceof CodecError ? err.code.toLowerCase() : 'malformed', err);
    }
    const deltas: Array<[Delta, DeltaWire]> = [];
    for (const w of wires as unknown[]) {
      let d: Delta;
      try {
        d = replica.deltaFromWire(w);
      } catch (err) {
        return this.reject(err instanceof ReplicaError ? err.code.toLowerCase() : 'malformed', err);
      }
      if (d.origin !== author) {
        return this.reject('origin_mismatch', new Error(`delta origin ${d.origin} sent by ${author}`));
      }
      deltas.push([d, w as DeltaWire]);
    }
    let refused = false;
    let onlyClock = true;
    for (const [d, w] of deltas) {
      try {
        const outcome = replica.applyDelta(d, relayedBy);
        if (outcome === 'applied') s.deltasApplied++;
        else if (outcome === 'unchanged') s.deltasUnchanged++;
        else {
          s.deltasDuplicate++;
          continue;
        }
        deltaLog.add(d.origin, d.seq, w);
        if (onGap !== undefined && replica.dots.base(d.origin) < d.seq - 1) onGap(d.origin, relayedBy);
      } catch (err) {
        if (!(err instanceof PolicyError)) throw err;
        refused = true;
        if (err.reason !== 'clock_drift') onlyClock = false;
        s.rejectedDeltas[err.reason] = (s.rejectedDeltas[err.reason] ?? 0) + 1;
      }
    }
    return refused ? { kind: 'refused', onlyClock } : { kind: 'accepted' };
  }

  private reject(reason: string, err: unknown): IngestOutcome {
    this.stats.rejectedMessages[reason] = (this.stats.rejectedMessages[reason] ?? 0) + 1;
    return { kind: 'rejected', reason, error: err instanceof Error ? err : new Error(String(err)) };
  }
}
