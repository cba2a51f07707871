/**
 * The φ accrual failure detector of Hayashibara, Défago, Yared and Katayama, "The φ Accrual
 * Failure Detector" (SRDS 2004), in the form Akka uses (akka.remote.PhiAccrualFailureDetector;
 * Cassandra's gms/FailureDetector is the same idea with an exponential instead of a normal model).
 *
 * Instead of a yes/no verdict it reports a suspicion level φ = -log10(P(a heartbeat arrives later
 * than now)), where the inter-arrival times of past heartbeats are modelled as a normal
 * distribution. φ = 1 means a 10% chance that suspecting the peer is a mistake, φ = 8 means 10⁻⁸.
 * Pure and time-injected: every method takes the current time in milliseconds.
 */

export interface PhiOptions {
  /**
   * Assumed inter-arrival time before any has been measured (Akka `heartbeat-interval`, 1 s).
   * The first heartbeat seeds the window with `estimate ± estimate/4`, as Akka does, so φ is
   * meaningful from the first heartbeat on.
   */
  readonly firstHeartbeatEstimateMs?: number;
  /** Samples kept in the sliding window (Akka `max-sample-size` 1000; 100 ≈ the last 100 s here). */
  readonly maxSampleSize?: number;
  /**
   * Floor on the standard deviation, so a perfectly regular peer does not become "suspect" at the
   * first millisecond of lateness (Akka `min-std-deviation`, 100 ms).
   */
  readonly minStdDeviationMs?: number;
  /**
   * Margin added to the mean: the pause a peer may take (GC, a busy event loop, a slow gossip
   * hop) without φ rising (Akka cluster `acceptable-heartbeat-pause`, 3 s).
   */
  readonly acceptableHeartbeatPauseMs?: number;
  /**
   * An interval is learnt only if the peer was still considered available (φ below this) when the
   * heartbeat arrived, so an outage does not teach the detector that long gaps are normal
   * (Akka `threshold`, 8; Cassandra `phi_convict_threshold`, 8).
   */
  readonly threshold?: number;
}

/** Defaults, each from Akka's reference.conf (akka.cluster.failure-detector) unless noted above. */
export const PHI_DEFAULTS: Required<PhiOptions> = {
  firstHeartbeatEstimateMs: 1000,
  maxSampleSize: 100,
  minStdDeviationMs: 100,
  acceptableHeartbeatPauseMs: 3000,
  threshold: 8,
};

/**
 * φ for a silence of `timeDiff` given a normal model N(mean, stdDeviation²), using the logistic
 * approximation of the normal CDF, 1 - Φ(y) ≈ 1 / (1 + e^z) with z = y·(1.5976 + 0.070566·y²)
 * (Bowling, Khasawneh, Kaewkuekool and Cho, "A logistic approximation to the cumulative normal
 * distribution", J. Industrial Engineering and Management 2(1), 2009; maximum error 1.4e-4).
 *
 * Akka computes -log10(e / (1 + e)) with e = e^-z, which underflows to +Infinity once z > ~745.
 * That is the same number as log10(1 + e^z) = softplus(z) / ln 10, evaluated here in a form that
 * stays finite and increasing for every finite input.
 */
export function phiOf(timeDiff: number, mean: number, stdDeviation: number): number {
  const y = (timeDiff - mean) / stdDeviation;
  const z = y * (1.5976 + 0.070566 * y * y);
  const softplus = z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
  return softplus / Math.LN10;
}

/** One peer's detector: a bounded window of heartbeat inter-arrival times. */
export class PhiAccrualDetector {
  private readonly opts: Required<PhiOptions>;
  /** Ring buffer of intervals, with running sums for O(1) mean and variance (as Akka keeps). */
  private readonly intervals: number[] = [];
  private next = 0;
  private sum = 0;
  private squaredSum = 0;
  private last: number | undefined;

  constructor(options: PhiOptions = {}) {
    this.opts = { ...PHI_DEFAULTS, ...options };
    const { firstHeartbeatEstimateMs, maxSampleSize, minStdDeviationMs, acceptableHeartbeatPauseMs } = this.opts;
    if (!(firstHeartbeatEstimateMs > 0)) throw new RangeError('firstHeartbeatEstimateMs must be > 0');
    if (!Number.isInteger(maxSampleSize) || maxSampleSize < 2) throw new RangeError('maxSampleSize must be >= 2');
    if (!(minStdDeviationMs > 0)) throw new RangeError('minStdDeviationMs must be > 0');
    if (!(acceptableHeartbeatPauseMs >= 0)) throw new RangeError('acceptableHeartbeatPauseMs must be >= 0');
  }

  /** Local arrival time of the latest heartbeat, if any. */
  get lastHeartbeatAt(): number | undefined {
    return this.last;
  }

  /** Intervals currently in the window (the two bootstrap samples included). */
  get sampleCount(): number {
    return this.intervals.length;
  }

  get mean(): number {
    return this.intervals.length === 0 ? 0 : this.sum / this.intervals.length;
  }

  /** Population standard deviation of the window (before the `minStdDeviationMs` floor). */
  get stdDeviation(): number {
    const n = this.intervals.length;
    if (n === 0) return 0;
    const mean = this.sum / n;
    return Math.sqrt(Math.max(0, this.squaredSum / n - mean * mean));
  }

  /** Records a heartbeat that arrived at local time `nowMs`. */
  heartbeat(nowMs: number): void {
    if (this.last === undefined) {
      const estimate = this.opts.firstHeartbeatEstimateMs;
      this.push(estimate - estimate / 4);
      this.push(estimate + estimate / 4);
    } else if (this.isAvailable(nowMs)) {
      this.push(Math.max(0, nowMs - this.last));
    }
    this.last = nowMs;
  }

  /** The suspicion level at local time `nowMs`; 0 before the first heartbeat. */
  phi(nowMs: number): number {
    if (this.last === undefined) return 0;
    const mean = this.mean + this.opts.acceptableHeartbeatPauseMs;
    const std = Math.max(this.stdDeviation, this.opts.minStdDeviationMs);
    return phiOf(nowMs - this.last, mean, std);
  }

  isAvailable(nowMs: number): boolean {
    return this.phi(nowMs) < this.opts.threshold;
  }

  private push(interval: number): void {
    if (this.intervals.length < this.opts.maxSampleSize) {
      this.intervals.push(interval);
    } else {
      const dropped = this.intervals[this.next] as number;
      this.sum -= dropped;
      this.squaredSum -= dropped * dropped;
      this.intervals[this.next] = interval;
      this.next = (this.next + 1) % this.opts.maxSampleSize;
    }
    this.sum += interval;
    this.squaredSum += interval * interval;
    // Re-add from scratch once per lap so rounding in the running sums cannot drift forever.
    if (this.next === 0 && this.intervals.length === this.opts.maxSampleSize) this.resum();
  }

  private resum(): void {
    this.sum = 0;
    this.squaredSum = 0;
    for (const x of this.intervals) {
      this.sum += x;
      this.squaredSum += x * x;
    }
  }
}
