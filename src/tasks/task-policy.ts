import type { RecordState } from '../crdt/index.js';
import { type PolicyInput, PolicyError } from '../replica/index.js';
import { MAX_ATTEMPTS, taskSchema } from './task-schema.js';

/** Task ids (and so keys `task/<id>`): 1-128 characters from this set. */
export const TASK_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const MAX_TASK_TYPE_LENGTH = 128;
export const MAX_TITLE_LENGTH = 256;
/** Max size of a task's payload, result or error, in UTF-8 bytes of its JSON form. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;
export const MAX_RESULT_BYTES = 64 * 1024;
export const MAX_TASK_CAPABILITIES = 32;
export const MAX_TASK_CAPABILITY_LENGTH = 64;
export const MAX_DEPENDENCIES = 64;
export const DEFAULT_PRIORITY = 5;
export const DEFAULT_MAX_RETRIES = 3;
/** The largest maxRetries a spec may ask for: attempts (maxRetries + 1) stay within MAX_ATTEMPTS. */
export const MAX_RETRIES_LIMIT = MAX_ATTEMPTS - 1;

/** Size of a value's JSON form in UTF-8 bytes; Infinity when it has none (cycles, bigints). */
function jsonBytes(v: unknown): number {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? 0 : Buffer.byteLength(s);
  } catch {
    return Infinity;
  }
}

type TaskField = (typeof taskSchema.fieldNames)[number];
/** Fields written once, by the creator, at creation. */
export const TASK_IMMUTABLE_FIELDS = ['spec', 'creator', 'createdAt'] as const satisfies readonly TaskField[];

function touches(s: RecordState, field: TaskField): boolean {
  return s[taskSchema.indexOf(field)] !== undefined;
}

/**
 * The task record's rules, for local mutations, remote deltas and full records alike:
 *
 * - spec, creator and createdAt are immutable: an incoming register for one of them that differs
 *   from the current one (timestamp, writer or value) is refused (`spec_immutable`);
 * - they are written by the creator: the creator register names its own writer, and the spec and
 *   createdAt are written by that creator (`not_creator`);
 * - a status whose attempt exceeds the spec's `maxRetries + 1` is refused (`invalid_status`);
 *   status regressions cannot happen (the status is a lattice register);
 * - size caps on the spec, result and error hold whoever wrote them (`too_large`).
 *
 * Remote changes are NOT checked against the local state machine: a peer may legitimately jump
 * from PENDING to COMPLETED when the intermediate deltas were lost or are still in flight.
 */
export function taskPolicy(input: PolicyInput): void {
  if (input.schema.name !== taskSchema.name) {
    throw new TypeError(`taskPolicy installed for a non-task key: ${input.key}`);
  }
  const { incoming, current, merged, key } = input;
  const S = taskSchema;
  for (const f of TASK_IMMUTABLE_FIELDS) {
    const inc = S.get(incoming, f);
    const cur = S.get(current, f);
    if (inc !== undefined && cur !== undefined && !S.fields[f].equals(cur as never, inc as never)) {
      throw new PolicyError('spec_immutable', `${key}: ${f} is immutable once set (rewritten by ${inc.w})`, {
        field: f,
        writer: inc.w,
      });
    }
  }

  const spec = S.get(merged, 'spec');
  if (TASK_IMMUTABLE_FIELDS.some((f) => touches(incoming, f))) {
    const creator = S.get(merged, 'creator');
    if (creator === undefined) {
      throw new PolicyError('not_creator', `${key}: spec written before its creator is known`);
    }
    if (creator.v !== creator.w) {
      throw new PolicyError('not_creator', `${key}: ${creator.w} claims ${creator.v} created it`, {
        writer: creator.w,
      });
    }
    const createdAt = S.get(merged, 'createdAt');
    for (const reg of [spec, createdAt]) {
      if (reg !== undefined && reg.w !== creator.v) {
        throw new PolicyError('not_creator', `${key}: created by ${creator.v} but its spec was written by ${reg.w}`, {
          creator: creator.v,
          writer: reg.w,
        });
      }
    }
  }

  const incSpec = S.get(incoming, 'spec');
  if (incSpec !== undefined) {
    const sp = incSpec.v;
    const size = jsonBytes(sp.payload);
    if (size > MAX_PAYLOAD_BYTES) {
      throw new PolicyError('too_large', `${key}: payload is ${size} bytes of JSON (max ${MAX_PAYLOAD_BYTES})`);
    }
    if (
      sp.title.length > MAX_TITLE_LENGTH ||
      sp.type.length > MAX_TASK_TYPE_LENGTH ||
      sp.capabilities.length > MAX_TASK_CAPABILITIES ||
      sp.capabilities.some((c) => c.length > MAX_TASK_CAPABILITY_LENGTH) ||
      sp.dependencies.length > MAX_DEPENDENCIES ||
      sp.maxRetries > MAX_RETRIES_LIMIT
    ) {
      throw new PolicyError('too_large', `${key}: spec exceeds the task limits`);
    }
  }

  const status = S.get(incoming, 'status');
  if (status !== undefined && spec !== undefined && status.v.attempt > spec.v.maxRetries + 1) {
    throw new PolicyError(
      'invalid_status',
      `${key}: attempt ${status.v.attempt} exceeds maxRetries ${spec.v.maxRetries} + 1`,
      { status: status.v },
    );
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
