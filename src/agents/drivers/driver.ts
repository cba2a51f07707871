import type { Logger } from '../../util/log.js';
import type { AgentDefinition } from '../definitions.js';
import type { ProcessRecords } from '../processes.js';
import type { AgentTaskInput } from '../protocol.js';

/** What a running task may report while it runs. */
export interface RunContext {
  /** Aborted on cancel, timeout or shutdown; its reason is the ExecutionError to fail with. */
  readonly signal: AbortSignal;
  /** 0-100, with an optional message for the task's log. */
  progress(pct: number, message?: string): void;
  /** One line of the task's log. */
  log(line: string): void;
}

/** Counters a driver bumps for bad agent behaviour (see AgentHost.counters). */
export interface DriverCounters {
  protocolErrors: number;
  unknownTask: number;
  oversized: number;
  pingTimeouts: number;
  toolCalls: number;
}

export interface DriverEvents {
  /** The agent's process is gone (`abnormal`: a crash, a kill, a missed ping; not our own stop). */
  exit(info: { abnormal: boolean; reason: string }): void;
  /** The agent's capabilities changed (an MCP server's tool list). */
  capabilities(list: string[]): void;
}

export interface DriverDeps {
  def: AgentDefinition;
  nodeId: string;
  records: ProcessRecords;
  log: Logger;
  counters: DriverCounters;
  events: DriverEvents;
}

/**
 * How the host talks to one agent. `start` brings it up (a persistent process: until it is ready)
 * and returns its capabilities; `run` executes one task and resolves with its result or rejects
 * with an ExecutionError; `stop` ends it (SIGTERM, grace, SIGKILL).
 */
export interface AgentDriver {
  start(): Promise<{ capabilities: string[] }>;
  run(task: AgentTaskInput, ctx: RunContext): Promise<unknown>;
  stop(graceMs: number): Promise<void>;
  /** The persistent process's pid, if there is one. */
  readonly pid: number | undefined;
}

/** The signal's reason as an Error (AbortSignal reasons may be anything). */
export function abortReason(signal: AbortSignal): Error {
  const r = signal.reason as unknown;
  return r instanceof Error ? r : new Error(String(r));
}

/** Keeps the last `max` bytes of text (a stderr tail for error reports). */
export class Tail {
  private text = '';
  constructor(private readonly max: number) {}
  push(line: string): void {
    this.text = (this.text.length === 0 ? line : `${this.text}\n${line}`).slice(-this.max);
  }
  toString(): string {
    return this.text;
  }
}
