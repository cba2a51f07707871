import { z } from 'zod';
import { gCounter, type OrSet, orSet, type RecordSchema, type RecordState } from '../crdt/index.js';
import type { Delta, Replica } from '../replica/index.js';
import {
  AGENT_ID_PATTERN,
  MAX_AGENT_NAME_LENGTH,
  MAX_AGENT_TYPE_LENGTH,
  MAX_CAPABILITIES,
  MAX_CAPABILITY_LENGTH,
  MAX_META_BYTES,
} from './agent-policy.js';
import { AGENT_HEALTH, AGENT_STATES, type AgentHealth, type AgentState, agentSchema } from './agent-schema.js';
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

/** What a node registers for an agent it hosts. `capabilities` replaces the set (by diff). */
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

const agentInputSchema = z.object({
  name: z.string().min(1).max(MAX_AGENT_NAME_LENGTH),
  type: z.string().min(1).max(MAX_AGENT_TYPE_LENGTH),
  capabilities: capabilityList.optional(),
  state: z.enum(AGENT_STATES).optional(),
  health: z.enum(AGENT_HEALTH).optional(),
  load: nonNegative.optional(),
  capacity: nonNegative.optional(),
  meta: plainObject.optional(),
});

const heartbeatSchema = z.object({
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

/** The delta that turns `current` into exactly `desired`: remove what is missing, add what is new. */
function diffCapabilities(current: OrSet, desired: readonly string[], origin: string): OrSet | undefined {
  const want = new Set(desired);
  let state = current;
  let delta: OrSet | undefined;
  const apply = (d: OrSet): void => {
    state = orSet.merge(state, d);
    delta = delta === undefined ? d : orSet.merge(delta, d);
  };
  for (const e of orSet.value(current)) if (!want.has(e)) apply(orSet.remove(state, e));
  for (const e of want) if (!orSet.has(state, e)) apply(orSet.add(state, e, origin));
  return delta;
}

/** The agent's view, or undefined if its owner register has not arrived yet (stats-only record). */
export function agentView(id: string, s: RecordState): AgentView | undefined {
  const S = agentSchema;
  const owner = S.get(s, 'owner');
  if (owner === undefined) return undefined;
  const v = S.value(s);
  return {
    id,
    owner: owner.v,
    name: v.name ?? '',
    type: v.type ?? '',
    capabilities: v.capabilities,
    state: v.state ?? 'INITIALIZING',
    health: v.health ?? 'unknown',
    load: v.load ?? 0,
    capacity: v.capacity ?? DEFAULT_CAPACITY,
    heartbeat: v.heartbeat ?? 0,
    stats: { executions: v.executions, successes: v.successes, failures: v.failures, restarts: v.restarts },
    meta: v.meta ?? {},
    removed: v.removed ?? false,
  };
}

/**
 * The agent registry over the replica. Each node writes the owner fields only of the agents it
 * hosts (owner = its node id; checked here with typed errors, and enforced on every replica by
 * `agentPolicy`); execution stats are G-Counters any node increments in its own slot.
 *
 * Every owner-field delta carries the owner register (unchanged after creation, so it merges as a
 * no-op): a peer that missed the creation can still check who owns the record.
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

  /** Registers or updates an agent hosted by this node. NOT_OWNER if another node hosts it. */
  async upsert(id: string, input: AgentInput): Promise<AgentView> {
    validateAgentId(id);
    const a = parse(agentInputSchema, input, 'agent');
    const meta = a.meta === undefined ? undefined : normalizeMeta(a.meta);
    const node = this.replica.nodeId;
    await this.mutate(agentKey(id), (cur) => {
      const S = agentSchema;
      const owner = S.get(cur, 'owner');
      if (owner !== undefined && owner.v !== node) throw this.notOwner(id, owner.v, 'update');
      const fresh = owner === undefined;
      const revived = S.get(cur, 'removed')?.v === true;
      const t = this.replica.clock.now();
      return S.delta({
        owner: owner ?? S.fields.owner.set(node, t, node),
        name: S.fields.name.set(a.name, t, node),
        type: S.fields.type.set(a.type, t, node),
        capabilities:
          a.capabilities === undefined ? undefined : diffCapabilities(S.get(cur, 'capabilities'), a.capabilities, node),
        state:
          a.state !== undefined || fresh || revived
            ? S.fields.state.set(a.state ?? 'INITIALIZING', t, node)
            : undefined,
        health: a.health !== undefined || fresh ? S.fields.health.set(a.health ?? 'unknown', t, node) : undefined,
        load: a.load !== undefined || fresh ? S.fields.load.set(a.load ?? 0, t, node) : undefined,
        capacity:
          a.capacity !== undefined || fresh
            ? S.fields.capacity.set(a.capacity ?? DEFAULT_CAPACITY, t, node)
            : undefined,
        heartbeat: S.fields.heartbeat.set(this.now(), t, node),
        meta: meta !== undefined || fresh ? S.fields.meta.set(meta ?? {}, t, node) : undefined,
        removed: fresh || revived ? S.fields.removed.set(false, t, node) : undefined,
      });
    });
    return this.mustGet(id);
  }

  /** The owner's liveness report: refreshes the heartbeat and any of load, capacity, health, state. */
  async heartbeat(id: string, input: HeartbeatInput = {}): Promise<AgentView> {
    validateAgentId(id);
    const h = parse(heartbeatSchema, input, 'heartbeat');
    const node = this.replica.nodeId;
    await this.mutate(agentKey(id), (cur) => {
      const S = agentSchema;
      const owner = this.ownedBy(id, cur, 'send heartbeats for');
      if (S.get(cur, 'removed')?.v === true) {
        throw new RegistryError(RegistryErrorCode.AGENT_REMOVED, `agent ${id} was removed; register it again`);
      }
      const t = this.replica.clock.now();
      return S.delta({
        owner,
        heartbeat: S.fields.heartbeat.set(this.now(), t, node),
        load: h.load === undefined ? undefined : S.fields.load.set(h.load, t, node),
        capacity: h.capacity === undefined ? undefined : S.fields.capacity.set(h.capacity, t, node),
        health: h.health === undefined ? undefined : S.fields.health.set(h.health, t, node),
        state: h.state === undefined ? undefined : S.fields.state.set(h.state, t, node),
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
      const S = agentSchema;
      const owner = this.ownedBy(id, cur, 'remove');
      const t = this.replica.clock.now();
      return S.delta({
        owner,
        removed: S.fields.removed.set(true, t, node),
        state: S.fields.state.set('TERMINATED', t, node),
      });
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

  private known(id: string, cur: RecordState): void {
    if (agentSchema.get(cur, 'owner') === undefined) {
      throw new RegistryError(RegistryErrorCode.NOT_FOUND, `agent ${id} not found`);
    }
  }

  /** The current owner register, if this node owns the agent; typed errors otherwise. */
  private ownedBy(id: string, cur: RecordState, action: string) {
    const owner = agentSchema.get(cur, 'owner');
    if (owner === undefined) throw new RegistryError(RegistryErrorCode.NOT_FOUND, `agent ${id} not found`);
    if (owner.v !== this.replica.nodeId) throw this.notOwner(id, owner.v, action);
    return owner;
  }

  private notOwner(id: string, owner: string, action: string): RegistryError {
    return new RegistryError(
      RegistryErrorCode.NOT_OWNER,
      `agent ${id} is hosted by node ${owner}; node ${this.replica.nodeId} cannot ${action} it`,
      { details: { owner } },
    );
  }
}
