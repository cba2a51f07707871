/**
 * `npm run demo`: a first run. Starts a local three-node mesh on 127.0.0.1 (real `mesh` processes,
 * fresh temporary data directories) with the example agents (examples/agents.json; nodes 2 and 3
 * run copies under their own ids, since an agent id belongs to one node), submits a stream of
 * tasks to random nodes, prints where to look (each node's dashboard and CLI commands), a line
 * of counts every few seconds, and stops everything on Ctrl-C, or by itself after `--duration`.
 *
 *   npm run demo                       # until Ctrl-C
 *   npm run demo -- --duration 30      # 30 s, then stop and print a summary
 *   npm run demo -- --nodes 2 --rate 5 # 2 nodes, 5 tasks per second
 *
 * The last line is a JSON summary (`{"demo":"done",...}`) for scripts and tests. Exit code 0 when
 * at least one task completed and every node stopped cleanly.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname, '..');
const MESH_JS = join(ROOT, 'dist', 'mesh.js');
const EXAMPLE_AGENTS = join(ROOT, 'examples', 'agents.json');
/** Bounds on a node's start and stop: past them the demo says so rather than hanging. */
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;
const REPORT_EVERY_MS = 5000;

interface DemoNode {
  name: string;
  child: ChildProcess;
  dataDir: string;
  id: string;
  listen: string;
  api: string;
  exited: Promise<number | null>;
}

function usage(message: string): never {
  console.error(
    `demo: ${message}\nusage: npm run demo -- [--duration SECONDS] [--nodes 1-5] [--rate TASKS_PER_SECOND]`,
  );
  process.exit(2);
}

function options(): { durationMs: number | undefined; nodes: number; rate: number } {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        duration: { type: 'string' },
        nodes: { type: 'string', default: '3' },
        rate: { type: 'string', default: '2' },
      },
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  const num = (v: string | undefined, flag: string, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) usage(`--${flag} expects a number from ${min} to ${max}`);
    return n;
  };
  return {
    durationMs: values.duration === undefined ? undefined : num(values.duration, 'duration', 1, 86_400) * 1000,
    nodes: Math.round(num(values.nodes, 'nodes', 1, 5)),
    rate: num(values.rate, 'rate', 0.1, 100),
  };
}

/**
 * The example agents for node `n` (1-based): node 1 runs the file as it is; the others run copies
 * whose ids carry the node's number, with paths made absolute (the copy lives in a temp dir).
 */
function agentsFileFor(n: number, dir: string): string {
  if (n === 1) return EXAMPLE_AGENTS;
  const base = dirname(EXAMPLE_AGENTS);
  const abs = (p: string): string => (p.startsWith('./') || p.startsWith('../') ? resolve(base, p) : p);
  const { agents } = JSON.parse(readFileSync(EXAMPLE_AGENTS, 'utf8')) as {
    agents: Array<{ id: string; name?: string; command: string; args?: string[] }>;
  };
  const copy = agents.map((a) => ({
    ...a,
    id: `${a.id}-${n}`,
    ...(a.name ? { name: `${a.name} #${n}` } : {}),
    command: abs(a.command),
    ...(a.args ? { args: a.args.map(abs) } : {}),
  }));
  const file = join(dir, 'agents.json');
  writeFileSync(file, JSON.stringify({ agents: copy }, null, 2));
  return file;
}

/** Starts one node through the CLI and waits (bounded) for its `api` line. */
async function startNode(n: number, peer: string | undefined): Promise<DemoNode> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mesh-demo-'));
  const name = `demo-${n}`;
  const args = [
    MESH_JS,
    ...(peer === undefined ? ['start'] : ['join', peer]),
    '--data',
    dataDir,
    '--name',
    name,
    '--listen',
    '/ip4/127.0.0.1/tcp/0',
    '--api',
    '127.0.0.1:0',
    '--agents',
    agentsFileFor(n, dataDir),
    '--log-level',
    'warn',
  ];
  // MESH_EXIT_WITH_STDIN: a node stops when its stdin closes, so no node outlives the demo,
  // however the demo itself ends.
  const child = spawn(process.execPath, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, MESH_EXIT_WITH_STDIN: '1' },
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const stderr: string[] = [];
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => {
    stderr.push(l);
    if (stderr.length > 50) stderr.shift();
  });
  const node: Partial<DemoNode> = { name, child, dataDir, exited };
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`${name} did not start within ${START_TIMEOUT_MS / 1000} s`)),
      START_TIMEOUT_MS,
    );
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (line.startsWith('node ')) node.id = line.slice(5);
      else if (line.startsWith('listen ') && node.listen === undefined) node.listen = line.slice(7);
      else if (line.startsWith('api ')) {
        node.api = line.slice(4);
        clearTimeout(timer);
        ok();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      fail(new Error(`${name} exited with ${code} before it was ready:\n${stderr.join('\n')}`));
    });
  });
  return node as DemoNode;
}

/** The task kinds the example agents take, in turn. */
const WORDS = ['mesh', 'agents', 'gossip', 'lease', 'epoch', 'quorum', 'merkle', 'bloom', 'crdt', 'replica'];
function nextTask(i: number): Record<string, unknown> {
  const text = Array.from({ length: 3 + (i % 7) }, (_, k) => WORDS[(i + k * 3) % WORDS.length]).join(' ');
  switch (i % 3) {
    case 0:
      return { type: 'greet', title: `greeting #${i}`, capabilities: ['hello'] };
    case 1:
      return { type: 'wordcount', title: `count #${i}`, capabilities: ['wordcount'], payload: { text } };
    default:
      return { type: 'echo', title: `echo #${i}`, capabilities: ['echo'], payload: { text } };
  }
}

async function post(api: string, body: unknown): Promise<string | undefined> {
  try {
    const res = await fetch(`${api}/v1/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    if (res.status !== 201) return undefined;
    return ((await res.json()) as { id: string }).id;
  } catch {
    return undefined;
  }
}

async function counts(api: string): Promise<Record<string, number>> {
  const res = await fetch(`${api}/v1/tasks?limit=10000`, { signal: AbortSignal.timeout(5000) });
  const tasks = (await res.json()) as Array<{ status: string }>;
  const out: Record<string, number> = {};
  for (const t of tasks) out[t.status] = (out[t.status] ?? 0) + 1;
  return out;
}

async function stopNode(n: DemoNode): Promise<number | null> {
  if (n.child.exitCode !== null || n.child.signalCode !== null) return n.child.exitCode;
  n.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    console.error(`demo: ${n.name} did not stop within ${STOP_TIMEOUT_MS / 1000} s; killing it`);
    n.child.kill('SIGKILL');
  }, STOP_TIMEOUT_MS);
  const code = await n.exited;
  clearTimeout(timer);
  return code;
}

async function main(): Promise<number> {
  const o = options();
  const nodes: DemoNode[] = [];
  const stop = new AbortController();
  const onSignal = (): void => {
    if (stop.signal.aborted) {
      console.error('demo: second signal; killing the nodes');
      for (const n of nodes) n.child.kill('SIGKILL');
      process.exit(130);
    }
    console.error('\ndemo: stopping');
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let submitted = 0;
  let code = 0;
  try {
    console.log(`demo: starting ${o.nodes} nodes on 127.0.0.1 with the example agents...`);
    nodes.push(await startNode(1, undefined));
    const rest = await Promise.all(Array.from({ length: o.nodes - 1 }, (_, i) => startNode(i + 2, nodes[0]?.listen)));
    nodes.push(...rest);
    console.log('');
    for (const n of nodes) console.log(`  ${n.name}  ${n.id}  dashboard ${n.api}/`);
    const first = nodes[0] as DemoNode;
    console.log(`
Open a dashboard above in a browser, or try, in another terminal of this clone:
  npx mesh tasks --api ${first.api}
  npx mesh agents --api ${first.api}
  npx mesh peers --api ${first.api}
  npx mesh watch --kind task --api ${first.api}
Submitting ${o.rate} tasks/s to random nodes; ${o.durationMs === undefined ? 'Ctrl-C stops everything.' : `stopping after ${o.durationMs / 1000} s (or Ctrl-C).`}
`);
    const timer = o.durationMs === undefined ? undefined : setTimeout(() => stop.abort(), o.durationMs);
    let lastReport = Date.now();
    const intervalMs = 1000 / o.rate;
    while (!stop.signal.aborted) {
      const n = nodes[Math.floor(Math.random() * nodes.length)] as DemoNode;
      if ((await post(n.api, nextTask(submitted))) !== undefined) submitted++;
      if (Date.now() - lastReport >= REPORT_EVERY_MS) {
        lastReport = Date.now();
        const c = await counts(first.api).catch(() => ({}) as Record<string, number>);
        console.log(
          `demo: ${submitted} submitted | ${Object.entries(c)
            .map(([s, k]) => `${s} ${k}`)
            .join(' | ')}`,
        );
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, intervalMs);
        stop.signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
      });
    }
    clearTimeout(timer);
  } catch (err) {
    console.error(`demo: ${(err as Error).message}`);
    code = 1;
  }
  // Counted before the nodes stop; a task still running at the end is simply not completed.
  const final = nodes.length > 0 ? await counts((nodes[0] as DemoNode).api).catch(() => ({})) : {};
  const exits = await Promise.all(nodes.map(stopNode));
  for (const n of nodes) rmSync(n.dataDir, { recursive: true, force: true });
  const completed = (final as Record<string, number>).COMPLETED ?? 0;
  const clean = exits.every((e) => e === 0);
  if (code === 0 && (completed === 0 || !clean)) code = 1;
  console.log(
    JSON.stringify({ demo: 'done', nodes: nodes.length, submitted, tasks: final, completed, cleanExit: clean }),
  );
  return code;
}

process.exitCode = await main();
