/**
 * The API benchmark's client processes (writers, watchers) and process CPU accounting. A child
 * speaks lines: it prints `ready`, takes commands on stdin, and ends with one JSON line. Every
 * child is killed when the harness exits, and exits by itself when its stdin closes.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';

const live = new Set<ChildProcess>();
process.on('exit', () => killAllChildren());

/** SIGKILLs every child still running (also on the harness's exit). */
export function killAllChildren(): void {
  for (const c of live) c.kill('SIGKILL');
  live.clear();
}

export class LineChild {
  private readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private wake: Array<() => void> = [];
  private readonly exited: Promise<number | null>;
  private readonly stderr: string[] = [];

  /** Runs `bench/<script>` on this Node with tsx, config as its one argument. */
  constructor(
    script: string,
    cfg: unknown,
    readonly name: string,
  ) {
    this.child = spawn(
      process.execPath,
      ['--import', 'tsx', resolve(import.meta.dirname, script), JSON.stringify(cfg)],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    live.add(this.child);
    this.exited = new Promise((res) =>
      this.child.once('exit', (code) => {
        live.delete(this.child);
        res(code);
        this.poke();
      }),
    );
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (l) => {
      this.lines.push(l);
      this.poke();
    });
    createInterface({ input: this.child.stderr as NodeJS.ReadableStream }).on('line', (l) => {
      this.stderr.push(l);
      if (this.stderr.length > 40) this.stderr.shift();
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private poke(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }

  private get done(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** The first line `match` accepts (waiting up to `timeoutMs`). */
  async line(match: (l: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; ;) {
      for (; i < this.lines.length; i++) if (match(this.lines[i] as string)) return this.lines[i] as string;
      if (this.done) await new Promise((r) => setTimeout(r, 20)); // let the last stdout lines in
      for (; i < this.lines.length; i++) if (match(this.lines[i] as string)) return this.lines[i] as string;
      const left = deadline - Date.now();
      if (this.done || left <= 0) {
        throw new Error(
          `${this.name}: ${this.done ? `exited (${this.child.exitCode ?? this.child.signalCode})` : `timed out after ${timeoutMs} ms`} ` +
            `before ${what}; stderr: ${this.stderr.slice(-8).join(' | ')}`,
        );
      }
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.wake.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  ready(timeoutMs = 60_000): Promise<string> {
    return this.line((l) => l === 'ready', timeoutMs, 'ready');
  }

  send(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  /** The child's final JSON line. */
  async result<T>(timeoutMs: number): Promise<T> {
    return JSON.parse(await this.line((l) => l.startsWith('{'), timeoutMs, 'its result')) as T;
  }

  /** Ends the child (stdin closed, SIGKILL after a grace) and waits for it. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.done) return;
    this.child.stdin?.end();
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

let clkTck: number | undefined;

/** CPU time (user + system) a process has used so far, in ms, from /proc/<pid>/stat; NaN if gone. */
export function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  clkTck ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / clkTck;
  } catch {
    return Number.NaN;
  }
}
