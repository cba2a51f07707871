import type { CrdtLimits, AnyRecordSchema, RecordState } from '../crdt/index.js';
import { ReplicaError, ReplicaErrorCode } from './errors.js';

/**
 * A delta: one record-level change, named by the dot (origin, seq) of the mutation that made it.
 * `state` is a record delta (a record state with only the touched fields set), so applying a
 * delta is a merge and applying it twice changes nothing.
 */
export interface Delta {
  readonly key: string;
  readonly origin: string;
  readonly seq: number;
  readonly state: RecordState;
}

/** Wire form of a delta: [key, origin, seq, recordWire]. */
export type DeltaWire = [string, string, number, unknown[]];

export const MAX_KEY_LENGTH = 256;

export function deltaToWire(d: Delta, schema: AnyRecordSchema): DeltaWire {
  return [d.key, d.origin, d.seq, schema.toWire(d.state)];
}

export function isValidKey(key: unknown): key is string {
  return typeof key === 'string' && key.length > 0 && key.length <= MAX_KEY_LENGTH && key.includes('/');
}

/** Validating decode of one wire delta. Throws ReplicaError INVALID_DELTA / UNKNOWN_SCHEMA. */
export function deltaFromWire(
  w: unknown,
  schemaFor: (key: string) => AnyRecordSchema | undefined,
  limits: CrdtLimits,
): Delta {
  if (!Array.isArray(w) || w.length !== 4)
    throw new ReplicaError(ReplicaErrorCode.INVALID_DELTA, 'delta must be a 4-tuple');
  const [key, origin, seq, state] = w as unknown[];
  if (!isValidKey(key)) throw new ReplicaError(ReplicaErrorCode.INVALID_DELTA, 'invalid delta key');
  if (typeof origin !== 'string' || origin.length === 0 || origin.length > limits.maxStringLength) {
    throw new ReplicaError(ReplicaErrorCode.INVALID_DELTA, 'invalid delta origin');
  }
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
    throw new ReplicaError(ReplicaErrorCode.INVALID_DELTA, 'invalid delta seq');
  }
  const schema = schemaFor(key);
  if (schema === undefined) throw new ReplicaError(ReplicaErrorCode.UNKNOWN_SCHEMA, `no schema for key ${key}`);
  try {
    return { key, origin, seq, state: schema.fromWire(state, limits) };
  } catch (err) {
    throw new ReplicaError(
      ReplicaErrorCode.INVALID_DELTA,
      `invalid delta state for ${key}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}
