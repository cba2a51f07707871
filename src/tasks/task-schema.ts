import { isTimestamp, latticeRegister, lwwRegister, RecordSchema, type Timestamp } from '../crdt/index.js';
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

/**
 * The status register's value: a status within an attempt (a retry starts a new attempt), and
 * who it is assigned to. The assignee lives in the status value, not in a register of its own,
 * so that concurrent changes (say, one node starting the task for agent X while another
 * reassigns it to Y) resolve as one: the task can never end up IN_PROGRESS with the assignee of
 * the change that lost.
 */
export interface StatusValue {
  readonly status: TaskStatus;
  readonly attempt: number;
  readonly assignee: string | null;
}

const STATUS_RANK: Record<TaskStatus, number> = {
  PENDING: 0,
  ASSIGNED: 1,
  IN_PROGRESS: 2,
  // Terminal states of one attempt share a rank: a concurrent COMPLETED and FAILED resolve by
  // timestamp, not by a made-up preference.
  COMPLETED: 3,
  FAILED: 3,
  CANCELLED: 3,
};

/**
 * The lattice rank of a status: later attempts outrank earlier ones, later states within an
 * attempt outrank earlier ones, and CANCELLED outranks everything, so no merge can move a task
 * backwards or revive a cancelled one, whatever the clocks say. Equal ranks (say, two nodes
 * assigning the same attempt to different agents) resolve last-writer-wins.
 */
export function statusRank(v: StatusValue): number {
  if (v.status === 'CANCELLED') return Number.MAX_SAFE_INTEGER;
  return v.attempt * 4 + STATUS_RANK[v.status];
}

const isStatusValue = (v: unknown): v is StatusValue => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  return (
    Object.keys(o).length === 3 &&
    TASK_STATUSES.includes(o.status as TaskStatus) &&
    typeof o.attempt === 'number' &&
    Number.isSafeInteger(o.attempt) &&
    o.attempt >= 1 &&
    o.attempt <= MAX_ATTEMPTS &&
    (o.assignee === null || (typeof o.assignee === 'string' && TASK_ID_PATTERN.test(o.assignee)))
  );
};

/** What the creator asks for: the immutable part of a task. */
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

const isNullableNumber = (v: unknown): v is number | null =>
  v === null || (typeof v === 'number' && Number.isFinite(v));
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isAny = (v: unknown): v is unknown => v !== undefined;

/**
 * The task record (key `task/<taskId>`):
 *
 * - `spec`: the spec with its creator and creation times, one lattice register ordered by
 *   `specRank` (earliest creation wins), so concurrent creations of one id converge on one whole
 *   spec everywhere rather than being refused forever by each other's replicas;
 * - `status`: status, attempt and assignee, one lattice register ordered by `statusRank`;
 * - `leaseUntil` (wall ms or null), `progress`, `result`, `error`, `updatedAt`: last-writer-wins.
 * - `log`: the tail of the task's log (agent stderr lines, log and progress messages), rewritten
 *   whole by the executing node, last-writer-wins, bounded by MAX_LOG_LINES and MAX_LOG_BYTES.
 */
export const taskSchema = new RecordSchema('task', {
  spec: latticeRegister<TaskSpecRecord>('spec', specRank, isSpecRecord),
  status: latticeRegister<StatusValue>('status', statusRank, isStatusValue),
  leaseUntil: lwwRegister(isNullableNumber, 'leaseUntil'),
  progress: lwwRegister(isNumber, 'progress'),
  result: lwwRegister(isAny, 'result'),
  error: lwwRegister(isAny, 'error'),
  updatedAt: lwwRegister(isNumber, 'updatedAt'),
  log: lwwRegister(isStringList, 'log'),
});
export type TaskSchema = typeof taskSchema;
