import { hostname } from 'node:os';
import { AGENT_HOST_SERVICE, type AgentHost, agentHost } from '../agents/index.js';
import { agentControl } from '../control/index.js';
import { scheduler as taskScheduler } from '../scheduler/index.js';
import { HybridClock, type AnyRecordSchema, type RecordState, wallOf } from '../crdt/index.js';
import { ClockSkewError, ClockSync, MembershipView, type PeerState } from '../membership/index.js';
import { createHost, generateIdentity, type MeshHost, peerIdOf } from '../net/index.js';
import { AgentRegistry, agentView } from '../registry/agents.js';
import { RegistryError, RegistryErrorCode } from '../registry/errors.js';
import { isForgotten, nodeSchema } from '../registry/node-schema.js';
import { type Delta, DurableReplica, Replica } from '../replica/index.js';
import { DurableStore, isStoreError } from '../store/index.js';
import { DeltaGossip, DeltaLog, DeltaPush, SyncProtocol, SyncScheduler } from '../sync/index.js';
import { TaskBoard, taskView } from '../tasks/tasks.js';
import { Emitter } from '../util/emitter.js';
import { VERSION } from '../util/version.js';
import { type Logger, logger } from '../util/log.js';
import { HistogramRecorder, LATENCY_BUCKETS, type MetricFamily, MetricSet } from '../util/metrics.js';
import { Census } from './census.js';
import { DEFAULT_LISTEN, type MeshNodeOptions } from './options.js';
import { meshFenced, meshPolicy, meshSchemaFor } from './schemas.js';
import type { NodeComponents, Service, ServiceFactory } from './service.js';
import { StateDigest } from './state-digest.js';
import type { HealthReport, MeshEvent, NodeInfo, NodeStatus, PeerView } from './types.js';

export { VERSION };

const META_IDENTITY = 'identity';
/** Peers back from dead within this window count as one partition heal (one log line). */
const HEAL_WINDOW_MS = 5_000;
/** A heal's line is written at the latest this long after the first peer came back. */
const HEAL_MAX_MS = 60_000;

/** Reads the node's identity key from the data directory, creating one on first start. */
async function loadOrCreateIdentity(dataDir: string): Promise<Uint8Array> {
  const store = await DurableStore.open(dataDir);
  try {
    const existing = await store.getMeta(META_IDENTITY);
    if (existing !== undefined) return existing;
    const key = await generateIdentity();
    await store.write({ meta: [[META_IDENTITY, key]] });
    return key;
  } finally {
    await store.close();
  }
}

/**
 * A mesh node: the composition root. It builds the core (replica and its durable store, the
 * libp2p host, gossip and anti-entropy, membership, the agent registry and the task board), then
 * the services: the agent host, and whatever the embedder adds (the HTTP API, say). Everything
 * has one lifecycle: start in order, stop in reverse, and a failed start stops whatever had
 * started before rethrowing.
 */
export class MeshNode implements NodeInfo {
  readonly options: MeshNodeOptions;
  readonly log: Logger;
  private readonly stack: Array<{ name: string; stop: () => Promise<void> | void }> = [];
  private readonly services = new Map<string, Service>();
  private readonly events = new Emitter<{ event: MeshEvent }>();
  private readonly denied = new Set<string>();
  private startedAt = 0;
  private stopping: Promise<void> | undefined;
  private _replica: Replica | undefined;
  private _durable: DurableReplica | undefined;
  private _host: MeshHost | undefined;
  private _gossip: DeltaGossip | undefined;
  private _push: DeltaPush | undefined;
  private _deltaLog: DeltaLog | undefined;
  private _sync: SyncProtocol | undefined;
  private _scheduler: SyncScheduler | undefined;
  private _membership: MembershipView | undefined;
  private _clockSync: ClockSync | undefined;
  private _agents: AgentRegistry | undefined;
  private _tasks: TaskBoard | undefined;
  private _apiUrl = '';
  /** Remote agent and task record changes applied: how much a heal brought in. */
  private remoteChanges = 0;
  /** The start-up (full) node record has not been written yet. */
  private fullRecordPending = false;
  private readonly deadSince = new Map<string, number>();
  /** Peers back from dead whose heartbeats have not resumed yet (their 'alive' is not news). */
  private readonly returning = new Set<string>();
  private heal:
    | {
        peers: Set<string>;
        separatedMs: number;
        remoteChangesAtStart: number;
        lastSeen: number;
        timer: NodeJS.Timeout | undefined;
      }
    | undefined;
  private _digest: StateDigest | undefined;
  private _census: Census | undefined;
  /** Remote delta's write time (its newest HLC wall time) -> applied here, by record kind. */
  private readonly applyLag = new HistogramRecorder(LATENCY_BUCKETS, ['kind']);

  constructor(options: MeshNodeOptions) {
    this.options = options;
    this.log = logger('mesh:node');
  }

  static async start(options: MeshNodeOptions): Promise<MeshNode> {
    const node = new MeshNode(options);
    try {
      await node.init();
    } catch (err) {
      await node.stop().catch(() => {});
      throw err;
    }
    return node;
  }

  // --- accessors ------------------------------------------------------------------------------

  get id(): string {
    return this.replica.nodeId;
  }
  get replica(): Replica {
    return required(this._replica, 'replica');
  }
  get durable(): DurableReplica {
    return required(this._durable, 'store');
  }
  get host(): MeshHost {
    return required(this._host, 'host');
  }
  get gossip(): DeltaGossip {
    return required(this._gossip, 'gossip');
  }
  get push(): DeltaPush {
    return required(this._push, 'push');
  }
  get sync(): SyncProtocol {
    return required(this._sync, 'sync');
  }
  get scheduler(): SyncScheduler {
    return required(this._scheduler, 'scheduler');
  }
  get membership(): MembershipView {
    return required(this._membership, 'membership');
  }
  get agents(): AgentRegistry {
    return required(this._agents, 'agents');
  }
  get tasks(): TaskBoard {
    return required(this._tasks, 'tasks');
  }
  /** The local agent processes this node hosts. */
  get agentHost(): AgentHost {
    return required(this.service<AgentHost>(AGENT_HOST_SERVICE), 'agent host');
  }
  /** The HTTP API's URL, once a service announced one ('' without an API). */
  get apiUrl(): string {
    return this._apiUrl;
  }
  get name(): string {
    return this.options.name ?? hostname();
  }
  multiaddrs(): string[] {
    return this.host.multiaddrs();
  }
  /** A service of this node by name (see `MeshNodeOptions.services`). */
  service<S extends Service>(name: string): S | undefined {
    return this.services.get(name) as S | undefined;
  }

  /** Clock offsets to peers and this node's skew verdict. */
  get clockSync(): ClockSync {
    return required(this._clockSync, 'clock sync');
  }

  /**
   * A durable local mutation, published to the mesh once it is on disk. Refused with CLOCK_SKEW
   * while this node's clock runs ahead of most of its peers beyond the drift bound: they would
   * refuse the write, so acknowledging it would promise what the mesh will not keep.
   */
  async mutate(key: string, build: (current: RecordState, schema: AnyRecordSchema) => RecordState): Promise<Delta> {
    this._clockSync?.assertWritable();
    const delta = await this.durable.mutate(key, build);
    const wire = this.replica.deltaToWire(delta);
    required(this._deltaLog, 'delta log').add(delta.origin, delta.seq, wire);
    this.push.publish(wire);
    this.gossip.publish(wire);
    return delta;
  }

  // --- lifecycle ------------------------------------------------------------------------------

  /** Starts `s` now and stops it (in reverse order) when the node stops. */
  private async use<S extends { start?(): Promise<void> | void; stop?(): Promise<void> | void }>(
    name: string,
    s: S,
  ): Promise<S> {
    await s.start?.();
    this.stack.push({ name, stop: () => s.stop?.() });
    return s;
  }

  private async init(): Promise<void> {
    const o = this.options;
    this.startedAt = Date.now();
    const identity = await loadOrCreateIdentity(o.dataDir);
    const nodeId = peerIdOf(identity);

    const replica = new Replica({
      nodeId,
      schemaFor: meshSchemaFor,
      policy: meshPolicy,
      fenced: meshFenced,
      clock: new HybridClock({ maxDriftMs: o.maxClockDriftMs ?? 60_000 }),
    });
    this._replica = replica;
    const { durable, loaded } = await DurableReplica.open(replica, o.dataDir);
    this._durable = durable;
    if (o.maxPendingWrites !== undefined) durable.maxPending = o.maxPendingWrites;
    this.stack.push({ name: 'store', stop: () => durable.close() });
    this.log.info({ loaded, nodeId }, 'replica loaded');

    // Peers remembered in our replica (node records) are bootstrap candidates as well as --join.
    const remembered: string[] = [];
    for (const [key, state] of replica.entries('node/')) {
      if (key === `node/${nodeId}`) continue;
      const v = nodeSchema.value(state);
      if (isForgotten(v)) continue;
      for (const a of v.addresses ?? []) remembered.push(a);
    }
    const host = await createHost({
      privateKey: identity,
      listen: o.listen ?? DEFAULT_LISTEN,
      bootstrap: [...(o.join ?? []), ...remembered],
      mdns: o.mdns ?? false,
      ...(o.psk ? { psk: o.psk } : {}),
      gater: { denyPeer: (peer) => this.denied.has(peer) },
    });
    this._host = host;
    this.stack.push({ name: 'host', stop: () => host.stop() });

    const meshName = o.meshName ?? 'default';
    const deltaLog = new DeltaLog();
    this._deltaLog = deltaLog;
    const sync = await this.use('sync', new SyncProtocol({ replica, host, deltaLog, meshName }));
    this._sync = sync;
    const scheduler = new SyncScheduler({
      protocol: sync,
      host,
      ...(o.syncStrategy ? { strategy: o.syncStrategy } : {}),
      ...(o.syncMinIntervalMs ? { minIntervalMs: o.syncMinIntervalMs } : {}),
      ...(o.syncMaxIntervalMs ? { maxIntervalMs: o.syncMaxIntervalMs } : {}),
    });
    this._scheduler = scheduler;
    this._clockSync = await this.use(
      'clock-sync',
      new ClockSync({
        host,
        meshName: o.meshName ?? 'default',
        log: logger('mesh:clock'),
        maxDriftMs: replica.clock.maxDriftMs,
        logicalLeadMs: () => wallOf(replica.clock.current) - Date.now(),
        ...(o.clockSyncIntervalMs !== undefined ? { intervalMs: o.clockSyncIntervalMs } : {}),
      }),
    );

    const heartbeatMs = o.heartbeatMs ?? 1000;
    const membership = await this.use(
      'membership',
      new MembershipView({ selfId: nodeId, heartbeatIntervalMs: heartbeatMs }),
    );
    this._membership = membership;
    const push = await this.use(
      'push',
      new DeltaPush({ replica, host, meshName, deltaLog, onGap: (_origin, peer) => scheduler.gap(peer) }),
    );
    this._push = push;
    this._gossip = await this.use(
      'gossip',
      new DeltaGossip({
        replica,
        pubsub: host.pubsub,
        topic: `agentmesh/${meshName}/deltas/1`,
        deltaLog,
        batchMs: o.gossipBatchMs ?? 0,
        onGap: (_origin, peer) => scheduler.gap(peer),
        // Gossip only for members that no push stream reaches (a mesh not fully connected).
        // Asked once per published batch: ids only, no phi computed.
        needed: () => {
          for (const id of membership.liveIds()) if (!push.reaches(id)) return true;
          return false;
        },
      }),
    );
    await this.use('sync-scheduler', scheduler);
    const offState = membership.events.on('state', (t) => this.onPeerState(t.peerId, t.from, t.to));
    this.stack.push({
      name: 'membership-log',
      stop: () => {
        offState();
        clearTimeout(this.heal?.timer);
      },
    });
    const offConnect = host.on('peer:connect', (p) => membership.connected(p, true));
    const offDisconnect = host.on('peer:disconnect', (p) => membership.connected(p, false));
    this.stack.push({
      name: 'membership-events',
      stop: () => {
        offConnect();
        offDisconnect();
      },
    });

    const mutate = this.mutate.bind(this);
    this._agents = new AgentRegistry({ replica, mutate });
    const agents = this._agents;
    this._tasks = new TaskBoard({ replica, mutate, ownerOf: (id) => agents.get(id)?.owner });

    const offChange = replica.events.on('change', (e) => {
      if (e.via === 'delta') this.observeApplyLag(e.key, e.schema, e.incoming);
      this.onChange(e.key, e.state, e.incoming, e.origin ?? null, e.local);
    });
    this.stack.push({ name: 'change-events', stop: offChange });
    const digest = new StateDigest(replica);
    const census = new Census(replica);
    this._digest = digest;
    this._census = census;
    this.stack.push({
      name: 'state-views',
      stop: () => {
        digest.close();
        census.close();
      },
    });

    // The services: one factory and one line each. The agent host is part of every node; the
    // embedder's (the CLI's HTTP API, a test's fault switch) follow in the order given.
    const components = this.components();
    const factories: ServiceFactory[] = [
      agentHost({
        agents: o.agents ?? [],
        ...(o.maxAgents !== undefined ? { maxAgents: o.maxAgents } : {}),
        ...(o.agentHeartbeatMs !== undefined ? { heartbeatMs: o.agentHeartbeatMs } : {}),
        ...(o.leaseMs !== undefined ? { leaseMs: o.leaseMs } : {}),
      }),
      taskScheduler({
        ...(o.leaseMs !== undefined ? { leaseMs: o.leaseMs } : {}),
        ...(o.claimGraceMs !== undefined ? { graceMs: o.claimGraceMs } : {}),
      }),
      agentControl(),
      ...(o.services ?? []),
    ];
    for (const factory of factories) {
      const service = factory(components);
      if (this.services.has(service.name)) throw new Error(`mesh node: two services named ${service.name}`);
      this.services.set(service.name, service);
      await this.use(service.name, service);
    }

    // A node that cannot write yet (its clock ran ahead before a restart) still starts: it says
    // why, refuses writes, and writes its full record with the first heartbeat that goes through.
    await this.writeNodeRecord(true).catch((err: unknown) => {
      if (!(err instanceof ClockSkewError)) throw err;
    });
    const beat = setInterval(() => {
      this.writeNodeRecord(this.fullRecordPending).catch((err: unknown) => {
        // A failing store or a skewed clock is reported once when it starts (and in /v1/health),
        // not every second here.
        const reported =
          isStoreError(err, 'STORE_FULL') || isStoreError(err, 'STORE_IO') || err instanceof ClockSkewError;
        if (reported) this.log.debug({ err }, 'heartbeat failed');
        else this.log.warn({ err }, 'heartbeat failed');
      });
    }, heartbeatMs);
    beat.unref();
    this.stack.push({ name: 'heartbeat', stop: () => clearInterval(beat) });
  }

  private components(): NodeComponents {
    return {
      nodeId: this.id,
      dataDir: this.options.dataDir,
      meshName: this.options.meshName ?? 'default',
      replica: this.replica,
      host: this.host,
      membership: this.membership,
      agents: this.agents,
      tasks: this.tasks,
      info: this,
      peerGate: {
        deny: async (peers) => {
          for (const p of peers) this.denied.add(p);
          await this.host.refreshGater();
        },
        allowAll: async () => {
          this.denied.clear();
          await this.host.refreshGater();
        },
        denied: () => [...this.denied],
      },
      logger,
      service: (name) => this.service(name),
      announceApi: (url) => {
        this._apiUrl = url;
      },
    };
  }

  /** Stops everything in reverse start order. A second call returns the same promise. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      while (this.stack.length > 0) {
        const { name, stop } = this.stack.pop() as { name: string; stop: () => Promise<void> | void };
        try {
          await stop();
        } catch (err) {
          this.log.warn({ err, service: name }, 'error while stopping');
        }
      }
    })();
    return this.stopping;
  }

  private async writeNodeRecord(full: boolean): Promise<void> {
    this.fullRecordPending ||= full;
    const r = this.replica;
    const addresses = this.host.multiaddrs();
    const key = `node/${r.nodeId}`;
    await this.mutate(key, (cur) => {
      const f = nodeSchema.fields;
      const t = r.clock.now();
      const w = r.nodeId;
      const old = nodeSchema.value(cur);
      const sameAddrs = JSON.stringify(old.addresses) === JSON.stringify(addresses);
      return nodeSchema.delta({
        heartbeat: f.heartbeat.set(Date.now(), t, w),
        ...(full || !sameAddrs ? { addresses: f.addresses.set(addresses, t, w) } : {}),
        ...(full
          ? {
              name: f.name.set(this.name, t, w),
              version: f.version.set(VERSION, t, w),
              startedAt: f.startedAt.set(this.startedAt, t, w),
              api: f.api.set(this._apiUrl, t, w),
            }
          : {}),
      });
    });
    if (full) this.fullRecordPending = false;
  }

  /** Peer names for log lines (from node records; a peer whose record we refuse has none). */
  private peerName(id: string): string | undefined {
    const rec = this._replica?.get(`node/${id}`);
    return rec === undefined ? undefined : nodeSchema.value(rec).name;
  }

  /**
   * One info line per peer state change an operator cares about: joined, suspect, dead, back.
   * Several peers coming back from dead within HEAL_WINDOW_MS are one partition heal: one more line
   * when the window closes, with how many records the mesh brought in meanwhile.
   */
  private onPeerState(peer: string, from: PeerState, to: PeerState): void {
    const fields = { peer, name: this.peerName(peer) };
    if (from === 'dead' && (to === 'alive' || to === 'suspect')) {
      // Back: a connection (suspect until heartbeats flow again) or a fresh heartbeat.
      const since = this.deadSince.get(peer);
      this.deadSince.delete(peer);
      if (to === 'suspect') this.returning.add(peer);
      this.log.info(
        { ...fields, downMs: since === undefined ? null : Date.now() - since },
        'peer back after being dead',
      );
      this.noteHeal(peer, since);
    } else if (to === 'alive' && from === 'unknown') this.log.info(fields, 'peer joined');
    else if (to === 'alive' && from === 'suspect') {
      if (this.returning.delete(peer)) this.log.debug(fields, 'returning peer is alive');
      else this.log.info(fields, 'peer is alive again');
    } else if (to === 'suspect') this.log.info(fields, 'peer suspect: its heartbeats are late');
    else if (to === 'dead') {
      this.returning.delete(peer);
      this.log.info(fields, 'peer dead: unreachable; its agents are listed as unreachable');
      this.deadSince.set(peer, Date.now());
    } else if (to === 'unknown') {
      this.returning.delete(peer);
      this.deadSince.delete(peer);
      this.log.debug(fields, 'peer forgotten');
    }
  }

  /**
   * Peers back from dead join the current heal; the heal's line is written once the mesh has
   * gone quiet (no remote change for HEAL_WINDOW_MS, at most HEAL_MAX_MS after the first return),
   * so that it reports the whole catch-up, not the first seconds of it.
   */
  private noteHeal(peer: string, deadSince: number | undefined): void {
    if (this.heal === undefined) {
      const startedAt = Date.now();
      const heal = {
        peers: new Set<string>(),
        separatedMs: 0,
        remoteChangesAtStart: this.remoteChanges,
        lastSeen: this.remoteChanges,
        timer: undefined as NodeJS.Timeout | undefined,
      };
      const check = (): void => {
        if (this.remoteChanges !== heal.lastSeen && Date.now() - startedAt < HEAL_MAX_MS) {
          heal.lastSeen = this.remoteChanges;
          heal.timer = setTimeout(check, HEAL_WINDOW_MS);
          heal.timer.unref();
          return;
        }
        this.heal = undefined;
        const records = this.remoteChanges - heal.remoteChangesAtStart;
        if (heal.peers.size > 1 || records > 0) {
          this.log.info(
            { peers: [...heal.peers], separatedMs: heal.separatedMs, recordsReceived: records },
            heal.peers.size > 1
              ? `partition healed: ${heal.peers.size} peers back; ${records} record changes came in since`
              : `caught up with a peer back from a separation: ${records} record changes came in`,
          );
        }
      };
      heal.timer = setTimeout(check, HEAL_WINDOW_MS);
      heal.timer.unref();
      this.heal = heal;
    }
    this.heal.peers.add(peer);
    if (deadSince !== undefined) this.heal.separatedMs = Math.max(this.heal.separatedMs, Date.now() - deadSince);
  }

  /**
   * How long a remote write took to reach this node: now minus the wall time of the newest HLC
   * timestamp the delta carries (its write time). Deltas without timestamps (counter increments)
   * say nothing. Clock skew between the nodes shifts the value by the skew (bounded by the drift
   * limit); a negative one (the writer's clock ahead of ours) counts as 0.
   */
  private observeApplyLag(key: string, schema: AnyRecordSchema, incoming: RecordState): void {
    let newest = 0;
    schema.visit(incoming, {
      writer: () => {},
      timestamp: (t) => {
        if (t > newest) newest = t;
      },
    });
    if (newest === 0) return;
    const lagMs = Math.max(0, Date.now() - wallOf(newest));
    this.applyLag.observe(lagMs / 1000, { kind: key.slice(0, key.indexOf('/')) });
  }

  private onChange(
    key: string,
    state: RecordState,
    incoming: RecordState,
    origin: string | null,
    local: boolean,
  ): void {
    // Agent and task changes only: node records change with every heartbeat.
    if (!local && !key.startsWith('node/')) this.remoteChanges++;
    const slash = key.indexOf('/');
    const kind = key.slice(0, slash);
    const id = key.slice(slash + 1);
    if (kind === 'node' && id !== this.replica.nodeId) {
      const v = nodeSchema.value(state);
      // Forgotten (`mesh peer forget`, here or on a peer): out of the membership until it beats again.
      if (isForgotten(v)) this.membership.forget(id);
      else if (typeof v.heartbeat === 'number') this.membership.observe(id, v.heartbeat);
      // Heartbeats change node records every second; addresses only when the change carries them.
      const newAddresses = incoming[nodeSchema.indexOf('addresses')] !== undefined;
      if (newAddresses && v.addresses && v.addresses.length > 0 && !this.denied.has(id)) {
        this.host.addKnownAddresses(id, v.addresses).catch(() => {});
      }
    }
    // Views are built only for listeners: a joining node applies 100k records in seconds.
    if (!this.events.has('event')) return;
    let value: unknown;
    if (kind === 'node') value = { id, ...nodeSchema.value(state) };
    else if (kind === 'agent') value = agentView(id, state);
    else if (kind === 'task') value = taskView(id, state);
    else return;
    this.events.emit('event', { kind: kind as MeshEvent['kind'], id, value, origin, local, at: Date.now() });
  }

  // --- NodeInfo -------------------------------------------------------------------------------

  onEvent(listener: (event: MeshEvent) => void): () => void {
    return this.events.on('event', listener);
  }

  isReachable(nodeId: string): boolean {
    return this.membership.isReachable(nodeId);
  }

  health(): HealthReport {
    const problems: HealthReport['problems'] = [];
    const store = this.durable.health();
    if (!store.ok) {
      problems.push({
        code: store.code ?? 'STORE_IO',
        message: store.message ?? 'writes to the store fail',
        ...(store.since !== undefined ? { since: store.since } : {}),
      });
    }
    const skew = this._clockSync?.skewError();
    if (skew !== undefined) problems.push({ code: 'CLOCK_SKEW', message: `${skew.message}; writes are refused` });
    return { ok: problems.length === 0, problems };
  }

  status(): NodeStatus {
    const tree = this.replica.merkle();
    const peers = this.membership.peers();
    const count = (s: string): number => peers.filter((p) => p.state === s).length;
    return {
      id: this.id,
      name: this.name,
      version: VERSION,
      listen: this.multiaddrs(),
      api: this._apiUrl,
      peers: {
        connected: this.host.connectedPeers().length,
        known: peers.length,
        alive: count('alive'),
        suspect: count('suspect'),
        dead: count('dead'),
      },
      keys: tree.size,
      merkleRoot: tree.rootHex(),
      versionVector: this.replica.versionVector().toJSON(),
      uptimeMs: Date.now() - this.startedAt,
      startedAt: this.startedAt,
      clockOffsetMs: this._clockSync?.selfOffsetMs() ?? null,
      clockSkewed: this._clockSync?.skewed ?? false,
      mesh: this.options.meshName ?? 'default',
      private: this.options.psk !== undefined,
      stateDigest: required(this._digest, 'state digest').hex(),
    };
  }

  /**
   * Forgets a dead peer: marks its node record forgotten (replicated: every member stops listing
   * it, dialling it and counting it) and drops it from this node's membership. Refused with
   * PEER_ALIVE for this node itself and for a peer that is connected, alive or suspect; NOT_FOUND
   * for a peer this node never heard of. Idempotent for a peer already forgotten.
   */
  async forgetPeer(id: string): Promise<PeerView> {
    const view = this.peerView(id, new Set(this.host.connectedPeers()));
    const rec = this.replica.get(`node/${id}`);
    if (id === this.id) throw new RegistryError(RegistryErrorCode.PEER_ALIVE, `${id} is this node`);
    if (rec === undefined && view.state === 'unknown' && !view.connected) {
      throw new RegistryError(RegistryErrorCode.NOT_FOUND, `peer ${id} not found`);
    }
    if (view.connected || view.state === 'alive' || view.state === 'suspect') {
      throw new RegistryError(
        RegistryErrorCode.PEER_ALIVE,
        `peer ${id} is ${view.connected ? 'connected' : view.state}: only a dead peer can be forgotten`,
        { details: { state: view.state, connected: view.connected } },
      );
    }
    if (rec !== undefined) {
      const heartbeat = nodeSchema.value(rec).heartbeat ?? 0;
      await this.mutate(`node/${id}`, () =>
        nodeSchema.delta({
          forgotten: nodeSchema.fields.forgotten.set(heartbeat, this.replica.clock.now(), this.replica.nodeId),
        }),
      );
    }
    this.membership.forget(id);
    this.log.info({ peer: id }, 'peer forgotten');
    return { ...view, state: 'unknown', phi: null };
  }

  peers(): PeerView[] {
    const connected = new Set(this.host.connectedPeers());
    const seen = new Map(this.membership.peers().map((p) => [p.id, p]));
    const ids = new Set([...seen.keys(), ...connected]);
    for (const [key, state] of this.replica.entries('node/')) {
      if (!isForgotten(nodeSchema.value(state))) ids.add(key.slice(5));
    }
    ids.delete(this.id);
    return [...ids].sort().map((id) => this.peerView(id, connected, seen));
  }

  private peerView(
    id: string,
    connected: ReadonlySet<string>,
    seen = new Map(this.membership.peers().map((p) => [p.id, p])),
  ): PeerView {
    const rec = this.replica.get(`node/${id}`);
    const v = rec ? nodeSchema.value(rec) : undefined;
    const m = seen.get(id);
    return {
      id,
      name: v?.name ?? null,
      state: m?.state ?? 'unknown',
      phi: m ? m.phi : null,
      connected: connected.has(id),
      addresses: v?.addresses ?? [],
      lastHeartbeat: v?.heartbeat ?? null,
      api: v?.api ?? null,
      clockOffsetMs: this._clockSync?.peer(id)?.offsetMs ?? null,
    };
  }

  metrics(): MetricFamily[] {
    const m = new MetricSet();
    const r = this.replica.stats;
    m.gauge('replica_keys', 'Records in the replica', this.replica.size);
    m.counter('replica_local_mutations_total', 'Mutations made by this node', r.localMutations);
    m.counter('replica_deltas_applied_total', 'Remote deltas that changed a record', r.deltasApplied);
    m.counter('replica_deltas_unchanged_total', 'Remote deltas that changed nothing', r.deltasUnchanged);
    m.counter('replica_deltas_duplicate_total', 'Remote deltas seen before', r.deltasDuplicate);
    m.counter('replica_records_merged_total', 'Full records from sync that changed a record', r.recordsMerged);
    m.counter(
      'replica_rejected_total',
      'Changes refused by policy or fenced off, by reason',
      r.rejectedByReason,
      'reason',
    );
    m.histogram(
      'replica_apply_lag_seconds',
      'Time from a remote write (its HLC wall time) to its delta applied here, by record kind',
      this.applyLag,
    );
    const g = this.gossip.stats;
    m.counter('gossip_messages_published_total', 'Gossip messages published', g.messagesPublished);
    m.counter('gossip_deltas_published_total', 'Deltas published by gossip', g.deltasPublished);
    m.counter('gossip_published_bytes_total', 'Bytes of gossip messages published', g.bytesPublished);
    m.counter('gossip_publish_failures_total', 'Gossip publishes that failed', g.publishFailures);
    m.counter('gossip_messages_received_total', 'Gossip messages received', g.messagesReceived);
    m.counter('gossip_received_bytes_total', 'Bytes of gossip messages received', g.bytesReceived);
    m.counter('gossip_deltas_applied_total', 'Gossiped deltas that changed a record', g.deltasApplied);
    m.counter(
      'gossip_rejected_messages_total',
      'Gossip messages dropped whole, by reason',
      g.rejectedMessages,
      'reason',
    );
    m.counter('gossip_rejected_deltas_total', 'Gossiped deltas refused, by reason', g.rejectedDeltas, 'reason');
    m.counter(
      'gossip_batches_skipped_total',
      'Delta batches not gossiped: push streams reached every member',
      g.batchesSkipped,
    );
    const p = this.push.stats;
    m.counter('push_links_opened_total', 'Push streams opened to peers', p.linksOpened);
    m.counter(
      'push_peers_unsupported_total',
      'Connected peers that refused push streams (another mesh or version)',
      p.peersUnsupported,
    );
    m.counter('push_link_failures_total', 'Push streams that failed or could not open', p.linkFailures);
    m.counter(
      'push_links_overflowed_total',
      'Push streams dropped because the peer did not take its deltas',
      p.linksOverflowed,
    );
    m.counter('push_frames_sent_total', 'Push frames sent', p.framesSent);
    m.counter('push_deltas_sent_total', 'Deltas sent on push streams (one per peer)', p.deltasSent);
    m.counter('push_sent_bytes_total', 'Bytes of push frames sent', p.bytesSent);
    m.counter('push_frames_received_total', 'Push frames received', p.messagesReceived);
    m.counter('push_received_bytes_total', 'Bytes of push frames received', p.bytesReceived);
    m.counter('push_deltas_applied_total', 'Pushed deltas that changed a record', p.deltasApplied);
    m.counter('push_rejected_frames_total', 'Push frames refused whole, by reason', p.rejectedMessages, 'reason');
    m.counter('push_rejected_deltas_total', 'Pushed deltas refused, by reason', p.rejectedDeltas, 'reason');
    const s = this.sync.stats;
    m.counter('sync_initiated_total', 'Anti-entropy sessions this node started', s.initiated);
    m.counter('sync_served_total', 'Anti-entropy sessions this node served', s.served);
    m.counter('sync_failures_total', 'Anti-entropy sessions that failed', s.failures);
    m.counter(
      'sync_failed_sessions_total',
      'Anti-entropy sessions that failed, by the error code (CHECKSUM_MISMATCH, FRAME_TOO_LARGE, ...)',
      s.failuresByCode,
      'code',
    );
    m.counter(
      'sync_peers_unsupported_total',
      'Sync sessions a peer refused at negotiation (another mesh or version)',
      s.unsupported,
    );
    m.counter('sync_rejected_records_total', 'Records from sync refused, by reason', s.rejectedRecords, 'reason');
    m.counter('sync_sessions_total', 'Anti-entropy sessions by the strategy chosen', s.sessions, 'strategy');
    const phases = Object.entries(s.byPhase);
    const byPhase = (f: (st: (typeof phases)[number][1]) => number): Record<string, number> =>
      Object.fromEntries(phases.map(([phase, st]) => [phase, f(st)]));
    m.counter(
      'sync_phases_total',
      'Sync phases run (initiator side), by phase',
      byPhase((x) => x.sessions),
      'phase',
    );
    m.counter(
      'sync_sent_bytes_total',
      'Bytes sent by sync, by phase',
      byPhase((x) => x.bytesSent),
      'phase',
    );
    m.counter(
      'sync_received_bytes_total',
      'Bytes received by sync, by phase',
      byPhase((x) => x.bytesReceived),
      'phase',
    );
    m.counter(
      'sync_rounds_total',
      'Sync round trips, by phase',
      byPhase((x) => x.rounds),
      'phase',
    );
    m.counter(
      'sync_records_sent_total',
      'Records sent by sync, by phase',
      byPhase((x) => x.recordsSent),
      'phase',
    );
    m.counter(
      'sync_records_received_total',
      'Records received by sync, by phase',
      byPhase((x) => x.recordsReceived),
      'phase',
    );
    m.gauge('sync_interval_seconds', 'Current anti-entropy interval', this.scheduler.currentIntervalMs / 1000);
    const st = this.durable.store.stats;
    m.counter('store_batches_total', 'LevelDB write batches (group commits)', st.batches);
    m.counter('store_ops_total', 'LevelDB operations written', st.ops);
    m.counter('store_failed_batches_total', 'LevelDB write batches that failed', st.failedBatches);
    m.counter('store_reopens_total', 'Database reopened to retry after a failed write batch', st.reopens);
    m.gauge('store_writable', 'Whether writes reach disk (1) or fail (0)', this.durable.health().ok ? 1 : 0);
    m.counter(
      'store_writes_refused_overloaded_total',
      'Local writes refused: the store too far behind',
      this.durable.refusedOverloaded,
    );
    const ps = this.host.pubsub.stats();
    m.counter('pubsub_received_total', 'Pubsub messages received', ps.received);
    m.counter(
      'pubsub_rejected_total',
      'Pubsub messages refused before delivery, by reason',
      { too_large: ps.rejectedTooLarge, validator: ps.rejectedByValidator },
      'reason',
    );
    const hs = this.host.stats();
    m.counter(
      'net_gater_refused_total',
      'Dials not made, dials refused and connections refused by the peer gate (a partition at work)',
      hs.gaterRefused,
    );
    m.counter('net_peer_connects_total', 'Peers connected since start', hs.peerConnects);
    const cs = this.clockSync.stats;
    m.counter('clock_measurements_total', 'Clock offset measurements of peers', cs.measurements);
    m.counter('clock_measurement_failures_total', 'Clock offset measurements that failed', cs.failures);
    m.counter(
      'clock_skew_refused_writes_total',
      'Local writes refused while this clock runs ahead of most peers',
      cs.refusedWrites,
    );
    m.gauge(
      'clock_skewed',
      'Whether this clock runs ahead of most peers beyond the drift bound',
      this.clockSync.skewed ? 1 : 0,
    );
    m.gauge('peers_connected', 'Peers with an open connection', this.host.connectedPeers().length);
    const peerStates: Record<string, number> = { alive: 0, suspect: 0, dead: 0 };
    for (const p of this.membership.peers()) peerStates[p.state] = (peerStates[p.state] ?? 0) + 1;
    m.gauge('peers', 'Known peers by failure-detector state', peerStates, 'state');
    const census = required(this._census, 'census').read();
    m.gauge('tasks', 'Tasks in the replicated task board, by status', census.tasks, 'status');
    m.gauge('agents', 'Agents in the replicated registry (not removed), by state', census.agents, 'state');
    for (const service of this.services.values()) {
      service.metrics?.(m);
      const flat = service.counters?.();
      if (flat !== undefined) m.flat(flat);
    }
    return m.toArray();
  }
}

function required<T>(x: T | undefined, what: string): T {
  if (x === undefined) throw new Error(`mesh node: ${what} is not started`);
  return x;
}
