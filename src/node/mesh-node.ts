import { hostname } from 'node:os';
import { AGENT_HOST_SERVICE, type AgentHost, agentHost } from '../agents/index.js';
import { scheduler as taskScheduler } from '../scheduler/index.js';
import { HybridClock, type AnyRecordSchema, type RecordState, wallOf } from '../crdt/index.js';
import { ClockSkewError, ClockSync, MembershipView, type PeerState } from '../membership/index.js';
import { createHost, generateIdentity, type MeshHost, peerIdOf } from '../net/index.js';
import { AgentRegistry, agentView } from '../registry/agents.js';
import { nodeSchema } from '../registry/node-schema.js';
import { type Delta, DurableReplica, Replica } from '../replica/index.js';
import { DurableStore, isStoreError } from '../store/index.js';
import { DeltaGossip, DeltaLog, SyncProtocol, SyncScheduler } from '../sync/index.js';
import { TaskBoard, taskView } from '../tasks/tasks.js';
import { Emitter } from '../util/emitter.js';
import { VERSION } from '../util/version.js';
import { type Logger, logger } from '../util/log.js';
import { DEFAULT_LISTEN, type MeshNodeOptions } from './options.js';
import { meshFenced, meshPolicy, meshSchemaFor } from './schemas.js';
import type { NodeComponents, Service, ServiceFactory } from './service.js';
import type { CounterSnapshot, HealthReport, MeshEvent, NodeInfo, NodeStatus, PeerView } from './types.js';

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
    this.gossip.publish(delta);
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
    this.stack.push({ name: 'store', stop: () => durable.close() });
    this.log.info({ loaded, nodeId }, 'replica loaded');

    // Peers remembered in our replica (node records) are bootstrap candidates as well as --join.
    const remembered: string[] = [];
    for (const [key, state] of replica.entries('node/')) {
      if (key === `node/${nodeId}`) continue;
      for (const a of nodeSchema.value(state).addresses ?? []) remembered.push(a);
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

    const deltaLog = new DeltaLog();
    const sync = await this.use('sync', new SyncProtocol({ replica, host, deltaLog }));
    this._sync = sync;
    const scheduler = new SyncScheduler({
      protocol: sync,
      host,
      ...(o.syncStrategy ? { strategy: o.syncStrategy } : {}),
      ...(o.syncMinIntervalMs ? { minIntervalMs: o.syncMinIntervalMs } : {}),
      ...(o.syncMaxIntervalMs ? { maxIntervalMs: o.syncMaxIntervalMs } : {}),
    });
    this._scheduler = scheduler;
    this._gossip = await this.use(
      'gossip',
      new DeltaGossip({
        replica,
        pubsub: host.pubsub,
        topic: `agentmesh/${o.meshName ?? 'default'}/deltas/1`,
        deltaLog,
        batchMs: o.gossipBatchMs ?? 0,
        onGap: (_origin, peer) => scheduler.gap(peer),
      }),
    );
    await this.use('sync-scheduler', scheduler);

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

    const offChange = replica.events.on('change', (e) =>
      this.onChange(e.key, e.state, e.incoming, e.origin ?? null, e.local),
    );
    this.stack.push({ name: 'change-events', stop: offChange });

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
      if (typeof v.heartbeat === 'number') this.membership.observe(id, v.heartbeat);
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
    };
  }

  peers(): PeerView[] {
    const connected = new Set(this.host.connectedPeers());
    const seen = new Map(this.membership.peers().map((p) => [p.id, p]));
    const ids = new Set([...seen.keys(), ...connected]);
    for (const [key] of this.replica.entries('node/')) ids.add(key.slice(5));
    ids.delete(this.id);
    return [...ids].sort().map((id) => {
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
    });
  }

  counters(): CounterSnapshot {
    const out: CounterSnapshot = {};
    const r = this.replica.stats;
    out.replica_keys = this.replica.size;
    out.replica_local_mutations_total = r.localMutations;
    out.replica_deltas_applied_total = r.deltasApplied;
    out.replica_deltas_unchanged_total = r.deltasUnchanged;
    out.replica_deltas_duplicate_total = r.deltasDuplicate;
    out.replica_records_merged_total = r.recordsMerged;
    out.replica_rejected_total = r.rejected;
    for (const [reason, n] of Object.entries(r.rejectedByReason)) out[`replica_rejected_${reason}_total`] = n;
    const g = this.gossip.stats;
    out.gossip_messages_published_total = g.messagesPublished;
    out.gossip_deltas_published_total = g.deltasPublished;
    out.gossip_bytes_published_total = g.bytesPublished;
    out.gossip_messages_received_total = g.messagesReceived;
    out.gossip_bytes_received_total = g.bytesReceived;
    out.gossip_deltas_applied_total = g.deltasApplied;
    for (const [reason, n] of Object.entries(g.rejectedMessages)) out[`gossip_rejected_messages_${reason}_total`] = n;
    for (const [reason, n] of Object.entries(g.rejectedDeltas)) out[`gossip_rejected_deltas_${reason}_total`] = n;
    const s = this.sync.stats;
    out.sync_initiated_total = s.initiated;
    out.sync_served_total = s.served;
    out.sync_failures_total = s.failures;
    for (const [code, n] of Object.entries(s.failuresByCode)) out[`sync_failures_${code.toLowerCase()}_total`] = n;
    for (const [reason, n] of Object.entries(s.rejectedRecords)) out[`sync_rejected_records_${reason}_total`] = n;
    for (const [strategy, n] of Object.entries(s.sessions)) out[`sync_sessions_${strategy}_total`] = n;
    for (const [phase, st] of Object.entries(s.byPhase)) {
      out[`sync_${phase}_phases_total`] = st.sessions;
      out[`sync_${phase}_bytes_sent_total`] = st.bytesSent;
      out[`sync_${phase}_bytes_received_total`] = st.bytesReceived;
      out[`sync_${phase}_rounds_total`] = st.rounds;
      out[`sync_${phase}_records_sent_total`] = st.recordsSent;
      out[`sync_${phase}_records_received_total`] = st.recordsReceived;
    }
    out.sync_interval_ms = this.scheduler.currentIntervalMs;
    const st = this.durable.store.stats;
    out.store_batches_total = st.batches;
    out.store_ops_total = st.ops;
    out.store_failed_batches_total = st.failedBatches;
    out.store_writable = this.durable.health().ok ? 1 : 0;
    const ps = this.host.pubsub.stats();
    out.pubsub_received_total = ps.received;
    out.pubsub_rejected_too_large_total = ps.rejectedTooLarge;
    out.pubsub_rejected_by_validator_total = ps.rejectedByValidator;
    out.peers_connected = this.host.connectedPeers().length;
    const hs = this.host.stats();
    out.net_gater_refused_total = hs.gaterRefused;
    out.net_peer_connects_total = hs.peerConnects;
    const cs = this.clockSync.stats;
    out.clock_measurements_total = cs.measurements;
    out.clock_measurement_failures_total = cs.failures;
    out.clock_skew_refused_writes_total = cs.refusedWrites;
    out.clock_skewed = this.clockSync.skewed ? 1 : 0;
    for (const service of this.services.values()) Object.assign(out, service.counters?.());
    return out;
  }
}

function required<T>(x: T | undefined, what: string): T {
  if (x === undefined) throw new Error(`mesh node: ${what} is not started`);
  return x;
}
