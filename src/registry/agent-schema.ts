import { gCounter, isTimestamp, latticeRegister, lwwRegister, RecordSchema, type Timestamp } from '../crdt/index.js';
import { jsonBytes } from '../util/json.js';

export const AGENT_STATES = [
  'INITIALIZING',
  'RUNNING',
  'PAUSED',
  'STOPPING',
  'TERMINATED',
  'ERROR',
  'RESTARTING',
] as const;
export type AgentState = (typeof AGENT_STATES)[number];
export const AGENT_HEALTH = ['healthy', 'degraded', 'unhealthy', 'unknown'] as const;
export type AgentHealth = (typeof AGENT_HEALTH)[number];

/** Agent ids (and so keys `agent/<id>`): 1-128 characters from this set. */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const MAX_AGENT_NAME_LENGTH = 128;
export const MAX_AGENT_TYPE_LENGTH = 128;
export const MAX_CAPABILITIES = 64;
export const MAX_CAPABILITY_LENGTH = 64;
/** Max size of an agent's `meta`, in UTF-8 bytes of its JSON form. */
export const MAX_META_BYTES = 8 * 1024;

/**
 * Everything the hosting node (the owner) says about an agent, written as ONE value: every owner
 * update (register, update, heartbeat, removal) rewrites the whole profile with a fresh timestamp.
 */
export interface AgentProfile {
  /** The hosting node: always the register's writer (enforced by `agentPolicy`). */
  readonly owner: string;
  readonly name: string;
  readonly type: string;
  /** Sorted (by UTF-16 code units) and unique. */
  readonly capabilities: readonly string[];
  readonly state: AgentState;
  readonly health: AgentHealth;
  readonly load: number;
  readonly capacity: number;
  /** Wall-clock ms of the owner's last upsert or heartbeat. */
  readonly heartbeat: number;
  readonly meta: Readonly<Record<string, unknown>>;
  readonly removed: boolean;
  /**
   * The owner's HLC timestamp at its first registration of the agent, unchanged by every later
   * update of that owner (re-registration after removal included). The profile's lattice rank.
   */
  readonly registeredAt: Timestamp;
}

const PROFILE_KEYS: readonly (keyof AgentProfile)[] = [
  'owner',
  'name',
  'type',
  'capabilities',
  'state',
  'health',
  'load',
  'capacity',
  'heartbeat',
  'meta',
  'removed',
  'registeredAt',
];

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
const isNonNegative = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/** Capabilities as a profile stores them: strictly ascending (so sorted and unique). */
export function isCapabilityList(v: unknown): v is string[] {
  if (!Array.isArray(v)) return false;
  for (let i = 0; i < v.length; i++) {
    const c = v[i] as unknown;
    if (typeof c !== 'string' || c.length === 0) return false;
    if (i > 0 && !((v[i - 1] as string) < c)) return false;
  }
  return true;
}

/** The canonical form of a capability list: sorted, duplicates dropped. */
export function normalizeCapabilities(caps: readonly string[]): string[] {
  return [...new Set(caps)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Why a value is not a well-formed profile within the limits, or undefined if it is one. The
 * size limits are checked here (at decode, before a peer's value gets any further) and again by
 * `agentPolicy` for every change, local ones included (`too_large`).
 */
export function profileProblem(v: unknown): string | undefined {
  if (!isPlainObject(v)) return 'not an object';
  // Every known field must be there; unknown ones are kept, so that a newer minor version can add
  // fields without older nodes refusing its profiles (the size caps still bound them).
  if (!PROFILE_KEYS.every((k) => Object.hasOwn(v, k))) return `fields must include ${PROFILE_KEYS.join(', ')}`;
  const p = v as Record<keyof AgentProfile, unknown>;
  if (typeof p.owner !== 'string' || p.owner.length === 0) return 'owner';
  if (typeof p.name !== 'string') return 'name';
  if (typeof p.type !== 'string') return 'type';
  if (!isCapabilityList(p.capabilities)) return 'capabilities (non-empty strings, sorted, unique)';
  if (!AGENT_STATES.includes(p.state as AgentState)) return 'state';
  if (!AGENT_HEALTH.includes(p.health as AgentHealth)) return 'health';
  if (!isNonNegative(p.load)) return 'load';
  if (!isNonNegative(p.capacity)) return 'capacity';
  if (!isNonNegative(p.heartbeat)) return 'heartbeat';
  if (!isPlainObject(p.meta)) return 'meta';
  if (typeof p.removed !== 'boolean') return 'removed';
  if (!isTimestamp(p.registeredAt)) return 'registeredAt';
  return profileSizeProblem(p as unknown as AgentProfile);
}

/** Why a well-typed profile exceeds the limits, or undefined. */
export function profileSizeProblem(p: AgentProfile): string | undefined {
  if (p.name.length > MAX_AGENT_NAME_LENGTH) return `name longer than ${MAX_AGENT_NAME_LENGTH} characters`;
  if (p.type.length > MAX_AGENT_TYPE_LENGTH) return `type longer than ${MAX_AGENT_TYPE_LENGTH} characters`;
  if (p.capabilities.length > MAX_CAPABILITIES) {
    return `${p.capabilities.length} capabilities (max ${MAX_CAPABILITIES})`;
  }
  if (p.capabilities.some((c) => c.length > MAX_CAPABILITY_LENGTH)) {
    return `capability longer than ${MAX_CAPABILITY_LENGTH} characters`;
  }
  const size = jsonBytes(p.meta);
  if (size > MAX_META_BYTES) return `meta is ${size} bytes of JSON (max ${MAX_META_BYTES})`;
  return undefined;
}

const isProfile = (v: unknown): v is AgentProfile => profileProblem(v) === undefined;

/**
 * The profile's lattice rank: the earliest registration wins. Two nodes that register the same
 * agent id concurrently both write a profile; every replica keeps the one with the smaller
 * `registeredAt`, whole, and the other node's later updates keep losing (they carry its own,
 * later `registeredAt`) until it sees the winner and refuses further writes locally (NOT_OWNER).
 * Within one owner's profiles (equal rank) the latest write wins.
 *
 * Equal `registeredAt` from two nodes (both read the same HLC value) ties the rank; the later
 * write, then the higher writer id, wins. Ownership may then move between the two until each has
 * seen the other's profile, after which only the current owner writes; every replica applies the
 * same total order throughout, so they still converge.
 */
export const profileRank = (p: AgentProfile): number => -p.registeredAt;

/**
 * The owner's liveness report, written by heartbeats without rewriting the whole profile (whose
 * `meta` and capabilities may be kilobytes): state, health, load, capacity and the heartbeat
 * time. It overlays the profile's copies of these fields when the profile's owner wrote it after
 * the profile (see `agentView`); every profile write carries the current liveness, so a newer
 * profile supersedes older liveness reports.
 */
export interface AgentLiveness {
  readonly state: AgentState;
  readonly health: AgentHealth;
  readonly load: number;
  readonly capacity: number;
  readonly heartbeat: number;
}

const LIVENESS_KEYS = ['state', 'health', 'load', 'capacity', 'heartbeat'] as const;

export function isLiveness(v: unknown): v is AgentLiveness {
  if (!isPlainObject(v)) return false;
  if (!LIVENESS_KEYS.every((k) => Object.hasOwn(v, k))) return false;
  return (
    AGENT_STATES.includes(v.state as AgentState) &&
    AGENT_HEALTH.includes(v.health as AgentHealth) &&
    isNonNegative(v.load) &&
    isNonNegative(v.capacity) &&
    isNonNegative(v.heartbeat)
  );
}

/**
 * The agent record (key `agent/<agentId>`):
 *
 * - `profile`: every field the hosting node writes, in ONE lattice register ordered by
 *   `profileRank`. Keeping all owner fields in one register is what makes concurrent
 *   registration of one id converge: with separate registers, each field would be decided on
 *   its own and a replica could end up with one node's name and the other's owner. With one
 *   register, the earlier registration wins the whole profile everywhere, and no policy has to
 *   refuse a takeover (which would leave replicas disagreeing forever). The capabilities are a
 *   sorted list inside it rather than an OR-Set: they have a single writer, the owner, for whom
 *   an OR-Set adds nothing over rewriting the list. One register instead of eleven (owner, name,
 *   type, capabilities, state, health, load, capacity, heartbeat, meta, removed) also cuts the
 *   memory per record.
 * - `executions`, `successes`, `failures`, `restarts`: G-Counters; any node increments its own
 *   slot, so they have no owner.
 * - `live`: the owner's latest liveness report (last-writer-wins), see `AgentLiveness`. A report
 *   not written by the profile's owner is ignored by every view; accepted limitation: a member
 *   could write a later one to hide the owner's reports until the owner's next write.
 *
 * Removal sets `removed` in the profile; the record stays so that the removal replicates and
 * wins over stale updates.
 */
export const agentSchema = new RecordSchema('agent', {
  profile: latticeRegister<AgentProfile>('profile', profileRank, isProfile),
  executions: gCounter,
  successes: gCounter,
  failures: gCounter,
  restarts: gCounter,
  live: lwwRegister<AgentLiveness>(isLiveness, 'live'),
});
export type AgentSchema = typeof agentSchema;
