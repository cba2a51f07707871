import type { MembershipView } from '../membership/index.js';
import type { MeshHost } from '../net/index.js';
import type { AgentRegistry } from '../registry/agents.js';
import type { Replica } from '../replica/index.js';
import type { TaskBoard } from '../tasks/tasks.js';
import type { Logger } from '../util/log.js';
import type { MetricSet } from '../util/metrics.js';
import type { CounterSnapshot, NodeInfo } from './types.js';

/**
 * A subsystem with the node's lifecycle (js-libp2p's `Startable`): started in order after the
 * node's core, stopped in reverse; when a start fails, whatever had started is stopped.
 */
export interface Service {
  /** Unique within a node; other services look a service up by it. */
  readonly name: string;
  start?(): Promise<void> | void;
  stop?(): Promise<void> | void;
  /** Adds the service's metric families (names, types, help, labels) to the node's `/metrics`. */
  metrics?(out: MetricSet): void;
  /** Flat counters, the older form (see CounterSnapshot); prefer `metrics`. */
  counters?(): CounterSnapshot;
}

/** Peers the node refuses to talk to (the test fault switch partitions with it). */
export interface PeerGate {
  deny(peers: readonly string[]): Promise<void>;
  allowAll(): Promise<void>;
  denied(): string[];
}

/**
 * What a service may use of a node. A service factory takes these and keeps only what it needs,
 * so each service's real dependencies show in its factory (see js-libp2p's `Components`).
 */
export interface NodeComponents {
  readonly nodeId: string;
  readonly dataDir: string;
  /** The mesh's name (protocol ids and topics carry it). */
  readonly meshName: string;
  readonly replica: Replica;
  readonly host: MeshHost;
  readonly membership: MembershipView;
  readonly agents: AgentRegistry;
  readonly tasks: TaskBoard;
  readonly info: NodeInfo;
  readonly peerGate: PeerGate;
  logger(component: string): Logger;
  /** Another service of this node, by name; undefined if the node has none (or it starts later). */
  service<S extends Service>(name: string): S | undefined;
  /** Tells peers (through the node record) where this node's HTTP API is. */
  announceApi(url: string): void;
}

/** Builds a service from a node's components; the service starts right after. */
export type ServiceFactory<S extends Service = Service> = (components: NodeComponents) => S;
