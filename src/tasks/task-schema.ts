import { isTimestamp, latticeRegister, orderedRegister, RecordSchema, type Timestamp } from '../crdt/index.js';
import { jsonBytes } from '../util/json.js';

export const TASK_STATUSES = ['PENDING', 'ASSIGNED', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];
export const TERMINAL_STATUSES: ReadonlySet<TaskStatus> = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

/** Task ids (and so keys `task/<id>`): 1-128 characters from this set. */
export const TASK_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
export const MAX_TASK_TYPE_LENGTH = 128;
export const MAX_TITLE_LENGTH = 256;
/** Max size of a task's payload, result or error, in UTF-8 bytes of its JSON form. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;
export const MAX_RESULT_BYTES = 64 * 1024;
export const MAX_TASK_CAPABILITIES = 32;
/** A task's log: the last lines its executions wrote, at most this many and this many bytes. */
export const MAX_LOG_LINES = 200;
export const MAX_LOG_BYTES = 16 * 1024;
export const MAX_LOG_LINE_LENGTH = 1024;
export const MAX_TASK_CAPABILITY_LENGTH = 64;
export const MAX_DEPENDENCIES = 64;
export const MAX_ATTEMPTS = 1000;
/** The largest maxRetries a spec may ask for: attempts (maxRetries + 1) stay within MAX_ATTEMPTS. */
export const MAX_RETRIES_LIMIT = MAX_ATTEMPTS - 1;
/** How deep tool calls may nest (a task's tool call is a child task one level deeper). */
export const MAX_TOOL_DEPTH = 8;

/** How a task is claimed: `any` (leases, at least once under partitions) or `quorum` (majority grants). */
export const CLAIM_MODES = ['any', 'quorum'] as const;
export type ClaimMode = (typeof CLAIM_MODES)[number];

/** The history of one finished attempt, kept in the run (the last MAX_HISTORY of them). */
export interface AttemptRecord {
  readonly attempt: number;
  readonly epoch: number;
  readonly node: string | null;
  readonly agent: string | null;
  readonly status: TaskStatus;
  readonly error: unknown;
  readonly startedAt: number | null;
  readonly endedAt: number;
}
export const MAX_HISTORY = 20;

/**
 * The run register's value: everything about the task's execution that changes after creation,
 * in ONE register, so that every write of an executor carries its epoch and wins or loses whole:
 *
 * - `epoch`: the lease generation, strictly increasing per task; every claim (and every return
 *   to the pool) takes `epoch + 1`;
 * - `node`, `agent`: the holder (the agent is also what the API calls the assignee);
 * - `leaseUntil`: the holder's lease expiry (wall ms of its hybrid clock); after it any eligible
 *   node may claim with `epoch + 1`;
 * - `notBefore`: a PENDING task waiting out a retry's backoff is not claimed before it;
 * - `progress`, `result`, `error`, `log`, `updatedAt`, `startedAt`, `history`: the attempt's.
 *
 * A stale holder (paused past its lease, cut off by a partition) can only write at its old epoch,
 * and every such write loses the merge on every replica: fencing by the lattice order, with no
 * state-dependent refusal that could keep replicas apart.
 */
export interface RunValue {
  readonly status: TaskStatus;
  readonly epoch: number;
  readonly attempt: number;
  readonly node: string | null;
  readonly agent: string | null;
  /**
   * The claimant's place in the task's rendezvous order when it claimed (0: the designated
   * claimant, or a manual assignment). At equal epochs the lower place wins, so the designated
   * claimant can start at once and only the others wait a settle delay.
   */
  readonly claimRank: number;
  readonly leaseUntil: number | null;
  readonly notBefore: number | null;
  readonly progress: number;
  readonly result: unknown;
  readonly error: unknown;
  readonly log: readonly string[];
  readonly updatedAt: number;
  readonly startedAt: number | null;
  readonly history: readonly AttemptRecord[];
}

const STATUS_RANK: Record<TaskStatus, number> = {
  PENDING: 0,
  ASSIGNED: 1,
  IN_PROGRESS: 2,
  // Terminal states of one epoch share a rank: a concurrent COMPLETED and FAILED resolve by the
  // holder order and then the timestamp, not by a made-up preference.
  COMPLETED: 3,
  FAILED: 3,
  CANCELLED: 3,
};

const holderKey = (v: RunValue): string => `${v.node ?? ''}\u0000${v.agent ?? ''}`;

/**
 * The run register's order (DESIGN.md, "Execution"): a cancelled task stays cancelled whatever
 * the epochs; otherwise a higher epoch wins, then the status lattice, then a deterministic
 * tie-break between holders (the lower claim rank, then the smaller node/agent pair), and only
 * then a later lease
 * expiry, so a losing claimant's renewals can never overtake the winner. Equal under this order
 * (the holder's own successive writes), the later write wins.
 */
export function compareRuns(a: RunValue, b: RunValue): number {
  const ca = a.status === 'CANCELLED' ? 1 : 0;
  const cb = b.status === 'CANCELLED' ? 1 : 0;
  if (ca !== cb) return ca - cb;
  if (a.epoch !== b.epoch) return a.epoch - b.epoch;
  const sa = STATUS_RANK[a.status];
  const sb = STATUS_RANK[b.status];
  if (sa !== sb) return sa - sb;
  if (a.claimRank !== b.claimRank) return b.claimRank - a.claimRank;
  const ha = holderKey(a);
  const hb = holderKey(b);
  if (ha !== hb) return ha < hb ? 1 : -1;
  // One holder's own writes: the later one wins (last-writer-wins on the timestamp). A losing
  // claimant's renewals never overtake the winner: the holder order above decided that already.
  return 0;
}

const isNullableString = (v: unknown): v is string | null => v === null || (typeof v === 'string' && v.length <= 256);
const isNullableTime = (v: unknown): v is number | null =>
  v === null || (typeof v === 'number' && Number.isFinite(v) && v >= 0);
const isCount = (v: unknown, max: number): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
const isPlain = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

export const MAX_EPOCH = 1_000_000;

function isAttemptRecord(v: unknown): v is AttemptRecord {
  if (!isPlain(v)) return false;
  return (
    isCount(v.attempt, MAX_ATTEMPTS) &&
    isCount(v.epoch, MAX_EPOCH) &&
    isNullableString(v.node) &&
    isNullableString(v.agent) &&
    TASK_STATUSES.includes(v.status as TaskStatus) &&
    v.error !== undefined &&
    isNullableTime(v.startedAt) &&
    isNullableTime(v.endedAt)
  );
}

const RUN_KEYS: readonly (keyof RunValue)[] = [
  'status',
  'epoch',
  'attempt',
  'node',
  'agent',
  'claimRank',
  'leaseUntil',
  'notBefore',
  'progress',
  'result',
  'error',
  'log',
  'updatedAt',
  'startedAt',
  'history',
];

/** Why a value is not a well-formed run, or undefined. Size caps are `runSizeProblem`'s. */
export function runProblem(v: unknown): string | undefined {
  if (!isPlain(v)) return 'not an object';
  if (!RUN_KEYS.every((k) => Object.hasOwn(v, k))) return `fields must include ${RUN_KEYS.join(', ')}`;
  if (!TASK_STATUSES.includes(v.status as TaskStatus)) return 'status';
  if (!isCount(v.epoch, MAX_EPOCH)) return 'epoch';
  if (!isCount(v.attempt, MAX_ATTEMPTS) || (v.attempt as number) < 1) return 'attempt';
  if (!isNullableString(v.node)) return 'node';
  if (!(v.agent === null || (typeof v.agent === 'string' && TASK_ID_PATTERN.test(v.agent)))) return 'agent';
  if (!isCount(v.claimRank, 1_000_000)) return 'claimRank';
  if (!isNullableTime(v.leaseUntil)) return 'leaseUntil';
  if (!isNullableTime(v.notBefore)) return 'notBefore';
  if (typeof v.progress !== 'number' || !(v.progress >= 0 && v.progress <= 100)) return 'progress';
  if (v.result === undefined) return 'result';
  if (v.error === undefined) return 'error';
  if (!Array.isArray(v.log) || !v.log.every((l) => typeof l === 'string')) return 'log';
  if (typeof v.updatedAt !== 'number' || !Number.isFinite(v.updatedAt)) return 'updatedAt';
  if (!isNullableTime(v.startedAt)) return 'startedAt';
  if (!Array.isArray(v.history) || v.history.length > MAX_HISTORY || !v.history.every(isAttemptRecord)) {
    return 'history';
  }
  return undefined;
}

/** Why a well-formed run exceeds the caps (result, error, log, history), or undefined. */
export function runSizeProblem(v: RunValue): string | undefined {
  for (const f of ['result', 'error'] as const) {
    const size = jsonBytes(v[f]);
    if (size > MAX_RESULT_BYTES) return `${f} is ${size} bytes of JSON (max ${MAX_RESULT_BYTES})`;
  }
  if (v.log.length > MAX_LOG_LINES) return `log has ${v.log.length} lines (max ${MAX_LOG_LINES})`;
  const logBytes = v.log.reduce((n, l) => n + Buffer.byteLength(l), 0);
  if (logBytes > MAX_LOG_BYTES) return `log is ${logBytes} bytes (max ${MAX_LOG_BYTES})`;
  const historyBytes = jsonBytes(v.history);
  if (historyBytes > MAX_RESULT_BYTES) return `history is ${historyBytes} bytes of JSON (max ${MAX_RESULT_BYTES})`;
  return undefined;
}

const isRun = (v: unknown): v is RunValue => runProblem(v) === undefined;

/** What the creator asks for: the immutable part of a task. */
export interface RetryPolicy {
  /** First retry's delay (ms); doubles per attempt, with jitter, up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
}

export interface TaskSpec {
  type: string;
  title: string;
  payload: unknown;
  capabilities: string[];
  priority: number;
  deadline: number | null;
  maxRetries: number;
  parent: string | null;
  dependencies: string[];
  /** How it is claimed (`any` by default). */
  claim: ClaimMode;
  retry: RetryPolicy;
  /** Per-attempt timeout (ms), or null for the agent's own. */
  timeoutMs: number | null;
  /** Tool-call depth: 0 for a task a user submitted, parent's + 1 for a tool call. */
  depth: number;
}

/**
 * The spec register's value: the spec plus who created the task and when. `createdAt` is the
 * creator's wall clock in ms (what users see, and what lists sort by); `createdTs` is the
 * creator's HLC timestamp at creation, the lattice rank (`specRank`). Both are stored: the wall
 * clock is injectable and may disagree with the HLC's wall part, and the HLC timestamp carries
 * the causality the order needs.
 */
export interface TaskSpecRecord extends TaskSpec {
  creator: string;
  createdAt: number;
  createdTs: Timestamp;
}

const SPEC_KEYS: readonly (keyof TaskSpecRecord)[] = [
  'type',
  'title',
  'payload',
  'capabilities',
  'priority',
  'deadline',
  'maxRetries',
  'parent',
  'dependencies',
  'claim',
  'retry',
  'timeoutMs',
  'depth',
  'creator',
  'createdAt',
  'createdTs',
];

const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Why a well-typed spec exceeds the task limits, or undefined. */
export function specSizeProblem(sp: TaskSpec): string | undefined {
  const size = jsonBytes(sp.payload);
  if (size > MAX_PAYLOAD_BYTES) return `payload is ${size} bytes of JSON (max ${MAX_PAYLOAD_BYTES})`;
  if (sp.title.length > MAX_TITLE_LENGTH) return `title longer than ${MAX_TITLE_LENGTH} characters`;
  if (sp.type.length > MAX_TASK_TYPE_LENGTH) return `type longer than ${MAX_TASK_TYPE_LENGTH} characters`;
  if (sp.capabilities.length > MAX_TASK_CAPABILITIES) return `more than ${MAX_TASK_CAPABILITIES} capabilities`;
  if (sp.capabilities.some((c) => c.length > MAX_TASK_CAPABILITY_LENGTH)) {
    return `capability longer than ${MAX_TASK_CAPABILITY_LENGTH} characters`;
  }
  if (sp.dependencies.length > MAX_DEPENDENCIES) return `more than ${MAX_DEPENDENCIES} dependencies`;
  if (sp.maxRetries > MAX_RETRIES_LIMIT) return `maxRetries above ${MAX_RETRIES_LIMIT}`;
  return undefined;
}

/**
 * Why a value is not a well-formed spec record within the limits, or undefined if it is one.
 * The limits are checked here (at decode) and again by `taskPolicy` for every change (`too_large`).
 */
export function specProblem(v: unknown): string | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return 'not an object';
  const o = v as Record<string, unknown>;
  if (Object.keys(o).length !== SPEC_KEYS.length || !SPEC_KEYS.every((k) => Object.hasOwn(o, k))) {
    return `fields must be exactly ${SPEC_KEYS.join(', ')}`;
  }
  if (typeof o.type !== 'string') return 'type';
  if (typeof o.title !== 'string') return 'title';
  if (o.payload === undefined) return 'payload';
  if (!isStringList(o.capabilities)) return 'capabilities';
  if (typeof o.priority !== 'number' || !Number.isInteger(o.priority) || o.priority < 0 || o.priority > 9) {
    return 'priority';
  }
  if (o.deadline !== null && (typeof o.deadline !== 'number' || !Number.isFinite(o.deadline))) return 'deadline';
  if (typeof o.maxRetries !== 'number' || !Number.isInteger(o.maxRetries) || o.maxRetries < 0) return 'maxRetries';
  if (o.parent !== null && typeof o.parent !== 'string') return 'parent';
  if (!isStringList(o.dependencies)) return 'dependencies';
  if (!CLAIM_MODES.includes(o.claim as ClaimMode)) return 'claim';
  const r = o.retry as Record<string, unknown> | null;
  if (!isPlain(r) || !isCount(r.backoffMs, 86_400_000) || !isCount(r.maxBackoffMs, 86_400_000)) return 'retry';
  if (o.timeoutMs !== null && !(typeof o.timeoutMs === 'number' && Number.isInteger(o.timeoutMs) && o.timeoutMs > 0)) {
    return 'timeoutMs';
  }
  if (!isCount(o.depth, MAX_TOOL_DEPTH)) return 'depth';
  if (typeof o.creator !== 'string' || o.creator.length === 0) return 'creator';
  if (typeof o.createdAt !== 'number' || !Number.isFinite(o.createdAt) || o.createdAt < 0) return 'createdAt';
  if (!isTimestamp(o.createdTs)) return 'createdTs';
  return specSizeProblem(o as unknown as TaskSpec);
}

const isSpecRecord = (v: unknown): v is TaskSpecRecord => specProblem(v) === undefined;

/**
 * The spec's lattice rank: the earliest creation wins. Two nodes that create the same task id
 * concurrently both write a spec; every replica keeps the one with the smaller `createdTs`, and
 * a later spec for an existing id loses every merge (a no-op the replica reports as 'unchanged';
 * the task board refuses re-creation locally with TASK_EXISTS). Equal `createdTs` ties resolve
 * by writer id, then value, as in any register.
 */
export const specRank = (v: TaskSpecRecord): number => -v.createdTs;

/**
 * The task record (key `task/<taskId>`):
 *
 * - `spec`: the spec with its creator and creation times, one lattice register ordered by
 *   `specRank` (earliest creation wins), so concurrent creations of one id converge on one whole
 *   spec everywhere rather than being refused forever by each other's replicas;
 * - `run`: status, epoch, holder, lease and the attempt's progress, result, error and log, one
 *   register ordered by `compareRuns` (see `RunValue`).
 */
export const taskSchema = new RecordSchema('task', {
  spec: latticeRegister<TaskSpecRecord>('spec', specRank, isSpecRecord),
  run: orderedRegister<RunValue>('run', compareRuns, isRun),
});
export type TaskSchema = typeof taskSchema;
