import type { DeltaWire } from '../replica/index.js';

/**
 * A bounded log of recently applied deltas (local and remote), indexed by dot, so that a peer
 * that noticed a gap in some origin's seqs can be sent exactly the missing deltas. When a dot has
 * fallen out of the log the requester falls back to Merkle anti-entropy.
 */
export class DeltaLog {
  private readonly byOrigin = new Map<string, Map<number, DeltaWire>>();
  private readonly order: Array<[string, number]> = [];
  private head = 0;

  constructor(readonly capacity = 20_000) {}

  get size(): number {
    return this.order.length - this.head;
  }

  add(origin: string, seq: number, wire: DeltaWire): void {
    let m = this.byOrigin.get(origin);
    if (m === undefined) {
      m = new Map();
      this.byOrigin.set(origin, m);
    }
    if (m.has(seq)) return;
    m.set(seq, wire);
    this.order.push([origin, seq]);
    while (this.size > this.capacity) {
      const [o, s] = this.order[this.head++] as [string, number];
      this.byOrigin.get(o)?.delete(s);
    }
    // Compact the index array now and then instead of shifting on every eviction.
    if (this.head > 4096 && this.head * 2 > this.order.length) {
      this.order.splice(0, this.head);
      this.head = 0;
    }
  }

  /**
   * Deltas of origin with from <= seq <= to that are still in the log, and whether any were not
   * (or the scan stopped at `maxScan` seqs: a peer's request cannot make us loop for long).
   */
  range(
    origin: string,
    from: number,
    to: number,
    max: number,
    maxScan = 100_000,
  ): { deltas: DeltaWire[]; incomplete: boolean; scanned: number } {
    const m = this.byOrigin.get(origin);
    const deltas: DeltaWire[] = [];
    if (m === undefined) return { deltas, incomplete: true, scanned: 0 };
    let incomplete = false;
    let scanned = 0;
    for (let s = from; s <= to; s++) {
      if (++scanned > maxScan || deltas.length >= max) return { deltas, incomplete: true, scanned };
      const d = m.get(s);
      if (d === undefined) incomplete = true;
      else deltas.push(d);
    }
    return { deltas, incomplete, scanned };
  }
}
