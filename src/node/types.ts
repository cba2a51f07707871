/** What a running node says about itself and its peers: the node's half of the API contract. */
import type { MetricFamily } from '../util/metrics.js';

export type { MetricFamily } from '../util/metrics.js';

/** One peer as the node sees it. */
export interface PeerView {
  id: string;
  name: string | null;
  state: 'alive' | 'suspect' | 'dead' | 'unknown';
  phi: number | null;
  connected: boolean;
  addresses: string[];
  lastHeartbeat: number | null;
  api: string | null;
  /** The peer's clock minus ours in ms, as last measured (null: not measured). */
  clockOffsetMs?: number | null;
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
  /** This node's clock minus the median of its peers' in ms (null: no peer measured). */
  clockOffsetMs?: number | null;
  /** True while this node runs ahead of most peers beyond the drift bound (writes refused). */
  clockSkewed?: boolean;
  /** The mesh's name: nodes replicate only within one mesh. */
  mesh: string;
  /** Whether the mesh is private (a pre-shared key guards its connections). */
  private: boolean;
  /**
   * A digest of the replicated state without liveness fields (node heartbeats, agent liveness),
   * 32 hex digits: two nodes that report the same one hold the same agents, tasks and nodes.
   */
  stateDigest: string;
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

/** Why a node cannot do its job right now (`GET /v1/health` answers 503 with these). */
export interface HealthProblem {
  /** `STORE_FULL`, `STORE_IO`, `CLOCK_SKEW`. */
  code: string;
  message: string;
  /** Wall ms since when. */
  since?: number;
}

export interface HealthReport {
  ok: boolean;
  problems: HealthProblem[];
}

/**
 * A flat name -> value snapshot of counters: the older form a service may still report through
 * `Service.counters()` (a `_total` name is a counter, anything else a gauge, no labels). New code
 * reports metric families through `Service.metrics()`.
 */
export type CounterSnapshot = Record<string, number>;

/** The read side of a running node that interfaces (HTTP API, dashboards) show. */
export interface NodeInfo {
  status(): NodeStatus;
  peers(): PeerView[];
  /** False for nodes the failure detector considers dead (their agents show as unreachable). */
  isReachable(nodeId: string): boolean;
  /** Subscribes to record changes; returns the unsubscribe function. */
  onEvent(listener: (event: MeshEvent) => void): () => void;
  /** The node's metric families (core and services), read now; the API exports them at scrape time. */
  metrics(): MetricFamily[];
  /** Whether the node can accept writes; absent means always healthy (test backends). */
  health?(): HealthReport;
  /**
   * Forgets a dead peer (its node record is marked forgotten for every member); rejects with a
   * RegistryError: PEER_ALIVE for a live or connected peer, NOT_FOUND for an unknown one.
   */
  forgetPeer?(id: string): Promise<PeerView>;
}
