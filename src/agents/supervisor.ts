import type { AgentState } from '../registry/agent-schema.js';
import type { Logger } from '../util/log.js';
import type { AgentDefinition } from './definitions.js';
import type { AgentDriver } from './drivers/driver.js';
import { AgentError, AgentErrorCode, ExecutionError, toExecutionError } from './errors.js';

/** One running task of an agent. */
export interface Execution {
  taskId: string;
  /** The task's epoch this node holds: what fences the execution's writes. */
  epoch: number;
  controller: AbortController;
  done: Promise<void>;
}

export interface SupervisorHooks {
  /** The agent's state, capabilities or load changed (the host writes its record). */
  changed(sup: AgentSupervisor, urgent: boolean): void;
  /** The agent was restarted after a crash (the host counts it in the record). */
  restarted(sup: AgentSupervisor): void;
  /** The agent can take tasks (it became RUNNING, or a task finished). */
  idle(sup: AgentSupervisor): void;
  /** Runs the startup hook, if any (rejects to fail the start). */
  startup(sup: AgentSupervisor): Promise<void>;
}

/**
 * Supervises one agent, the way an OTP supervisor supervises a child: starts its driver, watches
 * for its exit (a crash, a kill, a missed ping), and restarts it per its policy: `permanent`
 * always, `transient` after an abnormal exit only, `temporary` never. Restarts back off
 * exponentially with jitter; more than `maxRestarts` within `withinMs` and the agent goes to
 * ERROR, where it stays until restarted by hand.
 */
export class AgentSupervisor {
  state: AgentState = 'INITIALIZING';
  capabilities: string[];
  readonly running = new Map<string, Execution>();
  lastError: string | undefined;
  private restartTimes: number[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  private generation = 0;

  constructor(
    readonly def: AgentDefinition,
    readonly driver: AgentDriver,
    private readonly hooks: SupervisorHooks,
    private readonly log: Logger,
  ) {
    this.capabilities = def.capabilities;
  }

  get id(): string {
    return this.def.id;
  }
  get load(): number {
    return this.running.size;
  }
  get pid(): number | undefined {
    return this.driver.pid;
  }
  /** RUNNING with a free slot. */
  get accepting(): boolean {
    return this.state === 'RUNNING' && this.running.size < this.def.concurrency;
  }
  get restartsInWindow(): number {
    return this.restartTimes.length;
  }

  private setState(state: AgentState): void {
    if (this.state === state) return;
    this.state = state;
    this.hooks.changed(this, true);
    if (state === 'RUNNING') this.hooks.idle(this);
  }

  /** Starts the agent (from INITIALIZING, RESTARTING, ERROR or TERMINATED). */
  async start(): Promise<void> {
    const gen = ++this.generation;
    this.setState(this.state === 'RESTARTING' ? 'RESTARTING' : 'INITIALIZING');
    try {
      await this.hooks.startup(this);
      const { capabilities } = await this.driver.start();
      if (gen !== this.generation) return;
      this.capabilities = capabilities;
      this.lastError = undefined;
      this.setState('RUNNING');
      this.log.info({ agent: this.id, pid: this.pid, mode: this.def.mode }, 'agent running');
    } catch (err) {
      if (gen !== this.generation) return;
      const e = toExecutionError(err);
      this.log.warn({ agent: this.id, code: e.code, err: e.message, ...e.details }, 'agent failed to start');
      await this.driver.stop(0).catch(() => {});
      this.crashed(e.message);
    }
  }

  /** The driver reports its process gone. */
  exited(abnormal: boolean, reason: string): void {
    // Only a live agent can crash; a failed start is handled by start() itself.
    if (this.state !== 'RUNNING' && this.state !== 'PAUSED') return;
    this.log.info({ agent: this.id, reason, abnormal }, 'agent process exited');
    const policy = this.def.restart.policy;
    if (policy === 'temporary' || (policy === 'transient' && !abnormal)) {
      this.lastError = reason;
      this.setState(abnormal ? 'ERROR' : 'TERMINATED');
      return;
    }
    this.crashed(reason);
  }

  private crashed(reason: string): void {
    this.lastError = reason;
    if (this.def.restart.policy === 'temporary') {
      this.setState('ERROR');
      return;
    }
    const now = Date.now();
    const r = this.def.restart;
    this.restartTimes = this.restartTimes.filter((t) => now - t < r.withinMs);
    if (this.restartTimes.length >= r.maxRestarts) {
      this.log.warn(
        { agent: this.id, restarts: this.restartTimes.length, withinMs: r.withinMs, reason },
        'agent given up on: too many restarts; it stays in ERROR until restarted by hand',
      );
      this.setState('ERROR');
      return;
    }
    this.restartTimes.push(now);
    const n = this.restartTimes.length;
    // Exponential backoff with jitter (half fixed, half random), capped.
    const base = Math.min(r.maxBackoffMs, r.backoffMs * 2 ** (n - 1));
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.log.info({ agent: this.id, attempt: n, delayMs: delay, reason }, 'agent restarting');
    this.setState('RESTARTING');
    const gen = this.generation;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (gen !== this.generation || this.state !== 'RESTARTING') return;
      this.hooks.restarted(this);
      void this.start();
    }, delay);
  }

  /** Aborts every running task with `reason`. */
  abortAll(reason: ExecutionError): void {
    for (const e of this.running.values()) e.controller.abort(reason);
  }

  /** Stops the agent: running tasks are interrupted, the process gets SIGTERM, a grace, SIGKILL. */
  async stop(): Promise<void> {
    this.generation++;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    if (this.state === 'TERMINATED') return;
    this.setState('STOPPING');
    this.abortAll(new ExecutionError('INTERRUPTED', 'the agent was stopped while it ran the task', true));
    await this.driver.stop(this.def.stopGraceMs).catch((err: unknown) => {
      this.log.warn({ agent: this.id, err }, 'error while stopping agent');
    });
    await Promise.all([...this.running.values()].map((e) => e.done));
    this.setState('TERMINATED');
  }

  /** By hand: stop if needed, forget the restart history, start again (also from ERROR). */
  async restart(): Promise<void> {
    await this.stop();
    this.restartTimes = [];
    await this.start();
  }

  pause(): void {
    if (this.state !== 'RUNNING') throw this.invalid('pause', 'RUNNING');
    this.setState('PAUSED');
  }

  resume(): void {
    if (this.state !== 'PAUSED') throw this.invalid('resume', 'PAUSED');
    this.setState('RUNNING');
  }

  private invalid(action: string, expected: string): AgentError {
    return new AgentError(
      AgentErrorCode.INVALID_STATE,
      `agent ${this.id} is ${this.state}; ${action} needs it ${expected}`,
      { details: { state: this.state } },
    );
  }
}
