import { ClockDriftError } from './errors.js';

/**
 * Hybrid logical clock (Kulkarni et al., 2014) packed into one number:
 * `timestamp = wallMs * 2^LOGICAL_BITS + logical`.
 *
 * Packing keeps timestamps comparable with `<`, cheap to store (one double, no object) and
 * small on the wire. 10 logical bits leave 2^53 / 2^10 ms of wall range, which lasts until the
 * year 2248. If more than 1024 events happen in one millisecond the logical part carries into
 * the wall part, which keeps the clock strictly monotonic at the cost of running that node's
 * wall component a little ahead; the drift bound below absorbs it.
 */
export type Timestamp = number;

export const LOGICAL_BITS = 10;
export const LOGICAL_RANGE = 2 ** LOGICAL_BITS;
/** Default bound on how far a remote clock may run ahead of ours before its readings are refused. */
export const DEFAULT_MAX_DRIFT_MS = 60_000;

export function timestamp(wallMs: number, logical = 0): Timestamp {
  return wallMs * LOGICAL_RANGE + logical;
}

export function wallOf(ts: Timestamp): number {
  return Math.floor(ts / LOGICAL_RANGE);
}

export function logicalOf(ts: Timestamp): number {
  return ts % LOGICAL_RANGE;
}

export function isTimestamp(v: unknown): v is Timestamp {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

export interface HybridClockOptions {
  /** Physical clock in milliseconds; injectable for tests. */
  now?: () => number;
  /** Remote readings whose wall part is more than this ahead of our physical clock are refused. */
  maxDriftMs?: number;
  /** High-water mark to resume from (persisted across restarts so time never goes backwards). */
  initial?: Timestamp;
}

export class HybridClock {
  readonly maxDriftMs: number;
  private readonly physical: () => number;
  private last: Timestamp;

  constructor(options: HybridClockOptions = {}) {
    this.physical = options.now ?? Date.now;
    this.maxDriftMs = options.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
    this.last = options.initial ?? 0;
  }

  /** The latest timestamp issued or observed. */
  get current(): Timestamp {
    return this.last;
  }

  /** A timestamp for a local or send event: strictly greater than every earlier one. */
  now(): Timestamp {
    const pt = timestamp(this.physical());
    this.last = pt > this.last ? pt : this.last + 1;
    return this.last;
  }

  /**
   * Resumes after our own persisted high-water mark, with no drift check: the mark is ours, and
   * timestamps issued after a restart must order after every one issued before it even if the
   * physical clock went back by more than the drift bound.
   */
  restore(mark: Timestamp): void {
    if (mark > this.last) this.last = mark;
  }

  /** Refuses a remote reading too far in the future, without touching the clock. */
  check(remote: Timestamp): void {
    const local = this.physical();
    const remoteWall = wallOf(remote);
    if (remoteWall - local > this.maxDriftMs) throw new ClockDriftError(remoteWall, local, this.maxDriftMs);
  }

  /**
   * Receive event: advances past `remote` so that causally later local events order after it.
   * Throws ClockDriftError (and leaves the clock unchanged) if `remote` is beyond the drift bound.
   */
  observe(remote: Timestamp): Timestamp {
    this.check(remote);
    const pt = timestamp(this.physical());
    let next = this.last + 1;
    if (remote + 1 > next) next = remote + 1;
    if (pt > next) next = pt;
    this.last = next;
    return next;
  }
}
