import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const MESH_JS = resolve(import.meta.dirname, '../../dist/mesh.js');
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface MeshProcessOptions {
  /** Data directory; a fresh temporary one if absent. */
  dataDir?: string;
  join?: string[];
  name?: string;
  extraArgs?: string[];
  /** Milliseconds to wait for the node to print its API URL. */
  readyTimeoutMs?: number;
  /** Extra environment (e.g. MESH_TEST_CLOCK_OFFSET_MS for a node whose clock is wrong). */
  env?: Record<string, string>;
}

/**
 * A real `mesh` node process started through the CLI, listening on 127.0.0.1 only (libp2p on a
 * free port, the API on a free port). It exits when the test process exits or closes its stdin.
 */
export class MeshProcess {
  readonly dataDir: string;
  id = '';
  api = '';
  listen: string[] = [];
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  private readonly lineListeners = new Set<(line: string) => void>();
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);
  private readonly ownsDir: boolean;

  constructor(readonly options: MeshProcessOptions = {}) {
    this.ownsDir = options.dataDir === undefined;
    this.dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'mesh-it-'));
  }

  get addr(): string {
    return this.listen[0] as string;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<this> {
    const o = this.options;
    const args = [
      MESH_JS,
      ...(o.join && o.join.length > 0 ? ['join', ...o.join] : ['start']),
      '--data',
      this.dataDir,
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--api',
      '127.0.0.1:0',
      '--log-level',
      process.env.MESH_TEST_LOG ?? 'warn',
      '--faults',
      ...(o.name ? ['--name', o.name] : []),
      ...(o.extraArgs ?? []),
    ];
    const child = spawn(process.execPath, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, MESH_EXIT_WITH_STDIN: '1', ...o.env },
    });
    this.child = child;
    live.add(child);
    this.exited = new Promise((res) => child.once('exit', (code) => res(code)));
    void this.exited.then(() => live.delete(child));
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => {
      this.stderr.push(l);
      if (this.stderr.length > 500) this.stderr.shift();
      for (const fn of this.lineListeners) fn(l);
    });
    const ready = new Promise<void>((res, rej) => {
      const timer = setTimeout(
        () => rej(new Error(`node did not start in time; stderr:\n${this.stderr.slice(-20).join('\n')}`)),
        o.readyTimeoutMs ?? 20_000,
      );
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        this.lines.push(line);
        if (line.startsWith('node ')) this.id = line.slice(5);
        else if (line.startsWith('listen ')) this.listen.push(line.slice(7));
        else if (line.startsWith('api ')) {
          this.api = line.slice(4);
          clearTimeout(timer);
          res();
        }
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        rej(new Error(`node exited with ${code} before it was ready; stderr:\n${this.stderr.slice(-20).join('\n')}`));
      });
    });
    await ready;
    return this;
  }

  /**
   * The first log line (pino JSON on stderr, already seen or still to come) that `match` accepts,
   * parsed; rejects after `timeoutMs` with the last lines seen.
   */
  waitForLog(
    match: (entry: Record<string, unknown>) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<Record<string, unknown>> {
    const test = (line: string): Record<string, unknown> | undefined => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return undefined;
      }
      return match(entry) ? entry : undefined;
    };
    for (const l of this.stderr) {
      const hit = test(l);
      if (hit !== undefined) return Promise.resolve(hit);
    }
    return new Promise((resolve, reject) => {
      const onLine = (l: string): void => {
        const hit = test(l);
        if (hit === undefined) return;
        clearTimeout(timer);
        this.lineListeners.delete(onLine);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        this.lineListeners.delete(onLine);
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for log ${what} on ${this.options.name ?? this.api}; last lines:\n${this.stderr.slice(-10).join('\n')}`,
          ),
        );
      }, timeoutMs);
      this.lineListeners.add(onLine);
    });
  }

  /** Calls the node's HTTP API; returns status and parsed JSON body. */
  async call<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = 10_000,
  ): Promise<{ status: number; body: T }> {
    const res = await fetch(this.api + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
  }

  async get<T = unknown>(path: string): Promise<T> {
    const r = await this.call<T>('GET', path);
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** Sends a signal and waits (bounded) for the process to exit. */
  async kill(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | null> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  async stop(): Promise<void> {
    await this.kill('SIGTERM');
  }

  /** Stops the process and deletes its temporary data directory. */
  async dispose(): Promise<void> {
    await this.kill('SIGKILL');
    if (this.ownsDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Polls `check` until it returns true or the deadline passes; returns the last value. */
export async function waitFor(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
  stepMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`,
  );
}

/** Starts n nodes: the first standalone, the rest joining through it. */
export async function startMesh(n: number, extraArgs: string[] = []): Promise<MeshProcess[]> {
  const first = await new MeshProcess({ name: 'n0', extraArgs }).start();
  const rest = await Promise.all(
    Array.from({ length: n - 1 }, (_, i) =>
      new MeshProcess({ name: `n${i + 1}`, join: [first.addr], extraArgs }).start(),
    ),
  );
  return [first, ...rest];
}

/**
 * Reads `agentmesh_<name>` from a node's Prometheus metrics (0 if absent); `name` may carry labels
 * as the exposition prints them: `replica_rejected_total{reason="stale_epoch"}`.
 */
export async function metric(node: MeshProcess, name: string): Promise<number> {
  const res = await fetch(`${node.api}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`agentmesh_${name} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

// --- agents ---------------------------------------------------------------------------------------

/** The repository root, and the agent scripts the integration tests run. */
export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const AGENT_FIXTURES = resolve(import.meta.dirname, '../fixtures/agents');

/** Writes `{ "agents": [...] }` to `dir/name` (for `--agents`); returns its path. */
export function writeAgentsFile(dir: string, agents: unknown[], name = 'agents.json'): string {
  const file = join(dir, name);
  writeFileSync(file, `${JSON.stringify({ agents }, null, 2)}\n`);
  return file;
}

/**
 * Polls `get` until `ok` accepts its value or the deadline passes; returns that value. The timeout
 * error names `what` and shows the last value (or the last error).
 */
export async function until<T>(
  get: () => Promise<T> | T,
  ok: (value: T) => boolean,
  timeoutMs: number,
  what: string,
  stepMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: { value: T } | undefined;
  let lastErr: unknown;
  for (;;) {
    try {
      const value = await get();
      last = { value };
      if (ok(value)) return value;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  const seen =
    last !== undefined
      ? `; last value: ${JSON.stringify(last.value)?.slice(0, 1500)}`
      : lastErr
        ? `: ${(lastErr as Error).message}`
        : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${seen}`);
}

/**
 * Whether a process has ended: its pid is free (ESRCH), or it is a zombie, dead and only waiting
 * for a parent to reap it. An agent orphaned by a SIGKILLed node is re-parented to init, and an
 * init that does not reap (as in some containers) leaves such zombies about for good.
 */
export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  try {
    // The state is the field after the parenthesised command name.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/**
 * A safety net for tests that kill nodes: SIGKILLs the process group led by `pid` if that process
 * still runs and carries `dataDir` in its environment as the node marks its agents (so a recycled
 * pid is never touched). Returns whether it signalled.
 */
export function killAgentGroup(pid: number, dataDir: string): boolean {
  if (processGone(pid)) return false;
  try {
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    if (!env.includes(`AGENTMESH_DATA_DIR=${resolve(dataDir)}`)) return false;
    process.kill(-pid, 'SIGKILL');
    return true;
  } catch {
    return false; // gone meanwhile, or not ours to read
  }
}

/**
 * Kills (see killAgentGroup) every process group a node recorded in `<dataDir>/agent-processes.log`
 * as live. Returns the pids signalled.
 */
export function killRecordedAgents(dataDir: string): number[] {
  let text: string;
  try {
    text = readFileSync(join(dataDir, 'agent-processes.log'), 'utf8');
  } catch {
    return [];
  }
  const live = new Set<number>();
  for (const line of text.split('\n')) {
    const pid = Number(line.slice(1));
    if (!Number.isSafeInteger(pid) || pid <= 1) continue;
    if (line.startsWith('+')) live.add(pid);
    else if (line.startsWith('-')) live.delete(pid);
  }
  return [...live].filter((pid) => killAgentGroup(pid, dataDir));
}

/**
 * Ends the nodes of a test: each stops cleanly (SIGTERM: it stops its agents first), any agent
 * process group still recorded in their data directories is killed, then each is disposed (last
 * started first, so a restarted node's shared directory is deleted once, by its owner).
 */
export async function shutdownNodes(nodes: MeshProcess[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.stop()));
  for (const dir of new Set(nodes.map((n) => n.dataDir))) killRecordedAgents(dir);
  for (const n of [...nodes].reverse()) await n.dispose();
}

/** One event of `GET /v1/events`, as JSON. */
export interface MeshEventJson<V = Record<string, unknown>> {
  kind: 'agent' | 'task' | 'node';
  id: string;
  value: V;
  origin: string | null;
  local: boolean;
  at: number;
}

/** A node's `/v1/events` stream, read in the background; every event is kept in order. */
export class EventStream {
  readonly events: MeshEventJson[] = [];
  private readonly abort = new AbortController();
  private wake = new Set<() => void>();

  private constructor(readonly node: MeshProcess) {}

  /** Opens the stream; resolves once the node has subscribed it (the response headers arrived). */
  static async open(node: MeshProcess, kinds: Array<MeshEventJson['kind']> = []): Promise<EventStream> {
    const s = new EventStream(node);
    const query = kinds.length > 0 ? `?kind=${kinds.join(',')}` : '';
    const res = await fetch(`${node.api}/v1/events${query}`, { signal: s.abort.signal });
    if (res.status !== 200 || res.body === null) throw new Error(`GET /v1/events: ${res.status}`);
    void s.pump(res.body);
    return s;
  }

  private async pump(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of body) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (data.length === 0) continue; // a comment (keep-alive)
          this.events.push(JSON.parse(data) as MeshEventJson);
          const wake = this.wake;
          this.wake = new Set();
          for (const w of wake) w();
        }
      }
    } catch {
      // Closed by us, or the node went away.
    }
  }

  /** The first event (from index `from` on) that `match` accepts, waiting for it if need be. */
  async waitFor(
    match: (e: MeshEventJson) => boolean,
    timeoutMs: number,
    what: string,
    from = 0,
  ): Promise<MeshEventJson> {
    const deadline = Date.now() + timeoutMs;
    for (let i = from; ;) {
      for (; i < this.events.length; i++)
        if (match(this.events[i] as MeshEventJson)) return this.events[i] as MeshEventJson;
      const left = deadline - Date.now();
      if (left <= 0) {
        const recent = this.events.slice(-5).map((e) => `${e.kind} ${e.id} ${JSON.stringify(e.value).slice(0, 200)}`);
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${what} on ${this.node.options.name ?? this.node.api}; ` +
            `${this.events.length} events, the last: ${recent.join(' | ')}`,
        );
      }
      await new Promise<void>((res) => {
        const timer = setTimeout(res, left);
        this.wake.add(() => {
          clearTimeout(timer);
          res();
        });
      });
    }
  }

  close(): void {
    this.abort.abort();
  }
}

/** Waits (bounded) until task `id` is COMPLETED, FAILED or CANCELLED on `node`; returns it. */
export function taskEnded<T extends { status: string }>(node: MeshProcess, id: string, timeoutMs = 15_000): Promise<T> {
  return until(
    () => node.get<T>(`/v1/tasks/${id}`),
    (t) => ['COMPLETED', 'FAILED', 'CANCELLED'].includes(t.status),
    timeoutMs,
    `task ${id} to settle on ${node.options.name}`,
  );
}
