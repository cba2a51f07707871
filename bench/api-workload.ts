/**
 * What the API benchmark writes, shared by its writer and watcher processes and the harness:
 * the request bodies (an agent with a realistic ~200-byte `meta`, a task, its transitions), the
 * version each write gives its key, and the one clock every process stamps with.
 *
 * Matching a write to the events it causes: every key is written by one sequence of writes at a
 * time (the next only after the previous was acknowledged), and each write carries a version
 * that grows along that sequence: an agent's `meta.v` (the send time in microseconds), a task's
 * status rank. An event for key k with version v therefore shows every write to k with a version
 * <= v applied, even where the node merged several writes into one event.
 */

/** One clock for all processes on this machine: wall time in ms, with sub-ms resolution. */
export const now = (): number => performance.timeOrigin + performance.now();

export type Kind = 'agent' | 'task';

/** Tasks need a capability no agent has, so no scheduler claims them while the bench moves them. */
export const TASK_CAPABILITY = 'bench-external-worker';

const TASK_RANK: Record<string, number> = {
  PENDING: 1,
  ASSIGNED: 2,
  IN_PROGRESS: 3,
  COMPLETED: 4,
  FAILED: 4,
  CANCELLED: 4,
};

/** The version a record value shows (the mesh's agent or task view, or the NATS value); 0 if none. */
export function versionOf(kind: Kind, value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  if (kind === 'agent') {
    const v = (value as { meta?: { v?: unknown } }).meta?.v;
    return typeof v === 'number' ? v : 0;
  }
  return TASK_RANK[(value as { status?: string }).status ?? ''] ?? 0;
}

/** The key the harness joins writes and events on. */
export const keyOf = (kind: Kind, id: string): string => `${kind}/${id}`;

/**
 * `PUT /v1/agents/:id` body of a worker agent; `meta` is about 200 bytes of JSON, as a
 * deployment's labels would be (region, host, model, version, tags), plus the write's version.
 */
export function agentBody(id: string, version: number, load: number): Record<string, unknown> {
  return {
    name: id,
    type: 'llm-worker',
    capabilities: ['summarize', 'translate'],
    state: 'RUNNING',
    health: 'healthy',
    load,
    capacity: 8,
    meta: {
      v: version,
      region: 'eu-west-1',
      zone: 'eu-west-1b',
      host: `worker-${id.length}.pool-a.internal`,
      model: 'llama-3.1-8b-instruct',
      build: '1.14.2+g3f9c2ab',
      tags: ['batch', 'gpu', 'spot'],
      owner: 'team-search',
      queue: 'default',
    },
  };
}

/** `POST /v1/tasks` body: PENDING, with a capability no agent has (see TASK_CAPABILITY). */
export function taskBody(id: string, i: number): Record<string, unknown> {
  return {
    id,
    type: 'summarize',
    title: `Summarize document ${i}`,
    payload: { doc: `s3://bench-docs/reports/${i}.pdf`, pages: (i % 40) + 1, lang: 'en' },
    capabilities: [TASK_CAPABILITY],
    priority: i % 10,
  };
}

/** The two `PATCH /v1/tasks/:id` transitions of an external worker: take it, then complete it. */
export const startPatch = (agent: string): Record<string, unknown> => ({ status: 'IN_PROGRESS', assignee: agent });
export const completePatch = (i: number): Record<string, unknown> => ({
  status: 'COMPLETED',
  result: { summary: `Document ${i}: quarterly figures, three risks, two actions.`, tokens: 412 + (i % 97) },
});

/** One acknowledged (or failed) write: key, version, send time, ack time (ms, `now()`), slot, ok. */
export type WriteRecord = [key: string, version: number, sent: number, acked: number, slot: number, ok: 0 | 1];

/** A watcher's arrivals per key: [version, time] pairs in arrival order, versions increasing. */
export type Arrivals = Record<string, Array<[number, number]>>;

/** What a writer process reports on stdout when done. */
export interface WriterSummary {
  acked: number;
  failed: number;
  /** Open loop: writes that were due but not sent, because the client's in-flight cap was reached. */
  notSent: number;
  /** Open loop: the most any write went out after its due time (ms). */
  lateMs: number;
  /** Status 404 on POST /v1/batch: the build has no batch route. */
  batchMissing?: boolean;
  errors: string[];
  start: number;
  end: number;
}

/** What a watcher process reports on stdout when done (its arrivals go to a file). */
export interface WatcherSummary {
  events: number;
  dropped: number;
  reconnects: number;
  /** Every expected key reached its expected version before the settle timeout. */
  caughtUp: boolean;
  errors: string[];
}
