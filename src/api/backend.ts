import type { AgentRegistry } from '../registry/agents.js';
import type { TaskBoard } from '../tasks/tasks.js';

/** One peer as the API shows it. */
export interface PeerView {
  id: string;
  name: string | null;
  state: 'alive' | 'suspect' | 'dead' | 'unknown';
  phi: number | null;
  connected: boolean;
  addresses: string[];
  lastHeartbeat: number | null;
  api: string | null;
}

export interface NodeStatus {
  id: string;
  name: string;
  version: string;
  listen: string[];
  api: string;
  peers: { connected: number; known: number; alive: number; suspect: number; dead: number };
  keys: number;
  merkleRoot: string;
  versionVector: Record<string, number>;
  uptimeMs: number;
  startedAt: number;
}

/** One change applied to a record, local or remote: what `GET /v1/events` streams. */
export interface MeshEvent {
  kind: 'agent' | 'task' | 'node';
  id: string;
  /** The record's new plain value (agent view, task view or node view). */
  value: unknown;
  /** The node that made the change (for remote full-record merges: the peer it came from). */
  origin: string | null;
  local: boolean;
  at: number;
}

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

/** A flat name -> value snapshot of the node's counters, exported as Prometheus metrics. */
export type CounterSnapshot = Record<string, number>;

/**
 * What the HTTP layer needs from a running node. The composition root (MeshNode) implements it;
 * tests can implement it over a bare replica.
 */
export interface ApiBackend {
  readonly agents: AgentRegistry;
  readonly tasks: TaskBoard;
  readonly faults?: FaultSwitch | undefined;
  status(): NodeStatus;
  peers(): PeerView[];
  /** False for nodes the failure detector considers dead (their agents show as unreachable). */
  isReachable(nodeId: string): boolean;
  /** Subscribes to record changes; returns the unsubscribe function. */
  onEvent(listener: (event: MeshEvent) => void): () => void;
  counters(): CounterSnapshot;
}
