import { MeshError } from '../util/errors.js';

/** Stable codes of the errors the task board throws; they cross the HTTP boundary as strings. */
export const TaskErrorCode = {
  /** The task id, input or patch is malformed (pattern, types, lengths, counts, ranges). */
  INVALID_TASK: 'INVALID_TASK',
  /** A JSON-valued input (payload, result, error) is larger than its byte limit. */
  TOO_LARGE: 'TOO_LARGE',
  /** A task with that id already exists. */
  TASK_EXISTS: 'TASK_EXISTS',
  /** No task with that id is known to this node. */
  NOT_FOUND: 'NOT_FOUND',
  /** The requested status change is not allowed from the task's current status. */
  INVALID_TRANSITION: 'INVALID_TRANSITION',
  /** The write names an epoch the task has moved past (fencing): another holder has it now. */
  STALE_EPOCH: 'STALE_EPOCH',
  /** The task is held by someone else (or not held by the writer), or cannot be claimed now. */
  NOT_HOLDER: 'NOT_HOLDER',
  /** A dependency or parent that does not exist, a deadline in the past. */
  INVALID_REFERENCE: 'INVALID_REFERENCE',
} as const;
export type TaskErrorCode = (typeof TaskErrorCode)[keyof typeof TaskErrorCode];

/** The HTTP status each code maps to (the API layer uses this table). */
export const TASK_HTTP_STATUS: Readonly<Record<TaskErrorCode, number>> = {
  INVALID_TASK: 400,
  TOO_LARGE: 413,
  TASK_EXISTS: 409,
  NOT_FOUND: 404,
  INVALID_TRANSITION: 409,
  STALE_EPOCH: 409,
  NOT_HOLDER: 409,
  INVALID_REFERENCE: 400,
};

export class TaskError extends MeshError<TaskErrorCode> {
  /** The HTTP status this error maps to. */
  get status(): number {
    return TASK_HTTP_STATUS[this.code];
  }
}

export function isTaskError(err: unknown): err is TaskError {
  return err instanceof TaskError;
}
