import type { HookSpec } from './definitions.js';
import { AgentError, AgentErrorCode } from './errors.js';
import { type ProcessRecords, spawnAgentProcess } from './processes.js';

const HOOK_OUTPUT_BYTES = 4096;

export interface HookOutcome {
  code: number | null;
  /** The first line of stdout, else the last of stderr: a veto's reason. */
  reason: string;
}

/**
 * Runs a hook: an executable that gets `input` as JSON on stdin, in its own process group, killed
 * at its timeout. Resolves with its exit code and a one-line reason; HOOK_FAILED when it cannot
 * start or times out.
 */
export async function runHook(
  name: string,
  hook: HookSpec,
  input: unknown,
  env: Record<string, string>,
  cwd: string | undefined,
  records: ProcessRecords,
): Promise<HookOutcome> {
  const proc = await spawnAgentProcess({ command: hook.command, args: hook.args, env, cwd, records }).catch(
    (err: unknown) => {
      throw new AgentError(AgentErrorCode.HOOK_FAILED, `${name} hook cannot start: ${(err as Error).message}`, {
        cause: err,
      });
    },
  );
  let out = '';
  let err = '';
  proc.child.stdout?.on('data', (c: Buffer) => {
    if (out.length < HOOK_OUTPUT_BYTES) out += c.toString('utf8');
  });
  proc.child.stderr?.on('data', (c: Buffer) => {
    err = (err + c.toString('utf8')).slice(-HOOK_OUTPUT_BYTES);
  });
  proc.child.stdin?.end(`${JSON.stringify(input)}\n`);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void proc.stop(500);
  }, hook.timeoutMs);
  const exit = await proc.exited;
  clearTimeout(timer);
  if (timedOut) {
    throw new AgentError(AgentErrorCode.HOOK_FAILED, `${name} hook timed out after ${hook.timeoutMs} ms`);
  }
  const first = out
    .split('\n')
    .find((l) => l.trim().length > 0)
    ?.trim();
  const last = err
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .pop()
    ?.trim();
  return { code: exit.code, reason: (first ?? last ?? '').slice(0, 1024) };
}
