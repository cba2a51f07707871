/**
 * The stdio agent protocol, version 1: newline-delimited JSON between a node and a persistent
 * agent process (one JSON object per line, UTF-8, on the agent's stdin and stdout; the agent's
 * stderr is its log). Documented for agent authors in `docs/agent-protocol.md`, with a JSON Schema
 * in `docs/agent-protocol.schema.json`; this module is the one source of truth the node validates
 * against at the boundary.
 *
 * Node -> agent: hello, task, cancel, ping, tool_result.
 * Agent -> node: ready, progress, log, result, error, pong, tool_call.
 *
 * A session: the node writes `hello`; the agent answers `ready` (before the node's ready timeout)
 * and from then on receives `task` messages, up to its `concurrency` at once, each answered by
 * exactly one `result` or `error` carrying the task id. `cancel` asks the agent to stop a task; it
 * should answer with an `error` of code `CANCELLED` (the node stops waiting after a grace period
 * either way). `ping` must be answered by a `pong` with the same `seq`.
 */
import { z } from 'zod';

export const PROTOCOL_VERSION = 1;
/** The longest line (bytes, newline excluded) the node accepts from an agent by default. */
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

const id = z.string().min(1).max(256);

/** What an agent receives for a task (stdio `task.task`, and the exec-mode stdin). */
export const taskInputSchema = z.object({
  id: z.string(),
  type: z.string(),
  title: z.string(),
  payload: z.unknown(),
  capabilities: z.array(z.string()),
  attempt: z.number().int(),
  /** Wall-clock ms by which the task must be done, or null. */
  deadline: z.number().nullable(),
});
export type AgentTaskInput = z.infer<typeof taskInputSchema>;

// --- node -> agent --------------------------------------------------------------------------------

export interface HelloMessage {
  type: 'hello';
  protocol: number;
  agent: { id: string; name: string; capabilities: string[]; concurrency: number };
  node: string;
}
export interface TaskMessage {
  type: 'task';
  task: AgentTaskInput;
}
export interface CancelMessage {
  type: 'cancel';
  id: string;
  reason: string;
}
export interface PingMessage {
  type: 'ping';
  seq: number;
}
export type ToolResultMessage =
  | { type: 'tool_result'; id: string; ok: true; result: unknown }
  | { type: 'tool_result'; id: string; ok: false; error: { code: string; message: string } };
export type NodeMessage = HelloMessage | TaskMessage | CancelMessage | PingMessage | ToolResultMessage;

// --- agent -> node --------------------------------------------------------------------------------

export const readySchema = z.object({
  type: z.literal('ready'),
  protocol: z.number().int().optional(),
  /** Capabilities the agent announces; used when its definition lists none. */
  capabilities: z.array(z.string().min(1).max(64)).max(64).optional(),
});
export const progressSchema = z.object({
  type: z.literal('progress'),
  id,
  progress: z.number().min(0).max(100),
  message: z.string().max(4096).optional(),
});
export const logSchema = z.object({
  type: z.literal('log'),
  /** The task the line belongs to; absent for the agent's own log. */
  id: id.optional(),
  level: z.enum(['debug', 'info', 'warn', 'error']).optional(),
  message: z.string(),
});
/** `result` may be absent (a handler that returned nothing): the task's result is then null. */
export const resultSchema = z.object({ type: z.literal('result'), id, result: z.unknown().optional() });
export const errorSchema = z.object({
  type: z.literal('error'),
  id,
  code: z.string().min(1).max(64),
  message: z.string(),
  retryable: z.boolean().optional(),
});
export const pongSchema = z.object({ type: z.literal('pong'), seq: z.number() });
export const toolCallSchema = z.object({
  type: z.literal('tool_call'),
  /** The call's id, chosen by the agent, echoed by the node's tool_result. */
  id,
  /** The task on whose behalf the agent calls. */
  task: id,
  capability: z.string().min(1).max(64),
  payload: z.unknown().optional(),
});

export const agentMessageSchema = z.discriminatedUnion('type', [
  readySchema,
  progressSchema,
  logSchema,
  resultSchema,
  errorSchema,
  pongSchema,
  toolCallSchema,
]);
export type AgentMessage = z.infer<typeof agentMessageSchema>;
export type ReadyMessage = z.infer<typeof readySchema>;
export type ProgressMessage = z.infer<typeof progressSchema>;
export type LogMessage = z.infer<typeof logSchema>;
export type ResultMessage = z.infer<typeof resultSchema>;
export type ErrorMessage = z.infer<typeof errorSchema>;
export type PongMessage = z.infer<typeof pongSchema>;
export type ToolCallMessage = z.infer<typeof toolCallSchema>;

/** Why a line from an agent is not a protocol message, or the message. Never throws. */
export function parseAgentLine(line: string): { ok: true; message: AgentMessage } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const r = agentMessageSchema.safeParse(json);
  if (r.success) return { ok: true, message: r.data };
  const issue = r.error.issues[0];
  return { ok: false, reason: `${issue?.path.join('.') || 'message'}: ${issue?.message ?? 'invalid'}` };
}
