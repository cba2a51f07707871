import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from '../util/log.js';
import { AgentError, AgentErrorCode } from './errors.js';

/**
 * Agent processes: each one leads its own process group (so a kill reaches whatever it forked),
 * and every group is recorded in the data directory while it lives. A node killed with SIGKILL
 * cannot stop its agents; on its next start it reads the record and stops the groups left behind.
 */

/** Set in every agent's environment: marks a process as started by the node on this data dir. */
export const DATA_DIR_ENV = 'AGENTMESH_DATA_DIR';
const RECORD_FILE = 'agent-processes.log';
const CLOSE_AFTER_EXIT_MS = 1000;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface AgentProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  /** Whether the process has exited. */
  readonly done: boolean;
  /** Signals the whole process group (quietly, if it is gone already). */
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM to the group, then SIGKILL after `graceMs`; resolves when the leader has exited. */
  stop(graceMs: number): Promise<ExitInfo>;
}

/**
 * The record of live agent process groups: an append-only file of `+pid` / `-pid` lines,
 * rewritten at start. Appending a short line costs microseconds, so exec-mode agents that spawn a
 * process per task can afford it.
 */
export class ProcessRecords {
  private readonly file: string;
  readonly dataDir: string;

  constructor(
    dataDir: string,
    private readonly log: Logger,
  ) {
    this.dataDir = resolve(dataDir);
    this.file = join(this.dataDir, RECORD_FILE);
  }

  add(pid: number): void {
    this.append(`+${pid}\n`);
  }

  remove(pid: number): void {
    this.append(`-${pid}\n`);
  }

  private append(line: string): void {
    try {
      appendFileSync(this.file, line);
    } catch (err) {
      this.log.warn({ err, file: this.file }, 'cannot record agent process');
    }
  }

  /** Process groups recorded by a previous life of this node that never recorded their end. */
  leftovers(): number[] {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      return [];
    }
    const live = new Set<number>();
    for (const line of text.split('\n')) {
      const pid = Number(line.slice(1));
      if (!Number.isSafeInteger(pid) || pid <= 1) continue;
      if (line[0] === '+') live.add(pid);
      else if (line[0] === '-') live.delete(pid);
    }
    return [...live];
  }

  /**
   * Stops the groups a previous life left behind, and starts a fresh record. A pid is only
   * signalled while its process still carries this data directory in its environment (Linux's
   * /proc), so a recycled pid of an unrelated process is never touched. Returns the pids stopped.
   */
  reapLeftovers(graceMs = 1000): Promise<number[]> {
    const ours = this.leftovers().filter((pid) => this.isOurs(pid));
    for (const pid of ours) signalGroup(pid, 'SIGTERM');
    const reaped = ours.length === 0 ? Promise.resolve() : waitGone(ours, graceMs);
    return reaped.then(() => {
      for (const pid of ours) if (alive(pid)) signalGroup(pid, 'SIGKILL');
      try {
        writeFileSync(this.file, '');
      } catch (err) {
        this.log.warn({ err, file: this.file }, 'cannot reset the agent process record');
      }
      return ours;
    });
  }

  private isOurs(pid: number): boolean {
    if (!alive(pid)) return false;
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8');
      return env.split('\0').includes(`${DATA_DIR_ENV}=${this.dataDir}`);
    } catch {
      // No /proc (not Linux) or no access: the group was recorded by us and is still alive.
      return process.platform !== 'linux';
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (killed, not yet reaped by an init that never reaps) is gone for our purposes.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // Gone already.
    }
  }
}

async function waitGone(pids: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && pids.some(alive)) await new Promise((r) => setTimeout(r, 20));
}

export interface SpawnOptions {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string | undefined;
  records: ProcessRecords;
}

/** Starts an agent process as the leader of a new process group, with piped stdio. */
export function spawnAgentProcess(o: SpawnOptions): Promise<AgentProcess> {
  let child: ChildProcess;
  try {
    child = spawn(o.command, o.args, {
      cwd: o.cwd,
      env: { ...process.env, ...o.env, [DATA_DIR_ENV]: o.records.dataDir },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
  } catch (err) {
    return Promise.reject(spawnFailed(o.command, err));
  }
  return new Promise((resolveSpawn, rejectSpawn) => {
    child.once('error', (err) => {
      if (child.pid === undefined) rejectSpawn(spawnFailed(o.command, err));
    });
    child.once('spawn', () => {
      const pid = child.pid as number;
      o.records.add(pid);
      let done = false;
      // Resolves once the leader has exited AND its output is drained ('close'), so a reader of
      // stdout never misses the tail; a descendant outside the group that still holds the pipes
      // gets CLOSE_AFTER_EXIT_MS before they are destroyed.
      const exited = new Promise<ExitInfo>((res) => {
        child.once('exit', (code, signal) => {
          done = true;
          o.records.remove(pid);
          // The leader is gone; anything it forked into the group goes with it.
          signalGroup(pid, 'SIGKILL');
          const timer = setTimeout(() => {
            child.stdout?.destroy();
            child.stderr?.destroy();
          }, CLOSE_AFTER_EXIT_MS);
          child.once('close', () => {
            clearTimeout(timer);
            res({ code, signal });
          });
        });
      });
      // EPIPE when the agent exits with our writes in flight: the exit handler reports it.
      child.stdin?.on('error', () => {});
      const handle: AgentProcess = {
        pid,
        child,
        exited,
        get done() {
          return done;
        },
        signal: (sig) => {
          if (!done) signalGroup(pid, sig);
        },
        async stop(graceMs) {
          if (done) return exited;
          signalGroup(pid, 'SIGTERM');
          const timer = setTimeout(() => signalGroup(pid, 'SIGKILL'), graceMs);
          const info = await exited;
          clearTimeout(timer);
          return info;
        },
      };
      resolveSpawn(handle);
    });
  });
}

function spawnFailed(command: string, err: unknown): AgentError {
  return new AgentError(AgentErrorCode.SPAWN_FAILED, `cannot start ${command}: ${(err as Error).message}`, {
    cause: err,
    details: { command },
  });
}

/**
 * Splits a byte stream into lines of at most `maxBytes` (newline excluded). A longer line is
 * dropped whole, reported once through `onOversize`, and reading resumes at the next newline.
 */
export function lineReader(
  maxBytes: number,
  onLine: (line: string) => void,
  onOversize: (bytes: number) => void,
): (chunk: Buffer) => void {
  let parts: Buffer[] = [];
  let size = 0;
  let skipping = false;
  let skipped = 0;
  return (chunk: Buffer) => {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (skipping) {
        skipped += piece.length;
      } else if (size + piece.length > maxBytes) {
        skipping = true;
        skipped = size + piece.length;
        parts = [];
        size = 0;
      } else if (piece.length > 0) {
        parts.push(piece);
        size += piece.length;
      }
      if (nl === -1) return;
      if (skipping) {
        onOversize(skipped);
        skipping = false;
        skipped = 0;
      } else {
        const line = (parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)).toString('utf8');
        parts = [];
        size = 0;
        if (line.trim().length > 0) onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
      }
      start = nl + 1;
    }
  };
}
