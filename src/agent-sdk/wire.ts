/**
 * The agent's end of the stdio agent protocol v1 (`docs/agent-protocol.md`; the types come from
 * `src/agents/protocol.ts`, imported as types only so that the SDK carries no node-side code).
 *
 * Lines from the node are checked here before the SDK acts on them: `parseNodeLine` returns the
 * message or the reason it is not one, and never throws.
 */
import type {
  AgentMessage,
  AgentTaskInput,
  CancelMessage,
  HelloMessage,
  NodeMessage,
  PingMessage,
  TaskMessage,
  ToolResultMessage,
} from '../agents/protocol.js';

/** Mirrors `PROTOCOL_VERSION` in protocol.ts (a test keeps the two equal). */
export const PROTOCOL_VERSION = 1;
/** Mirrors `DEFAULT_MAX_LINE_BYTES` in protocol.ts: longer lines from an agent are dropped. */
export const MAX_LINE_BYTES = 1024 * 1024;
/** protocol.ts `progressSchema`: the longest progress message. */
export const MAX_PROGRESS_MESSAGE_LENGTH = 4096;
/** protocol.ts `readySchema`: at most 64 capabilities of 1..64 characters. */
export const MAX_CAPABILITIES = 64;
export const MAX_CAPABILITY_LENGTH = 64;
/** protocol.ts: ids in agent messages (task ids, tool call ids) are 1..256 characters. */
export const MAX_ID_LENGTH = 256;

/** A node message, or why a line is not one (with the task id of a malformed `task`, to answer it). */
export type ParsedNodeLine = { ok: true; message: NodeMessage } | { ok: false; reason: string; taskId?: string };

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}
function isNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** The task in a `task` message, or why it is not one. */
export function checkTaskInput(v: unknown): string | undefined {
  if (!isObject(v)) return 'task: not an object';
  if (typeof v.id !== 'string') return 'task.id: not a string';
  if (typeof v.type !== 'string') return 'task.type: not a string';
  if (typeof v.title !== 'string') return 'task.title: not a string';
  if (!isStringArray(v.capabilities)) return 'task.capabilities: not an array of strings';
  if (!Number.isInteger(v.attempt)) return 'task.attempt: not an integer';
  if (v.deadline !== null && !isNumber(v.deadline)) return 'task.deadline: not a number or null';
  return undefined;
}

function checkHello(v: Json): string | undefined {
  if (!isNumber(v.protocol)) return 'protocol: not a number';
  if (typeof v.node !== 'string') return 'node: not a string';
  const a = v.agent;
  if (!isObject(a)) return 'agent: not an object';
  if (typeof a.id !== 'string' || typeof a.name !== 'string') return 'agent.id/name: not strings';
  if (!isStringArray(a.capabilities)) return 'agent.capabilities: not an array of strings';
  if (!isNumber(a.concurrency)) return 'agent.concurrency: not a number';
  return undefined;
}

function checkToolResult(v: Json): string | undefined {
  if (typeof v.id !== 'string') return 'id: not a string';
  if (v.ok === true) return 'result' in v ? undefined : 'result: missing';
  if (v.ok !== false) return 'ok: not a boolean';
  const e = v.error;
  if (!isObject(e) || typeof e.code !== 'string' || typeof e.message !== 'string') {
    return 'error: not {code, message}';
  }
  return undefined;
}

/** Checks one line from the node; unknown message types are reported, not guessed at. */
export function parseNodeLine(line: string): ParsedNodeLine {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (!isObject(v)) return { ok: false, reason: 'not a JSON object' };
  let problem: string | undefined;
  switch (v.type) {
    case 'hello':
      problem = checkHello(v);
      if (problem === undefined) return { ok: true, message: v as unknown as HelloMessage };
      break;
    case 'task':
      problem = checkTaskInput(v.task);
      if (problem === undefined) return { ok: true, message: v as unknown as TaskMessage };
      break;
    case 'cancel':
      if (typeof v.id !== 'string') problem = 'id: not a string';
      else if (typeof v.reason !== 'string') problem = 'reason: not a string';
      else return { ok: true, message: v as unknown as CancelMessage };
      break;
    case 'ping':
      if (!isNumber(v.seq)) problem = 'seq: not a number';
      else return { ok: true, message: v as unknown as PingMessage };
      break;
    case 'tool_result':
      problem = checkToolResult(v);
      if (problem === undefined) return { ok: true, message: v as unknown as ToolResultMessage };
      break;
    default:
      return { ok: false, reason: `unknown message type ${JSON.stringify(v.type)}` };
  }
  const reason = `${String(v.type)}: ${problem}`;
  const task = v.task;
  if (v.type === 'task' && isObject(task) && typeof task.id === 'string' && task.id !== '') {
    return { ok: false, reason, taskId: task.id };
  }
  return { ok: false, reason };
}

/** One protocol line (newline included). Throws if the message is not JSON-serializable. */
export function encodeAgentMessage(message: AgentMessage): string {
  return JSON.stringify(message) + '\n';
}

export type { AgentMessage, AgentTaskInput, HelloMessage, NodeMessage };
