import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { RecordSchema, RecordState } from '../crdt/index.js';
import type { Delta, Replica } from '../replica/index.js';
import { TaskError, TaskErrorCode } from './errors.js';
import { DEFAULT_MAX_RETRIES, DEFAULT_PRIORITY } from './task-policy.js';
import {
  type AttemptRecord,
  CLAIM_MODES,
  type ClaimMode,
  MAX_DEPENDENCIES,
  MAX_EPOCH,
  MAX_HISTORY,
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
  MAX_TOOL_DEPTH,
  type RetryPolicy,
  type RunValue,
  TASK_ID_PATTERN,
  TASK_STATUSES,
  type TaskSpec,
  type TaskSpecRecord,
  type TaskStatus,
  taskSchema,
  TERMINAL_STATUSES,
  MAX_ATTEMPTS,
} from './task-schema.js';

export type TaskMutateFn = (
  key: string,
  build: (current: RecordState, schema: RecordSchema) => RecordState,
) => Promise<Delta>;

export interface TaskBoardOptions {
  replica: Replica;
  /** A durable local mutation (DurableReplica.mutate bound); resolves once the change is durable. */
  mutate: TaskMutateFn;
  /** Wall clock in ms for times, leases and generated ids (default Date.now). */
  now?: () => number;
  /** The node hosting an agent, for manual assignments (the holder of their lease). */
  ownerOf?: (agentId: string) => string | undefined;
  /** Lease of a manual assignment (ms); the hosting node renews it once it runs the task. */
  assignLeaseMs?: number;
  /** Random source for retry jitter (tests). */
  random?: () => number;
}

export const DEFAULT_RETRY: RetryPolicy = { backoffMs: 1000, maxBackoffMs: 60_000 };
/** The spec fields a plain task has by default (for code that writes specs by hand: tests, benchmarks). */
export const SPEC_DEFAULTS = {
  claim: 'any',
  retry: DEFAULT_RETRY,
  timeoutMs: null,
  depth: 0,
} as const satisfies Partial<TaskSpec>;
export const DEFAULT_ASSIGN_LEASE_MS = 30_000;

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
  /** Extra attempts after the first (retries after failure, expired leases, unassignments); default 3. */
  maxRetries?: number;
  parent?: string | null;
  dependencies?: string[];
  /** `quorum`: claimed only with grants from a majority of the mesh's members. Default `any`. */
  claim?: ClaimMode;
  retry?: Partial<RetryPolicy>;
  /** Per-attempt timeout (ms); the attempt is killed and retried. Default: the agent's. */
  timeoutMs?: number | null;
  /** Created already assigned to this agent (a manual assignment in the same write). */
  assignee?: string;
}

/** A local change of a task through the API: a status transition and/or field updates. */
export interface TaskPatch {
  status?: TaskStatus;
  assignee?: string | null;
  /** 0 to 100. */
  progress?: number;
  result?: unknown;
  error?: unknown;
  /** Lease expiry in wall-clock ms (the holder's renewal), or null to clear it. */
  leaseUntil?: number | null;
  /** The task's log tail, replacing the current one (trimmed to the last lines within the caps). */
  log?: string[];
  /** Fencing for external workers: refused with STALE_EPOCH unless it is the task's epoch. */
  epoch?: number;
}

export interface TaskView extends TaskSpec {
  id: string;
  creator: string;
  createdAt: number;
  status: TaskStatus;
  epoch: number;
  attempt: number;
  /** The agent holding the task (the lease holder's agent). */
  assignee: string | null;
  /** The node holding the task's lease. */
  node: string | null;
  /** The holder's place in the task's rendezvous order when it claimed (0 = designated). */
  claimRank: number;
  leaseUntil: number | null;
  notBefore: number | null;
  progress: number;
  result: unknown;
  error: unknown;
  log: string[];
  updatedAt: number;
  startedAt: number | null;
  /** Earlier attempts, oldest first (at most MAX_HISTORY). */
  attempts: AttemptRecord[];
}

export interface TaskFilter {
  status?: TaskStatus;
  /** Tasks that require this capability. */
  capability?: string;
  assignee?: string;
  creator?: string;
  node?: string;
  limit?: number;
}

export interface Holder {
  node: string;
  agent: string;
  /** The claimant's place in the task's rendezvous order (0 = designated). */
  claimRank: number;
}

export type Outcome =
  | { ok: true; result: unknown; log?: string[] }
  | { ok: false; error: Record<string, unknown>; retryable: boolean; log?: string[] };

export const TASK_KEY_PREFIX = 'task/';
export const taskKey = (id: string): string => `${TASK_KEY_PREFIX}${id}`;

/**
 * The status changes a local `transition` (the API's PATCH) may make. Remote deltas are not
 * checked against it: the run's order already keeps every replica moving forward. Besides these:
 * - a patch whose status equals the current non-terminal status (or has none) only updates fields;
 * - CANCELLED -> CANCELLED is an idempotent no-op;
 * - ASSIGNED (with an assignee) is a claim: epoch + 1, the agent's node as the lease holder;
 * - the edges into PENDING return the task to the pool as a new attempt (attempt + 1, epoch + 1)
 *   and are allowed only while attempt <= maxRetries: FAILED -> PENDING is a retry, ASSIGNED ->
 *   PENDING an unassignment. As a new epoch it outranks whatever the old holder still does.
 * - ASSIGNED -> FAILED: the agent refused the task (a pre_task hook) or could not start it.
 */
export const TASK_TRANSITIONS: Readonly<Record<TaskStatus, readonly TaskStatus[]>> = {
  PENDING: ['ASSIGNED', 'IN_PROGRESS', 'CANCELLED'],
  ASSIGNED: ['ASSIGNED', 'IN_PROGRESS', 'PENDING', 'FAILED', 'CANCELLED'],
  IN_PROGRESS: ['COMPLETED', 'FAILED', 'CANCELLED'],
  COMPLETED: [],
  FAILED: ['PENDING'],
  CANCELLED: [],
};

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
  claim: z
    .enum(CLAIM_MODES)
    .optional()
    .describe(
      '`any` (default): claimed through leases; runs once in a healthy mesh, at least once under ' +
        'crashes and partitions, one final state everywhere after the heal. `quorum`: the claimant ' +
        'first needs grants from a strict majority of the known members (one holder per task and ' +
        'epoch), so a minority partition cannot start it and two holders of one epoch never run it.',
    ),
  retry: z
    .object({
      backoffMs: z.number().int().min(0).max(86_400_000).optional(),
      maxBackoffMs: z.number().int().min(0).max(86_400_000).optional(),
    })
    .optional(),
  timeoutMs: z.number().int().positive().max(86_400_000).nullable().optional(),
  assignee: taskId
    .optional()
    .describe('Create the task already assigned to this agent (its node runs it; no scheduling).'),
});

export const taskPatchSchema = z.object({
  status: z.enum(TASK_STATUSES).optional(),
  assignee: taskId.nullable().optional(),
  progress: z.number().min(0).max(100).optional(),
  result: z.unknown().optional(),
  error: z.unknown().optional(),
  leaseUntil: z.number().nonnegative().nullable().optional(),
  log: z.array(z.string()).max(10_000).optional(),
  epoch: z.number().int().min(0).max(MAX_EPOCH).optional(),
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

/** The fields of a run that belong to one attempt, as a new claim or a return to the pool has them. */
const ATTEMPT_RESET = {
  node: null,
  agent: null,
  claimRank: 0,
  leaseUntil: null,
  notBefore: null,
  progress: 0,
  result: null,
  error: null,
  log: [],
  startedAt: null,
} as const satisfies Partial<RunValue>;

/** The run of a task that was created and never touched since. */
export function initialRun(createdAt: number): RunValue {
  return { ...ATTEMPT_RESET, status: 'PENDING', epoch: 0, attempt: 1, updatedAt: createdAt, history: [] };
}

/** The task's view, or undefined while its spec has not arrived (run-only record). */
export function taskView(id: string, s: RecordState): TaskView | undefined {
  const S = taskSchema;
  const spec = S.get(s, 'spec');
  if (spec === undefined) return undefined;
  const sp = spec.v;
  const run = S.get(s, 'run')?.v ?? initialRun(sp.createdAt);
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
    claim: sp.claim,
    retry: { ...sp.retry },
    timeoutMs: sp.timeoutMs,
    depth: sp.depth,
    creator: sp.creator,
    createdAt: sp.createdAt,
    status: run.status,
    epoch: run.epoch,
    attempt: run.attempt,
    assignee: run.agent,
    node: run.node,
    claimRank: run.claimRank,
    leaseUntil: run.leaseUntil,
    notBefore: run.notBefore,
    progress: run.progress,
    result: run.result,
    error: run.error,
    log: [...run.log],
    updatedAt: run.updatedAt,
    startedAt: run.startedAt,
    attempts: [...run.history],
  };
}

function invalidTransition(id: string, from: RunValue, to: TaskStatus): TaskError {
  return new TaskError(TaskErrorCode.INVALID_TRANSITION, `task ${id}: cannot go from ${from.status} to ${to}`, {
    details: { from: from.status, to, attempt: from.attempt },
  });
}

function notFound(id: string): TaskError {
  return new TaskError(TaskErrorCode.NOT_FOUND, `task ${id} not found`);
}

/**
 * Tasks over the replica. The creator writes the spec once (concurrent creations of one id
 * resolve to the earliest, see `specRank`); everything after creation is the run register
 * (`RunValue`), written whole with the task's epoch, so concurrent claims resolve to one holder
 * and a stale holder's writes lose everywhere (see `compareRuns`). Claims and the holder's own
 * writes (`claim`, `start`, `renew`, `report`, `finish`, `release`) check locally that the writer
 * still holds the epoch and throw STALE_EPOCH / NOT_HOLDER otherwise; `transition` is the API's
 * generic PATCH over the same rules. `taskPolicy` guards what arrives from peers.
 */
export class TaskBoard {
  private readonly replica: Replica;
  private readonly mutate: TaskMutateFn;
  private readonly now: () => number;
  private readonly ownerOf: (agentId: string) => string | undefined;
  private readonly assignLeaseMs: number;
  private readonly random: () => number;

  constructor(options: TaskBoardOptions) {
    this.replica = options.replica;
    this.mutate = options.mutate;
    this.now = options.now ?? Date.now;
    this.ownerOf = options.ownerOf ?? (() => undefined);
    this.assignLeaseMs = options.assignLeaseMs ?? DEFAULT_ASSIGN_LEASE_MS;
    this.random = options.random ?? Math.random;
  }

  /**
   * Creates a PENDING task (attempt 1, epoch 0) written by this node. TASK_EXISTS if the id is
   * taken; INVALID_REFERENCE for a dependency or parent this node does not know, or a deadline
   * already past.
   */
  async create(input: TaskInput, internal: { depth?: number } = {}): Promise<TaskView> {
    const t = parse(taskInputSchema, input, 'task');
    const nowMs = this.now();
    const id = t.id ?? newTaskId(nowMs);
    if (t.parent === id) throw invalid(`task ${id} cannot be its own parent`);
    if (t.dependencies?.includes(id)) throw invalid(`task ${id} cannot depend on itself`);
    for (const dep of t.dependencies ?? []) {
      if (this.get(dep) === undefined) throw reference(`dependency ${dep} of task ${id} does not exist`);
    }
    if (t.parent != null && this.get(t.parent) === undefined) {
      throw reference(`parent ${t.parent} of task ${id} does not exist`);
    }
    if (t.deadline != null && t.deadline <= nowMs) {
      throw reference(`deadline ${new Date(t.deadline).toISOString()} of task ${id} is in the past`);
    }
    const depth = internal.depth ?? 0;
    if (depth > MAX_TOOL_DEPTH) throw invalid(`tool calls nest at most ${MAX_TOOL_DEPTH} deep`);
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
      claim: t.claim ?? 'any',
      retry: { ...DEFAULT_RETRY, ...t.retry },
      timeoutMs: t.timeoutMs ?? null,
      depth,
    };
    const node = this.replica.nodeId;
    await this.mutate(taskKey(id), (cur, schema) => {
      if (!schema.isEmpty(cur)) throw new TaskError(TaskErrorCode.TASK_EXISTS, `task ${id} already exists`);
      const S = taskSchema;
      const ts = this.replica.clock.now();
      const record: TaskSpecRecord = { ...spec, creator: node, createdAt: nowMs, createdTs: ts };
      // With an assignee, the creation is also the manual assignment's claim (epoch 1): the task
      // is never PENDING anywhere, so no scheduler can claim it first.
      const run: RunValue =
        t.assignee === undefined
          ? initialRun(nowMs)
          : {
              ...initialRun(nowMs),
              status: 'ASSIGNED',
              epoch: 1,
              node: this.ownerOf(t.assignee) ?? null,
              agent: t.assignee,
              leaseUntil: nowMs + this.assignLeaseMs,
            };
      return S.delta({
        spec: S.fields.spec.set(record, ts, node),
        run: S.fields.run.set(run, ts, node),
      });
    });
    return this.mustGet(id);
  }

  // --- the scheduler's and executor's writes -----------------------------------------------------

  /**
   * Claims the task for `holder` with a lease until `leaseUntil`: from PENDING (once its backoff
   * is over), or from a holder whose lease has expired (a new attempt). The claim is epoch + 1.
   * NOT_HOLDER when it cannot be claimed now (held, backing off, waiting for a retry budget).
   */
  claim(id: string, holder: Holder, leaseUntil: number): Promise<TaskView> {
    if (!TASK_ID_PATTERN.test(holder.agent) || typeof holder.node !== 'string' || holder.node.length === 0) {
      return Promise.reject(invalid(`invalid holder ${holder.node}/${holder.agent}`));
    }
    if (!Number.isSafeInteger(holder.claimRank) || holder.claimRank < 0 || holder.claimRank > 1_000_000) {
      return Promise.reject(invalid(`invalid claim rank ${holder.claimRank}`));
    }
    return this.write(id, (run, view) => {
      const now = this.now();
      if (run.status === 'PENDING') {
        if (run.notBefore !== null && run.notBefore > now) throw notHolder(id, `backing off until ${run.notBefore}`);
        return { ...fresh(run), status: 'ASSIGNED', epoch: run.epoch + 1, ...holder, leaseUntil };
      }
      if ((run.status === 'ASSIGNED' || run.status === 'IN_PROGRESS') && (run.leaseUntil ?? 0) < now) {
        if (run.attempt > view.maxRetries) throw notHolder(id, 'its lease expired on its last attempt');
        const error = { code: 'LEASE_EXPIRED', message: `the lease of ${run.node} expired`, retryable: true };
        const next = fresh(this.endAttempt({ ...run, status: 'FAILED' }, error));
        return { ...next, status: 'ASSIGNED', epoch: run.epoch + 1, attempt: run.attempt + 1, ...holder, leaseUntil };
      }
      throw notHolder(id, `it is ${run.status}${run.node ? ` held by ${run.node}` : ''}`);
    });
  }

  /** The holder starts running it: ASSIGNED -> IN_PROGRESS at its epoch. */
  start(id: string, epoch: number, leaseUntil: number): Promise<TaskView> {
    return this.holderWrite(id, epoch, (run) => {
      if (run.status !== 'ASSIGNED') throw invalidTransition(id, run, 'IN_PROGRESS');
      return { ...run, status: 'IN_PROGRESS', leaseUntil, startedAt: this.now(), progress: 0 };
    });
  }

  /** The holder extends its lease. */
  renew(id: string, epoch: number, leaseUntil: number): Promise<TaskView> {
    return this.holderWrite(id, epoch, (run) => ({ ...run, leaseUntil: Math.max(leaseUntil, run.leaseUntil ?? 0) }));
  }

  /** The holder reports progress and/or its log tail. */
  report(id: string, epoch: number, r: { progress?: number; log?: string[] }): Promise<TaskView> {
    return this.holderWrite(id, epoch, (run) => ({
      ...run,
      ...(r.progress !== undefined ? { progress: clampProgress(r.progress) } : {}),
      ...(r.log !== undefined ? { log: trimLog(r.log) } : {}),
    }));
  }

  /**
   * The holder's outcome. Success: COMPLETED with the result. Failure: a retryable one with
   * attempts left returns the task to the pool (PENDING at epoch + 1, attempt + 1, not before
   * an exponential backoff with jitter); anything else is FAILED.
   */
  finish(id: string, epoch: number, outcome: Outcome): Promise<TaskView> {
    const result = outcome.ok ? toJson(outcome.result, 'result', MAX_RESULT_BYTES) : undefined;
    const error = outcome.ok ? undefined : toJson(outcome.error, 'error', MAX_RESULT_BYTES);
    return this.holderWrite(id, epoch, (run, view) => {
      if (run.status !== 'IN_PROGRESS' && run.status !== 'ASSIGNED')
        throw invalidTransition(id, run, outcome.ok ? 'COMPLETED' : 'FAILED');
      const log = outcome.log !== undefined ? trimLog(outcome.log) : run.log;
      if (outcome.ok) return { ...run, status: 'COMPLETED', result, error: null, progress: 100, log };
      if (outcome.retryable && run.attempt <= view.maxRetries) return this.requeue({ ...run, log }, view, error);
      return { ...run, status: 'FAILED', error, log };
    });
  }

  /** The holder gives the task back without having run it (same attempt, epoch + 1). */
  release(id: string, epoch: number): Promise<TaskView> {
    return this.holderWrite(id, epoch, (run) => {
      if (run.status !== 'ASSIGNED') throw invalidTransition(id, run, 'PENDING');
      return { ...fresh(run), status: 'PENDING', epoch: run.epoch + 1 };
    });
  }

  /**
   * A holder's lease expired (observed at `epoch`): the task returns to the pool as a new
   * attempt after a backoff, or FAILED with LEASE_EXPIRED when none is left. Any node may write
   * it; concurrent ones converge (same epoch, same state).
   */
  expire(id: string, epoch: number): Promise<TaskView> {
    return this.write(id, (run, view) => {
      if (run.epoch !== epoch) throw stale(id, epoch, run.epoch);
      if (!(run.status === 'ASSIGNED' || run.status === 'IN_PROGRESS') || (run.leaseUntil ?? 0) >= this.now()) {
        throw notHolder(id, 'its lease has not expired');
      }
      const error = {
        code: 'LEASE_EXPIRED',
        message: `the lease of ${run.node ?? 'its holder'} expired`,
        retryable: true,
      };
      if (run.attempt <= view.maxRetries) return this.requeue(run, view, error);
      return { ...run, status: 'FAILED', error };
    });
  }

  /** FAILED with DEADLINE_EXCEEDED, whoever holds it. */
  failDeadline(id: string): Promise<TaskView> {
    return this.write(id, (run, view) => {
      if (TERMINAL_STATUSES.has(run.status)) throw invalidTransition(id, run, 'FAILED');
      const error = {
        code: 'DEADLINE_EXCEEDED',
        message: `the deadline ${new Date(view.deadline ?? 0).toISOString()} passed`,
        retryable: false,
      };
      return { ...run, status: 'FAILED', error };
    });
  }

  /** CANCELLED (with a reason in `error`); idempotent; 409 when COMPLETED or FAILED. */
  async cancel(id: string, reason?: string): Promise<TaskView> {
    const before = this.get(id);
    if (before === undefined) throw notFound(id);
    if (before.status === 'CANCELLED') return before;
    return this.write(id, (run) => {
      if (run.status === 'CANCELLED') return run;
      if (TERMINAL_STATUSES.has(run.status)) {
        throw new TaskError(TaskErrorCode.INVALID_TRANSITION, `task ${id} is ${run.status}: it can no longer change`, {
          details: { from: run.status, attempt: run.attempt },
        });
      }
      return {
        ...run,
        status: 'CANCELLED',
        ...(reason !== undefined ? { error: { code: 'CANCELLED', message: reason } } : {}),
      };
    });
  }

  /**
   * An operator's retry: a FAILED task goes back to PENDING as a new attempt (attempt + 1,
   * epoch + 1, no backoff), the failed attempt kept in `attempts`. Unlike the automatic retries it
   * is not bounded by `maxRetries`: a person decided. Refused (INVALID_TRANSITION, 409) for any
   * other status: a running task has a holder, a COMPLETED one has its result, and a CANCELLED
   * one stays cancelled, because a cancel outranks every epoch in the run register's order
   * (`compareRuns`), so a new attempt written over it would lose on every replica.
   */
  async retry(id: string): Promise<TaskView> {
    if (this.get(id) === undefined) throw notFound(id);
    return this.write(id, (run) => {
      if (run.status !== 'FAILED') {
        const why =
          run.status === 'CANCELLED'
            ? 'a cancel is final (it outranks every later attempt); submit the task again'
            : run.status === 'COMPLETED'
              ? 'it completed'
              : 'it has not failed; cancel it first if it is stuck';
        throw new TaskError(TaskErrorCode.INVALID_TRANSITION, `task ${id} is ${run.status}: cannot retry: ${why}`, {
          details: { from: run.status, to: 'PENDING', attempt: run.attempt },
        });
      }
      if (run.attempt >= MAX_ATTEMPTS) {
        throw new TaskError(
          TaskErrorCode.INVALID_TRANSITION,
          `task ${id}: ${MAX_ATTEMPTS} attempts is the most a task has`,
          {
            details: { from: run.status, to: 'PENDING', attempt: run.attempt },
          },
        );
      }
      return {
        ...fresh(this.endAttempt(run, run.error)),
        status: 'PENDING',
        epoch: run.epoch + 1,
        attempt: run.attempt + 1,
        notBefore: null,
      };
    });
  }

  // --- the API's PATCH -------------------------------------------------------------------------

  /**
   * A local change through the API: a status transition validated against `TASK_TRANSITIONS`,
   * and/or field updates (progress, result, error, log, leaseUntil). ASSIGNED with an assignee is
   * a claim for the agent's hosting node (epoch + 1); into PENDING is a new attempt (epoch + 1);
   * other writes stay in the current epoch, and `epoch`, when given, must be it (STALE_EPOCH).
   */
  async transition(id: string, patch: TaskPatch): Promise<TaskView> {
    const p = parse(taskPatchSchema, patch, 'patch');
    const result = p.result === undefined ? undefined : toJson(p.result, 'result', MAX_RESULT_BYTES);
    const error = p.error === undefined ? undefined : toJson(p.error, 'error', MAX_RESULT_BYTES);
    const before = this.get(id);
    if (before === undefined) throw notFound(id);
    const onlyStatus = Object.entries(p).every(([k, v]) => k === 'status' || k === 'epoch' || v === undefined);
    if (
      p.epoch !== undefined &&
      p.epoch !== before.epoch &&
      !(before.status === 'CANCELLED' && p.status === 'CANCELLED')
    ) {
      throw stale(id, p.epoch, before.epoch);
    }
    if (before.status === 'CANCELLED' && p.status === 'CANCELLED' && onlyStatus) return before;
    if (p.status === 'CANCELLED' && onlyStatus) return this.cancel(id);

    return this.write(id, (run, view) => {
      if (p.epoch !== undefined && p.epoch !== run.epoch) throw stale(id, p.epoch, run.epoch);
      const from = run.status;
      if (TERMINAL_STATUSES.has(from) && (p.status === undefined || p.status === from)) {
        throw new TaskError(TaskErrorCode.INVALID_TRANSITION, `task ${id} is ${from}: it can no longer change`, {
          details: { from, attempt: run.attempt },
        });
      }
      const to = p.status;
      if (to !== undefined && to !== from && !TASK_TRANSITIONS[from].includes(to)) throw invalidTransition(id, run, to);
      if (to === 'ASSIGNED' && (p.assignee ?? (from === 'ASSIGNED' ? run.agent : null)) === null) {
        throw invalid(`task ${id}: status ASSIGNED needs an assignee`);
      }
      let next: RunValue = run;
      if (to === 'PENDING' && from !== 'PENDING') {
        if (run.attempt > view.maxRetries) {
          throw new TaskError(
            TaskErrorCode.INVALID_TRANSITION,
            `task ${id}: attempt ${run.attempt} was the last one (maxRetries ${view.maxRetries}); cancel it instead`,
            { details: { from, to, attempt: run.attempt, maxRetries: view.maxRetries } },
          );
        }
        next = {
          ...fresh(this.endAttempt(run, run.error)),
          status: 'PENDING',
          epoch: run.epoch + 1,
          attempt: run.attempt + 1,
        };
      } else if (p.assignee !== undefined && p.assignee !== null) {
        // A manual assignment: a claim for the agent's node, like the scheduler's own; with
        // IN_PROGRESS it is claimed and started in one write (an external worker taking a task).
        if (from !== 'PENDING' && from !== 'ASSIGNED') {
          throw new TaskError(
            TaskErrorCode.INVALID_TRANSITION,
            `task ${id} is ${from}: it cannot be reassigned; return it to the pool (PENDING) or cancel it`,
            { details: { from, attempt: run.attempt } },
          );
        }
        const status = to === 'IN_PROGRESS' ? 'IN_PROGRESS' : 'ASSIGNED';
        next = {
          ...fresh(run),
          status,
          epoch: run.epoch + 1,
          node: this.ownerOf(p.assignee) ?? null,
          agent: p.assignee,
          claimRank: 0,
          leaseUntil: this.now() + this.assignLeaseMs,
          ...(status === 'IN_PROGRESS' ? { startedAt: this.now() } : {}),
        };
      } else if (p.assignee === null && from === 'ASSIGNED' && to === undefined) {
        throw invalid(`task ${id}: status ASSIGNED needs an assignee`);
      } else if (to !== undefined && to !== from) {
        next = { ...run, status: to, ...(to === 'IN_PROGRESS' ? { startedAt: this.now() } : {}) };
        if (to === 'COMPLETED' && p.progress === undefined) next = { ...next, progress: 100 };
      }
      if (p.progress !== undefined) next = { ...next, progress: clampProgress(p.progress) };
      if (result !== undefined) next = { ...next, result };
      if (error !== undefined) next = { ...next, error };
      if (p.log !== undefined) next = { ...next, log: trimLog(p.log) };
      if (p.leaseUntil !== undefined) next = { ...next, leaseUntil: p.leaseUntil };
      if (p.assignee === null && to === 'PENDING') next = { ...next, agent: null, node: null };
      return next;
    });
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
      if (filter.node !== undefined && t.node !== filter.node) continue;
      out.push(t);
    }
    out.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (filter.limit !== undefined) {
      if (!Number.isInteger(filter.limit) || filter.limit < 0) throw invalid('limit must be a non-negative integer');
      return out.slice(0, filter.limit);
    }
    return out;
  }

  // --- internals ---------------------------------------------------------------------------------

  private mustGet(id: string): TaskView {
    const t = this.get(id);
    if (t === undefined) throw notFound(id);
    return t;
  }

  /** Rewrites the run from the current one (read inside the mutation), stamped now. */
  private async write(id: string, next: (run: RunValue, view: TaskView) => RunValue): Promise<TaskView> {
    const node = this.replica.nodeId;
    await this.mutate(taskKey(id), (cur) => {
      const S = taskSchema;
      const view = taskView(id, cur);
      if (view === undefined) throw notFound(id);
      const run = S.get(cur, 'run')?.v ?? initialRun(view.createdAt);
      const out = next(run, view);
      if (out === run) return S.delta({});
      const ts = this.replica.clock.now();
      return S.delta({ run: S.fields.run.set({ ...out, updatedAt: this.now() }, ts, node) });
    });
    return this.mustGet(id);
  }

  /** A write only the holder of `epoch` (this node) may make. */
  private holderWrite(id: string, epoch: number, next: (run: RunValue, view: TaskView) => RunValue): Promise<TaskView> {
    return this.write(id, (run, view) => {
      if (run.epoch !== epoch) throw stale(id, epoch, run.epoch);
      if (run.node !== this.replica.nodeId) throw notHolder(id, `it is held by ${run.node ?? 'nobody'}`);
      if (TERMINAL_STATUSES.has(run.status)) throw invalidTransition(id, run, run.status);
      return next(run, view);
    });
  }

  /** Closes the current attempt into the history. */
  private endAttempt(run: RunValue, error: unknown): RunValue {
    const entry: AttemptRecord = {
      attempt: run.attempt,
      epoch: run.epoch,
      node: run.node,
      agent: run.agent,
      status: run.status,
      error: error ?? null,
      startedAt: run.startedAt,
      endedAt: this.now(),
    };
    return { ...run, history: [...run.history, entry].slice(-MAX_HISTORY) };
  }

  /** Back to the pool as the next attempt, after an exponential backoff with jitter. */
  private requeue(run: RunValue, view: TaskView, error: unknown): RunValue {
    const r = view.retry;
    const base = Math.min(r.maxBackoffMs, r.backoffMs * 2 ** (run.attempt - 1));
    const delay = Math.round(base / 2 + (this.random() * base) / 2);
    return {
      ...fresh(this.endAttempt({ ...run, status: 'FAILED' }, error)),
      status: 'PENDING',
      epoch: run.epoch + 1,
      attempt: run.attempt + 1,
      notBefore: delay > 0 ? this.now() + delay : null,
      error,
      log: run.log,
    };
  }
}

/** The run with the attempt's own fields reset (a new claim or a return to the pool). */
function fresh(run: RunValue): RunValue {
  return { ...run, ...ATTEMPT_RESET };
}

const clampProgress = (p: number): number => Math.max(0, Math.min(100, p));

function stale(id: string, epoch: number, current: number): TaskError {
  return new TaskError(
    TaskErrorCode.STALE_EPOCH,
    `task ${id}: epoch ${epoch} is stale (the task is at epoch ${current})`,
    {
      details: { epoch, current },
    },
  );
}

function notHolder(id: string, why: string): TaskError {
  return new TaskError(TaskErrorCode.NOT_HOLDER, `task ${id} cannot be claimed or written: ${why}`);
}

function reference(message: string): TaskError {
  return new TaskError(TaskErrorCode.INVALID_REFERENCE, message);
}
