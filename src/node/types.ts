/** What a running node says about itself and its peers: the node's half of the API contract. */

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

/** A flat name -> value snapshot of the node's counters, exported as Prometheus metrics. */
export type CounterSnapshot = Record<string, number>;

/** The read side of a running node that interfaces (HTTP API, dashboards) show. */
export interface NodeInfo {
  status(): NodeStatus;
  peers(): PeerView[];
  /** False for nodes the failure detector considers dead (their agents show as unreachable). */
  isReachable(nodeId: string): boolean;
  /** Subscribes to record changes; returns the unsubscribe function. */
  onEvent(listener: (event: MeshEvent) => void): () => void;
  counters(): CounterSnapshot;
  /**
   * Forgets a dead peer (its node record is marked forgotten for every member); rejects with a
   * RegistryError: PEER_ALIVE for a live or connected peer, NOT_FOUND for an unknown one.
   */
  forgetPeer?(id: string): Promise<PeerView>;
}
