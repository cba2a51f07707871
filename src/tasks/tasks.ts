import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { RecordSchema, RecordState } from '../crdt/index.js';
import type { Delta, Replica } from '../replica/index.js';
import { TaskError, TaskErrorCode } from './errors.js';
import { DEFAULT_MAX_RETRIES, DEFAULT_PRIORITY } from './task-policy.js';
import {
  MAX_DEPENDENCIES,
  MAX_LOG_BYTES,
  MAX_LOG_LINE_LENGTH,
  MAX_LOG_LINES,
  MAX_PAYLOAD_BYTES,
  MAX_RESULT_BYTES,
  MAX_RETRIES_LIMIT,
  MAX_TASK_CAPABILITIES,
  MAX_TASK_CAPABILITY_LENGTH,
  MAX_TASK_TYPE_LENGTH,
  MAX_TITLE_LENGTH,
  type StatusValue,
  TASK_ID_PATTERN,
  TASK_STATUSES,
  type TaskSpec,
  type TaskSpecRecord,
  type TaskStatus,
  taskSchema,
  TERMINAL_STATUSES,
} from './task-schema.js';

export type TaskMutateFn = (
  key: string,
  build: (current: RecordState, schema: RecordSchema) => RecordState,
) => Promise<Delta>;

export interface TaskBoardOptions {
  replica: Replica;
  /** A durable local mutation (DurableReplica.mutate bound); resolves once the change is durable. */
  mutate: TaskMutateFn;
  /** Wall clock in ms for createdAt/updatedAt and generated ids (default Date.now). */
  now?: () => number;
}

/** A new task. Everything but `type` has a default. */
export interface TaskInput {
  /** Generated (time-sortable) when absent. */
  id?: string;
  type: string;
  title?: string;
  payload?: unknown;
  /** Capabilities an agent needs to run it. */
  capabilities?: string[];
  /** 0 (lowest) to 9; default 5. */
  priority?: number;
  /** Wall-clock ms, or null for none. */
  deadline?: number | null;
  /** Extra attempts after the first (retries after failure, and unassignments); default 3. */
  maxRetries?: number;
  parent?: string | null;
  dependencies?: string[];
}

/** A local change of a task: a status transition and/or field updates. */
export interface TaskPatch {
  status?: TaskStatus;
  assignee?: string | null;
  /** 0 to 100. */
  progress?: number;
  result?: unknown;
  error?: unknown;
  /** Lease expiry in wall-clock ms, or null to clear it. */
  leaseUntil?: number | null;
  /** The task's log tail, replacing the current one (trimmed to the last lines within the caps). */
  log?: string[];
}

export interface TaskView extends TaskSpec {
  id: string;
  creator: string;
  createdAt: number;
  status: TaskStatus;
  attempt: number;
  assignee: string | null;
  leaseUntil: number | null;
  progress: number;
  result: unknown;
  error: unknown;
  updatedAt: number;
  log: string[];
}

export interface TaskFilter {
  status?: TaskStatus;
  /** Tasks that require this capability. */
  capability?: string;
  assignee?: string;
  creator?: string;
  limit?: number;
}

export const TASK_KEY_PREFIX = 'task/';
export const taskKey = (id: string): string => `${TASK_KEY_PREFIX}${id}`;

/**
 * The status changes a local `transition` may make (remote deltas are not checked against it:
 * the status lattice already keeps every replica moving forward). Besides these:
 * - a patch whose status equals the current non-terminal status (or has none) only updates fields;
 * - CANCELLED -> CANCELLED is an idempotent no-op;
 * - the two edges into PENDING start a new attempt (attempt + 1) and are allowed only while
 *   attempt <= maxRetries: FAILED -> PENDING is a retry, ASSIGNED -> PENDING an unassignment.
 *   An unassignment cannot stay in the same attempt, because PENDING ranks below ASSIGNED in the
 *   status lattice and would lose every merge; as a new attempt it outranks whatever the old
 *   assignee still does concurrently, so the task reliably returns to the pool.
 */
export const TASK_TRANSITIONS: Readonly<Record<TaskStatus, readonly TaskStatus[]>> = {
  PENDING: ['ASSIGNED', 'IN_PROGRESS', 'CANCELLED'],
  // ASSIGNED -> FAILED: the agent refused the task (a pre_task hook) or could not start it.
  ASSIGNED: ['IN_PROGRESS', 'PENDING', 'FAILED', 'CANCELLED'],
  IN_PROGRESS: ['COMPLETED', 'FAILED', 'CANCELLED'],
  COMPLETED: [],
  FAILED: ['PENDING'],
  CANCELLED: [],
};

/**
 * The status after a local transition to `to` from `from`, or a TaskError: `undefined` means no
 * status change (a field update or the idempotent CANCELLED -> CANCELLED). The assignee carries
 * over, except into a new attempt, which starts unassigned; the caller applies the patch's own.
 */
export function nextStatus(id: string, from: StatusValue, to: TaskStatus, maxRetries: number): StatusValue | undefined {
  if (to === from.status) {
    if (to === 'CANCELLED' || !TERMINAL_STATUSES.has(to)) return undefined;
    throw invalidTransition(id, from, to);
  }
  if (!TASK_TRANSITIONS[from.status].includes(to)) throw invalidTransition(id, from, to);
  if (to === 'PENDING') {
    if (from.attempt > maxRetries) {
      throw new TaskError(
        TaskErrorCode.INVALID_TRANSITION,
        `task ${id}: attempt ${from.attempt} was the last one (maxRetries ${maxRetries}); cancel it instead`,
        { details: { from: from.status, to, attempt: from.attempt, maxRetries } },
      );
    }
    return { status: 'PENDING', attempt: from.attempt + 1, assignee: null };
  }
  return { status: to, attempt: from.attempt, assignee: from.assignee };
}

function invalidTransition(id: string, from: StatusValue, to: TaskStatus): TaskError {
  return new TaskError(TaskErrorCode.INVALID_TRANSITION, `task ${id}: cannot go from ${from.status} to ${to}`, {
    details: { from: from.status, to, attempt: from.attempt },
  });
}

const taskId = z.string().regex(TASK_ID_PATTERN, 'expected 1-128 characters from [A-Za-z0-9._:-]');

/** The board's input rules; the HTTP API validates bodies with a strict copy of them. */
export const taskInputSchema = z.object({
  id: taskId.optional(),
  type: z.string().min(1).max(MAX_TASK_TYPE_LENGTH),
  title: z.string().max(MAX_TITLE_LENGTH).optional(),
  payload: z.unknown().optional(),
  capabilities: z
    .array(z.string().min(1).max(MAX_TASK_CAPABILITY_LENGTH))
    .max(MAX_TASK_CAPABILITIES, `at most ${MAX_TASK_CAPABILITIES} capabilities`)
    .optional(),
  priority: z.number().int().min(0).max(9).optional(),
  deadline: z.number().nonnegative().nullable().optional(),
  maxRetries: z.number().int().min(0).max(MAX_RETRIES_LIMIT).optional(),
  parent: taskId.nullable().optional(),
  dependencies: z.array(taskId).max(MAX_DEPENDENCIES, `at most ${MAX_DEPENDENCIES} dependencies`).optional(),
});

export const taskPatchSchema = z.object({
  status: z.enum(TASK_STATUSES).optional(),
  assignee: taskId.nullable().optional(),
  progress: z.number().min(0).max(100).optional(),
  result: z.unknown().optional(),
  error: z.unknown().optional(),
  leaseUntil: z.number().nonnegative().nullable().optional(),
  log: z.array(z.string()).max(10_000).optional(),
});

function invalid(message: string, details?: Record<string, unknown>): TaskError {
  return new TaskError(TaskErrorCode.INVALID_TASK, message, details === undefined ? {} : { details });
}

function parse<T>(schema: z.ZodType<T>, input: unknown, what: string): T {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : what}: ${i.message}`);
  throw invalid(`invalid ${what}: ${issues.join('; ')}`, { issues });
}

/** A deep copy in plain JSON (undefined -> null), within `max` bytes. */
function toJson(v: unknown, what: string, max: number): unknown {
  if (v === undefined) return null;
  let text: string | undefined;
  try {
    text = JSON.stringify(v);
  } catch (err) {
    throw invalid(`${what} is not JSON-serializable: ${(err as Error).message}`);
  }
  if (text === undefined) return null;
  const size = Buffer.byteLength(text);
  if (size > max) {
    throw new TaskError(TaskErrorCode.TOO_LARGE, `${what} is ${size} bytes of JSON (max ${max})`, {
      details: { size, max },
    });
  }
  return JSON.parse(text) as unknown;
}

/** The last lines of `lines` within the log caps, each line cut to MAX_LOG_LINE_LENGTH. */
export function trimLog(lines: readonly string[]): string[] {
  const out: string[] = [];
  let bytes = 0;
  for (let i = lines.length - 1; i >= 0 && out.length < MAX_LOG_LINES; i--) {
    const line = (lines[i] as string).slice(0, MAX_LOG_LINE_LENGTH);
    bytes += Buffer.byteLength(line);
    if (bytes > MAX_LOG_BYTES) break;
    out.push(line);
  }
  return out.reverse();
}

/** A time-sortable random id: 9 base36 digits of wall-clock ms, then 12 random hex digits. */
export function newTaskId(nowMs: number = Date.now()): string {
  return `${Math.floor(nowMs).toString(36).padStart(9, '0')}-${randomBytes(6).toString('hex')}`;
}

/** The task's view, or undefined while its spec has not arrived (status-only record). */
export function taskView(id: string, s: RecordState): TaskView | undefined {
  const S = taskSchema;
  const spec = S.get(s, 'spec');
  if (spec === undefined) return undefined;
  const sp = spec.v;
  const status = S.get(s, 'status')?.v ?? { status: 'PENDING', attempt: 1, assignee: null };
  return {
    id,
    type: sp.type,
    title: sp.title,
    payload: sp.payload,
    capabilities: [...sp.capabilities],
    priority: sp.priority,
    deadline: sp.deadline,
    maxRetries: sp.maxRetries,
    parent: sp.parent,
    dependencies: [...sp.dependencies],
    creator: sp.creator,
    createdAt: sp.createdAt,
    status: status.status,
    attempt: status.attempt,
    assignee: status.assignee,
    leaseUntil: S.get(s, 'leaseUntil')?.v ?? null,
    progress: S.get(s, 'progress')?.v ?? 0,
    result: S.get(s, 'result')?.v ?? null,
    error: S.get(s, 'error')?.v ?? null,
    updatedAt: S.get(s, 'updatedAt')?.v ?? sp.createdAt,
    log: S.get(s, 'log')?.v ?? [],
  };
}

/**
 * Tasks over the replica: the creator writes the spec once (concurrent creations of one id
 * resolve to the earliest, see `specRank`); any node moves the status through the state machine
 * (`TASK_TRANSITIONS`, checked for local changes) and the status lattice makes concurrent changes
 * converge forward. `taskPolicy` guards what arrives from peers.
 *
 * Every register written by one call shares one HLC timestamp, so concurrent transitions resolve
 * the same way in every register they both write (status ties, result, progress...).
 */
export class TaskBoard {
  private readonly replica: Replica;
  private readonly mutate: TaskMutateFn;
  private readonly now: () => number;

  constructor(options: TaskBoardOptions) {
    this.replica = options.replica;
    this.mutate = options.mutate;
    this.now = options.now ?? Date.now;
  }

  /** Creates a PENDING task (attempt 1) written by this node. TASK_EXISTS if the id is taken. */
  async create(input: TaskInput): Promise<TaskView> {
    const t = parse(taskInputSchema, input, 'task');
    const nowMs = this.now();
    const id = t.id ?? newTaskId(nowMs);
    if (t.parent === id) throw invalid(`task ${id} cannot be its own parent`);
    if (t.dependencies?.includes(id)) throw invalid(`task ${id} cannot depend on itself`);
    const spec: TaskSpec = {
      type: t.type,
      title: t.title ?? '',
      payload: toJson(t.payload, 'payload', MAX_PAYLOAD_BYTES),
      capabilities: [...new Set(t.capabilities ?? [])],
      priority: t.priority ?? DEFAULT_PRIORITY,
      deadline: t.deadline ?? null,
      maxRetries: t.maxRetries ?? DEFAULT_MAX_RETRIES,
      parent: t.parent ?? null,
      dependencies: [...new Set(t.dependencies ?? [])],
    };
    const node = this.replica.nodeId;
    await this.mutate(taskKey(id), (cur, schema) => {
      if (!schema.isEmpty(cur)) throw new TaskError(TaskErrorCode.TASK_EXISTS, `task ${id} already exists`);
      const S = taskSchema;
      const ts = this.replica.clock.now();
      const record: TaskSpecRecord = { ...spec, creator: node, createdAt: nowMs, createdTs: ts };
      return S.delta({
        spec: S.fields.spec.set(record, ts, node),
        status: S.fields.status.set({ status: 'PENDING', attempt: 1, assignee: null }, ts, node),
        updatedAt: S.fields.updatedAt.set(nowMs, ts, node),
      });
    });
    return this.mustGet(id);
  }

  /**
   * A local change: a status transition validated against `TASK_TRANSITIONS`, and/or field updates
   * (assignee, progress, result, error, leaseUntil). A new attempt (retry or unassignment) resets
   * assignee, lease, progress, result and error unless the patch sets them. COMPLETED sets
   * progress to 100 unless the patch says otherwise. ASSIGNED needs an assignee.
   */
  async transition(id: string, patch: TaskPatch): Promise<TaskView> {
    const p = parse(taskPatchSchema, patch, 'patch');
    const result = p.result === undefined ? undefined : toJson(p.result, 'result', MAX_RESULT_BYTES);
    const error = p.error === undefined ? undefined : toJson(p.error, 'error', MAX_RESULT_BYTES);
    const before = this.get(id);
    if (before === undefined) throw notFound(id);
    const onlyStatus = Object.values({ ...p, status: undefined }).every((x) => x === undefined);
    if (before.status === 'CANCELLED' && p.status === 'CANCELLED' && onlyStatus) return before;

    const node = this.replica.nodeId;
    await this.mutate(taskKey(id), (cur) => {
      const S = taskSchema;
      const view = taskView(id, cur);
      if (view === undefined) throw notFound(id);
      const from: StatusValue = { status: view.status, attempt: view.attempt, assignee: view.assignee };
      if (TERMINAL_STATUSES.has(from.status) && (p.status === undefined || p.status === from.status)) {
        throw new TaskError(TaskErrorCode.INVALID_TRANSITION, `task ${id} is ${from.status}: it can no longer change`, {
          details: { from: from.status, attempt: from.attempt },
        });
      }
      const next = p.status === undefined ? undefined : nextStatus(id, from, p.status, view.maxRetries);
      const newAttempt = next !== undefined && next.attempt > from.attempt;
      const finalStatus = next?.status ?? from.status;
      const assignee = p.assignee !== undefined ? p.assignee : newAttempt ? null : view.assignee;
      if (finalStatus === 'ASSIGNED' && assignee === null) {
        throw invalid(`task ${id}: status ASSIGNED needs an assignee`);
      }
      const progress = p.progress ?? (newAttempt ? 0 : finalStatus === 'COMPLETED' && next ? 100 : undefined);
      const lease = p.leaseUntil !== undefined ? p.leaseUntil : newAttempt ? null : undefined;
      const resultValue = result !== undefined ? result : newAttempt && view.result !== null ? null : undefined;
      const errorValue = error !== undefined ? error : newAttempt && view.error !== null ? null : undefined;
      const ts = this.replica.clock.now();
      const parts: Parameters<typeof S.delta>[0] = { updatedAt: S.fields.updatedAt.set(this.now(), ts, node) };
      if (next !== undefined || p.assignee !== undefined) {
        const status: StatusValue = { status: finalStatus, attempt: next?.attempt ?? from.attempt, assignee };
        parts.status = S.fields.status.set(status, ts, node);
      }
      if (progress !== undefined) parts.progress = S.fields.progress.set(progress, ts, node);
      if (lease !== undefined) parts.leaseUntil = S.fields.leaseUntil.set(lease, ts, node);
      if (resultValue !== undefined) parts.result = S.fields.result.set(resultValue, ts, node);
      if (errorValue !== undefined) parts.error = S.fields.error.set(errorValue, ts, node);
      const log = p.log !== undefined ? trimLog(p.log) : newAttempt && view.log.length > 0 ? [] : undefined;
      if (log !== undefined) parts.log = S.fields.log.set(log, ts, node);
      return S.delta(parts);
    });
    return this.mustGet(id);
  }

  /** transition(id, { status: 'CANCELLED' }): idempotent when already cancelled, 409 when COMPLETED/FAILED. */
  cancel(id: string): Promise<TaskView> {
    return this.transition(id, { status: 'CANCELLED' });
  }

  get(id: string): TaskView | undefined {
    if (typeof id !== 'string' || !TASK_ID_PATTERN.test(id)) return undefined;
    const s = this.replica.get(taskKey(id));
    return s === undefined ? undefined : taskView(id, s);
  }

  /** Tasks matching every given filter, sorted by createdAt then id, at most `limit` of them. */
  list(filter: TaskFilter = {}): TaskView[] {
    const out: TaskView[] = [];
    for (const [key, s] of this.replica.entries(TASK_KEY_PREFIX)) {
      const t = taskView(key.slice(TASK_KEY_PREFIX.length), s);
      if (t === undefined) continue;
      if (filter.status !== undefined && t.status !== filter.status) continue;
      if (filter.capability !== undefined && !t.capabilities.includes(filter.capability)) continue;
      if (filter.assignee !== undefined && t.assignee !== filter.assignee) continue;
      if (filter.creator !== undefined && t.creator !== filter.creator) continue;
      out.push(t);
    }
    out.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (filter.limit !== undefined) {
      if (!Number.isInteger(filter.limit) || filter.limit < 0) throw invalid('limit must be a non-negative integer');
      return out.slice(0, filter.limit);
    }
    return out;
  }

  private mustGet(id: string): TaskView {
    const t = this.get(id);
    if (t === undefined) throw notFound(id);
    return t;
  }
}

function notFound(id: string): TaskError {
  return new TaskError(TaskErrorCode.NOT_FOUND, `task ${id} not found`);
}
