/**
 * A tolerant reader of the Prometheus text exposition format (what GET /metrics serves), and
 * rates derived from two scrapes. The node's metric names and labels are changing (flat names
 * such as `agentmesh_sync_sessions_merkle_total` are becoming labelled prom-client metrics such
 * as `agentmesh_sync_sessions_total{strategy="merkle"}`), so the dashboard selects series by
 * pattern, accepts either form, and shows nothing rather than failing for a series that is absent.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?[0-9]+)?\s*$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/g;

function parseValue(s: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  return Number(s); // NaN for "NaN" and for anything malformed
}

/** Every sample of an exposition; comments (HELP, TYPE) and malformed lines are skipped. */
export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    if (m[2] !== undefined) {
      for (const l of m[2].matchAll(LABEL)) {
        labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      }
    }
    const value = parseValue(m[3] as string);
    if (Number.isFinite(value)) out.push({ name: m[1] as string, labels, value });
  }
  return out;
}

/**
 * Sums samples into groups: `match` gets each sample and returns its group key (for example the
 * sync strategy, from the name or from a label), or undefined to leave it out.
 */
export function group(samples: readonly Sample[], match: (s: Sample) => string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    const key = match(s);
    if (key !== undefined) out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return out;
}

/**
 * Per-second rates between two readings of the same groups. A counter that went down was reset
 * (the node restarted): its rate restarts from zero rather than going negative.
 */
export function rates(prev: Map<string, number>, next: Map<string, number>, seconds: number): Map<string, number> {
  const out = new Map<string, number>();
  if (!(seconds > 0)) return out;
  for (const [key, v] of next) {
    const p = prev.get(key);
    if (p === undefined) continue;
    out.set(key, v >= p ? (v - p) / seconds : v / seconds);
  }
  return out;
}

/** The selectors the replication panel uses, each tolerant of flat and labelled names. */
const strip = (name: string): string => name.replace(/^agentmesh_/, '');

/** Sync sessions by strategy: `sync_sessions_<s>_total`, or `sync_sessions_total{strategy}`. */
export function syncSessions(s: Sample): string | undefined {
  const n = strip(s.name);
  if (n === 'sync_sessions_total') return s.labels.strategy ?? 'all';
  const m = /^sync_sessions_([a-z0-9_]+?)_total$/.exec(n);
  return m?.[1];
}

/**
 * Replication bytes (sent plus received) by strategy: the eager paths (push streams, gossip) and
 * the sync protocol's phases. Labelled names (`push_sent_bytes_total`,
 * `gossip_published_bytes_total`, `sync_sent_bytes_total{phase}`) and the older flat ones
 * (`push_bytes_sent_total`, `sync_<phase>_bytes_sent_total`) are both read.
 */
export function replicationBytes(s: Sample): string | undefined {
  const n = strip(s.name);
  const labelled = /^(push|gossip|sync)_(sent|received|published)_bytes_total$/.exec(n);
  if (labelled !== null) return labelled[1] === 'sync' ? (s.labels.phase ?? s.labels.strategy ?? 'sync') : labelled[1];
  const eager = /^(push|gossip)_bytes(_sent|_received|_published)?_total$/.exec(n);
  if (eager !== null) return eager[1];
  if (/^sync_bytes(_sent|_received)?_total$/.test(n)) return s.labels.strategy ?? s.labels.phase ?? 'sync';
  const m = /^sync_([a-z0-9]+)_bytes_(sent|received)_total$/.exec(n);
  return m?.[1];
}

/**
 * A histogram's cumulative bucket counts by upper bound (`le`), summed over its other labels
 * (for example the record kind), with `+Inf` as Infinity. Empty when the histogram is absent.
 */
export function histogramBuckets(samples: readonly Sample[], name: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const s of samples) {
    if (strip(s.name) !== `${name}_bucket` || s.labels.le === undefined) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    if (!Number.isNaN(le)) out.set(le, (out.get(le) ?? 0) + s.value);
  }
  return out;
}

/**
 * The q-quantile of the observations between two readings of a histogram, interpolated within
 * its bucket as Prometheus' `histogram_quantile` does; null when nothing was observed. A value in
 * the +Inf bucket is reported as the highest finite bound.
 */
export function histogramQuantile(q: number, prev: Map<number, number>, next: Map<number, number>): number | null {
  const bounds = [...next.keys()].sort((a, b) => a - b);
  const counts = bounds.map((le) => Math.max(0, (next.get(le) ?? 0) - (prev.get(le) ?? 0)));
  const total = counts[counts.length - 1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    const c = counts[i] as number;
    if (c < rank) continue;
    const upper = bounds[i] as number;
    const lower = i === 0 ? 0 : (bounds[i - 1] as number);
    if (!Number.isFinite(upper)) return lower;
    const below = i === 0 ? 0 : (counts[i - 1] as number);
    return c === below ? upper : lower + ((upper - lower) * (rank - below)) / (c - below);
  }
  return null;
}

/** Local writes (mutations made on this node). */
export function localWrites(s: Sample): string | undefined {
  return /^replica_local_mutations_total$/.test(strip(s.name)) ? 'writes' : undefined;
}

/** Remote changes applied (deltas from gossip and records merged by sync). */
export function remoteApplies(s: Sample): string | undefined {
  const n = strip(s.name);
  if (n === 'replica_deltas_applied_total') return 'deltas';
  if (n === 'replica_records_merged_total') return 'records';
  return undefined;
}
