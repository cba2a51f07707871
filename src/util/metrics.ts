/**
 * Metric families as the node reports them: name, type, help, labels and values, with no
 * Prometheus library in sight. The node and its services describe their statistics here; the
 * HTTP API turns them into prom-client metrics at scrape time (`src/api/metrics.ts`). Keeping this
 * layer free of prom-client lets every subsystem report without depending on the API.
 *
 * Names are snake_case without the `agentmesh_` prefix the API adds; counters end in `_total`,
 * units are base units (`_seconds`, `_bytes`), label values live in labels, never in names
 * (Prometheus naming practice, checked by `promtool check metrics` in the tests).
 */

export type Labels = Readonly<Record<string, string>>;

export interface ScalarSample {
  readonly labels: Labels;
  readonly value: number;
}

export interface HistogramSample {
  readonly labels: Labels;
  /** Cumulative: observations <= the family's `buckets[i]` (the +Inf bucket is `count`). */
  readonly counts: readonly number[];
  readonly sum: number;
  readonly count: number;
}

export interface ScalarFamily {
  readonly name: string;
  readonly type: 'counter' | 'gauge';
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly samples: readonly ScalarSample[];
}

export interface HistogramFamily {
  readonly name: string;
  readonly type: 'histogram';
  readonly help: string;
  readonly labelNames: readonly string[];
  /** Upper bounds, ascending, without +Inf. */
  readonly buckets: readonly number[];
  readonly samples: readonly HistogramSample[];
}

export type MetricFamily = ScalarFamily | HistogramFamily;

const NAME = /^[a-z_][a-z0-9_]*$/;

/**
 * Collects metric families: `counter`/`gauge` take one value, or a record of values keyed by one
 * label's values (`rejected_total` by `reason`). A name given twice keeps the first family (so
 * one misbehaving service cannot break a scrape).
 */
export class MetricSet {
  private readonly families = new Map<string, MetricFamily>();

  counter(name: string, help: string, value: number | Readonly<Record<string, number>>, label?: string): this {
    return this.scalar('counter', name, help, value, label);
  }

  gauge(name: string, help: string, value: number | Readonly<Record<string, number>>, label?: string): this {
    return this.scalar('gauge', name, help, value, label);
  }

  /** A family with any number of labels, given as rows. */
  series(
    type: 'counter' | 'gauge',
    name: string,
    help: string,
    labelNames: readonly string[],
    samples: readonly ScalarSample[],
  ): this {
    return this.add({ name, type, help, labelNames, samples: samples.filter((s) => Number.isFinite(s.value)) });
  }

  histogram(name: string, help: string, h: HistogramRecorder): this {
    return this.add({
      name,
      type: 'histogram',
      help,
      labelNames: h.labelNames,
      buckets: h.buckets,
      samples: h.samples(),
    });
  }

  /**
   * Flat `name -> value` counters (the form services used before families): a name ending in
   * `_total` is a counter, anything else a gauge; names are sanitized to snake case.
   */
  flat(values: Readonly<Record<string, number>>): this {
    for (const [raw, value] of Object.entries(values)) {
      const name = snakeCase(raw);
      if (name === undefined || typeof value !== 'number') continue;
      const type = name.endsWith('_total') && value >= 0 ? 'counter' : 'gauge';
      this.scalar(type, name, `agentmesh ${type} ${raw} (unlabelled)`, value);
    }
    return this;
  }

  toArray(): MetricFamily[] {
    return [...this.families.values()];
  }

  private scalar(
    type: 'counter' | 'gauge',
    name: string,
    help: string,
    value: number | Readonly<Record<string, number>>,
    label?: string,
  ): this {
    if (typeof value === 'number') return this.series(type, name, help, [], [{ labels: {}, value }]);
    if (label === undefined) throw new TypeError(`metric ${name}: values by label need the label's name`);
    const samples = Object.entries(value)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([v, n]) => ({ labels: { [label]: v }, value: n }));
    return this.series(type, name, help, [label], samples);
  }

  private add(family: MetricFamily): this {
    if (!NAME.test(family.name)) throw new TypeError(`metric name ${family.name} is not snake_case`);
    if (!this.families.has(family.name)) this.families.set(family.name, family);
    return this;
  }
}

/** `sync.deltasApplied` -> `sync_deltas_applied`; undefined when nothing usable is left. */
export function snakeCase(raw: string): string | undefined {
  const snake = raw
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/^_|_$/g, '');
  if (snake.length === 0) return undefined;
  return /^[0-9]/.test(snake) ? `_${snake}` : snake;
}

/** Most label combinations one recorder keeps; later ones are dropped and counted. */
const MAX_SERIES = 256;

/**
 * A histogram with fixed buckets, optionally by labels: counts per bucket, sum and count, all
 * cumulative since start. Observing is a short scan of the buckets (a dozen), no allocation once
 * a label combination exists.
 */
export class HistogramRecorder {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  /** Observations refused because MAX_SERIES label combinations existed already. */
  dropped = 0;

  constructor(
    readonly buckets: readonly number[],
    readonly labelNames: readonly string[] = [],
  ) {
    for (let i = 1; i < buckets.length; i++) {
      if (!((buckets[i] as number) > (buckets[i - 1] as number))) throw new RangeError('buckets must ascend');
    }
  }

  observe(value: number, labels: Labels = {}): void {
    if (!Number.isFinite(value)) return;
    const key = this.labelNames.map((n) => labels[n] ?? '').join('\u0000');
    let s = this.series.get(key);
    if (s === undefined) {
      if (this.series.size >= MAX_SERIES) {
        this.dropped++;
        return;
      }
      const own: Record<string, string> = {};
      for (const n of this.labelNames) own[n] = labels[n] ?? '';
      s = { labels: own, counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    let i = 0;
    while (i < this.buckets.length && value > (this.buckets[i] as number)) i++;
    if (i < this.buckets.length) s.counts[i] = (s.counts[i] as number) + 1;
    s.sum += value;
    s.count++;
  }

  samples(): HistogramSample[] {
    return [...this.series.values()].map((s) => {
      let run = 0;
      return { labels: s.labels, counts: s.counts.map((c) => (run += c)), sum: s.sum, count: s.count };
    });
  }
}

/** Buckets (seconds) for things that take milliseconds to seconds: durable writes, replication. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Buckets (seconds) for task executions: from a quick exec to an hour-long job. */
export const DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
