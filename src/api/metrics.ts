import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CounterSnapshot } from './backend.js';

export const NODE_METRIC_PREFIX = 'agentmesh_';

/**
 * The Prometheus name of one of the node's counters: `agentmesh_` + the name in snake case with
 * every character outside `[a-z0-9_]` turned into `_` (`sync.deltasApplied` ->
 * `agentmesh_sync_deltas_applied`). Undefined when nothing usable is left.
 */
export function metricName(raw: string): string | undefined {
  const snake = raw
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/_+/g, '_')
    .replace(/^_|_$/g, '');
  return snake.length === 0 ? undefined : `${NODE_METRIC_PREFIX}${snake}`;
}

/**
 * The API's metrics, in a private registry (so several nodes or tests in one process never
 * clash): process and Node.js defaults, HTTP requests by route and status, SSE clients, and one
 * metric per entry of the node's counter snapshot, refreshed at every scrape: a counter for names
 * ending in `_total`, a gauge otherwise.
 */
export class ApiMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly duration: Histogram<'method' | 'route'>;
  readonly sseClients: Gauge;
  readonly sseDropped: Counter;
  readonly sseEvents: Counter;
  readonly sseGaps: Counter;
  /** Sanitized name -> the raw counter name it shows, and its metric. */
  private readonly nodeMetrics = new Map<string, { raw: string; counter: boolean; metric: Counter | Gauge }>();
  private readonly own: ReadonlySet<string>;

  constructor(private readonly counters: () => CounterSnapshot) {
    collectDefaultMetrics({ register: this.registry });
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

  /** The exposition text, with the node's counters read now. */
  async render(): Promise<string> {
    this.refreshNodeCounters();
    return this.registry.metrics();
  }

  private refreshNodeCounters(): void {
    const snapshot = this.counters();
    const seen = new Set<string>();
    for (const raw of Object.keys(snapshot).sort()) {
      const value = snapshot[raw];
      if (typeof value !== 'number' || !Number.isFinite(value)) continue;
      const name = metricName(raw);
      // Two raw names may sanitize alike, or clash with a metric of our own: the first one wins.
      if (name === undefined || seen.has(name) || this.own.has(name)) continue;
      // `_total` names are monotonic counts (Prometheus counters); anything else is a gauge.
      const counter = name.endsWith('_total') && value >= 0;
      let entry = this.nodeMetrics.get(name);
      if (entry !== undefined && (entry.raw !== raw || entry.counter !== counter)) {
        this.registry.removeSingleMetric(name);
        entry = undefined;
      }
      if (entry === undefined) {
        const config = { name, help: `agentmesh node counter ${raw}`, registers: [this.registry] };
        entry = counter ? { raw, counter, metric: new Counter(config) } : { raw, counter, metric: new Gauge(config) };
        this.nodeMetrics.set(name, entry);
      }
      if (entry.counter) {
        // The snapshot holds absolute values: replace the count rather than add to it.
        const c = entry.metric as Counter;
        c.reset();
        c.inc(value);
      } else {
        (entry.metric as Gauge).set(value);
      }
      seen.add(name);
    }
    for (const name of [...this.nodeMetrics.keys()]) {
      if (seen.has(name)) continue;
      this.registry.removeSingleMetric(name);
      this.nodeMetrics.delete(name);
    }
  }
}
