import { type PolicyInput, PolicyError } from '../replica/index.js';
import { runSizeProblem, specSizeProblem, taskSchema } from './task-schema.js';

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

  const run = S.get(incoming, 'run');
  if (run !== undefined) {
    const problem = runSizeProblem(run.v);
    if (problem !== undefined) throw new PolicyError('too_large', `${key}: ${problem}`, { writer: run.w });
  }
}

/**
 * Fencing, counted: a remote write of the run at an epoch older than the one this replica holds
 * (a holder that was paused or cut off past its lease, or a forgery). Such a write always loses
 * the merge (the run's order puts the higher epoch first), so it changes nothing on any replica;
 * this names it so the replica counts it (`replica_rejected_total{reason="stale_epoch"}`). A cancel is
 * never stale: it wins at any epoch.
 */
export function taskStaleWrite(input: PolicyInput): string | undefined {
  if (input.schema.name !== taskSchema.name) return undefined;
  const inc = taskSchema.get(input.incoming, 'run');
  const cur = taskSchema.get(input.current, 'run');
  if (inc === undefined || cur === undefined) return undefined;
  // Only a holder's writes are fenced; a late creation or return to the pool is honest reordering.
  if (inc.v.status !== 'CANCELLED' && inc.v.node !== null && inc.v.epoch < cur.v.epoch) return 'stale_epoch';
  return undefined;
}
