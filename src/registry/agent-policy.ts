import { type PolicyInput, PolicyError } from '../replica/index.js';
import { agentSchema, profileSizeProblem } from './agent-schema.js';

// The limits live with the schema (its decoder enforces them too); re-exported here, where the
// API and older callers import them from.
export {
  AGENT_ID_PATTERN,
  MAX_AGENT_NAME_LENGTH,
  MAX_AGENT_TYPE_LENGTH,
  MAX_CAPABILITIES,
  MAX_CAPABILITY_LENGTH,
  MAX_META_BYTES,
} from './agent-schema.js';

/** The G-Counter fields: every node increments its own slot, so they have no owner. */
export const AGENT_STAT_FIELDS = ['executions', 'successes', 'failures', 'restarts'] as const;
type AgentField = (typeof agentSchema.fieldNames)[number];
const STATS: ReadonlySet<string> = new Set(AGENT_STAT_FIELDS);
/** Every field only the hosting node (the profile's `owner`) writes: the profile. */
export const AGENT_OWNER_FIELDS: readonly AgentField[] = agentSchema.fieldNames.filter((f) => !STATS.has(f));

/**
 * The agent record's rules, for local mutations, remote deltas and full records alike. A policy
 * may only refuse what honest nodes never produce, and every check here depends on the incoming
 * change alone, never on what the replica already holds, so every replica reaches the same
 * verdict on the same input:
 *
 * - a profile names its own writer as owner (`not_owner`): a node can only write a profile for
 *   itself. Together with the replica's authorship check (a delta carries only its origin's
 *   writes) and gossip's signer check, no node can write a profile in another node's name.
 * - size caps (`too_large`): name and type length, capability count and length, meta size. The
 *   profile is one register, so the merged profile is either the incoming one (checked here) or
 *   the current one (checked when it arrived).
 *
 * A profile naming an owner other than the current one is NOT refused: two nodes may honestly
 * register the same id concurrently, and refusing would leave each replica keeping its own owner
 * forever. The profile's lattice order decides instead (the earliest `registeredAt` wins, see
 * `profileRank`), identically on every replica; the losing node then refuses further local
 * writes (NOT_OWNER). Accepted limitation: a malicious mesh member can backdate `registeredAt`
 * to take over an agent id. Only authenticated members can publish at all, and forged origins
 * are already refused (gossip signer = delta origin, replica authorship checks), so a takeover is
 * always attributable to the member that made it.
 *
 * Refusals are `PolicyError`; the replica counts them and applies nothing.
 */
export function agentPolicy(input: PolicyInput): void {
  if (input.schema.name !== agentSchema.name) {
    throw new TypeError(`agentPolicy installed for a non-agent key: ${input.key}`);
  }
  const { incoming, key } = input;
  const profile = agentSchema.get(incoming, 'profile');
  if (profile === undefined) return;
  if (profile.w !== profile.v.owner) {
    throw new PolicyError('not_owner', `${key}: ${profile.w} wrote a profile naming ${profile.v.owner} as owner`, {
      owner: profile.v.owner,
      writer: profile.w,
    });
  }
  const problem = profileSizeProblem(profile.v);
  if (problem !== undefined) throw new PolicyError('too_large', `${key}: ${problem}`, { writer: profile.w });
}
