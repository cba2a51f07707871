import { type PolicyInput, PolicyError } from '../replica/index.js';
import { MAX_LOG_BYTES, MAX_LOG_LINES, MAX_RESULT_BYTES, specSizeProblem, taskSchema } from './task-schema.js';

// The limits live with the schema (its decoder enforces them too); re-exported here, where the
// API and older callers import them from.
export {
  MAX_DEPENDENCIES,
  MAX_PAYLOAD_BYTES,
  MAX_RESULT_BYTES,
  MAX_RETRIES_LIMIT,
  MAX_TASK_CAPABILITIES,
  MAX_TASK_CAPABILITY_LENGTH,
  MAX_TASK_TYPE_LENGTH,
  MAX_TITLE_LENGTH,
  TASK_ID_PATTERN,
} from './task-schema.js';
import { jsonBytes } from '../util/json.js';
export const DEFAULT_PRIORITY = 5;
export const DEFAULT_MAX_RETRIES = 3;

type TaskField = (typeof taskSchema.fieldNames)[number];
/** Fields written once, by the creator, at creation: the spec register (spec, creator, createdAt). */
export const TASK_IMMUTABLE_FIELDS = ['spec'] as const satisfies readonly TaskField[];

/**
 * The task record's rules, for local mutations, remote deltas and full records alike. A policy
 * may only refuse what honest nodes never produce:
 *
 * - a spec names its own writer as creator (`not_creator`): a node can only create a task in its
 *   own name (with the replica's authorship check, a delta carries only its origin's writes);
 * - status regressions cannot happen (the status is a lattice register), and the decoder caps
 *   attempts at MAX_ATTEMPTS; a status beyond the spec's `maxRetries + 1` is NOT refused, because
 *   that check would depend on which spec a replica holds: two nodes creating one id concurrently
 *   with different `maxRetries` would each keep statuses the other refuses, and never converge
 *   (local transitions still respect the spec's limit);
 * - size caps on the spec, result and error hold whoever wrote them (`too_large`).
 *
 * A spec that differs from the current one is NOT refused: two nodes may honestly create the
 * same id concurrently, and refusing would leave each replica keeping its own spec forever. The
 * spec's lattice order keeps the earliest creation (`specRank`) on every replica, so a later
 * rewrite loses the merge: a no-op the replica reports as 'unchanged' without consulting this
 * policy. Re-creating an existing id is refused earlier, locally, with TASK_EXISTS.
 *
 * Remote changes are NOT checked against the local state machine: a peer may legitimately jump
 * from PENDING to COMPLETED when the intermediate deltas were lost or are still in flight.
 */
export function taskPolicy(input: PolicyInput): void {
  if (input.schema.name !== taskSchema.name) {
    throw new TypeError(`taskPolicy installed for a non-task key: ${input.key}`);
  }
  const { incoming, key } = input;
  const S = taskSchema;

  const incSpec = S.get(incoming, 'spec');
  if (incSpec !== undefined) {
    if (incSpec.w !== incSpec.v.creator) {
      throw new PolicyError('not_creator', `${key}: ${incSpec.w} wrote a spec naming ${incSpec.v.creator} as creator`, {
        creator: incSpec.v.creator,
        writer: incSpec.w,
      });
    }
    const problem = specSizeProblem(incSpec.v);
    if (problem !== undefined) throw new PolicyError('too_large', `${key}: ${problem}`, { writer: incSpec.w });
  }

  const log = S.get(incoming, 'log');
  if (
    log !== undefined &&
    (log.v.length > MAX_LOG_LINES || log.v.reduce((n, l) => n + Buffer.byteLength(l), 0) > MAX_LOG_BYTES)
  ) {
    throw new PolicyError('too_large', `${key}: log above ${MAX_LOG_LINES} lines or ${MAX_LOG_BYTES} bytes`);
  }

  for (const f of ['result', 'error'] as const) {
    const reg = S.get(incoming, f);
    if (reg === undefined) continue;
    const size = jsonBytes(reg.v);
    if (size > MAX_RESULT_BYTES) {
      throw new PolicyError('too_large', `${key}: ${f} is ${size} bytes of JSON (max ${MAX_RESULT_BYTES})`);
    }
  }
}
