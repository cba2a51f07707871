import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  type MetricType,
  type MetricValueWithName,
  Registry,
} from 'prom-client';
import type { MetricFamily } from '../node/types.js';
import { type HistogramFamily, snakeCase } from '../util/metrics.js';

export const NODE_METRIC_PREFIX = 'agentmesh_';

/**
 * The Prometheus name of a raw counter name: `agentmesh_` + the name in snake case with every
 * character outside `[a-z0-9_]` turned into `_` (`sync.deltasApplied` ->
 * `agentmesh_sync_deltas_applied`). Undefined when nothing usable is left.
 */
export function metricName(raw: string): string | undefined {
  const snake = snakeCase(raw);
  return snake === undefined ? undefined : `${NODE_METRIC_PREFIX}${snake.replace(/^_(?=[0-9])/, '')}`;
}

const LINT_FAILING_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** API write operations timed from the request to the durable acknowledgement. */
export type WriteOp = 'task_create' | 'task_patch' | 'task_cancel' | 'agent_put' | 'agent_delete';

/** Buckets (seconds) of the write-ack histogram: a group commit takes a few ms on an SSD. */
const WRITE_ACK_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/**
 * A histogram whose buckets, sum and count come from a node's `HistogramFamily` at scrape time.
 * prom-client's Histogram can only be fed observations; the node keeps its own cumulative counts
 * (it must not depend on the API), so this one replaces the values it exports with the family's,
 * in the shape prom-client's registry formats (`_bucket` with `le`, `_sum`, `_count`).
 */
class FamilyHistogram extends Histogram {
  private readonly familyName: string;
  private readonly familyHelp: string;

  constructor(
    family: HistogramFamily,
    registry: Registry,
    private readonly read: () => HistogramFamily | undefined,
  ) {
    super({
      name: family.name,
      help: family.help,
      labelNames: [...family.labelNames],
      buckets: [...family.buckets],
      registers: [registry],
    });
    this.familyName = family.name;
    this.familyHelp = family.help;
  }

  override async get(): ReturnType<Histogram['get']> {
    const f = this.read();
    const name = this.familyName;
    const values: MetricValueWithName<string>[] = [];
    for (const s of f?.samples ?? []) {
      f?.buckets.forEach((le: number, i: number) =>
        values.push({ labels: { ...s.labels, le }, value: s.counts[i] ?? 0, metricName: `${name}_bucket` }),
      );
      values.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: `${name}_bucket` });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${name}_count` });
    }
    // prom-client's typings declare MetricType a numeric enum; at run time the type is this string.
    const type = 'histogram' as unknown as MetricType;
    return { name, help: this.familyHelp, type, values, aggregator: 'sum', collect: () => {} };
  }

  /** The registry prefers this one (prom-client's exemplar path) when it exists. */
  async getForPromString(): ReturnType<Histogram['get']> {
    return this.get();
  }
}

type NodeMetric = { signature: string; metric: Counter | Gauge | FamilyHistogram };

/**
 * The API's metrics, in a private registry (so several nodes or tests in one process never
 * clash): process and Node.js defaults, HTTP requests by route and status, write-ack latency,
 * SSE clients, and the node's metric families. Those are read once per scrape and handed to
 * prom-client metrics whose `collect()` copies the values in: counters and gauges with their
 * labels, histograms with their buckets. A family that disappears from the node's report is
 * unregistered; one whose type or labels change is registered anew.
 */
export class ApiMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly duration: Histogram<'method' | 'route'>;
  private readonly writeAck: Histogram<'op'>;
  readonly sseClients: Gauge;
  readonly sseDropped: Counter;
  readonly sseEvents: Counter;
  readonly sseGaps: Counter;
  private readonly nodeMetrics = new Map<string, NodeMetric>();
  private readonly own: ReadonlySet<string>;
  /** The node's families of the scrape in progress, by prefixed name. */
  private current = new Map<string, MetricFamily>();

  constructor(private readonly families: () => MetricFamily[]) {
    collectDefaultMetrics({ register: this.registry });
    // prom-client exports these sums as gauges named `_total`, which Prometheus reserves for
    // counters (promtool's lint refuses them); the per-type gauges they sum stay.
    for (const name of LINT_FAILING_DEFAULTS) this.registry.removeSingleMetric(name);
    this.requests = new Counter({
      name: 'agentmesh_api_http_requests_total',
      help: 'HTTP API requests by method, route template and status',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'agentmesh_api_http_request_duration_seconds',
      help: 'HTTP API request duration by method and route template',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [this.registry],
    });
    this.writeAck = new Histogram({
      name: 'agentmesh_api_write_ack_seconds',
      help: 'API writes from the request to the durable acknowledgement (LevelDB, sync), by operation',
      labelNames: ['op'],
      buckets: WRITE_ACK_BUCKETS,
      registers: [this.registry],
    });
    this.sseClients = new Gauge({
      name: 'agentmesh_api_sse_clients',
      help: 'Open /v1/events streams',
      registers: [this.registry],
    });
    this.sseDropped = new Counter({
      name: 'agentmesh_api_sse_dropped_total',
      help: 'Event-stream clients dropped for falling behind',
      registers: [this.registry],
    });
    this.sseEvents = new Counter({
      name: 'agentmesh_api_sse_events_total',
      help: 'Events written to event-stream clients',
      registers: [this.registry],
    });
    this.sseGaps = new Counter({
      name: 'agentmesh_api_sse_gaps_total',
      help: 'Event-stream resumptions that could not replay everything missed (a gap event was sent)',
      registers: [this.registry],
    });
    this.own = new Set(this.registry.getMetricsAsArray().map((m) => m.name));
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Counts one finished request; `route` is the route template (never the raw URL). */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.requests.inc({ method, route, status: String(status) });
    this.duration.observe({ method, route }, seconds);
  }

  /** Runs an API write and times it to its durable acknowledgement (failed writes are not timed). */
  async timeWrite<T>(op: WriteOp, write: () => Promise<T>): Promise<T> {
    const end = this.writeAck.startTimer({ op });
    const out = await write();
    end();
    return out;
  }

  /** The exposition text, with the node's families read now. */
  async render(): Promise<string> {
    this.current = new Map();
    for (const f of this.families()) {
      const name = `${NODE_METRIC_PREFIX}${f.name}`;
      // Two families may not share a name, nor take one of the API's own: the first one wins.
      if (this.own.has(name) || this.current.has(name)) continue;
      this.current.set(name, f);
    }
    this.syncRegistrations();
    return this.registry.metrics();
  }

  private syncRegistrations(): void {
    for (const [name, entry] of [...this.nodeMetrics]) {
      const f = this.current.get(name);
      if (f !== undefined && signature(f) === entry.signature) continue;
      this.registry.removeSingleMetric(name);
      this.nodeMetrics.delete(name);
    }
    for (const [name, f] of this.current) {
      if (this.nodeMetrics.has(name)) continue;
      this.nodeMetrics.set(name, { signature: signature(f), metric: this.create(name, f) });
    }
  }

  private create(name: string, f: MetricFamily): Counter | Gauge | FamilyHistogram {
    const read = (): MetricFamily | undefined => this.current.get(name);
    if (f.type === 'histogram') {
      return new FamilyHistogram({ ...f, name }, this.registry, () => {
        const now = read();
        return now?.type === 'histogram' ? now : undefined;
      });
    }
    const config = { name, help: f.help, labelNames: [...f.labelNames], registers: [this.registry] };
    if (f.type === 'counter') {
      const counter: Counter = new Counter({
        ...config,
        // The node reports totals since start: replace the count rather than add to it.
        collect() {
          counter.reset();
          for (const s of read()?.samples ?? []) {
            if (!('value' in s) || !(s.value >= 0)) continue;
            if (f.labelNames.length === 0) counter.inc(s.value);
            else counter.inc(s.labels, s.value);
          }
        },
      });
      return counter;
    }
    const gauge: Gauge = new Gauge({
      ...config,
      collect() {
        gauge.reset();
        for (const s of read()?.samples ?? []) {
          if (!('value' in s)) continue;
          if (f.labelNames.length === 0) gauge.set(s.value);
          else gauge.set(s.labels, s.value);
        }
      },
    });
    return gauge;
  }
}

/** What must stay the same for a registered metric to keep serving a family. */
function signature(f: MetricFamily): string {
  return `${f.type}|${f.labelNames.join(',')}|${f.type === 'histogram' ? f.buckets.join(',') : ''}|${f.help}`;
}
