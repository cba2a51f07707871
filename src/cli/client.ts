import type { Command } from 'commander';

interface ClientFlags {
  api: string;
  token?: string;
}

/** A thin HTTP client for a node's API; errors come back as the API's JSON error. */
async function call(flags: ClientFlags, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(new URL(path, flags.api), {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(flags.token ? { authorization: `Bearer ${flags.token}` } : {}),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const json = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok) throw new Error(`${res.status} ${json.error?.code ?? ''}: ${json.error?.message ?? res.statusText}`);
  return json;
}

const print = (v: unknown): void => console.log(JSON.stringify(v, null, 2));

const FINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

/** Polls a task until it ends, printing status and progress changes to stderr; returns the task. */
async function waitForEnd(flags: ClientFlags, path: string, timeoutMs: number): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  let shown = '';
  for (;;) {
    const t = (await call(flags, 'GET', path)) as { status: string; progress: number; assignee: string | null };
    const line = `${t.status}${t.assignee ? ` on ${t.assignee}` : ''} ${Math.round(t.progress)}%`;
    if (line !== shown) console.error(line);
    shown = line;
    if (FINAL.has(t.status)) {
      if (t.status !== 'COMPLETED') process.exitCode = 1;
      return t;
    }
    if (Date.now() > deadline) throw new Error(`the task did not end within ${timeoutMs / 1000} s (it is ${t.status})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function withClient(cmd: Command): Command {
  return cmd
    .option('--api <url>', 'node API URL', process.env.MESH_API ?? 'http://127.0.0.1:7070')
    .option('--token <token>', 'bearer token', process.env.MESH_API_TOKEN);
}

function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

export function clientCommands(program: Command): void {
  withClient(program.command('status').description("show a node's status")).action(async (f: ClientFlags) =>
    print(await call(f, 'GET', '/v1/status')),
  );
  withClient(program.command('peers').description('list peers and their liveness')).action(async (f: ClientFlags) =>
    print(await call(f, 'GET', '/v1/peers')),
  );
  withClient(program.command('agents').description('list agents'))
    .option('--capability <c>')
    .option('--type <t>')
    .option('--state <s>')
    .option('--node <id>')
    .action(async (f: ClientFlags & Record<string, string>) =>
      print(
        await call(
          f,
          'GET',
          `/v1/agents${query({ capability: f.capability, type: f.type, state: f.state, node: f.node })}`,
        ),
      ),
    );
  withClient(program.command('tasks').description('list tasks'))
    .option('--status <s>')
    .option('--capability <c>')
    .action(async (f: ClientFlags & Record<string, string>) =>
      print(await call(f, 'GET', `/v1/tasks${query({ status: f.status, capability: f.capability })}`)),
    );
  withClient(program.command('submit').description('submit a task'))
    .requiredOption('--type <type>')
    .requiredOption('--title <title>')
    .option('--payload <json>', 'task payload (JSON)', '{}')
    .option('--capability <c>', 'required capability (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .option('--priority <0-9>', 'priority', '5')
    .option('--agent <id>', 'assign the task to this agent at once (its node runs it)')
    .option('--wait', 'wait until the task ends; print its progress, then the task')
    .option('--timeout <s>', 'with --wait: give up after this many seconds', '120')
    .action(
      async (
        f: ClientFlags & {
          type: string;
          title: string;
          payload: string;
          capability?: string[];
          priority: string;
          agent?: string;
          wait?: boolean;
          timeout: string;
        },
      ) => {
        let payload: unknown;
        try {
          payload = JSON.parse(f.payload) as unknown;
        } catch (err) {
          throw new Error(`--payload is not valid JSON: ${(err as Error).message}`, { cause: err });
        }
        const task = (await call(f, 'POST', '/v1/tasks', {
          type: f.type,
          title: f.title,
          payload,
          capabilities: f.capability ?? [],
          priority: Number(f.priority),
          ...(f.agent === undefined ? {} : { assignee: f.agent }),
        })) as { id: string };
        const path = `/v1/tasks/${encodeURIComponent(task.id)}`;
        if (f.wait !== true) return print(task);
        print(await waitForEnd(f, path, Number(f.timeout) * 1000));
      },
    );
  withClient(program.command('task').description('show one task').argument('<id>')).action(
    async (id: string, f: ClientFlags) => print(await call(f, 'GET', `/v1/tasks/${encodeURIComponent(id)}`)),
  );
  const agent = program.command('agent').description("control the agents a node runs (its own, not its peers')");
  withClient(agent.command('list').description('the agents this node runs, with their processes')).action(
    async (f: ClientFlags) => print(await call(f, 'GET', '/v1/host/agents')),
  );
  for (const action of ['start', 'stop', 'restart', 'pause', 'resume'] as const) {
    withClient(agent.command(action).description(`${action} an agent this node runs`).argument('<id>')).action(
      async (id: string, f: ClientFlags) =>
        print(await call(f, 'POST', `/v1/agents/${encodeURIComponent(id)}/${action}`)),
    );
  }
  withClient(program.command('watch').description('stream live changes (server-sent events)'))
    .option('--kind <kind>', 'agent | task | node')
    .action(async (f: ClientFlags & { kind?: string }) => {
      const res = await fetch(new URL(`/v1/events${query({ kind: f.kind })}`, f.api), {
        headers: f.token ? { authorization: `Bearer ${f.token}` } : {},
      });
      if (!res.ok || !res.body) throw new Error(`${res.status} ${res.statusText}`);
      const decoder = new TextDecoder();
      for await (const chunk of res.body) {
        for (const line of decoder.decode(chunk as Uint8Array, { stream: true }).split('\n')) {
          if (line.startsWith('data: ')) console.log(line.slice(6));
        }
      }
    });
}
