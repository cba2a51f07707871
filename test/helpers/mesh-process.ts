import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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
      env: { ...process.env, MESH_EXIT_WITH_STDIN: '1' },
    });
    this.child = child;
    live.add(child);
    this.exited = new Promise((res) => child.once('exit', (code) => res(code)));
    void this.exited.then(() => live.delete(child));
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => {
      this.stderr.push(l);
      if (this.stderr.length > 500) this.stderr.shift();
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

/** Reads `agentmesh_<name>` from a node's Prometheus metrics (0 if absent). */
export async function metric(node: MeshProcess, name: string): Promise<number> {
  const res = await fetch(`${node.api}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`agentmesh_${name} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}
