import { type CausalContext, type OrSet, type RecordState, type Register } from '../crdt/index.js';
import { type PolicyInput, PolicyError } from '../replica/index.js';
import { agentSchema } from './agent-schema.js';

/** Agent ids (and so keys `agent/<id>`): 1-128 characters from this set. */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const MAX_AGENT_NAME_LENGTH = 128;
export const MAX_AGENT_TYPE_LENGTH = 128;
export const MAX_CAPABILITIES = 64;
export const MAX_CAPABILITY_LENGTH = 64;
/** Max size of an agent's `meta`, in UTF-8 bytes of its JSON form. */
export const MAX_META_BYTES = 8 * 1024;

/** The G-Counter fields: every node increments its own slot, so they have no owner. */
export const AGENT_STAT_FIELDS = ['executions', 'successes', 'failures', 'restarts'] as const;
type AgentField = (typeof agentSchema.fieldNames)[number];
const STATS: ReadonlySet<string> = new Set(AGENT_STAT_FIELDS);
/** Every field only the hosting node (the record's `owner`) may write. */
export const AGENT_OWNER_FIELDS: readonly AgentField[] = agentSchema.fieldNames.filter((f) => !STATS.has(f));

/** Size of a value's JSON form in UTF-8 bytes; Infinity when it has none (cycles, bigints). */
function jsonBytes(v: unknown): number {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? 0 : Buffer.byteLength(s);
  } catch {
    return Infinity;
  }
}

function contextOrigins(ctx: CausalContext): string[] {
  return ctx.map((e) => e[0]);
}

function touches(s: RecordState, field: AgentField): boolean {
  const x = s[agentSchema.indexOf(field)];
  return x !== undefined && !agentSchema.fields[field].isEmpty(x as never);
}

/**
 * The agent record's ownership rule, for local mutations, remote deltas and full records alike:
 *
 * - the `owner` register names its own writer (a node can only claim an agent for itself), and
 *   once set it never changes: an incoming owner with a different value is refused;
 * - every owner field (all but the stats G-Counters) is written by the merged owner: register
 *   writers, OR-Set entry origins and OR-Set context origins must all be the owner, and a delta
 *   touching owner fields must come from the owner (this also covers context-only removals,
 *   which carry no writer of their own);
 * - caps that must hold whoever wrote the record: capability count and length, name and type
 *   length, meta size.
 *
 * Refusals are `PolicyError('not_owner' | 'too_large')`; the replica counts them and applies
 * nothing.
 */
export function agentPolicy(input: PolicyInput): void {
  if (input.schema.name !== agentSchema.name) {
    throw new TypeError(`agentPolicy installed for a non-agent key: ${input.key}`);
  }
  const { incoming, current, merged, key } = input;
  const incOwner = agentSchema.get(incoming, 'owner');
  const curOwner = agentSchema.get(current, 'owner');
  if (incOwner !== undefined) {
    if (incOwner.v !== incOwner.w) {
      throw new PolicyError('not_owner', `${key}: owner ${incOwner.v} was claimed by ${incOwner.w}`, {
        writer: incOwner.w,
      });
    }
    if (curOwner !== undefined && curOwner.v !== incOwner.v) {
      throw new PolicyError('not_owner', `${key} is owned by ${curOwner.v}; ${incOwner.v} cannot take it over`, {
        owner: curOwner.v,
        writer: incOwner.w,
      });
    }
  }

  const owner = agentSchema.get(merged, 'owner')?.v;
  const touched = AGENT_OWNER_FIELDS.filter((f) => touches(incoming, f));
  if (touched.length > 0) {
    if (owner === undefined) {
      throw new PolicyError('not_owner', `${key}: owner fields written before any owner is known`, {
        fields: touched,
      });
    }
    if (input.kind !== 'record' && input.origin !== undefined && input.origin !== owner) {
      throw new PolicyError('not_owner', `${key} is owned by ${owner}; ${input.origin} wrote ${touched.join(', ')}`, {
        owner,
        writer: input.origin,
        fields: touched,
      });
    }
    for (const f of touched) {
      const writers: string[] = [];
      if (f === 'capabilities') {
        const set = incoming[agentSchema.indexOf(f)] as OrSet;
        for (const e of set.entries) writers.push(e[1]);
        writers.push(...contextOrigins(set.ctx));
      } else {
        writers.push((incoming[agentSchema.indexOf(f)] as Register<unknown>).w);
      }
      const foreign = writers.find((w) => w !== owner);
      if (foreign !== undefined) {
        throw new PolicyError('not_owner', `${key} is owned by ${owner}; ${foreign} wrote ${f}`, {
          owner,
          writer: foreign,
          fields: [f],
        });
      }
    }
  }

  if (touches(incoming, 'capabilities')) {
    const caps = agentSchema.fields.capabilities.value(agentSchema.get(merged, 'capabilities'));
    if (caps.length > MAX_CAPABILITIES) {
      throw new PolicyError('too_large', `${key}: ${caps.length} capabilities (max ${MAX_CAPABILITIES})`);
    }
    const long = caps.find((c) => c.length > MAX_CAPABILITY_LENGTH);
    if (long !== undefined) {
      throw new PolicyError('too_large', `${key}: capability longer than ${MAX_CAPABILITY_LENGTH} characters`);
    }
  }
  const name = agentSchema.get(incoming, 'name');
  if (name !== undefined && name.v.length > MAX_AGENT_NAME_LENGTH) {
    throw new PolicyError('too_large', `${key}: name longer than ${MAX_AGENT_NAME_LENGTH} characters`);
  }
  const type = agentSchema.get(incoming, 'type');
  if (type !== undefined && type.v.length > MAX_AGENT_TYPE_LENGTH) {
    throw new PolicyError('too_large', `${key}: type longer than ${MAX_AGENT_TYPE_LENGTH} characters`);
  }
  const meta = agentSchema.get(incoming, 'meta');
  if (meta !== undefined) {
    const size = jsonBytes(meta.v);
    if (size > MAX_META_BYTES) {
      throw new PolicyError('too_large', `${key}: meta is ${size} bytes of JSON (max ${MAX_META_BYTES})`);
    }
  }
}
