/**
 * The HTTP API's request schemas (zod) and the types of its requests and responses, shared by
 * the server and by clients such as the CLI. The limits are the domain's own constants, so the
 * API refuses exactly what the registry and the task board would refuse, only earlier; the
 * domain checks again behind it (and owns the byte limits of JSON-valued fields: agent `meta`,
 * task `payload`, `result`, `error`).
 */
import { z } from 'zod';
import { AGENT_ACTIONS, type LocalAgentStatus } from '../agents/host.js';
import { AGENT_ID_PATTERN, MAX_AGENT_TYPE_LENGTH, MAX_CAPABILITY_LENGTH } from '../registry/agent-policy.js';
import { AGENT_STATES } from '../registry/agent-schema.js';
import { type AgentView, agentInputSchema as registryAgentInput, heartbeatSchema } from '../registry/agents.js';
import { MAX_TASK_CAPABILITY_LENGTH, TASK_ID_PATTERN } from '../tasks/task-policy.js';
import { TASK_STATUSES } from '../tasks/task-schema.js';
import { taskInputSchema as boardTaskInput, taskPatchSchema as boardTaskPatch, type TaskView } from '../tasks/tasks.js';
import type { MeshEvent, NodeStatus, PeerView } from './backend.js';

export type { AgentView, MeshEvent, NodeStatus, PeerView, TaskView };
import type { ErrorBody } from './errors.js';
export type { ErrorBody };

export const API_VERSION = 'v1';
/** Default and maximum number of tasks one `GET /v1/tasks` returns. */
export const DEFAULT_TASK_LIMIT = 1000;
export const MAX_TASK_LIMIT = 10_000;
/** Most peers one `POST /v1/admin/partition` may name. */
export const MAX_PARTITION_PEERS = 1024;
/** Node (peer) ids in filters and fault switches: as long as a record id may be. */
const NODE_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
const ID_MESSAGE = 'expected 1-128 characters from [A-Za-z0-9._:-]';

export const agentIdSchema = z.string().regex(AGENT_ID_PATTERN, ID_MESSAGE);
export const taskIdSchema = z.string().regex(TASK_ID_PATTERN, ID_MESSAGE);
export const nodeIdSchema = z.string().regex(NODE_ID_PATTERN, ID_MESSAGE);

/** An empty query parameter (`?state=`) is the same as an absent one. */
function queryParam<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === '' ? undefined : v), schema.optional());
}

// --- peers --------------------------------------------------------------------------------------

export const peerParamsSchema = z.strictObject({ id: nodeIdSchema });
export type PeerParams = z.infer<typeof peerParamsSchema>;

// --- agents -------------------------------------------------------------------------------------

export const agentParamsSchema = z.strictObject({ id: agentIdSchema });
export type AgentParams = z.infer<typeof agentParamsSchema>;

/** `PUT /v1/agents/:id`: the registry's AgentInput. `capabilities` replaces the whole set. */
export const agentInputSchema = z.strictObject(registryAgentInput.shape);
export type AgentInputBody = z.infer<typeof agentInputSchema>;

/** `POST /v1/agents/:id/heartbeat`: the owner's liveness report (only the fields that changed). */
export const agentHeartbeatSchema = z.strictObject(heartbeatSchema.shape).optional();
export type AgentHeartbeatBody = z.infer<typeof agentHeartbeatSchema>;

/** `GET /v1/agents`: every given filter must match. */
export const agentListQuerySchema = z.strictObject({
  capability: queryParam(z.string().max(MAX_CAPABILITY_LENGTH)),
  type: queryParam(z.string().max(MAX_AGENT_TYPE_LENGTH)),
  state: queryParam(z.enum(AGENT_STATES)),
  node: queryParam(nodeIdSchema),
});
export type AgentListQuery = z.infer<typeof agentListQuerySchema>;

/** An agent as the API returns it: the registry's view plus whether its hosting node is reachable. */
export type AgentResponse = AgentView & { reachable: boolean };

// --- tasks --------------------------------------------------------------------------------------

export const taskParamsSchema = z.strictObject({ id: taskIdSchema });
export type TaskParams = z.infer<typeof taskParamsSchema>;

/** `POST /v1/tasks`: the task board's TaskInput. */
export const taskInputSchema = z.strictObject(boardTaskInput.shape);
export type TaskInputBody = z.infer<typeof taskInputSchema>;

/** `PATCH /v1/tasks/:id`: a status transition (validated by the board) and/or field updates. */
export const taskPatchSchema = z.strictObject(boardTaskPatch.shape);
export type TaskPatchBody = z.infer<typeof taskPatchSchema>;

/** `POST /v1/tasks/:id/cancel`: no body, or an empty object. */
export const taskCancelSchema = z.strictObject({}).optional();

/** `POST /v1/tasks/:id/retry`: no body, or an empty object. */
export const taskRetrySchema = z.strictObject({}).optional();

/** `GET /v1/tasks`: every given filter must match; sorted by creation time, at most `limit`. */
export const taskListQuerySchema = z.strictObject({
  status: queryParam(z.enum(TASK_STATUSES)),
  capability: queryParam(z.string().max(MAX_TASK_CAPABILITY_LENGTH)),
  assignee: queryParam(taskIdSchema),
  creator: queryParam(nodeIdSchema),
  limit: queryParam(
    z
      .string()
      .regex(/^[0-9]{1,6}$/, 'expected a non-negative integer')
      .transform(Number)
      .pipe(z.number().int().min(0).max(MAX_TASK_LIMIT)),
  ),
});
export type TaskListQuery = z.infer<typeof taskListQuerySchema>;

// --- batch --------------------------------------------------------------------------------------

/** Most operations in one `POST /v1/batch`. */
export const MAX_BATCH_OPS = 1000;
/** The batch route's body limit: 1000 agent upserts with a few hundred bytes of meta each fit. */
export const BATCH_BODY_LIMIT = 8 * 1024 * 1024;

/** One operation of a batch: the body of the single-write route it stands for. */
export const batchOpSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('agent.put'), id: agentIdSchema, agent: agentInputSchema }),
  z.strictObject({ op: z.literal('agent.heartbeat'), id: agentIdSchema, heartbeat: agentHeartbeatSchema }),
  z.strictObject({ op: z.literal('agent.remove'), id: agentIdSchema }),
  z.strictObject({ op: z.literal('task.create'), task: taskInputSchema }),
  z.strictObject({ op: z.literal('task.patch'), id: taskIdSchema, patch: taskPatchSchema }),
  z.strictObject({ op: z.literal('task.cancel'), id: taskIdSchema }),
]);
export type BatchOp = z.infer<typeof batchOpSchema>;

/** `POST /v1/batch`: the envelope; each op is validated on its own (a bad op fails alone). */
export const batchSchema = z.strictObject({ ops: z.array(z.unknown()).min(1).max(MAX_BATCH_OPS) });

export type BatchResult = { ok: true; value: unknown } | { ok: false; error: ErrorBody['error'] };
export interface BatchResponse {
  ok: number;
  failed: number;
  results: BatchResult[];
}

// --- events -------------------------------------------------------------------------------------

export const EVENT_KINDS = ['agent', 'task', 'node'] as const satisfies readonly MeshEvent['kind'][];
export type EventKind = (typeof EVENT_KINDS)[number];

/**
 * `GET /v1/events?kind=agent` or `?kind=agent,task`: only those kinds (default: all).
 * `lastEventId`: resume after this id, for clients that cannot send the `Last-Event-ID` header.
 */
export const eventsQuerySchema = z.strictObject({
  kind: queryParam(
    z
      .string()
      .max(64)
      .transform((s) => s.split(','))
      .pipe(z.array(z.enum(EVENT_KINDS)).min(1)),
  ),
  lastEventId: queryParam(z.string().max(64)),
});
export type EventsQuery = z.infer<typeof eventsQuerySchema>;

// --- admin (test-only fault switch) -------------------------------------------------------------

export const partitionSchema = z.strictObject({
  peers: z.array(nodeIdSchema).max(MAX_PARTITION_PEERS),
});
export type PartitionBody = z.infer<typeof partitionSchema>;
export const loadSchema = z
  .object({
    count: z.number().int().min(1).max(10_000_000),
    agents: z.number().int().min(1).max(100_000).default(1000),
    concurrency: z.number().int().min(1).max(100_000).default(512),
  })
  .strict();
export type LoadBody = z.infer<typeof loadSchema>;

export const healSchema = z.strictObject({}).optional();

/** Response of both admin routes: the peers currently refused. */
export interface FaultResponse {
  denied: string[];
}

export interface HealthResponse {
  ok: boolean;
  /** Present when not ok: what keeps the node from accepting writes (503). */
  problems?: Array<{ code: string; message: string; since?: number }>;
}

// --- local agents (the agent host) ----------------------------------------------------------------

/** `POST /v1/agents/:id/:action`: control of an agent this node runs. */
export const agentActionParamsSchema = z.strictObject({
  id: agentIdSchema,
  action: z.enum(AGENT_ACTIONS),
});
export type { LocalAgentStatus };
