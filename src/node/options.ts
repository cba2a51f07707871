import type { AgentDefinition } from '../agents/index.js';
import type { StrategyChoice } from '../sync/index.js';
import type { ServiceFactory } from './service.js';

export interface MeshNodeOptions {
  /** Data directory (LevelDB, identity). Default `./.mesh`. */
  dataDir: string;
  /** libp2p listen multiaddrs. Default `/ip4/0.0.0.0/tcp/7071`. */
  listen?: string[];
  /** Human-readable node name. Default: the host name. */
  name?: string;
  /** Pre-shared key for a private mesh (libp2p pnet key-file bytes). */
  psk?: Uint8Array;
  /** Multiaddrs to join through. */
  join?: string[];
  mdns?: boolean;
  /** Topic namespace: nodes only replicate with nodes of the same mesh name. Default `default`. */
  meshName?: string;
  /** How often the node record's heartbeat is bumped (ms). Default 1000. */
  heartbeatMs?: number;
  /** Remote clock readings further ahead than this are refused (ms). Default 60000. */
  maxClockDriftMs?: number;
  /** How often clock offsets to connected peers are measured (ms). Default 30000. */
  clockSyncIntervalMs?: number;
  /** The agents this node runs (see `mesh start --agents FILE`). */
  agents?: AgentDefinition[];
  /** Most agents this node hosts at once (definitions plus API-started ones). Default 64. */
  maxAgents?: number;
  /** A claim's lease (ms): a task whose holder stops renewing runs elsewhere after it. Default 5000. */
  leaseMs?: number;
  /** How long each place in a task's rendezvous order waits before claiming (ms). Default 1000. */
  claimGraceMs?: number;
  /** How often a hosted agent's liveness is written when nothing else changed (ms). Default 5000. */
  agentHeartbeatMs?: number;
  /**
   * Services started after the node's core, in order (the CLI adds the HTTP API here). A node
   * without them runs fine: an embedder needs no HTTP server.
   */
  services?: ServiceFactory[];
  /** Force a sync strategy (benchmarks); default adaptive. */
  syncStrategy?: StrategyChoice;
  /** Delta gossip batching window (ms). Default 0: the next event-loop turn. */
  gossipBatchMs?: number;
  /** Records waiting for the store past which local writes are refused with OVERLOADED. */
  maxPendingWrites?: number;
  /** Anti-entropy interval bounds (ms). */
  syncMinIntervalMs?: number;
  syncMaxIntervalMs?: number;
}

export const DEFAULT_API = { host: '127.0.0.1', port: 7070 };
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/7071'];
export const DEFAULT_DATA_DIR = '.mesh';
