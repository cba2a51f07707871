import type {
  ApiBackend,
  CounterSnapshot,
  FaultSwitch,
  MeshEvent,
  NodeStatus,
  PeerView,
} from '../../src/api/backend.js';
import { HybridClock } from '../../src/crdt/index.js';
import { meshFenced, meshPolicy, meshSchemaFor } from '../../src/node/schemas.js';
import { AgentRegistry, agentView } from '../../src/registry/agents.js';
import { StateDigest } from '../../src/node/state-digest.js';
import { nodeSchema } from '../../src/registry/node-schema.js';
import { Replica } from '../../src/replica/index.js';
import { TaskBoard, taskView } from '../../src/tasks/tasks.js';
import { HistogramRecorder, MetricSet } from '../../src/util/metrics.js';

/** A bare in-memory replica with the mesh's schemas and policies. */
export function meshReplica(nodeId: string, hlc?: () => number): Replica {
  return new Replica({
    nodeId,
    schemaFor: meshSchemaFor,
    policy: meshPolicy,
    fenced: meshFenced,
    ...(hlc ? { clock: new HybridClock({ now: hlc }) } : {}),
  });
}

/** A fault switch that only records what it was asked. */
export class FakeFaults implements FaultSwitch {
  private set = new Set<string>();
  calls: string[] = [];
  async partition(peerIds: string[]): Promise<void> {
    this.calls.push(`partition:${peerIds.join(',')}`);
    for (const p of peerIds) this.set.add(p);
  }
  async heal(): Promise<void> {
    this.calls.push('heal');
    this.set.clear();
  }
  denied(): string[] {
    return [...this.set].sort();
  }
  async load(count: number, agents: number, concurrency: number): Promise<{ count: number; ms: number }> {
    this.calls.push(`load:${count}:${agents}:${concurrency}`);
    return { count, ms: 0 };
  }
}

export interface TestBackend extends ApiBackend {
  readonly replica: Replica;
  /** Node ids isReachable() reports as unreachable. */
  readonly unreachable: Set<string>;
  /** Extra flat counters merged into metrics(). */
  readonly extraCounters: CounterSnapshot;
  /** Number of onEvent listeners currently subscribed. */
  listenerCount(): number;
}

/**
 * An ApiBackend over a real in-memory Replica with the real AgentRegistry and TaskBoard; peers
 * and status are fixed fakes. Events come from the replica's change events, as on a node.
 */
export function testBackend(options: { nodeId?: string; faults?: FaultSwitch } = {}): TestBackend {
  const nodeId = options.nodeId ?? 'node-a';
  const replica = meshReplica(nodeId);
  const mutate = async (key: string, build: Parameters<Replica['mutate']>[1]) => replica.mutate(key, build);
  const agents = new AgentRegistry({ replica, mutate });
  const tasks = new TaskBoard({ replica, mutate });
  const listeners = new Set<(e: MeshEvent) => void>();
  const unreachable = new Set<string>();
  const extraCounters: CounterSnapshot = {};
  const startedAt = Date.now();
  const digest = new StateDigest(replica);
  const latency = new HistogramRecorder([0.1, 1], ['kind']);
  latency.observe(0.05, { kind: 'a' });
  latency.observe(0.5, { kind: 'a' });
  latency.observe(5, { kind: 'b' });

  replica.events.on('change', (c) => {
    const slash = c.key.indexOf('/');
    const kind = c.key.slice(0, slash) as MeshEvent['kind'];
    const id = c.key.slice(slash + 1);
    const value =
      kind === 'agent' ? agentView(id, c.state) : kind === 'task' ? taskView(id, c.state) : nodeSchema.value(c.state);
    if (value === undefined) return;
    const event: MeshEvent = { kind, id, value, origin: c.origin ?? null, local: c.local, at: Date.now() };
    for (const fn of listeners) fn(event);
  });

  const peers: PeerView[] = [
    {
      id: 'node-b',
      name: 'bee',
      state: 'alive',
      phi: 0.4,
      connected: true,
      addresses: ['/ip4/127.0.0.1/tcp/4002'],
      lastHeartbeat: startedAt,
      api: null,
    },
  ];

  return {
    replica,
    agents,
    tasks,
    faults: options.faults,
    unreachable,
    extraCounters,
    status(): NodeStatus {
      return {
        id: nodeId,
        name: 'test-node',
        version: '0.0.0-test',
        listen: ['/ip4/127.0.0.1/tcp/4001'],
        api: 'http://127.0.0.1:0',
        peers: { connected: 1, known: 1, alive: 1, suspect: 0, dead: 0 },
        keys: replica.size,
        merkleRoot: replica.merkle().rootHex(),
        versionVector: Object.fromEntries(replica.versionVector().toWire()),
        uptimeMs: Date.now() - startedAt,
        startedAt,
        mesh: 'test',
        private: false,
        stateDigest: digest.hex(),
      };
    },
    peers: () => peers,
    isReachable: (id) => !unreachable.has(id),
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    metrics: () =>
      new MetricSet()
        .counter('replica_local_mutations_total', 'Mutations made here', replica.stats.localMutations)
        .counter('replica_rejected_total', 'Refused, by reason', replica.stats.rejectedByReason, 'reason')
        .histogram('test_latency_seconds', 'A test histogram', latency)
        .flat(extraCounters)
        .toArray(),
    listenerCount: () => listeners.size,
  };
}
