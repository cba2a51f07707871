import type { MembershipView } from '../membership/index.js';
import type { MeshHost } from '../net/index.js';
import { forEachChunked } from '../util/chunked.js';
import { type AgentView, agentView, AGENT_KEY_PREFIX } from '../registry/agents.js';
import type { AgentRegistry } from '../registry/agents.js';
import type { Replica } from '../replica/index.js';
import { isTaskError } from '../tasks/errors.js';
import { ExecutionError } from '../agents/errors.js';
import { MAX_TOOL_DEPTH, TERMINAL_STATUSES, taskSchema } from '../tasks/task-schema.js';
import { TASK_KEY_PREFIX, type TaskBoard, type TaskView, taskView } from '../tasks/tasks.js';
import type { Logger } from '../util/log.js';
import type { MetricSet } from '../util/metrics.js';
import { PendingIndex, signatureOf } from './pending-index.js';
import { QuorumGrants } from './quorum.js';
import { rendezvousOrder } from './rendezvous.js';
import { type RecordState, wallOf } from '../crdt/index.js';

/** What the scheduler needs from the node's agent host. */
export interface LocalAgents {
  /** The local agents that take tasks now (RUNNING), with their free slots (queued claims counted). */
  available(): Array<{ id: string; capabilities: ReadonlySet<string>; free: number }>;
}

export interface SchedulerOptions {
  /** Lease of a claim (ms); the holder renews it while the task runs. Default 5000. */
  leaseMs?: number;
  /** How long each place in a task's rendezvous order waits before claiming (ms). Default 1000. */
  graceMs?: number;
  /** A non-designated claimant waits this long after claiming before it starts (ms). Default 50. */
  settleMs?: number;
  /** How often leases, deadlines and delayed claims are checked (ms). Default 200. */
  tickMs?: number;
  agingMs?: number;
}

export interface SchedulerDeps {
  nodeId: string;
  meshName: string;
  replica: Replica;
  tasks: TaskBoard;
  agents: AgentRegistry;
  membership: MembershipView;
  host: MeshHost;
  local: LocalAgents;
  log: Logger;
}

interface Candidate {
  id: string;
  node: string;
}

interface Held {
  epoch: number;
  node: string | null;
  leaseUntil: number;
}

/**
 * Scheduling without a broker. Every node sees the same replicated tasks, agents and membership,
 * so every node computes the same rendezvous order of a task's eligible agents (capabilities,
 * RUNNING, on a reachable node). The node whose agent comes first (the designated claimant) claims
 * at once when that agent has a free slot; the node of the k-th agent claims only after k grace
 * periods, if the task is still PENDING then (the designated node is dead, full or cut off). A
 * claim is a lease in the task's run register (see `compareRuns`): concurrent claims resolve to
 * one holder everywhere, the designated one first, and a non-designated claimant waits a settle
 * delay before it starts, so it sees a concurrent designated claim and backs off.
 *
 * Every node also watches the leases it does not hold (an expired one returns the task to the
 * pool as a new attempt), deadlines (DEADLINE_EXCEEDED), and dependencies (a task waits for its
 * dependencies to complete, and is cancelled when one fails or is cancelled). Writes that any
 * node may make are staggered by the node's place among the live nodes, so in a healthy mesh one
 * node makes each of them and the others find nothing left to do.
 */
export class Scheduler {
  readonly name = 'scheduler';
  private readonly pending: PendingIndex;
  /** task -> the tasks waiting for it to complete. */
  private readonly waitingOn = new Map<string, Set<string>>();
  private readonly held = new Map<string, Held>();
  private readonly deadlines = new Map<string, number>();
  private readonly backoff = new Map<string, number>();
  /** When this node first saw each PENDING task (its grace periods count from there). */
  private readonly firstSeen = new Map<string, number>();
  /** Claims this node has made and not yet seen settle: task -> epoch. */
  private readonly claiming = new Map<string, { epoch: number; agent: string }>();
  /** Recent durable-write times of this node's claims (ms): what the settle delay adapts to. */
  private readonly writeTimes: number[] = [];
  /** Recent replication lags of other nodes' task writes (ms): what grace and settle adapt to. */
  private readonly lags: number[] = [];
  /**
   * Claims that must wait the settle delay before they start: task -> resolved once the claim's
   * write is durable, which is when the node publishes it (see `mayStart`).
   */
  private readonly settling = new Map<string, Promise<void>>();
  private candidatesCache = new Map<string, Candidate[]>();
  private readonly orders = new Map<string, { list: Candidate[]; parent: string | null; ranked: Candidate[] }>();
  private readonly quorum: QuorumGrants;
  private readonly leaseMs: number;
  private readonly graceMs: number;
  private readonly settleMs: number;
  private readonly tickMs: number;
  private offs: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private kicked = false;
  private stopped = false;
  readonly stats = {
    claims: 0,
    designatedClaims: 0,
    graceClaims: 0,
    claimsLost: 0,
    quorumDenied: 0,
    expired: 0,
    deadlines: 0,
    dependentsCancelled: 0,
  };

  constructor(
    private readonly deps: SchedulerDeps,
    options: SchedulerOptions = {},
  ) {
    this.pending = new PendingIndex(options.agingMs);
    this.leaseMs = options.leaseMs ?? 5000;
    this.graceMs = options.graceMs ?? 1000;
    this.settleMs = options.settleMs ?? 50;
    this.tickMs = options.tickMs ?? 200;
    this.quorum = new QuorumGrants({
      host: deps.host,
      meshName: deps.meshName,
      nodeId: deps.nodeId,
      log: deps.log,
      taskEpoch: (id) => {
        const t = deps.tasks.get(id);
        return t === undefined ? undefined : { epoch: t.epoch, final: TERMINAL_STATUSES.has(t.status) };
      },
      members: () => this.members(),
    });
  }

  get lease(): number {
    return this.leaseMs;
  }

  async start(): Promise<void> {
    await this.quorum.start();
    const r = this.deps.replica;
    this.offs.push(
      r.events.on('change', (e) => {
        if (e.key.startsWith(TASK_KEY_PREFIX)) {
          if (!e.local) this.observeLag(e.incoming);
          const t = taskView(e.key.slice(TASK_KEY_PREFIX.length), e.state);
          if (t !== undefined) this.onTask(t);
        } else if (e.key.startsWith(AGENT_KEY_PREFIX)) {
          // Agents' liveness changes often; the candidate sets only when eligibility does.
          const a = agentView(e.key.slice(AGENT_KEY_PREFIX.length), e.state);
          if (a !== undefined) this.onAgent(a);
        }
      }),
      this.deps.membership.events.on('state', () => this.invalidate()),
    );
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
    // The tasks already in the replica are indexed in the background, in chunks: the node serves
    // at once, and a change that arrives meanwhile is indexed by its event (index() reads the
    // current state, so indexing a task twice is harmless).
    const keys = [...r.keys()].filter((k) => k.startsWith(TASK_KEY_PREFIX));
    this.indexed = forEachChunked(
      keys,
      (key) => {
        const state = r.get(key);
        const t = state === undefined ? undefined : taskView(key.slice(TASK_KEY_PREFIX.length), state);
        if (t !== undefined) this.index(t);
      },
      { stopped: () => this.stopped },
    ).then(
      () => this.kick(),
      (err: unknown) => this.deps.log.error({ err }, 'indexing the tasks at start failed'),
    );
  }

  /** Resolves once the tasks present at start are indexed (tests, and a clean stop). */
  indexed: Promise<void> = Promise.resolve();

  async stop(): Promise<void> {
    this.stopped = true;
    for (const off of this.offs) off();
    await this.indexed;
    if (this.timer) clearInterval(this.timer);
    await this.quorum.stop();
  }

  metrics(m: MetricSet): void {
    const s = this.stats;
    const q = this.quorum.stats;
    m.gauge('scheduler_pending_tasks', 'PENDING tasks in the index this node schedules from', this.pending.size);
    m.gauge('scheduler_held_tasks', 'Tasks this node holds a claim on', this.held.size);
    m.counter(
      'scheduler_claims_total',
      'Claims made by this node, by its place in the rendezvous order',
      { designated: s.designatedClaims, grace: s.graceClaims },
      'order',
    );
    m.counter('scheduler_claims_lost_total', 'Claims of this node that lost to another holder', s.claimsLost);
    m.counter('scheduler_quorum_denied_total', 'Quorum claims that did not reach a majority', s.quorumDenied);
    m.counter(
      'scheduler_quorum_decisions_total',
      'Quorum grant requests this node answered, by decision',
      { granted: q.granted, refused: q.refused, released: q.released },
      'decision',
    );
    m.counter('scheduler_leases_expired_total', 'Leases found expired (the task went back to the pool)', s.expired);
    m.counter('scheduler_deadlines_total', 'Tasks failed for passing their deadline', s.deadlines);
    m.counter(
      'scheduler_dependents_cancelled_total',
      'Dependents cancelled after a failed dependency',
      s.dependentsCancelled,
    );
  }

  /** Asks for a dispatch on the next turn (a local agent freed a slot, a task arrived...). */
  kick(): void {
    if (this.kicked || this.stopped) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      this.dispatch();
    });
  }

  // --- indexes ------------------------------------------------------------------------------------

  private onTask(t: TaskView): void {
    const wasPending = this.pending.has(t.id);
    this.index(t);
    if (TERMINAL_STATUSES.has(t.status)) {
      this.onFinal(t);
      this.waiters.get(t.id)?.(t);
    }
    const mine = this.claiming.get(t.id);
    if (mine !== undefined && (t.node !== this.deps.nodeId || t.epoch !== mine.epoch)) {
      if (t.epoch === mine.epoch) this.stats.claimsLost++;
      this.claiming.delete(t.id);
    }
    if (t.status === 'PENDING' || wasPending) this.kick();
  }

  private index(t: TaskView): void {
    const id = t.id;
    this.pending.remove(id);
    if (t.status !== 'PENDING') this.orders.delete(id);
    this.held.delete(id);
    this.deadlines.delete(id);
    this.backoff.delete(id);
    if (TERMINAL_STATUSES.has(t.status)) {
      this.firstSeen.delete(id);
      return;
    }
    if (t.deadline !== null) this.deadlines.set(id, t.deadline);
    if (t.status === 'PENDING') {
      const waiting = t.dependencies.filter((d) => this.deps.tasks.get(d)?.status !== 'COMPLETED');
      if (waiting.length > 0) {
        for (const d of waiting) {
          let set = this.waitingOn.get(d);
          if (set === undefined) this.waitingOn.set(d, (set = new Set()));
          set.add(id);
        }
        // A dependency that already failed or was cancelled: the dependent goes too.
        const dead = waiting
          .map((d) => this.deps.tasks.get(d))
          .find((d) => d !== undefined && TERMINAL_STATUSES.has(d.status));
        if (dead !== undefined) this.cancelDependent(id, dead);
        return;
      }
      if (!this.firstSeen.has(id)) this.firstSeen.set(id, Date.now());
      if (t.notBefore !== null && t.notBefore > Date.now()) this.backoff.set(id, t.notBefore);
      this.pending.add(id, t.capabilities, t.priority, t.createdAt);
      return;
    }
    this.held.set(id, { epoch: t.epoch, node: t.node, leaseUntil: t.leaseUntil ?? 0 });
  }

  private onFinal(t: TaskView): void {
    const dependents = this.waitingOn.get(t.id);
    if (dependents === undefined) return;
    this.waitingOn.delete(t.id);
    for (const d of dependents) {
      const view = this.deps.tasks.get(d);
      if (view === undefined) continue;
      if (t.status === 'COMPLETED') this.index(view);
      else this.cancelDependent(d, t);
    }
    this.kick();
  }

  private cancelDependent(id: string, dep: TaskView): void {
    const reason = `dependency ${dep.id} ended ${dep.status}`;
    this.staggered(() => {
      const now = this.deps.tasks.get(id);
      if (now === undefined || now.status !== 'PENDING') return;
      this.deps.tasks.cancel(id, reason).then(
        () => {
          this.stats.dependentsCancelled++;
          this.deps.log.info({ task: id, dependency: dep.id, status: dep.status }, 'dependent task cancelled');
        },
        (err: unknown) => this.deps.log.debug({ err, task: id }, 'dependent already moved on'),
      );
    });
  }

  private onAgent(a: AgentView): void {
    // Only what eligibility depends on: existence, capabilities, state, removal, owner.
    for (const [sig, list] of this.candidatesCache) {
      const had = list.some((c) => c.id === a.id);
      const caps = sig === '' ? [] : sig.split('\u0000');
      const fits = this.isCandidate(a) && caps.every((c) => a.capabilities.includes(c));
      if (had !== fits) this.candidatesCache.delete(sig);
    }
    if (a.state === 'RUNNING' && a.owner === this.deps.nodeId) this.kick();
  }

  private invalidate(): void {
    this.candidatesCache = new Map();
    this.kick();
  }

  private isCandidate(a: AgentView): boolean {
    return (
      !a.removed && a.state === 'RUNNING' && (a.owner === this.deps.nodeId || this.deps.membership.isReachable(a.owner))
    );
  }

  /** The agents eligible for a capability set, mesh-wide (cached until eligibility changes). */
  private candidates(caps: readonly string[]): Candidate[] {
    const sig = signatureOf(caps);
    let list = this.candidatesCache.get(sig);
    if (list === undefined) {
      list = this.deps.agents
        .list()
        .filter((a) => this.isCandidate(a) && caps.every((c) => a.capabilities.includes(c)))
        .map((a) => ({ id: a.id, node: a.owner }));
      this.candidatesCache.set(sig, list);
    }
    return list;
  }

  // --- claiming -------------------------------------------------------------------------------------

  private dispatch(): void {
    if (this.stopped) return;
    const now = Date.now();
    for (const agent of this.deps.local.available()) {
      let free = agent.free - this.claimsInFlight(agent.id);
      if (free <= 0) continue;
      const picked: Array<{ t: TaskView; rank: number }> = [];
      for (const e of this.pending.eligible(agent.capabilities)) {
        if (picked.length >= free) break;
        if (this.claiming.has(e.id)) continue;
        const until = this.backoff.get(e.id);
        if (until !== undefined && until > now) continue;
        const t = this.deps.tasks.get(e.id);
        if (t === undefined || t.status !== 'PENDING') continue;
        if (refusedBy(t, agent.id)) continue;
        const order = this.order(t);
        const rank = order.findIndex((c) => c.id === agent.id);
        if (rank < 0) continue;
        const since = this.firstSeen.get(t.id) ?? now;
        if (rank > 0 && now < since + rank * this.grace()) continue;
        picked.push({ t, rank });
      }
      for (const { t, rank } of picked) {
        free--;
        void this.claim(t, agent.id, rank);
      }
    }
  }

  private claimsInFlight(agentId: string): number {
    // Claims for this agent not yet visible as ASSIGNED here (the host counts those in `free`).
    let n = 0;
    for (const [id, c] of this.claiming) {
      if (c.agent !== agentId) continue;
      const t = this.deps.tasks.get(id);
      if (t !== undefined && t.assignee === agentId && t.epoch === c.epoch && t.status === 'ASSIGNED') continue;
      n++;
    }
    return n;
  }

  /** The task's candidates in rendezvous order; a tool call prefers agents on its caller's node. */
  private order(t: TaskView): Candidate[] {
    // Cached per task while its candidate list (an object replaced whenever eligibility changes)
    // stays the same: a dispatch looks at the same PENDING tasks again and again.
    const list = this.candidates(t.capabilities);
    const hit = this.orders.get(t.id);
    if (hit !== undefined && hit.list === list && hit.parent === t.parent) return hit.ranked;
    const ranked = rendezvousOrder(t.id, list);
    let out = ranked;
    if (t.parent !== null) {
      const callerNode = this.deps.tasks.get(t.parent)?.node;
      if (callerNode != null) {
        out = [...ranked.filter((c) => c.node === callerNode), ...ranked.filter((c) => c.node !== callerNode)];
      }
    }
    this.orders.set(t.id, { list, parent: t.parent, ranked: out });
    return out;
  }

  private async claim(t: TaskView, agent: string, rank: number): Promise<void> {
    const epoch = t.epoch + 1;
    this.claiming.set(t.id, { epoch, agent });
    try {
      if (t.claim === 'quorum') {
        const ok = await this.quorum.acquire({ task: t.id, epoch, node: this.deps.nodeId, agent });
        if (!ok) {
          this.stats.quorumDenied++;
          this.deps.log.debug({ task: t.id, epoch }, 'no quorum for the claim; the task waits');
          this.claiming.delete(t.id);
          // Try again later, not at once: a minority partition would spin. With jitter, so that
          // claimants whose votes split (each gave its grants back) do not split again in step.
          this.backoff.set(t.id, Date.now() + Math.max(1000, this.graceMs) * (1 + Math.random()));
          return;
        }
      }
      // Set up before the write: the claim's change event reaches the agent host, and so
      // `mayStart`, before `claim` returns. A designated claim made after the first grace period
      // settles too: by then the next in the order may be claiming the same epoch (fix: it used to
      // start at once, and both ran the task).
      const since = this.firstSeen.get(t.id);
      let written: (() => void) | undefined;
      if (rank > 0 || (since !== undefined && Date.now() >= since + this.grace())) {
        this.settling.set(t.id, new Promise<void>((r) => (written = r)));
      }
      const t0 = performance.now();
      const claimed = await this.deps.tasks
        .claim(t.id, { node: this.deps.nodeId, agent, claimRank: rank }, Date.now() + this.leaseMs)
        .finally(() => written?.());
      this.writeTimes.push(performance.now() - t0);
      if (this.writeTimes.length > 64) this.writeTimes.shift();
      if (claimed.epoch !== epoch) {
        // Someone else's claim or change got in between our read and our write.
        this.claiming.delete(t.id);
        this.settling.delete(t.id);
        return;
      }
      this.stats.claims++;
      if (rank === 0) this.stats.designatedClaims++;
      else this.stats.graceClaims++;
    } catch (err) {
      this.claiming.delete(t.id);
      this.settling.delete(t.id);
      // A node that cannot write (skewed clock, failing store) said so once already; the task
      // stays PENDING for a node that can.
      if (isTaskError(err)) return;
      const code = (err as { code?: unknown }).code;
      if (code === 'CLOCK_SKEW' || code === 'STORE_FULL' || code === 'STORE_IO') {
        this.deps.log.debug({ code, task: t.id }, 'claim refused: this node cannot write');
      } else this.deps.log.warn({ err, task: t.id }, 'claim failed');
      return;
    }
  }

  /**
   * Whether this node may start the task it holds at `epoch`: at once for the designated claimant
   * (rank 0, claiming in time) and manual assignments, after the settle delay for the others, and
   * only while it still holds the epoch then. The agent host asks this before it starts a task.
   *
   * The settle delay counts from when the claim is durable, which is when the node publishes it:
   * the agent host starts a claim as soon as it is made in memory, and a write waits behind the
   * store's current batch, so under load a delay counted from the claim itself ran out before
   * the claim had even left the node, and concurrent claimants each started (fix).
   */
  async mayStart(t: TaskView, signal: AbortSignal): Promise<boolean> {
    this.claiming.delete(t.id);
    const written = this.settling.get(t.id);
    this.settling.delete(t.id);
    const holds = (): boolean => {
      const cur = this.deps.tasks.get(t.id);
      return cur !== undefined && cur.epoch === t.epoch && cur.node === this.deps.nodeId && cur.status === 'ASSIGNED';
    };
    if (!holds()) return false;
    if ((t.claimRank > 0 || written !== undefined) && this.settleMs > 0) {
      await written;
      await new Promise((r) => setTimeout(r, this.settleDelay()));
      if (signal.aborted || !holds()) return false;
    }
    return true;
  }

  /**
   * The settle delay: at least `settleMs`, and twice this node's recent p90 time to make a claim
   * durable (capped at the lease's third). A competing claim leaves its node only once durable,
   * so on a busy node (writes queue behind the store's current batch) a fixed 50 ms ran out before
   * a concurrent claim could arrive, and both claimants ran the task.
   */
  private settleDelay(): number {
    const p90 = quantile(this.writeTimes, 0.9);
    return Math.round(
      Math.min(this.leaseMs / 3, Math.max(this.settleMs, 2 * p90 + 20, 1.5 * quantile(this.lags, 0.95))),
    );
  }

  /**
   * The grace per place in the rendezvous order: `graceMs`, or twice the p95 time task writes of
   * other nodes take to reach this one, if that is longer (capped at the lease). A claim that
   * has not arrived yet is indistinguishable from no claim; on a loaded mesh a fixed grace ran
   * out before the designated claimant's claim arrived, and both ran the task.
   */
  private grace(): number {
    return Math.min(this.leaseMs, Math.max(this.graceMs, 2 * quantile(this.lags, 0.95)));
  }

  /** Replication lag of a remote task write: now minus its writer's clock when it wrote it. */
  private observeLag(incoming: RecordState): void {
    const run = taskSchema.get(incoming, 'run');
    if (run === undefined) return;
    const lag = Date.now() - wallOf(run.t);
    if (!(lag >= 0 && lag < 60_000)) return;
    this.lags.push(lag);
    if (this.lags.length > 256) this.lags.shift();
  }

  // --- leases, deadlines, backoff -----------------------------------------------------------------

  private tick(): void {
    if (this.stopped) return;
    const now = Date.now();
    for (const [id, until] of this.backoff) {
      if (until <= now) {
        this.backoff.delete(id);
        this.kick();
      }
    }
    for (const [id, h] of this.held) {
      if (h.leaseUntil >= now) continue;
      // Our own expired holds are the agent host's (it renews what runs); others' are everyone's.
      if (h.node === this.deps.nodeId && this.ownsRunning(id)) continue;
      this.held.delete(id);
      const epoch = h.epoch;
      this.staggered(() => {
        const t = this.deps.tasks.get(id);
        if (t === undefined || t.epoch !== epoch || TERMINAL_STATUSES.has(t.status) || t.status === 'PENDING') return;
        this.deps.tasks.expire(id, epoch).then(
          (after) => {
            this.stats.expired++;
            this.deps.log.info(
              { task: id, epoch, holder: h.node, next: after.status, attempt: after.attempt },
              'lease expired; the task goes back to the pool',
            );
          },
          (err: unknown) => {
            this.deps.log.debug({ err, task: id }, 'lease already handled');
            const again = this.deps.tasks.get(id);
            if (again !== undefined) this.index(again);
          },
        );
      });
    }
    for (const [id, deadline] of this.deadlines) {
      if (deadline > now) continue;
      this.deadlines.delete(id);
      const t = this.deps.tasks.get(id);
      const holderIsMe = t?.node === this.deps.nodeId;
      const fail = (): void => {
        const cur = this.deps.tasks.get(id);
        if (cur === undefined || TERMINAL_STATUSES.has(cur.status)) return;
        this.deps.tasks.failDeadline(id).then(
          () => {
            this.stats.deadlines++;
            this.deps.log.info({ task: id }, 'deadline passed; task failed');
          },
          (err: unknown) => this.deps.log.debug({ err, task: id }, 'deadline already handled'),
        );
      };
      if (holderIsMe) fail();
      else this.staggered(fail);
    }
    if (this.pending.size > 0) this.kick();
  }

  // --- tool calls -------------------------------------------------------------------------------------

  private readonly waiters = new Map<string, (t: TaskView) => void>();

  /**
   * An agent's tool call on behalf of the task it runs: a child task (parent = the caller) that
   * requires the capability, scheduled like any other (agents on the caller's node first), with
   * the caller's deadline; resolves with the child's result. Refused: a capability that the
   * caller or one of its ancestors requires (the call would recurse), and nesting beyond
   * MAX_TOOL_DEPTH. Aborting the call cancels the child.
   */
  async toolCall(call: { task: string; capability: string; payload: unknown; signal: AbortSignal }): Promise<unknown> {
    const tasks = this.deps.tasks;
    const parent = tasks.get(call.task);
    if (parent === undefined) throw new ExecutionError('UNKNOWN_TASK', `no task ${call.task}`, false);
    for (let a: TaskView | undefined = parent, hops = 0; a !== undefined && hops <= MAX_TOOL_DEPTH; hops++) {
      if (a.capabilities.includes(call.capability)) {
        throw new ExecutionError(
          'RECURSIVE_CALL',
          `capability ${call.capability} is required by ${a.id === parent.id ? 'the calling task' : `its ancestor ${a.id}`}: the call would recurse`,
          false,
        );
      }
      a = a.parent === null ? undefined : tasks.get(a.parent);
    }
    if (parent.depth + 1 > MAX_TOOL_DEPTH) {
      throw new ExecutionError('TOO_DEEP', `tool calls nest at most ${MAX_TOOL_DEPTH} deep`, false);
    }
    let child: TaskView;
    try {
      child = await tasks.create(
        {
          type: call.capability,
          title: `tool call of ${parent.id}`,
          payload: call.payload ?? null,
          capabilities: [call.capability],
          parent: parent.id,
          deadline: parent.deadline,
          maxRetries: parent.maxRetries,
          priority: parent.priority,
        },
        { depth: parent.depth + 1 },
      );
    } catch (err) {
      throw new ExecutionError(isTaskError(err) ? err.code : 'TOOL_ERROR', (err as Error).message, false);
    }
    this.deps.log.debug({ parent: parent.id, child: child.id, capability: call.capability }, 'tool call');
    const ended = await new Promise<TaskView>((resolve) => {
      const done = (t: TaskView): void => {
        this.waiters.delete(child.id);
        call.signal.removeEventListener('abort', onAbort);
        resolve(t);
      };
      const onAbort = (): void => {
        tasks.cancel(child.id, 'the calling task stopped').catch(() => {});
      };
      this.waiters.set(child.id, done);
      call.signal.addEventListener('abort', onAbort, { once: true });
      const now = tasks.get(child.id);
      if (now !== undefined && TERMINAL_STATUSES.has(now.status)) done(now);
    });
    if (ended.status === 'COMPLETED') return ended.result;
    const e = (ended.error ?? {}) as { code?: string; message?: string };
    throw new ExecutionError(
      e.code ?? `TOOL_${ended.status}`,
      `tool call ${child.id} (${call.capability}) ended ${ended.status}${e.message ? `: ${e.message}` : ''}`,
      false,
      { child: child.id },
    );
  }

  /** Set by the agent host: whether it is running (or about to run) a task it holds. */
  ownsRunning: (taskId: string) => boolean = () => false;

  /**
   * Runs `fn` after a delay set by this node's place among the live nodes (0 for the first),
   * so that, in a healthy mesh, one node makes a write any node may make.
   */
  private staggered(fn: () => void): void {
    const alive = [
      this.deps.nodeId,
      ...this.deps.membership
        .peers()
        .filter((p) => p.state === 'alive')
        .map((p) => p.id),
    ].sort();
    const place = alive.indexOf(this.deps.nodeId);
    if (place <= 0) {
      fn();
      return;
    }
    const t = setTimeout(() => {
      if (!this.stopped) fn();
    }, place * 250);
    t.unref();
  }

  /** Every member of the mesh this node knows (its node records), itself included. */
  private members(): string[] {
    const out = new Set<string>([this.deps.nodeId]);
    for (const [key] of this.deps.replica.entries('node/')) out.add(key.slice(5));
    return [...out];
  }
}

/** Whether `agent` refused this task in an earlier attempt (a pre_task veto): don't offer it again. */
function refusedBy(t: TaskView, agent: string): boolean {
  return t.attempts.some((a) => a.agent === agent && (a.error as { code?: string } | null)?.code === 'REFUSED');
}

/** The q-quantile of `xs` (0 when empty). */
function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] as number;
}
