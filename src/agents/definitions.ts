import { readFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import {
  AGENT_ID_PATTERN,
  MAX_AGENT_NAME_LENGTH,
  MAX_AGENT_TYPE_LENGTH,
  MAX_CAPABILITIES,
  MAX_CAPABILITY_LENGTH,
} from '../registry/agent-schema.js';
import { AgentError, AgentErrorCode } from './errors.js';

export const AGENT_MODES = ['exec', 'stdio', 'mcp'] as const;
export type AgentMode = (typeof AGENT_MODES)[number];
export const RESTART_POLICIES = ['permanent', 'transient', 'temporary'] as const;
export type RestartPolicyName = (typeof RESTART_POLICIES)[number];

/** Defaults, after Erlang/OTP's supervisor (intensity 3 in 5 s is OTP's; we allow more, slower). */
export const DEFAULT_RESTART = {
  policy: 'permanent' as RestartPolicyName,
  maxRestarts: 5,
  withinMs: 60_000,
  backoffMs: 200,
  maxBackoffMs: 30_000,
};

const hookSchema = z.union([
  z.string().min(1),
  z.strictObject({
    command: z.string().min(1),
    args: z.array(z.string()).optional(),
    timeoutMs: z.number().int().positive().max(600_000).optional(),
  }),
]);

const restartSchema = z.union([
  z.enum(RESTART_POLICIES),
  z.strictObject({
    policy: z.enum(RESTART_POLICIES).optional(),
    maxRestarts: z.number().int().min(0).max(1000).optional(),
    withinMs: z.number().int().positive().optional(),
    backoffMs: z.number().int().min(0).optional(),
    maxBackoffMs: z.number().int().min(0).optional(),
  }),
]);

/** One agent as an agents file defines it. */
export const agentDefinitionSchema = z.strictObject({
  id: z.string().regex(AGENT_ID_PATTERN, 'expected 1-128 characters from [A-Za-z0-9._:-]'),
  name: z.string().min(1).max(MAX_AGENT_NAME_LENGTH).optional(),
  type: z.string().min(1).max(MAX_AGENT_TYPE_LENGTH).optional(),
  capabilities: z.array(z.string().min(1).max(MAX_CAPABILITY_LENGTH)).max(MAX_CAPABILITIES).optional(),
  mode: z.enum(AGENT_MODES),
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()).optional(),
  cwd: z.string().min(1).optional(),
  /** Tasks run at once (stdio, mcp: in the one process; exec: processes). Default 1. */
  concurrency: z.number().int().min(1).max(1024).optional(),
  /** Per-task timeout: the attempt is killed and fails with TIMEOUT. Default 5 minutes. */
  timeoutMs: z.number().int().positive().optional(),
  restart: restartSchema.optional(),
  hooks: z
    .strictObject({
      startup: hookSchema.optional(),
      pre_task: hookSchema.optional(),
      post_task: hookSchema.optional(),
      on_error: hookSchema.optional(),
    })
    .optional(),
  /** mcp: prefix put before each tool name to make its capability. */
  toolPrefix: z.string().max(32).optional(),
  /** Largest result (exec: stdout) in bytes. Default 64 KiB, the task record's result cap. */
  maxOutputBytes: z.number().int().positive().optional(),
  readyTimeoutMs: z.number().int().positive().optional(),
  pingIntervalMs: z.number().int().positive().optional(),
  pingTimeoutMs: z.number().int().positive().optional(),
  /** After SIGTERM (or a cancel message), how long before SIGKILL. Default 2 s (cancel: 1 s). */
  stopGraceMs: z.number().int().min(0).optional(),
  meta: z.record(z.string(), z.unknown()).optional(),
});
export type AgentDefinitionInput = z.infer<typeof agentDefinitionSchema>;

export interface HookSpec {
  command: string;
  args: string[];
  timeoutMs: number;
}
export type HookName = 'startup' | 'pre_task' | 'post_task' | 'on_error';

/** A definition with every default filled in and paths resolved. */
export interface AgentDefinition {
  id: string;
  name: string;
  type: string;
  capabilities: string[];
  mode: AgentMode;
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  concurrency: number;
  timeoutMs: number;
  restart: typeof DEFAULT_RESTART;
  hooks: Partial<Record<HookName, HookSpec>>;
  toolPrefix: string;
  maxOutputBytes: number;
  readyTimeoutMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  stopGraceMs: number;
  meta: Record<string, unknown>;
}

export const DEFAULT_TIMEOUT_MS = 5 * 60_000;
export const DEFAULT_HOOK_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024;

/** A command with a slash is a path (relative to `base`); a bare name is looked up on PATH. */
function resolveCommand(command: string, base: string): string {
  return command.includes('/') && !isAbsolute(command) ? resolve(base, command) : command;
}

function hookOf(h: z.infer<typeof hookSchema> | undefined, base: string): HookSpec | undefined {
  if (h === undefined) return undefined;
  const o = typeof h === 'string' ? { command: h } : h;
  return {
    command: resolveCommand(o.command, base),
    args: o.args ?? [],
    timeoutMs: o.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS,
  };
}

/** Fills in defaults; relative paths (command, cwd, hooks) are taken from `baseDir`, the default cwd. */
export function normalizeDefinition(d: AgentDefinitionInput, baseDir = process.cwd()): AgentDefinition {
  const r = typeof d.restart === 'string' ? { policy: d.restart } : (d.restart ?? {});
  const hooks: Partial<Record<HookName, HookSpec>> = {};
  for (const name of ['startup', 'pre_task', 'post_task', 'on_error'] as const) {
    const h = hookOf(d.hooks?.[name], baseDir);
    if (h !== undefined) hooks[name] = h;
  }
  return {
    id: d.id,
    name: d.name ?? d.id,
    type: d.type ?? d.mode,
    capabilities: [...new Set(d.capabilities ?? [])],
    mode: d.mode,
    command: resolveCommand(d.command, baseDir),
    args: d.args ?? [],
    env: d.env ?? {},
    // Relative paths in a definition (its args included) are from the agents file's folder.
    cwd: resolve(baseDir, d.cwd ?? '.'),
    concurrency: d.concurrency ?? 1,
    timeoutMs: d.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    restart: { ...DEFAULT_RESTART, ...r },
    hooks,
    toolPrefix: d.toolPrefix ?? '',
    maxOutputBytes: d.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES,
    readyTimeoutMs: d.readyTimeoutMs ?? 10_000,
    pingIntervalMs: d.pingIntervalMs ?? 5_000,
    pingTimeoutMs: d.pingTimeoutMs ?? 5_000,
    stopGraceMs: d.stopGraceMs ?? 2_000,
    meta: d.meta ?? {},
  };
}

const fileSchema = z.strictObject({ agents: z.array(z.unknown()) });

function definitionError(where: string, message: string): AgentError {
  return new AgentError(AgentErrorCode.INVALID_DEFINITION, `${where}: ${message}`, { details: { where } });
}

/**
 * Validates a parsed agents document (`{ "agents": [...] }`). Errors name the source and the
 * offending field, e.g. `agents.json: agents[1].mode: Invalid option: expected one of ...`.
 */
export function parseDefinitions(doc: unknown, source: string, baseDir = process.cwd()): AgentDefinition[] {
  const top = fileSchema.safeParse(doc);
  if (!top.success) {
    throw definitionError(source, 'expected an object { "agents": [ ... ] } and nothing else');
  }
  const seen = new Set<string>();
  return top.data.agents.map((raw, i) => {
    const r = agentDefinitionSchema.safeParse(raw);
    if (!r.success) {
      const issue = r.error.issues[0];
      const field = issue?.path.length ? `.${issue.path.join('.')}` : '';
      throw definitionError(source, `agents[${i}]${field}: ${issue?.message ?? 'invalid'}`);
    }
    if (seen.has(r.data.id)) throw definitionError(source, `agents[${i}].id: duplicate id ${r.data.id}`);
    seen.add(r.data.id);
    return normalizeDefinition(r.data, baseDir);
  });
}

/** Reads an agents file (JSON, or YAML for `.yaml`/`.yml`). Relative paths in it are from its folder. */
export async function loadDefinitions(file: string): Promise<AgentDefinition[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw definitionError(file, `cannot read: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    const ext = extname(file).toLowerCase();
    doc = ext === '.yaml' || ext === '.yml' ? (parseYaml(text) as unknown) : (JSON.parse(text) as unknown);
  } catch (err) {
    throw definitionError(file, `not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(err as Error).message}`);
  }
  return parseDefinitions(doc, file, dirname(resolve(file)));
}
