/**
 * Replication health over time, for the charts: one point per scrape of GET /metrics (once a
 * second), with rates derived from consecutive scrapes, plus the convergence lag seen in the
 * event stream over the same second.
 */
import {
  group,
  histogramBuckets,
  histogramQuantile,
  localWrites,
  parsePrometheus,
  rates,
  remoteApplies,
  replicationBytes,
  syncSessions,
} from './prom.js';

/** The node's own histogram of the time from a remote write to its delta applied here. */
const APPLY_LAG = 'replica_apply_lag_seconds';

/** Points kept: five minutes at one scrape a second. */
const HISTORY = 300;

export interface MetricsPoint {
  /** Unix seconds (uPlot's x scale). */
  t: number;
  writes: number | null;
  applies: number | null;
  sessions: Map<string, number>;
  bytes: Map<string, number>;
  /** Seen by the page: remote changes in the event stream, their writer's clock to arrival. */
  lagP50: number | null;
  lagMax: number | null;
  /** From the node's apply-lag histogram over the last second, in ms (when the node has it). */
  applyP50: number | null;
  applyP99: number | null;
}

/** A named group of series over time, aligned with `t`, as uPlot takes its data. */
export interface SeriesSet {
  names: string[];
  data: [number[], ...(number | null)[][]];
}

const ms = (seconds: number | null): number | null => (seconds === null ? null : seconds * 1000);

function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

export class MetricsHistory {
  readonly points: MetricsPoint[] = [];
  private prev:
    | {
        at: number;
        writes: Map<string, number>;
        applies: Map<string, number>;
        sessions: Map<string, number>;
        bytes: Map<string, number>;
        applyLag: Map<number, number>;
      }
    | undefined;
  private lags: number[] = [];
  /** Whether the node's exposition had any sync series at all (else the panel says so). */
  hasSyncSeries = false;
  /** Whether the node exports its apply-lag histogram (the lag chart then shows it). */
  hasApplyLag = false;

  /**
   * A change made on another node and applied here, `ms` after its writer's clock stamped it.
   * Clock skew between the nodes shows up in it (the mesh refuses clocks more than 60 s ahead).
   */
  observeLag(ms: number): void {
    if (Number.isFinite(ms) && ms >= 0 && ms < 60_000) this.lags.push(ms);
  }

  addScrape(atMs: number, text: string): void {
    const samples = parsePrometheus(text);
    const now = {
      at: atMs,
      writes: group(samples, localWrites),
      applies: group(samples, remoteApplies),
      sessions: group(samples, syncSessions),
      bytes: group(samples, replicationBytes),
      applyLag: histogramBuckets(samples, APPLY_LAG),
    };
    this.hasSyncSeries = now.sessions.size > 0 || now.bytes.size > 0;
    this.hasApplyLag = now.applyLag.size > 0;
    const prev = this.prev;
    this.prev = now;
    const lags = this.lags.sort((a, b) => a - b);
    this.lags = [];
    if (prev === undefined) return;
    const s = (atMs - prev.at) / 1000;
    const sum = (m: Map<string, number>): number | null =>
      m.size === 0 ? null : [...m.values()].reduce((a, b) => a + b, 0);
    this.points.push({
      t: atMs / 1000,
      writes: sum(rates(prev.writes, now.writes, s)),
      applies: sum(rates(prev.applies, now.applies, s)),
      sessions: rates(prev.sessions, now.sessions, s),
      bytes: rates(prev.bytes, now.bytes, s),
      lagP50: quantile(lags, 0.5),
      lagMax: lags.length === 0 ? null : (lags[lags.length - 1] as number),
      applyP50: ms(histogramQuantile(0.5, prev.applyLag, now.applyLag)),
      applyP99: ms(histogramQuantile(0.99, prev.applyLag, now.applyLag)),
    });
    if (this.points.length > HISTORY) this.points.shift();
  }

  /** Fixed series (writes and applies; lag). */
  series(pick: (p: MetricsPoint) => (number | null)[], names: string[]): SeriesSet {
    const cols = names.map((_, i) => this.points.map((p) => pick(p)[i] ?? null));
    return { names, data: [this.points.map((p) => p.t), ...cols] };
  }

  /** Series keyed by strategy, for as many strategies as the node has reported. */
  keyed(pick: (p: MetricsPoint) => Map<string, number>): SeriesSet {
    const names = [...new Set(this.points.flatMap((p) => [...pick(p).keys()]))].sort();
    const cols = names.map((n) => this.points.map((p) => pick(p).get(n) ?? null));
    return { names, data: [this.points.map((p) => p.t), ...cols] };
  }
}
