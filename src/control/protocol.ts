/**
 * Wire messages of the agent-control request protocol (`/agentmesh/<mesh>/agent-control/1`): one
 * session per request, one JSON frame each way (the same framing as the quorum grants, see
 * `src/net/stream.ts`). Both sides validate what they receive; nothing is trusted by shape.
 *
 *   request  { "v": 1, "agent": "<id>", "action": "start|stop|restart|pause|resume" }
 *   answer   { "ok": true, "status": LocalAgentStatus }
 *          | { "ok": false, "error": { "code": "<AgentErrorCode or INTERNAL>", "message": "..." } }
 */
import { z } from 'zod';
import { AGENT_ACTIONS, type AgentAction, type LocalAgentStatus } from '../agents/host.js';
import { AGENT_ID_PATTERN } from '../registry/agent-schema.js';

export const agentControlProtocol = (mesh: string): string => `/agentmesh/${mesh}/agent-control/1`;

/** Largest frame either side sends or accepts: a status lists at most MAX_RUNNING task ids. */
export const MAX_CONTROL_FRAME = 256 * 1024;
const MAX_RUNNING = 4096;

export const controlRequestSchema = z.strictObject({
  v: z.literal(1),
  agent: z.string().regex(AGENT_ID_PATTERN),
  action: z.enum(AGENT_ACTIONS as [AgentAction, ...AgentAction[]]),
});
export type ControlRequest = z.infer<typeof controlRequestSchema>;

const text = (max: number) => z.string().max(max);

const statusSchema = z.strictObject({
  id: z.string().regex(AGENT_ID_PATTERN),
  mode: z.enum(['exec', 'stdio', 'mcp']),
  state: text(32),
  pid: z.number().int().nonnegative().nullable(),
  capabilities: z.array(text(256)).max(1024),
  concurrency: z.number().int().nonnegative(),
  running: z.array(text(256)).max(MAX_RUNNING),
  queued: z.number().int().nonnegative(),
  restartsInWindow: z.number().int().nonnegative(),
  lastError: text(4096).nullable(),
});

export const controlAnswerSchema = z.discriminatedUnion('ok', [
  z.strictObject({ ok: z.literal(true), status: statusSchema }),
  z.strictObject({
    ok: z.literal(false),
    error: z.strictObject({ code: text(64), message: text(4096) }),
  }),
]);
export type ControlAnswer =
  { ok: true; status: LocalAgentStatus } | { ok: false; error: { code: string; message: string } };

export function encodeFrame(value: ControlRequest | ControlAnswer): Uint8Array {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** Parses and validates a frame; throws (a ZodError or a SyntaxError) when it is not one. */
export function decodeFrame<S extends z.ZodType>(schema: S, frame: Uint8Array): z.output<S> {
  return schema.parse(JSON.parse(Buffer.from(frame).toString('utf8')));
}
