import type { NodeComponents, Service, ServiceFactory } from '../node/service.js';
import { AGENT_STATES, type AgentHealth } from '../registry/agent-schema.js';
import { isRegistryError } from '../registry/errors.js';
import type { AgentRegistry } from '../registry/agents.js';
import type { Replica } from '../replica/index.js';
import { isTaskError } from '../tasks/errors.js';
import { TASK_KEY_PREFIX, type TaskBoard, type TaskView, taskView } from '../tasks/tasks.js';
import { forEachChunked } from '../util/chunked.js';
import type { Logger } from '../util/log.js';
import { DURATION_BUCKETS, HistogramRecorder, type MetricSet } from '../util/metrics.js';
import type { AgentDefinition, HookName } from './definitions.js';
import type { AgentDriver, DriverCounters, DriverDeps } from './drivers/driver.js';
import { execDriver } from './drivers/exec.js';
import { mcpDriver } from './drivers/mcp.js';
import { stdioDriver } from './drivers/stdio.js';
import { AgentError, AgentErrorCode, ExecutionError, toExecutionError } from './errors.js';
import { runHook } from './hooks.js';
import { ProcessRecords } from './processes.js';
import type { AgentTaskInput } from './protocol.js';
import { TaskReporter } from './reporter.js';
import { AgentSupervisor, type Execution } from './supervisor.js';

export const AGENT_HOST_SERVICE = 'agent-host';
export const DEFAULT_MAX_AGENTS = 64;
export const DEFAULT_LEASE_MS = 5000;

/** A tool call an agent makes on behalf of a task it runs. */
export interface ToolCall {
  task: string;
  capability: string;
  payload: unknown;
  signal: AbortSignal;
}
/** Liveness is written at once on a state change, load changes at most this often. */
const LOAD_WRITE_INTERVAL_MS = 250;

export type AgentAction = 'start' | 'stop' | 'restart' | 'pause' | 'resume';
export const AGENT_ACTIONS: readonly AgentAction[] = ['start', 'stop', 'restart', 'pause', 'resume'];

/** A local agent as its host sees it (beyond its replicated record). */
export interface LocalAgentStatus {
  id: string;
  mode: AgentDefinition['mode'];
  state: AgentSupervisor['state'];
  pid: number | null;
  capabilities: string[];
  concurrency: number;
  running: string[];
  queued: number;
  restartsInWindow: number;
  lastError: string | null;
}

/** Control of the agents a node hosts, for the HTTP API and CLI. */
export interface AgentControl {
  list(): LocalAgentStatus[];
  get(id: string): LocalAgentStatus | undefined;
  control(id: string, action: AgentAction): Promise<LocalAgentStatus>;
}

export interface AgentHostOptions {
  agents: AgentDefinition[];
  maxAgents?: number;
  /** The lease a running task holds, renewed every third of it (ms). Default 5000. */
  leaseMs?: number;
  /** How often each agent's liveness is written when nothing changed (ms). Default 5000. */
  heartbeatMs?: number;
}

interface HostDeps {
  nodeId: string;
  dataDir: string;
  replica: Replica;
  agents: AgentRegistry;
  tasks: TaskBoard;
  log: Logger;
}

const HEALTH: Partial<Record<AgentSupervisor['state'], AgentHealth>> = {
  RUNNING: 'healthy',
  PAUSED: 'healthy',
  RESTARTING: 'degraded',
  ERROR: 'unhealthy',
};

/** The host's counters, exported as `agent_*` metrics. */
interface HostCounters extends DriverCounters {
  tasksStarted: number;
  tasksCompleted: number;
  tasksFailed: number;
  tasksCancelled: number;
  tasksTimedOut: number;
  tasksInterrupted: number;
  hookVetoes: number;
  hookFailures: number;
  restarts: number;
  leftoversStopped: number;
}

/**
 * Runs the agents defined for this node: registers each in the replicated registry (owner = this
 * node) and keeps its record current (state, load, capacity, health, heartbeat, execution
 * counters), supervises its process (`AgentSupervisor`), and executes the tasks assigned to it:
 * ASSIGNED -> IN_PROGRESS -> COMPLETED or FAILED with the result or error, progress and log
 * replicated while it runs, stopped within moments when the task is cancelled anywhere.
 */
export class AgentHost implements Service, AgentControl {
  readonly name = AGENT_HOST_SERVICE;
  private readonly sups = new Map<string, AgentSupervisor>();
  /** Per agent: task id -> the epoch this node holds it at, waiting for a free slot. */
  private readonly queues = new Map<string, Map<string, number>>();
  private readonly records: ProcessRecords;
  private readonly log: Logger;
  private readonly stats: HostCounters = {
    protocolErrors: 0,
    unknownTask: 0,
    oversized: 0,
    pingTimeouts: 0,
    toolCalls: 0,
    tasksStarted: 0,
    tasksCompleted: 0,
    tasksFailed: 0,
    tasksCancelled: 0,
    tasksTimedOut: 0,
    tasksInterrupted: 0,
    hookVetoes: 0,
    hookFailures: 0,
    restarts: 0,
    leftoversStopped: 0,
  };
  /** IN_PROGRESS -> COMPLETED, FAILED or CANCELLED of the tasks this node ran, by agent and outcome. */
  private readonly durations = new HistogramRecorder(DURATION_BUCKETS, ['agent', 'outcome']);
  private readonly liveness = new Map<string, { timer?: NodeJS.Timeout; writing?: Promise<void>; again: boolean }>();
  private offChange: (() => void) | undefined;
  private scheduler:
    | {
        mayStart(t: TaskView, signal: AbortSignal): Promise<boolean>;
        slotsFreed(): void;
        toolCall(call: ToolCall): Promise<unknown>;
      }
    | undefined;
  private beat: NodeJS.Timeout | undefined;
  private stopped = false;
  private closed = false;

  constructor(
    private readonly deps: HostDeps,
    private readonly options: AgentHostOptions,
  ) {
    this.log = deps.log;
    this.records = new ProcessRecords(deps.dataDir, deps.log);
  }

  // --- lifecycle --------------------------------------------------------------------------------

  async start(): Promise<void> {
    const max = this.options.maxAgents ?? DEFAULT_MAX_AGENTS;
    if (this.options.agents.length > max) {
      throw new AgentError(
        AgentErrorCode.TOO_MANY_AGENTS,
        `${this.options.agents.length} agents defined; this node hosts at most ${max} (--max-agents)`,
      );
    }
    const reaped = await this.records.reapLeftovers();
    if (reaped.length > 0) {
      this.stats.leftoversStopped += reaped.length;
      this.log.info({ pids: reaped }, 'stopped agent processes left behind by a previous run of this node');
    }
    await this.retireUndefinedAgents();
    for (const def of this.options.agents) {
      const sup = new AgentSupervisor(def, this.driverFor(def), this.supervisorHooks(), this.log);
      try {
        await this.deps.agents.upsert(def.id, {
          name: def.name,
          type: def.type,
          capabilities: def.capabilities,
          state: 'INITIALIZING',
          health: 'unknown',
          load: 0,
          capacity: def.concurrency,
          meta: { ...def.meta, hosted: true, mode: def.mode },
        });
      } catch (err) {
        if (isRegistryError(err)) {
          this.log.error({ agent: def.id, code: err.code, err: err.message }, 'cannot register agent; not starting it');
          continue;
        }
        throw err;
      }
      this.sups.set(def.id, sup);
      this.queues.set(def.id, new Map());
    }
    this.offChange = this.deps.replica.events.on('change', (e) => {
      if (!e.key.startsWith(TASK_KEY_PREFIX)) return;
      const view = taskView(e.key.slice(TASK_KEY_PREFIX.length), e.state);
      if (view !== undefined) this.onTask(view);
    });
    await Promise.all([...this.sups.values()].map((s) => s.start()));
    // Tasks this node held before a restart: found by a background scan in chunks, so that a node
    // with 100k tasks in its replica starts serving at once (the scan decodes every task).
    this.recovered = this.recoverTasks().catch((err: unknown) =>
      this.log.error({ err }, 'recovering the tasks held before the restart failed'),
    );
    const every = this.options.heartbeatMs ?? 5000;
    this.beat = setInterval(() => {
      for (const sup of this.sups.values()) this.writeLiveness(sup);
    }, every);
    this.beat.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.offChange?.();
    await this.recovered;
    if (this.beat) clearInterval(this.beat);
    await Promise.all([...this.sups.values()].map((s) => s.stop()));
    // The last liveness writes (TERMINATED) go out before the store closes.
    for (const l of this.liveness.values()) if (l.timer !== undefined) clearTimeout(l.timer);
    for (const sup of this.sups.values()) this.writeLiveness(sup);
    await Promise.all([...this.liveness.values()].map((l) => l.writing));
    // Nothing writes after this: the store closes right after the services stop.
    this.closed = true;
  }

  metrics(m: MetricSet): void {
    const s = this.stats;
    // Every state from 0, so that each series exists from the first scrape.
    const states: Record<string, number> = Object.fromEntries(AGENT_STATES.map((x) => [x, 0]));
    for (const sup of this.sups.values()) states[sup.state] = (states[sup.state] ?? 0) + 1;
    m.gauge('agent_host_agents', 'Agents this node hosts, by supervisor state', states, 'state');
    m.gauge(
      'agent_host_running_tasks',
      "Tasks running on this node's agents",
      [...this.sups.values()].reduce((n, x) => n + x.load, 0),
    );
    m.counter('agent_protocol_errors_total', 'Malformed or invalid messages from agents', s.protocolErrors);
    m.counter('agent_unknown_task_messages_total', 'Agent messages about tasks they do not run', s.unknownTask);
    m.counter('agent_output_too_large_total', 'Agent lines or results over the size limit', s.oversized);
    m.counter('agent_ping_timeouts_total', 'Pings agents did not answer in time', s.pingTimeouts);
    m.counter('agent_tool_calls_total', 'Tool calls made by agents', s.toolCalls);
    m.counter('agent_tasks_started_total', "Tasks started on this node's agents", s.tasksStarted);
    m.counter(
      'agent_tasks_ended_total',
      'Task executions ended on this node, by outcome',
      { completed: s.tasksCompleted, failed: s.tasksFailed, cancelled: s.tasksCancelled },
      'outcome',
    );
    m.counter(
      'agent_tasks_timed_out_total',
      'Executions killed by their timeout (also counted as failed)',
      s.tasksTimedOut,
    );
    m.counter(
      'agent_tasks_interrupted_total',
      'Executions interrupted by a node restart (also counted as failed)',
      s.tasksInterrupted,
    );
    m.counter('agent_hook_vetoes_total', 'Tasks a pre_task hook refused', s.hookVetoes);
    m.counter('agent_hook_failures_total', 'Hooks that could not run or failed', s.hookFailures);
    m.counter('agent_restarts_total', 'Agent processes restarted by supervision', s.restarts);
    m.counter(
      'agent_leftover_processes_stopped_total',
      'Agent processes a previous run of this node left behind, stopped at start',
      s.leftoversStopped,
    );
    m.histogram(
      'agent_task_duration_seconds',
      'Executions on this node from IN_PROGRESS to their end, by agent and outcome',
      this.durations,
    );
  }

  // --- control ----------------------------------------------------------------------------------

  list(): LocalAgentStatus[] {
    return [...this.sups.values()].map((s) => this.statusOf(s));
  }

  get(id: string): LocalAgentStatus | undefined {
    const s = this.sups.get(id);
    return s === undefined ? undefined : this.statusOf(s);
  }

  async control(id: string, action: AgentAction): Promise<LocalAgentStatus> {
    const sup = this.sups.get(id);
    if (sup === undefined) {
      throw new AgentError(AgentErrorCode.NOT_LOCAL, `agent ${id} is not run by this node`, { details: { id } });
    }
    switch (action) {
      case 'start':
        if (sup.state !== 'TERMINATED' && sup.state !== 'ERROR') {
          throw new AgentError(AgentErrorCode.INVALID_STATE, `agent ${id} is ${sup.state}; start needs it stopped`, {
            details: { state: sup.state },
          });
        }
        await sup.restart();
        break;
      case 'stop':
        await sup.stop();
        break;
      case 'restart':
        await sup.restart();
        break;
      case 'pause':
        sup.pause();
        break;
      case 'resume':
        sup.resume();
        break;
    }
    this.log.info({ agent: id, action, state: sup.state }, 'agent control');
    return this.statusOf(sup);
  }

  private statusOf(s: AgentSupervisor): LocalAgentStatus {
    return {
      id: s.id,
      mode: s.def.mode,
      state: s.state,
      pid: s.pid ?? null,
      capabilities: s.capabilities,
      concurrency: s.def.concurrency,
      running: [...s.running.keys()],
      queued: this.queues.get(s.id)?.size ?? 0,
      restartsInWindow: s.restartsInWindow,
      lastError: s.lastError ?? null,
    };
  }

  // --- supervision ------------------------------------------------------------------------------

  private driverFor(def: AgentDefinition): AgentDriver {
    const deps: DriverDeps = {
      def,
      nodeId: this.deps.nodeId,
      records: this.records,
      log: this.log,
      counters: this.stats,
      events: {
        exit: ({ abnormal, reason }) => this.sups.get(def.id)?.exited(abnormal, reason),
        capabilities: (list) => {
          const sup = this.sups.get(def.id);
          if (sup === undefined || def.capabilities.length > 0) return;
          sup.capabilities = list;
          this.writeCapabilities(sup);
        },
      },
    };
    if (def.mode === 'exec') return execDriver(deps);
    if (def.mode === 'stdio')
      return stdioDriver(deps, (call) => this.toolCall(call.task, call.capability, call.payload));
    return mcpDriver(deps);
  }

  private supervisorHooks(): ConstructorParameters<typeof AgentSupervisor>[2] {
    return {
      changed: (sup, urgent) => this.markChanged(sup, urgent),
      restarted: (sup) => {
        this.stats.restarts++;
        this.deps.agents
          .recordRestart(sup.id)
          .catch((err: unknown) => this.log.debug({ err }, 'restart count refused'));
      },
      idle: (sup) => this.dispatch(sup),
      startup: async (sup) => {
        const outcome = await this.hook(sup, 'startup', { event: 'startup', agent: this.agentInfo(sup) });
        if (outcome !== undefined && outcome.code !== 0) {
          throw new ExecutionError('HOOK_FAILED', `startup hook exited with ${outcome.code}: ${outcome.reason}`, true);
        }
      },
    };
  }

  private agentInfo(sup: AgentSupervisor): Record<string, unknown> {
    return { id: sup.id, name: sup.def.name, node: this.deps.nodeId, capabilities: sup.capabilities };
  }

  private async hook(
    sup: AgentSupervisor,
    name: HookName,
    input: unknown,
  ): Promise<{ code: number | null; reason: string } | undefined> {
    const spec = sup.def.hooks[name];
    if (spec === undefined) return undefined;
    try {
      return await runHook(
        name,
        spec,
        input,
        { ...sup.def.env, AGENTMESH_AGENT_ID: sup.id, AGENTMESH_NODE_ID: this.deps.nodeId, AGENTMESH_HOOK: name },
        sup.def.cwd,
        this.records,
      );
    } catch (err) {
      this.stats.hookFailures++;
      this.log.warn({ agent: sup.id, hook: name, err: (err as Error).message }, 'hook failed');
      if (name === 'startup' || name === 'pre_task') throw err;
      return undefined;
    }
  }

  // --- registry writes --------------------------------------------------------------------------

  private markChanged(sup: AgentSupervisor, urgent: boolean): void {
    if (this.stopped) return;
    const l = this.liveness.get(sup.id) ?? { again: false };
    this.liveness.set(sup.id, l);
    if (l.timer !== undefined) {
      if (!urgent) return;
      clearTimeout(l.timer);
    }
    l.timer = setTimeout(
      () => {
        l.timer = undefined;
        this.writeLiveness(sup);
      },
      urgent ? 0 : LOAD_WRITE_INTERVAL_MS,
    );
  }

  /** Writes the agent's liveness; one write per agent in flight, the latest state wins. */
  private writeLiveness(sup: AgentSupervisor): void {
    if (this.closed) return;
    const l = this.liveness.get(sup.id) ?? { again: false };
    this.liveness.set(sup.id, l);
    if (l.writing !== undefined) {
      l.again = true;
      return;
    }
    l.writing = this.deps.agents
      .heartbeat(sup.id, {
        state: sup.state,
        load: sup.load,
        capacity: sup.def.concurrency,
        health: HEALTH[sup.state] ?? 'unknown',
      })
      .then(
        () => {},
        (err: unknown) => this.log.debug({ err, agent: sup.id }, 'agent liveness write refused'),
      )
      .finally(() => {
        l.writing = undefined;
        if (l.again) {
          l.again = false;
          this.writeLiveness(sup);
        }
      });
  }

  private writeCapabilities(sup: AgentSupervisor): void {
    const current = this.deps.agents.get(sup.id);
    if (current === undefined) return;
    this.deps.agents
      .upsert(sup.id, { name: current.name, type: current.type, capabilities: sup.capabilities })
      .catch((err: unknown) => this.log.warn({ err, agent: sup.id }, 'cannot update agent capabilities'));
  }

  /** Agents this node hosted in an earlier run and no longer defines: shown as TERMINATED. */
  private async retireUndefinedAgents(): Promise<void> {
    const defined = new Set(this.options.agents.map((d) => d.id));
    for (const a of this.deps.agents.list({ node: this.deps.nodeId })) {
      if (defined.has(a.id) || a.meta.hosted !== true || a.state === 'TERMINATED') continue;
      await this.deps.agents
        .heartbeat(a.id, { state: 'TERMINATED', load: 0, health: 'unknown' })
        .catch((err: unknown) => this.log.debug({ err, agent: a.id }, 'cannot retire agent'));
    }
  }

  // --- task execution ---------------------------------------------------------------------------

  /**
   * Tasks this node held before this start: those a previous run of it left IN_PROGRESS fail as
   * INTERRUPTED (retryable, so they go back to the pool while attempts remain); those it had
   * claimed and not started are queued like any new claim.
   */
  /** Resolves once the tasks held before a restart were recovered. */
  recovered: Promise<unknown> = Promise.resolve();

  private async recoverTasks(): Promise<void> {
    const held: TaskView[] = [];
    const keys = [...this.deps.replica.keys()].filter((k) => k.startsWith(TASK_KEY_PREFIX));
    await forEachChunked(
      keys,
      (key) => {
        const state = this.deps.replica.get(key);
        const t = state === undefined ? undefined : taskView(key.slice(TASK_KEY_PREFIX.length), state);
        if (t !== undefined && t.node === this.deps.nodeId) held.push(t);
      },
      { stopped: () => this.stopped },
    );
    for (const found of held) {
      if (this.stopped) return;
      // The scan yielded to the event loop: act on the task as it is now.
      const t = this.deps.tasks.get(found.id);
      if (t === undefined || t.node !== this.deps.nodeId) continue;
      if (t.assignee === null || !this.sups.has(t.assignee)) continue;
      if (t.status === 'IN_PROGRESS') {
        this.stats.tasksInterrupted++;
        const error = this.errorJson(
          new ExecutionError('INTERRUPTED', 'the node restarted while the task ran', true),
          t.assignee,
        );
        await this.deps.tasks
          .finish(t.id, t.epoch, { ok: false, error, retryable: true })
          .catch((err: unknown) => this.log.debug({ err, task: t.id }, 'cannot fail interrupted task'));
      } else if (t.status === 'ASSIGNED') {
        this.onTask(t);
      }
    }
  }

  /** Whether this node holds `t` for one of its agents at its current epoch, not yet final. */
  private heldHere(t: TaskView): boolean {
    return (
      t.node === this.deps.nodeId && t.assignee !== null && (t.status === 'ASSIGNED' || t.status === 'IN_PROGRESS')
    );
  }

  private onTask(t: TaskView): void {
    if (this.stopped) return;
    // A running execution whose task moved on (cancelled, taken over at a later epoch, ended by
    // someone else, a deadline) stops now.
    for (const sup of this.sups.values()) {
      const exec = sup.running.get(t.id);
      if (exec === undefined) continue;
      if (!(this.heldHere(t) && t.assignee === sup.id && t.epoch === exec.epoch)) {
        const why =
          t.status === 'CANCELLED'
            ? 'the task was cancelled'
            : `the task is now ${t.status} at epoch ${t.epoch}${t.node ? ` held by ${t.node}` : ''}`;
        exec.controller.abort(new ExecutionError('CANCELLED', why, false));
      }
    }
    for (const [agentId, queue] of this.queues) {
      const epoch = queue.get(t.id);
      if (
        epoch !== undefined &&
        !(t.status === 'ASSIGNED' && t.assignee === agentId && t.epoch === epoch && t.node === this.deps.nodeId)
      ) {
        queue.delete(t.id);
      }
    }
    if (t.status !== 'ASSIGNED' || !this.heldHere(t)) return;
    const sup = this.sups.get(t.assignee as string);
    if (sup === undefined || sup.running.has(t.id)) return;
    this.queues.get(sup.id)?.set(t.id, t.epoch);
    this.dispatch(sup);
  }

  /** An agent's tool call, served by the scheduler (a child task); cancelled with the caller. */
  private toolCall(task: string, capability: string, payload: unknown): Promise<unknown> {
    if (this.scheduler === undefined) {
      return Promise.reject(new ExecutionError('TOOL_CALLS_UNSUPPORTED', 'this node runs no scheduler', false));
    }
    let signal: AbortSignal | undefined;
    for (const sup of this.sups.values()) signal ??= sup.running.get(task)?.controller.signal;
    if (signal === undefined)
      return Promise.reject(new ExecutionError('UNKNOWN_TASK', `task ${task} is not running here`, false));
    return this.scheduler.toolCall({ task, capability, payload, signal });
  }

  // --- what the scheduler sees ------------------------------------------------------------------

  /** The agents that take tasks now, with their free slots (queued claims counted). */
  available(): Array<{ id: string; capabilities: ReadonlySet<string>; free: number }> {
    const out = [];
    for (const sup of this.sups.values()) {
      if (sup.state !== 'RUNNING') continue;
      const free = sup.def.concurrency - sup.running.size - (this.queues.get(sup.id)?.size ?? 0);
      out.push({ id: sup.id, capabilities: new Set(sup.capabilities), free });
    }
    return out;
  }

  /** Whether a task is queued or running here. */
  runs(taskId: string): boolean {
    for (const sup of this.sups.values()) if (sup.running.has(taskId)) return true;
    for (const q of this.queues.values()) if (q.has(taskId)) return true;
    return false;
  }

  /**
   * How the scheduler plugs in: a gate the host passes before it starts a claimed task (the
   * settle delay, say), a call when slots free up, and the service behind agents' tool calls.
   */
  attachScheduler(s: {
    mayStart(t: TaskView, signal: AbortSignal): Promise<boolean>;
    slotsFreed(): void;
    toolCall(call: ToolCall): Promise<unknown>;
  }): void {
    this.scheduler = s;
  }

  /** Starts queued tasks while the agent has free slots: priority first, then the oldest. */
  private dispatch(sup: AgentSupervisor): void {
    const queue = this.queues.get(sup.id);
    while (!this.stopped && sup.accepting && queue !== undefined && queue.size > 0) {
      let best: TaskView | undefined;
      for (const [id, epoch] of queue) {
        const t = this.deps.tasks.get(id);
        if (
          t === undefined ||
          t.status !== 'ASSIGNED' ||
          t.assignee !== sup.id ||
          t.epoch !== epoch ||
          !this.heldHere(t)
        ) {
          queue.delete(id);
          continue;
        }
        if (
          best === undefined ||
          t.priority > best.priority ||
          (t.priority === best.priority && t.createdAt < best.createdAt)
        ) {
          best = t;
        }
      }
      if (best === undefined) return;
      queue.delete(best.id);
      this.execute(sup, best);
    }
  }

  private execute(sup: AgentSupervisor, t: TaskView): void {
    const controller = new AbortController();
    const exec: Execution = { taskId: t.id, epoch: t.epoch, controller, done: Promise.resolve() };
    sup.running.set(t.id, exec);
    this.markChanged(sup, false);
    exec.done = this.run(sup, t, controller).finally(() => {
      sup.running.delete(t.id);
      this.markChanged(sup, false);
      this.dispatch(sup);
      this.scheduler?.slotsFreed();
    });
  }

  private errorJson(e: ExecutionError, agent: string): Record<string, unknown> {
    return { ...e.toJSON(), agent, node: this.deps.nodeId };
  }

  private async run(sup: AgentSupervisor, t: TaskView, controller: AbortController): Promise<void> {
    const tasks = this.deps.tasks;
    const epoch = t.epoch;
    const input: AgentTaskInput = {
      id: t.id,
      type: t.type,
      title: t.title,
      payload: t.payload,
      capabilities: t.capabilities,
      attempt: t.attempt,
      deadline: t.deadline,
    };
    const info = { agent: this.agentInfo(sup), task: input };
    if (this.scheduler !== undefined && !(await this.scheduler.mayStart(t, controller.signal))) return;
    if (controller.signal.aborted) return;
    const veto = await this.hook(sup, 'pre_task', { event: 'pre_task', ...info }).catch((err: unknown) => ({
      code: -1,
      reason: (err as Error).message,
    }));
    if (veto !== undefined && veto.code !== 0) {
      this.stats.hookVetoes++;
      const reason = veto.reason || `pre_task hook exited with ${veto.code}`;
      this.log.info({ agent: sup.id, task: t.id, reason }, 'pre_task hook refused the task');
      const error = this.errorJson(new ExecutionError('REFUSED', reason, true, { hookExitCode: veto.code }), sup.id);
      await tasks
        .finish(t.id, epoch, { ok: false, error, retryable: true })
        .catch((err: unknown) => this.log.debug({ err, task: t.id }, 'cannot record refusal'));
      return;
    }
    if (controller.signal.aborted) return;
    const leaseMs = this.options.leaseMs ?? DEFAULT_LEASE_MS;
    try {
      await tasks.start(t.id, epoch, Date.now() + leaseMs);
    } catch (err) {
      // Cancelled, taken over or ended in the meantime: nothing to run.
      this.log.debug({ err, task: t.id }, 'task changed before it started');
      return;
    }
    this.stats.tasksStarted++;
    const started = Date.now();
    const reporter = new TaskReporter(tasks, t.id, epoch, this.log);
    const timeoutMs = t.timeoutMs ?? sup.def.timeoutMs;
    const timers = [
      setTimeout(
        () => controller.abort(new ExecutionError('TIMEOUT', `the attempt ran longer than ${timeoutMs} ms`, true)),
        timeoutMs,
      ),
      setInterval(
        () => {
          tasks.renew(t.id, epoch, Date.now() + leaseMs).catch((err: unknown) => {
            this.log.debug({ err, task: t.id }, 'lease renewal refused');
          });
        },
        Math.max(100, Math.floor(leaseMs / 3)),
      ),
    ];
    if (t.deadline !== null) {
      timers.push(
        setTimeout(
          () => controller.abort(new ExecutionError('DEADLINE_EXCEEDED', 'the task passed its deadline', false)),
          Math.max(0, t.deadline - Date.now()),
        ),
      );
    }
    let outcome: { ok: true; result: unknown } | { ok: false; error: ExecutionError };
    try {
      const result = await sup.driver.run(input, {
        signal: controller.signal,
        progress: (pct, message) => reporter.onProgress(pct, message),
        log: (line) => reporter.onLog(line),
      });
      outcome = { ok: true, result };
    } catch (err) {
      outcome = { ok: false, error: toExecutionError(err) };
    } finally {
      for (const x of timers) clearTimeout(x);
    }
    await reporter.close();
    const durationMs = Date.now() - started;
    const ended = (how: 'completed' | 'failed' | 'cancelled'): void =>
      this.durations.observe(durationMs / 1000, { agent: sup.id, outcome: how });
    const log = reporter.logLines;
    if (outcome.ok) {
      try {
        await tasks.finish(t.id, epoch, { ok: true, result: outcome.result, log });
        this.stats.tasksCompleted++;
        ended('completed');
        this.recordExecution(sup, 'success');
        void this.hook(sup, 'post_task', {
          event: 'post_task',
          ...info,
          outcome: 'success',
          result: outcome.result,
          durationMs,
        });
        return;
      } catch (err) {
        if (!(isTaskError(err) && err.code === 'TOO_LARGE')) {
          this.log.debug({ err, task: t.id }, 'result not recorded (the task moved on meanwhile)');
          return;
        }
        this.stats.oversized++;
        outcome = { ok: false, error: new ExecutionError('OUTPUT_TOO_LARGE', err.message, false) };
      }
    }
    const e = outcome.error;
    if (e.code === 'CANCELLED') {
      this.stats.tasksCancelled++;
      ended('cancelled');
      return;
    }
    if (e.code === 'TIMEOUT') this.stats.tasksTimedOut++;
    if (e.code === 'INTERRUPTED') this.stats.tasksInterrupted++;
    this.stats.tasksFailed++;
    ended('failed');
    const error = this.errorJson(e, sup.id);
    try {
      await tasks.finish(t.id, epoch, { ok: false, error, retryable: e.retryable, log });
    } catch (err) {
      this.log.debug({ err, task: t.id }, 'failure not recorded (the task moved on meanwhile)');
      return;
    }
    this.recordExecution(sup, 'failure');
    void this.hook(sup, 'on_error', { event: 'on_error', ...info, error, durationMs });
    void this.hook(sup, 'post_task', { event: 'post_task', ...info, outcome: 'failure', error, durationMs });
  }

  private recordExecution(sup: AgentSupervisor, outcome: 'success' | 'failure'): void {
    if (this.closed) return;
    this.deps.agents
      .recordExecution(sup.id, outcome)
      .catch((err: unknown) => this.log.debug({ err, agent: sup.id }, 'execution count refused'));
  }
}

/** The agent host as a node service (every MeshNode runs one). */
export function agentHost(options: AgentHostOptions): ServiceFactory<AgentHost> {
  return (c: NodeComponents) =>
    new AgentHost(
      {
        nodeId: c.nodeId,
        dataDir: c.dataDir,
        replica: c.replica,
        agents: c.agents,
        tasks: c.tasks,
        log: c.logger('mesh:agents'),
      },
      options,
    );
}
