import type { AgentControl } from '../agents/index.js';
import type { NodeInfo } from '../node/types.js';
import type { AgentRegistry } from '../registry/agents.js';
import type { TaskBoard } from '../tasks/tasks.js';

export type { CounterSnapshot, MeshEvent, MetricFamily, NodeStatus, PeerView } from '../node/types.js';

/** Test-only fault switch: exists only when the node was started with faults enabled. */
export interface FaultSwitch {
  /** Refuse and close connections to these peers (a partition), until heal. */
  partition(peerIds: string[]): Promise<void>;
  heal(): Promise<void>;
  denied(): string[];
  /**
   * Benchmark load: `count` owner updates spread over `agents` agents hosted by this node, issued
   * as fast as durability allows, `concurrency` at a time. Resolves when all are durable.
   */
  load(count: number, agents: number, concurrency: number): Promise<{ count: number; ms: number }>;
}

/**
 * What the HTTP layer needs from a running node: its read side, the registry and the task board,
 * and optionally control of its local agents and the test fault switch. The HTTP API service
 * builds it from a node's components; tests can implement it over a bare replica.
 */
export interface ApiBackend extends NodeInfo {
  readonly agents: AgentRegistry;
  readonly tasks: TaskBoard;
  /** Start/stop/restart/pause/resume of the agents this node hosts. */
  readonly agentControl?: AgentControl | undefined;
  readonly faults?: FaultSwitch | undefined;
}
