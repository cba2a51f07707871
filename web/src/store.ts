/**
 * The dashboard's state: what the node's API said last, kept current by the event stream (tasks,
 * agents, node records) and a once-a-second poll (status, peers, metrics: membership state and
 * phi are computed by the node, not replicated, so they are not in the stream). Views subscribe
 * and re-render at most once per animation frame, however many events arrive.
 */
import type { AgentView, HealthResponse, MeshEvent, NodeStatus, PeerView, TaskView } from '../../src/api/schemas.js';
import { api, apiHealth, apiResponse, apiText, ApiRequestError, getToken, onUnauthorized } from './api.js';
import { type MetricsPoint, MetricsHistory } from './metrics.js';
import { openEventStream, type SseMessage, type StreamState } from './sse.js';

export const TASK_STATUSES = ['PENDING', 'ASSIGNED', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** Tasks fetched per status column; the column shows the node's total from `x-total-count`. */
const TASKS_PER_STATUS = 200;
/** Tasks kept in memory: past it, the oldest finished ones are forgotten. */
const MAX_TASKS = 3000;
const FEED_LENGTH = 200;
const POLL_MS = 1000;
/**
 * Full lists again every so often: the column totals drift for tasks outside the fetched window
 * (an event cannot say which column's total already counted a task the page never held).
 */
const RELOAD_MS = 30_000;

export interface FeedItem {
  seq: number;
  at: number;
  kind: MeshEvent['kind'];
  id: string;
  text: string;
  local: boolean;
  origin: string | null;
  status?: string;
}

export interface State {
  status: NodeStatus | null;
  /** GET /v1/health: whether the node accepts writes, and if not why (disk full, clock skew...). */
  health: HealthResponse | null;
  peers: PeerView[];
  agents: Map<string, AgentView>;
  tasks: Map<string, TaskView>;
  /** Per status: how many tasks the node holds (from the last full fetch), if known. */
  totals: Partial<Record<TaskStatus, number>>;
  feed: FeedItem[];
  stream: StreamState;
  streamDetail: string | undefined;
  /** The last failed poll, shown in the header until a poll succeeds. */
  pollError: string | undefined;
  needToken: boolean;
  /** A token was given and the node refused it. */
  tokenRefused: boolean;
  metrics: MetricsHistory;
}

type Listener = () => void;

export class Store {
  readonly state: State = {
    status: null,
    health: null,
    peers: [],
    agents: new Map(),
    tasks: new Map(),
    totals: {},
    feed: [],
    stream: 'connecting',
    streamDetail: undefined,
    pollError: undefined,
    needToken: false,
    tokenRefused: false,
    metrics: new MetricsHistory(),
  };
  private readonly listeners = new Set<Listener>();
  private frame = 0;
  private feedSeq = 0;
  /** When (performance.now()) an event last updated a record, by `kind/id`: see putTask. */
  private readonly eventAt = new Map<string, number>();
  /** Nodes the feed has said joined. */
  private readonly announced = new Set<string>();
  private stream: { stop(): void } | undefined;
  private poller: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private generation = 0;
  private reloadedAt = 0;
  private offUnauthorized: (() => void) | undefined;

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Schedules one notification for this frame. */
  changed(): void {
    if (this.frame !== 0) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      for (const fn of this.listeners) fn();
    });
  }

  start(): void {
    this.stopped = false;
    const generation = ++this.generation;
    this.offUnauthorized?.();
    this.offUnauthorized = onUnauthorized(() => this.locked());
    // The stream first, then the lists: a change made between the two is then never missed
    // (an event that overtakes the list answer is not undone by it: see putTask).
    this.stream = openEventStream('/v1/events', {
      onMessage: (m) => this.onMessage(m),
      // A reconnect sends Last-Event-ID and the node replays what we missed, or says `gap`
      // (handled in onMessage) when it cannot: only a first connection needs the full lists.
      onOpen: (resumed) => {
        if (!resumed) void this.reload();
      },
      onState: (s, detail) => {
        this.state.stream = s;
        this.state.streamDetail = detail;
        if (s === 'unauthorized') this.locked();
        this.changed();
      },
    });
    void this.poll(generation);
  }

  stop(): void {
    this.stopped = true;
    this.stream?.stop();
    clearTimeout(this.poller);
  }

  /** After the user gave a token: start over with it. */
  restart(): void {
    this.stop();
    this.state.needToken = false;
    this.start();
  }

  /** Full lists of agents and tasks (at start, after a `gap` event, and every RELOAD_MS). */
  async reload(): Promise<void> {
    this.reloadedAt = Date.now();
    const asked = performance.now();
    try {
      const [agents, ...lists] = await Promise.all([
        api<AgentView[]>('GET', '/v1/agents'),
        ...TASK_STATUSES.map((s) => apiResponse<TaskView[]>('GET', `/v1/tasks?status=${s}&limit=${TASKS_PER_STATUS}`)),
      ]);
      for (const a of agents) this.putAgent(a, asked);
      TASK_STATUSES.forEach((s, i) => {
        const r = lists[i];
        if (r === undefined) return;
        for (const t of r.body) this.putTask(t, asked);
        const total = Number(r.headers.get('x-total-count'));
        this.state.totals[s] = Number.isFinite(total) ? total : r.body.length;
      });
      this.trimTasks();
      this.changed();
    } catch (err) {
      this.pollFailed(err);
    }
  }

  /** One poll, then the next a second after this one started; a restart ends the old loop. */
  private async poll(generation: number): Promise<void> {
    if (this.stopped || generation !== this.generation) return;
    const started = Date.now();
    try {
      const [status, peers, health, metrics] = await Promise.all([
        api<NodeStatus>('GET', '/v1/status'),
        api<PeerView[]>('GET', '/v1/peers'),
        apiHealth(),
        // Metrics are optional for the page: a node without them still shows everything else.
        apiText('/metrics').catch(() => undefined),
      ]);
      this.state.status = status;
      this.state.health = health;
      this.state.peers = peers;
      if (metrics !== undefined) this.state.metrics.addScrape(started, metrics);
      this.state.pollError = undefined;
    } catch (err) {
      this.pollFailed(err);
    }
    if (started - this.reloadedAt >= RELOAD_MS && this.state.stream === 'open') void this.reload();
    this.changed();
    if (this.stopped || generation !== this.generation) return;
    this.poller = setTimeout(() => void this.poll(generation), Math.max(0, POLL_MS - (Date.now() - started)));
  }

  private pollFailed(err: unknown): void {
    if (err instanceof ApiRequestError && err.status === 401) {
      this.locked();
      return;
    }
    this.state.pollError = (err as Error).message;
  }

  /** The node wants a token (none was given, or it refused ours): stop and ask for one. */
  private locked(): void {
    if (this.state.needToken) return;
    this.state.needToken = true;
    this.state.tokenRefused = getToken() !== null;
    this.stop();
    this.changed();
  }

  private onMessage(m: SseMessage): void {
    if (m.event === 'gap') {
      // The node could not replay everything since our last event: fetch the lists again.
      void this.reload();
      return;
    }
    if (m.event !== 'task' && m.event !== 'agent' && m.event !== 'node') return;
    let e: MeshEvent;
    try {
      e = JSON.parse(m.data) as MeshEvent;
    } catch {
      return; // not ours to fix; the next full reload corrects the view
    }
    if (e.kind === 'task') this.onTask(e, e.value as TaskView);
    else if (e.kind === 'agent') this.onAgent(e, e.value as AgentView);
    else this.onNode(e, e.value as { id: string; name?: string; heartbeat?: number });
    this.changed();
  }

  private onTask(e: MeshEvent, t: TaskView): void {
    const before = this.state.tasks.get(t.id);
    this.putTask(t);
    if (before === undefined && this.state.tasks.size > MAX_TASKS + 100) this.trimTasks();
    if (!e.local) this.state.metrics.observeLag(e.at - t.updatedAt);
    if (before === undefined) this.bumpTotal(t.status, 1);
    else if (before.status !== t.status) {
      this.bumpTotal(before.status, -1);
      this.bumpTotal(t.status, 1);
    }
    const where = t.assignee === null ? '' : ` on ${t.assignee}`;
    const progress = t.status === 'IN_PROGRESS' ? ` ${Math.round(t.progress)}%` : '';
    const text = `task ${t.title || t.type} ${t.status}${progress}${where}`;
    // Progress writes come several times a second: one line per task and status, updated in place.
    const last = this.state.feed[0];
    if (last !== undefined && last.kind === 'task' && last.id === t.id && last.status === t.status) {
      last.text = text;
      last.at = e.at;
      return;
    }
    this.addFeed({ kind: 'task', id: t.id, text, local: e.local, origin: e.origin, at: e.at, status: t.status });
  }

  private onAgent(e: MeshEvent, a: AgentView): void {
    const before = this.state.agents.get(a.id);
    this.putAgent(a);
    // Heartbeats and load changes come every few seconds: only state changes make the feed.
    if (before !== undefined && before.state === a.state && before.removed === a.removed) return;
    const text = a.removed ? `agent ${a.id} removed` : `agent ${a.id} ${a.state}`;
    this.addFeed({ kind: 'agent', id: a.id, text, local: e.local, origin: e.origin, at: e.at, status: a.state });
  }

  private onNode(e: MeshEvent, n: { id: string; name?: string; heartbeat?: number }): void {
    // A peer's heartbeat, written on its clock and applied here: how far replication lags.
    if (!e.local && typeof n.heartbeat === 'number') this.state.metrics.observeLag(e.at - n.heartbeat);
    // A node neither this one nor a peer of the last poll is new to the mesh (before the first
    // poll every node would look new); its heartbeats repeat until the next poll: say it once.
    const status = this.state.status;
    if (status === null || status.id === n.id || this.state.peers.some((p) => p.id === n.id)) return;
    if (this.announced.has(n.id)) return;
    this.announced.add(n.id);
    const text = `node ${n.name ?? n.id} joined`;
    this.addFeed({ kind: 'node', id: n.id, text, local: e.local, origin: e.origin, at: e.at });
  }

  private addFeed(item: Omit<FeedItem, 'seq'>): void {
    this.state.feed.unshift({ ...item, seq: ++this.feedSeq });
    if (this.state.feed.length > FEED_LENGTH) this.state.feed.length = FEED_LENGTH;
  }

  private bumpTotal(status: TaskStatus, by: number): void {
    const n = this.state.totals[status];
    if (n !== undefined) this.state.totals[status] = Math.max(0, n + by);
  }

  /**
   * An event's value is the record's merged state on the node as of that event, and events come
   * in order: it always wins. A list answer (`listAskedAt` set) may be older than an event that
   * overtook it, so it does not replace a record an event touched after the list was asked for.
   * (Comparing the records' own timestamps would not do: a merge can keep a write stamped
   * earlier, such as a cancel by a node whose clock is behind.)
   */
  private putTask(t: TaskView, listAskedAt?: number): void {
    const key = `task/${t.id}`;
    if (listAskedAt !== undefined && (this.eventAt.get(key) ?? -1) >= listAskedAt) return;
    if (listAskedAt === undefined) this.eventAt.set(key, performance.now());
    this.state.tasks.set(t.id, t);
  }

  private putAgent(a: AgentView, listAskedAt?: number): void {
    const key = `agent/${a.id}`;
    if (listAskedAt !== undefined && (this.eventAt.get(key) ?? -1) >= listAskedAt) return;
    if (listAskedAt === undefined) this.eventAt.set(key, performance.now());
    if (a.removed) this.state.agents.delete(a.id);
    else this.state.agents.set(a.id, a);
  }

  private trimTasks(): void {
    const tasks = this.state.tasks;
    if (tasks.size <= MAX_TASKS) return;
    const done = [...tasks.values()]
      .filter((t) => t.status === 'COMPLETED' || t.status === 'FAILED' || t.status === 'CANCELLED')
      .sort((a, b) => a.updatedAt - b.updatedAt);
    for (const t of done.slice(0, tasks.size - MAX_TASKS)) {
      tasks.delete(t.id);
      this.eventAt.delete(`task/${t.id}`);
    }
  }
}

export type { MetricsPoint };
