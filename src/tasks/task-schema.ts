import { latticeRegister, lwwRegister, RecordSchema } from '../crdt/index.js';

export const TASK_STATUSES = ['PENDING', 'ASSIGNED', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];
export const TERMINAL_STATUSES: ReadonlySet<TaskStatus> = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

/** The status register's value: a status within an attempt (a retry starts a new attempt). */
export interface StatusValue {
  readonly status: TaskStatus;
  readonly attempt: number;
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
export const MAX_ATTEMPTS = 1000;

/**
 * The lattice rank of a status: later attempts outrank earlier ones, later states within an
 * attempt outrank earlier ones, and CANCELLED outranks everything, so no merge can move a task
 * backwards or revive a cancelled one, whatever the clocks say.
 */
export function statusRank(v: StatusValue): number {
  if (v.status === 'CANCELLED') return Number.MAX_SAFE_INTEGER;
  return v.attempt * 4 + STATUS_RANK[v.status];
}

const isStatusValue = (v: unknown): v is StatusValue => {
  if (v === null || typeof v !== 'object') return false;
  const o = v as Record<string, unknown>;
  return (
    Object.keys(o).length === 2 &&
    TASK_STATUSES.includes(o.status as TaskStatus) &&
    typeof o.attempt === 'number' &&
    Number.isSafeInteger(o.attempt) &&
    o.attempt >= 1 &&
    o.attempt <= MAX_ATTEMPTS
  );
};

/** The immutable part of a task, written once by its creator. */
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

const isSpec = (v: unknown): v is TaskSpec => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o.type === 'string' &&
    typeof o.title === 'string' &&
    Array.isArray(o.capabilities) &&
    o.capabilities.every((c) => typeof c === 'string') &&
    typeof o.priority === 'number' &&
    Number.isInteger(o.priority) &&
    o.priority >= 0 &&
    o.priority <= 9 &&
    (o.deadline === null || typeof o.deadline === 'number') &&
    typeof o.maxRetries === 'number' &&
    Number.isInteger(o.maxRetries) &&
    o.maxRetries >= 0 &&
    (o.parent === null || typeof o.parent === 'string') &&
    Array.isArray(o.dependencies) &&
    o.dependencies.every((d) => typeof d === 'string')
  );
};
const isString = (v: unknown): v is string => typeof v === 'string';
const isNullableString = (v: unknown): v is string | null => v === null || typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isAny = (v: unknown): v is unknown => v !== undefined;

/** The task record (key `task/<taskId>`). */
export const taskSchema = new RecordSchema('task', {
  spec: lwwRegister(isSpec, 'spec'),
  creator: lwwRegister(isString, 'creator'),
  createdAt: lwwRegister(isNumber, 'createdAt'),
  status: latticeRegister<StatusValue>('status', statusRank, isStatusValue),
  assignee: lwwRegister(isNullableString, 'assignee'),
  leaseUntil: lwwRegister(isNumber, 'leaseUntil'),
  progress: lwwRegister(isNumber, 'progress'),
  result: lwwRegister(isAny, 'result'),
  error: lwwRegister(isAny, 'error'),
  updatedAt: lwwRegister(isNumber, 'updatedAt'),
});
export type TaskSchema = typeof taskSchema;
