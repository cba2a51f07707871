import { z } from 'zod';
import { gCounter, type Register, type RecordSchema, type RecordState } from '../crdt/index.js';
import type { Delta, Replica } from '../replica/index.js';
import {
  AGENT_HEALTH,
  AGENT_ID_PATTERN,
  AGENT_STATES,
  type AgentHealth,
  type AgentLiveness,
  type AgentProfile,
  type AgentState,
  agentSchema,
  MAX_AGENT_NAME_LENGTH,
  MAX_AGENT_TYPE_LENGTH,
  MAX_CAPABILITIES,
  MAX_CAPABILITY_LENGTH,
  MAX_META_BYTES,
  normalizeCapabilities,
} from './agent-schema.js';
import { RegistryError, RegistryErrorCode } from './errors.js';

export type AgentMutateFn = (
  key: string,
  build: (current: RecordState, schema: RecordSchema) => RecordState,
) => Promise<Delta>;

export interface AgentRegistryOptions {
  replica: Replica;
  /** A durable local mutation (DurableReplica.mutate bound); resolves once the change is durable. */
  mutate: AgentMutateFn;
  /** Wall clock in ms for heartbeats (default Date.now). Register timestamps come from the replica's HLC. */
  now?: () => number;
}

/** What a node registers for an agent it hosts. `capabilities` replaces the whole set. */
export interface AgentInput {
  name: string;
  type: string;
  /** The full capability set; omitted keeps the current set (empty for a new agent). */
  capabilities?: string[];
  state?: AgentState;
  health?: AgentHealth;
  load?: number;
  capacity?: number;
  meta?: Record<string, unknown>;
}

export interface HeartbeatInput {
  load?: number;
  capacity?: number;
  health?: AgentHealth;
  state?: AgentState;
}

export interface AgentStats {
  executions: number;
  successes: number;
  failures: number;
  restarts: number;
}

/** An agent as users see it: plain JSON. */
export interface AgentView {
  id: string;
  owner: string;
  name: string;
  type: string;
  capabilities: string[];
  state: AgentState;
  health: AgentHealth;
  load: number;
  capacity: number;
  /** Wall-clock ms of the owner's last upsert or heartbeat. */
  heartbeat: number;
  stats: AgentStats;
  meta: Record<string, unknown>;
  removed: boolean;
}

export interface AgentFilter {
  capability?: string;
  type?: string;
  state?: AgentState;
  /** The hosting node (owner). */
  node?: string;
  includeRemoved?: boolean;
}

export type ExecutionOutcome = 'success' | 'failure';

export const AGENT_KEY_PREFIX = 'agent/';
export const agentKey = (id: string): string => `${AGENT_KEY_PREFIX}${id}`;

const DEFAULT_CAPACITY = 1;

const nonNegative = z.number().nonnegative();
const capabilityList = z
  .array(z.string().min(1).max(MAX_CAPABILITY_LENGTH))
  .max(MAX_CAPABILITIES, `at most ${MAX_CAPABILITIES} capabilities`);
const plainObject = z.custom<Record<string, unknown>>(
  (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype,
  'expected a plain JSON object',
);

/** The registry's input rules; the HTTP API validates bodies with a strict copy of them. */
export const agentInputSchema = z.object({
  name: z.string().min(1).max(MAX_AGENT_NAME_LENGTH),
  type: z.string().min(1).max(MAX_AGENT_TYPE_LENGTH),
  capabilities: capabilityList.optional(),
  state: z.enum(AGENT_STATES).optional(),
  health: z.enum(AGENT_HEALTH).optional(),
  load: nonNegative.optional(),
  capacity: nonNegative.optional(),
  meta: plainObject.optional(),
});

export const heartbeatSchema = z.object({
  load: nonNegative.optional(),
  capacity: nonNegative.optional(),
  health: z.enum(AGENT_HEALTH).optional(),
  state: z.enum(AGENT_STATES).optional(),
});

function invalid(message: string, details?: Record<string, unknown>): RegistryError {
  return new RegistryError(RegistryErrorCode.INVALID_AGENT, message, details === undefined ? {} : { details });
}

function parse<T>(schema: z.ZodType<T>, input: unknown, what: string): T {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : what}: ${i.message}`);
  throw invalid(`invalid ${what}: ${issues.join('; ')}`, { issues });
}

export function validateAgentId(id: unknown): string {
  if (typeof id !== 'string' || !AGENT_ID_PATTERN.test(id)) {
    throw invalid(`invalid agent id: expected 1-128 characters from [A-Za-z0-9._:-]`);
  }
  return id;
}

/** A deep copy in plain JSON (drops undefined, refuses cycles and bigints), within the size limit. */
function normalizeMeta(meta: Record<string, unknown>): Record<string, unknown> {
  let text: string;
  try {
    text = JSON.stringify(meta);
  } catch (err) {
    throw invalid(`meta is not JSON-serializable: ${(err as Error).message}`);
  }
  const size = Buffer.byteLength(text);
  if (size > MAX_META_BYTES) {
    throw new RegistryError(RegistryErrorCode.TOO_LARGE, `meta is ${size} bytes of JSON (max ${MAX_META_BYTES})`, {
      details: { size, max: MAX_META_BYTES },
    });
  }
  return JSON.parse(text) as Record<string, unknown>;
}

/** The agent's view, or undefined if its profile has not arrived yet (stats-only record). */
export function agentView(id: string, s: RecordState): AgentView | undefined {
  const S = agentSchema;
  const profile = S.get(s, 'profile');
  if (profile === undefined) return undefined;
  let p: AgentProfile | (AgentProfile & AgentLiveness) = profile.v;
  const live = S.get(s, 'live');
  if (live !== undefined && live.w === p.owner && live.t > profile.t) p = { ...p, ...live.v };
  return {
    id,
    owner: p.owner,
    name: p.name,
    type: p.type,
    capabilities: [...p.capabilities],
    state: p.state,
    health: p.health,
    load: p.load,
    capacity: p.capacity,
    heartbeat: p.heartbeat,
    stats: {
      executions: S.fields.executions.value(S.get(s, 'executions')),
      successes: S.fields.successes.value(S.get(s, 'successes')),
      failures: S.fields.failures.value(S.get(s, 'failures')),
      restarts: S.fields.restarts.value(S.get(s, 'restarts')),
    },
    meta: p.meta as Record<string, unknown>,
    removed: p.removed,
  };
}

type ProfileRegister = Register<AgentProfile>;

const liveOf = (v: AgentView): AgentLiveness => ({
  state: v.state,
  health: v.health,
  load: v.load,
  capacity: v.capacity,
  heartbeat: v.heartbeat,
});

/**
 * The agent registry over the replica. Each node writes the profile only of the agents it hosts
 * (owner = its node id; checked here with typed errors); execution stats are G-Counters any node
 * increments in its own slot.
 *
 * Every owner update rewrites the whole profile with a fresh HLC timestamp and the agent's
 * original `registeredAt`, so it wins over the owner's earlier profiles, and a peer that missed
 * earlier updates still gets the complete current profile from any one of them. Concurrent
 * registrations of one id by two nodes resolve by the profile's lattice order (earliest
 * registration wins, everywhere); once the loser's node sees the winner's profile it refuses
 * further writes with NOT_OWNER.
 */
export class AgentRegistry {
  private readonly replica: Replica;
  private readonly mutate: AgentMutateFn;
  private readonly now: () => number;

  constructor(options: AgentRegistryOptions) {
    this.replica = options.replica;
    this.mutate = options.mutate;
    this.now = options.now ?? Date.now;
  }

  /**
   * Registers or updates an agent hosted by this node. NOT_OWNER if another node hosts it.
   * Fields the input omits keep their current values (defaults for a new agent); re-registering
   * a removed agent clears `removed` and resets its state to INITIALIZING unless given.
   */
  async upsert(id: string, input: AgentInput): Promise<AgentView> {
    validateAgentId(id);
    const a = parse(agentInputSchema, input, 'agent');
    const meta = a.meta === undefined ? undefined : normalizeMeta(a.meta);
    const capabilities = a.capabilities === undefined ? undefined : normalizeCapabilities(a.capabilities);
    const node = this.replica.nodeId;
    await this.mutate(agentKey(id), (cur) => {
      const prev = agentSchema.get(cur, 'profile');
      if (prev !== undefined && prev.v.owner !== node) throw this.notOwner(id, prev.v.owner, 'update');
      // The profile with the latest liveness folded in: a new profile supersedes older reports.
      const p = prev === undefined ? undefined : { ...prev.v, ...liveOf(agentView(id, cur) as AgentView) };
      const revived = p?.removed === true;
      const t = this.replica.clock.now();
      return this.write(
        {
          owner: node,
          name: a.name,
          type: a.type,
          capabilities: capabilities ?? p?.capabilities ?? [],
          state: a.state ?? (p === undefined || revived ? 'INITIALIZING' : p.state),
          health: a.health ?? p?.health ?? 'unknown',
          load: a.load ?? p?.load ?? 0,
          capacity: a.capacity ?? p?.capacity ?? DEFAULT_CAPACITY,
          heartbeat: this.now(),
          meta: meta ?? p?.meta ?? {},
          removed: false,
          registeredAt: p?.registeredAt ?? t,
        },
        t,
      );
    });
    return this.mustGet(id);
  }

  /**
   * The owner's liveness report: refreshes the heartbeat and any of load, capacity, health,
   * state. It writes only the small `live` register, never the profile (see `AgentLiveness`).
   */
  async heartbeat(id: string, input: HeartbeatInput = {}): Promise<AgentView> {
    validateAgentId(id);
    const h = parse(heartbeatSchema, input, 'heartbeat');
    await this.mutate(agentKey(id), (cur) => {
      this.ownedBy(id, cur, 'send heartbeats for');
      const view = agentView(id, cur) as AgentView;
      if (view.removed) {
        throw new RegistryError(RegistryErrorCode.AGENT_REMOVED, `agent ${id} was removed; register it again`);
      }
      const live: AgentLiveness = {
        heartbeat: this.now(),
        load: h.load ?? view.load,
        capacity: h.capacity ?? view.capacity,
        health: h.health ?? view.health,
        state: h.state ?? view.state,
      };
      return agentSchema.delta({
        live: agentSchema.fields.live.set(live, this.replica.clock.now(), this.replica.nodeId),
      });
    });
    return this.mustGet(id);
  }

  /** Counts one execution and its outcome in this node's slots (any node may, for any known agent). */
  async recordExecution(id: string, outcome: ExecutionOutcome): Promise<AgentView> {
    validateAgentId(id);
    if (outcome !== 'success' && outcome !== 'failure') throw invalid(`outcome must be 'success' or 'failure'`);
    const node = this.replica.nodeId;
    await this.mutate(agentKey(id), (cur) => {
      const S = agentSchema;
      this.known(id, cur);
      const field = outcome === 'success' ? 'successes' : 'failures';
      return S.delta({
        executions: gCounter.increment(S.get(cur, 'executions'), node),
        [field]: gCounter.increment(S.get(cur, field), node),
      });
    });
    return this.mustGet(id);
  }

  /** Counts one restart of the agent in this node's slot. */
  async recordRestart(id: string): Promise<AgentView> {
    validateAgentId(id);
    const node = this.replica.nodeId;
    await this.mutate(agentKey(id), (cur) => {
      this.known(id, cur);
      return agentSchema.delta({ restarts: gCounter.increment(agentSchema.get(cur, 'restarts'), node) });
    });
    return this.mustGet(id);
  }

  /**
   * Removes an agent this node hosts: removed = true, state TERMINATED. The record stays so that
   * the removal replicates and wins over stale updates. Idempotent.
   */
  async remove(id: string): Promise<AgentView> {
    validateAgentId(id);
    const node = this.replica.nodeId;
    const existing = this.get(id);
    if (existing !== undefined && existing.owner === node && existing.removed) return existing;
    await this.mutate(agentKey(id), (cur) => {
      const { v: p } = this.ownedBy(id, cur, 'remove');
      const live = liveOf(agentView(id, cur) as AgentView);
      return this.write({ ...p, ...live, removed: true, state: 'TERMINATED' }, this.replica.clock.now());
    });
    return this.mustGet(id);
  }

  get(id: string): AgentView | undefined {
    if (typeof id !== 'string' || !AGENT_ID_PATTERN.test(id)) return undefined;
    const s = this.replica.get(agentKey(id));
    return s === undefined ? undefined : agentView(id, s);
  }

  /** Agents matching every given filter, sorted by id; removed agents only with includeRemoved. */
  list(filter: AgentFilter = {}): AgentView[] {
    const out: AgentView[] = [];
    for (const [key, s] of this.replica.entries(AGENT_KEY_PREFIX)) {
      const a = agentView(key.slice(AGENT_KEY_PREFIX.length), s);
      if (a === undefined) continue;
      if (a.removed && filter.includeRemoved !== true) continue;
      if (filter.capability !== undefined && !a.capabilities.includes(filter.capability)) continue;
      if (filter.type !== undefined && a.type !== filter.type) continue;
      if (filter.state !== undefined && a.state !== filter.state) continue;
      if (filter.node !== undefined && a.owner !== filter.node) continue;
      out.push(a);
    }
    return out.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  }

  private mustGet(id: string): AgentView {
    const a = this.get(id);
    if (a === undefined) throw new RegistryError(RegistryErrorCode.NOT_FOUND, `agent ${id} not found`);
    return a;
  }

  /** The delta writing `profile` as this node, at `t`. */
  private write(profile: AgentProfile, t: number): RecordState {
    return agentSchema.delta({ profile: agentSchema.fields.profile.set(profile, t, this.replica.nodeId) });
  }

  private known(id: string, cur: RecordState): void {
    if (agentSchema.get(cur, 'profile') === undefined) {
      throw new RegistryError(RegistryErrorCode.NOT_FOUND, `agent ${id} not found`);
    }
  }

  /** The current profile register, if this node owns the agent; typed errors otherwise. */
  private ownedBy(id: string, cur: RecordState, action: string): ProfileRegister {
    const profile = agentSchema.get(cur, 'profile');
    if (profile === undefined) throw new RegistryError(RegistryErrorCode.NOT_FOUND, `agent ${id} not found`);
    if (profile.v.owner !== this.replica.nodeId) throw this.notOwner(id, profile.v.owner, action);
    return profile;
  }

  private notOwner(id: string, owner: string, action: string): RegistryError {
    return new RegistryError(
      RegistryErrorCode.NOT_OWNER,
      `agent ${id} is hosted by node ${owner}; node ${this.replica.nodeId} cannot ${action} it`,
      { details: { owner } },
    );
  }
}
