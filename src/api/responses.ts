/**
 * Zod schemas of the API's responses, for its OpenAPI document (`GET /v1/openapi.json`). The
 * TypeScript types of the same responses are the domain's (AgentView, TaskView, NodeStatus, ...);
 * the `satisfies` checks below keep the two from drifting apart: a field added to a view and not
 * here fails the build.
 */
import { z } from 'zod';
import { AGENT_MODES } from '../agents/definitions.js';
import type { LocalAgentStatus } from '../agents/host.js';
import { AGENT_HEALTH, AGENT_STATES } from '../registry/agent-schema.js';
import type { AgentView } from '../registry/agents.js';
import { CLAIM_MODES, TASK_STATUSES } from '../tasks/task-schema.js';
import type { TaskView } from '../tasks/tasks.js';
import type { ErrorBody } from './errors.js';
import type { BatchResponse } from './schemas.js';
import type { NodeStatus, PeerView } from './backend.js';

const ms = (what: string) => z.number().describe(`${what} (wall-clock ms since the epoch)`);
const json = z.unknown().describe('any JSON value');

export const errorBodySchema = z.object({
  error: z.object({
    code: z.string().describe('stable error code (INVALID_INPUT, NOT_FOUND, AGENT_NODE_UNREACHABLE, ...)'),
    message: z.string(),
    reason: z.string().optional().describe("POLICY_REJECTED: the policy's reason slug"),
    details: z.record(z.string(), json).optional(),
  }),
}) satisfies z.ZodType<ErrorBody>;

export const agentResponseSchema = z.object({
  id: z.string(),
  owner: z.string().describe('the hosting node'),
  name: z.string(),
  type: z.string(),
  capabilities: z.array(z.string()),
  state: z.enum(AGENT_STATES),
  health: z.enum(AGENT_HEALTH),
  load: z.number().describe('tasks running'),
  capacity: z.number().describe('tasks at once'),
  heartbeat: ms("the owner's last report"),
  stats: z.object({ executions: z.number(), successes: z.number(), failures: z.number(), restarts: z.number() }),
  meta: z.record(z.string(), json),
  removed: z.boolean(),
  reachable: z.boolean().describe('whether the hosting node is alive to the failure detector'),
}) satisfies z.ZodType<AgentView & { reachable: boolean }>;

const attemptSchema = z.object({
  attempt: z.number(),
  epoch: z.number(),
  node: z.string().nullable(),
  agent: z.string().nullable(),
  status: z.enum(TASK_STATUSES),
  error: json,
  startedAt: z.number().nullable(),
  endedAt: z.number(),
});

export const taskResponseSchema = z.object({
  id: z.string(),
  type: z.string(),
  title: z.string(),
  payload: json,
  capabilities: z.array(z.string()),
  priority: z.number().int().min(0).max(9),
  deadline: z.number().nullable(),
  maxRetries: z.number(),
  parent: z.string().nullable(),
  dependencies: z.array(z.string()),
  claim: z.enum(CLAIM_MODES),
  retry: z.object({ backoffMs: z.number(), maxBackoffMs: z.number() }),
  timeoutMs: z.number().nullable(),
  depth: z.number().describe('tool-call depth: 0 for a submitted task'),
  creator: z.string().describe('the node that created it'),
  createdAt: ms('creation'),
  status: z.enum(TASK_STATUSES),
  epoch: z.number().describe('lease generation'),
  attempt: z.number(),
  assignee: z.string().nullable().describe('the agent holding the task'),
  node: z.string().nullable().describe('the node holding its lease'),
  claimRank: z.number(),
  leaseUntil: z.number().nullable(),
  notBefore: z.number().nullable(),
  progress: z.number(),
  result: json,
  error: json,
  log: z.array(z.string()),
  updatedAt: z.number(),
  startedAt: z.number().nullable(),
  attempts: z.array(attemptSchema),
}) satisfies z.ZodType<TaskView>;

export const nodeStatusSchema = z.object({
  id: z.string(),
  name: z.string(),
  version: z.string(),
  listen: z.array(z.string()),
  api: z.string(),
  peers: z.object({
    connected: z.number(),
    known: z.number(),
    alive: z.number(),
    suspect: z.number(),
    dead: z.number(),
  }),
  keys: z.number(),
  merkleRoot: z.string(),
  versionVector: z.record(z.string(), z.number()),
  uptimeMs: z.number(),
  startedAt: z.number(),
  mesh: z.string().describe("the mesh's name"),
  private: z.boolean().describe('whether a pre-shared key guards the mesh'),
  stateDigest: z.string().describe('digest of the replicated state without liveness fields: equal on nodes that agree'),
}) satisfies z.ZodType<NodeStatus>;

export const peerSchema = z.object({
  id: z.string(),
  name: z.string().nullable(),
  state: z.enum(['alive', 'suspect', 'dead', 'unknown']),
  phi: z.number().nullable(),
  connected: z.boolean(),
  addresses: z.array(z.string()),
  lastHeartbeat: z.number().nullable(),
  api: z.string().nullable(),
}) satisfies z.ZodType<PeerView>;

export const localAgentSchema = z.object({
  id: z.string(),
  mode: z.enum(AGENT_MODES),
  state: z.enum(AGENT_STATES),
  pid: z.number().nullable(),
  capabilities: z.array(z.string()),
  concurrency: z.number(),
  running: z.array(z.string()).describe('ids of the tasks it runs'),
  queued: z.number(),
  restartsInWindow: z.number(),
  lastError: z.string().nullable(),
}) satisfies z.ZodType<LocalAgentStatus>;

export const healthResponseSchema = z.object({ ok: z.literal(true) });
export const faultResponseSchema = z.object({ denied: z.array(z.string()) });
export const loadResponseSchema = z.object({ count: z.number(), ms: z.number() });

export const batchResponseSchema = z.object({
  ok: z.number().int().describe('ops applied'),
  failed: z.number().int().describe('ops refused or invalid'),
  results: z.array(
    z.union([
      z.object({ ok: z.literal(true), value: json.describe('what the single route would answer') }),
      z.object({ ok: z.literal(false), error: errorBodySchema.shape.error }),
    ]),
  ),
}) satisfies z.ZodType<BatchResponse>;
