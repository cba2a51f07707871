/**
 * The client commands: each talks to one node's API (`--api`, HOST:PORT or URL), prints tables
 * for people and the API's JSON with `--json`, and reports failures as typed CliErrors that say
 * what to do next.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { AgentAction } from '../agents/host.js';
import type { AgentInputBody, AgentResponse, MeshEvent, TaskView } from '../api/schemas.js';
import { parseApiUrl } from './address.js';
import { ApiClient, DEFAULT_API_URL } from './api-client.js';
import { CliError, CliErrorCode } from './errors.js';
import {
  c,
  duration,
  fields,
  inline,
  type OutputOptions,
  printJson,
  short,
  status,
  table,
  time,
  type TimeStyle,
} from './format.js';
import { progress } from './progress.js';
import { watchEvents } from './watch.js';

export interface ClientFlags {
  api: URL | string;
  token?: string;
  json?: boolean;
  time: TimeStyle;
}

/** The agent host's actions; a local list because agents/host.js loads every driver (MCP SDK included). */
const AGENT_ACTIONS = ['start', 'stop', 'restart', 'pause', 'resume'] as const satisfies readonly AgentAction[];

const out = (f: ClientFlags): OutputOptions => ({ json: f.json === true, time: f.time });

/** The client for a command's flags. The default (MESH_API) is parsed here: commander does not parse defaults. */
export function clientOf(f: ClientFlags): ApiClient {
  let url: URL;
  if (typeof f.api === 'string') {
    try {
      url = parseApiUrl(f.api);
    } catch (err) {
      throw new CliError(CliErrorCode.BAD_ARGUMENT, `MESH_API: ${(err as Error).message}`, { cause: err });
    }
  } else url = f.api;
  return new ApiClient(url, f.token);
}

export function withClient(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--api <host:port|url>', 'node API address (HOST:PORT or http:// URL)')
        .argParser((v) => parseApiUrl(v))
        .default(process.env.MESH_API ?? DEFAULT_API_URL, process.env.MESH_API ? '$MESH_API' : '127.0.0.1:7070'),
    )
    .option('--token <token>', 'bearer token (default $MESH_API_TOKEN)', process.env.MESH_API_TOKEN)
    .option('--json', "print the API's JSON instead of a table")
    .addOption(new Option('--time <style>', 'timestamps as ages or ISO times').choices(['age', 'iso']).default('age'));
}

const parseJsonFlag =
  (flag: string) =>
  (v: string): unknown => {
    try {
      return JSON.parse(v) as unknown;
    } catch (err) {
      throw new InvalidArgumentError(`${flag} is not valid JSON: ${(err as Error).message}`);
    }
  };

const intFlag =
  (flag: string, min: number, max: number) =>
  (v: string): number => {
    const n = Number(v);
    if (!/^-?[0-9]+$/.test(v.trim()) || n < min || n > max)
      throw new InvalidArgumentError(`${flag} expects an integer from ${min} to ${max}`);
    return n;
  };

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

// --- rendering ----------------------------------------------------------------------------------

function taskRow(t: TaskView, o: OutputOptions): string[] {
  return [
    t.id,
    t.type,
    inline(t.title, 30),
    status(t.status),
    String(t.attempt),
    t.assignee ?? '-',
    `${Math.round(t.progress)}%`,
    time(t.createdAt, o.time),
  ];
}

function showTask(t: TaskView, o: OutputOptions): void {
  const rows: Array<[string, string]> = [
    ['id', t.id],
    ['type', t.type],
    ['title', t.title || '-'],
    ['status', status(t.status)],
    ['attempt', `${t.attempt} of ${t.maxRetries + 1} (epoch ${t.epoch})`],
    ['assignee', t.assignee ?? '-'],
    ['node', t.node ?? '-'],
    ['progress', `${Math.round(t.progress)}%`],
    ['capabilities', t.capabilities.join(', ') || '-'],
    ['priority', String(t.priority)],
    ['created', `${time(t.createdAt, o.time)} by ${short(t.creator)}`],
    ['updated', time(t.updatedAt, o.time)],
  ];
  if (t.startedAt) rows.push(['started', time(t.startedAt, o.time)]);
  if (t.leaseUntil && (t.status === 'ASSIGNED' || t.status === 'IN_PROGRESS'))
    rows.push(['lease until', time(t.leaseUntil, o.time)]);
  if (t.notBefore) rows.push(['not before', time(t.notBefore, o.time)]);
  if (t.deadline) rows.push(['deadline', time(t.deadline, o.time)]);
  if (t.parent) rows.push(['parent', t.parent]);
  if (t.dependencies.length > 0) rows.push(['depends on', t.dependencies.join(', ')]);
  if (t.payload !== undefined && t.payload !== null) rows.push(['payload', inline(t.payload, 200)]);
  if (t.result !== null && t.result !== undefined) rows.push(['result', inline(t.result, 500)]);
  if (t.error !== null && t.error !== undefined) rows.push(['error', c.red(inline(t.error, 500))]);
  console.log(fields(rows));
  if (t.attempts.length > 0) {
    console.log(`\n${c.bold('attempts')}`);
    console.log(
      table(
        ['ATTEMPT', 'STATUS', 'AGENT', 'NODE', 'STARTED', 'ENDED', 'ERROR'],
        t.attempts.map((a) => [
          a.attempt,
          status(a.status),
          a.agent ?? '-',
          short(a.node),
          time(a.startedAt, o.time),
          time(a.endedAt, o.time),
          inline(a.error, 50),
        ]),
      ),
    );
  }
  if (t.log.length > 0) {
    console.log(`\n${c.bold('log')} (last ${Math.min(10, t.log.length)} of ${t.log.length} lines)`);
    for (const l of t.log.slice(-10)) console.log(`  ${l}`);
  }
}

function agentRows(list: AgentResponse[], o: OutputOptions): string {
  return table(
    ['ID', 'NAME', 'TYPE', 'STATE', 'HEALTH', 'LOAD', 'NODE', 'CAPABILITIES', 'HEARTBEAT'],
    list.map((a) => [
      a.id,
      a.name,
      a.type,
      a.reachable ? status(a.state) : `${status(a.state)} ${c.red('(unreachable)')}`,
      status(a.health),
      `${a.load}/${a.capacity}`,
      short(a.owner),
      inline(a.capabilities.join(','), 40),
      time(a.heartbeat, o.time),
    ]),
  );
}

function showAgent(a: AgentResponse, o: OutputOptions): void {
  console.log(
    fields([
      ['id', a.id],
      ['name', a.name],
      ['type', a.type],
      ['state', `${status(a.state)}${a.reachable ? '' : ` ${c.red('(node unreachable)')}`}`],
      ['health', status(a.health)],
      ['load', `${a.load}/${a.capacity}`],
      ['node', a.owner],
      ['capabilities', a.capabilities.join(', ') || '-'],
      ['heartbeat', time(a.heartbeat, o.time)],
      [
        'executions',
        `${a.stats.executions} (${a.stats.successes} ok, ${a.stats.failures} failed, ${a.stats.restarts} restarts)`,
      ],
      ['meta', inline(a.meta, 200)],
      ...(a.removed ? [['removed', c.red('yes')] as [string, string]] : []),
    ]),
  );
}

const FINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

/**
 * Polls a task until it ends, showing its progress (a bar on a terminal, lines otherwise), and
 * returns it. TIMEOUT once `timeoutMs` passes; the task itself keeps going.
 */
async function waitForEnd(client: ApiClient, id: string, timeoutMs: number): Promise<TaskView> {
  const deadline = Date.now() + timeoutMs;
  const bar = progress({ title: `task ${id}`, total: 100, unit: '%' });
  try {
    for (;;) {
      const t = await client.task(id);
      bar.update(t.progress, `${t.status}${t.assignee ? ` on ${t.assignee}` : ''}`);
      if (FINAL.has(t.status)) return t;
      if (Date.now() > deadline) {
        throw new CliError(
          CliErrorCode.TIMEOUT,
          `task ${id} did not end within ${timeoutMs / 1000} s (it is ${t.status}); see it with \`mesh task ${id}\``,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    bar.stop();
  }
}

/** A peer id from a full id or an unambiguous prefix of a known peer's id. */
async function resolvePeer(client: ApiClient, given: string): Promise<string> {
  const peers = await client.peers();
  if (peers.some((p) => p.id === given)) return given;
  const matches = peers.filter((p) => p.id.startsWith(given) || p.name === given);
  if (matches.length === 1) return (matches[0] as { id: string }).id;
  if (matches.length > 1) {
    throw new CliError(
      CliErrorCode.BAD_ARGUMENT,
      `${given} matches ${matches.length} peers (${matches.map((p) => p.id).join(', ')}); give more of the id`,
    );
  }
  return given; // unknown: let the node say so
}

// --- commands -----------------------------------------------------------------------------------

export function clientCommands(program: Command): void {
  withClient(program.command('status').description("show a node's status")).action(async (f: ClientFlags) => {
    const s = await clientOf(f).status();
    if (f.json) return printJson(s);
    const p = s.peers;
    console.log(
      fields([
        ['node', s.id],
        ['name', s.name],
        ['version', s.version],
        ['api', s.api],
        ['listen', s.listen.join('\n') || '-'],
        [
          'peers',
          `${p.connected} connected, ${p.known} known (${c.green(`${p.alive} alive`)}, ${p.suspect} suspect, ${p.dead} dead)`,
        ],
        ['keys', String(s.keys)],
        ['merkle root', s.merkleRoot],
        ['uptime', `${duration(s.uptimeMs)} (started ${time(s.startedAt, f.time)})`],
      ]),
    );
  });

  withClient(program.command('peers').description('list peers and their liveness')).action(async (f: ClientFlags) => {
    const peers = await clientOf(f).peers();
    if (f.json) return printJson(peers);
    if (peers.length === 0) return console.log('no peers');
    console.log(
      table(
        ['ID', 'NAME', 'STATE', 'CONNECTED', 'HEARTBEAT', 'ADDRESS'],
        peers.map((p) => [
          p.id,
          p.name ?? '-',
          status(p.state),
          p.connected ? 'yes' : 'no',
          time(p.lastHeartbeat, out(f).time),
          p.addresses[0] ?? '-',
        ]),
      ),
    );
  });

  const peer = program.command('peer').description('act on one peer');
  withClient(
    peer
      .command('forget')
      .description('forget a dead peer: every member stops listing, dialling and counting it')
      .argument('<id>', 'peer id, an unambiguous prefix of it, or its name'),
  ).action(async (given: string, f: ClientFlags) => {
    const client = clientOf(f);
    const p = await client.forgetPeer(await resolvePeer(client, given));
    if (f.json) return printJson(p);
    console.log(`forgot peer ${p.id}${p.name ? ` (${p.name})` : ''}`);
  });

  withClient(program.command('agents').description('list agents in the registry (all nodes)'))
    .option('--capability <c>', 'only agents with this capability')
    .option('--type <t>', 'only agents of this type')
    .option('--state <s>', 'only agents in this state (RUNNING, PAUSED, ...)')
    .option('--node <id>', 'only agents hosted by this node')
    .action(async (f: ClientFlags & { capability?: string; type?: string; state?: string; node?: string }) => {
      const list = await clientOf(f).agents({
        ...(f.capability ? { capability: f.capability } : {}),
        ...(f.type ? { type: f.type } : {}),
        ...(f.state ? { state: f.state as AgentResponse['state'] } : {}),
        ...(f.node ? { node: f.node } : {}),
      });
      if (f.json) return printJson(list);
      if (list.length === 0) return console.log('no agents');
      console.log(agentRows(list, out(f)));
    });

  agentCommands(program);
  taskCommands(program);

  withClient(program.command('watch').description('stream live changes; reconnects and resumes by itself'))
    .option('--kind <kinds>', 'only these kinds: agent, task, node (comma-separated)')
    .action(async (f: ClientFlags & { kind?: string }) => {
      const abort = new AbortController();
      const stop = (): void => abort.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        await watchEvents(clientOf(f), {
          kind: f.kind,
          signal: abort.signal,
          onNotice: (m) => console.error(`mesh: ${m}`),
          onEvent: (frame) => {
            if (f.json) return console.log(frame.data);
            console.log(eventLine(frame.data, f.time));
          },
        });
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}

/** One event as a line: time, kind, id and what changed. */
function eventLine(data: string, style: TimeStyle): string {
  let e: MeshEvent;
  try {
    e = JSON.parse(data) as MeshEvent;
  } catch {
    return data;
  }
  const at = style === 'iso' ? new Date(e.at).toISOString() : new Date(e.at).toTimeString().slice(0, 8);
  const v = e.value as Record<string, unknown>;
  let what: string;
  if (e.kind === 'task') {
    const t = v as unknown as TaskView;
    what = `${status(t.status)}${t.assignee ? ` on ${t.assignee}` : ''} ${Math.round(t.progress)}% ${inline(t.title, 40)}`;
  } else if (e.kind === 'agent') {
    const a = v as unknown as AgentResponse;
    what = `${status(a.state)} load ${a.load}/${a.capacity} on ${short(a.owner)}`;
  } else {
    what = `${typeof v.name === 'string' ? v.name : ''} heartbeat ${String(v.heartbeat ?? '-')}`;
  }
  return `${c.dim(at)} ${e.kind.padEnd(5)} ${e.id} ${what}${e.local ? '' : c.dim(` (from ${short(e.origin)})`)}`;
}

function agentCommands(program: Command): void {
  const agent = program.command('agent').description('register agents, and control the agents a node runs');
  withClient(agent.command('list').description('the agents this node runs, with their processes')).action(
    async (f: ClientFlags) => {
      const list = await clientOf(f).hostAgents();
      if (f.json) return printJson(list);
      if (list.length === 0) return console.log('this node runs no agents (start it with --agents FILE)');
      console.log(
        table(
          ['ID', 'MODE', 'STATE', 'PID', 'RUNNING', 'QUEUED', 'CONCURRENCY', 'RESTARTS', 'LAST ERROR'],
          list.map((a) => [
            a.id,
            a.mode,
            status(a.state),
            a.pid ?? '-',
            a.running.length,
            a.queued,
            a.concurrency,
            a.restartsInWindow,
            inline(a.lastError, 40),
          ]),
        ),
      );
    },
  );
  withClient(agent.command('show').description('one agent of the registry').argument('<id>')).action(
    async (id: string, f: ClientFlags) => {
      const a = await clientOf(f).agent(id);
      if (f.json) return printJson(a);
      showAgent(a, out(f));
    },
  );
  for (const action of AGENT_ACTIONS) {
    withClient(agent.command(action).description(`${action} an agent this node runs`).argument('<id>')).action(
      async (id: string, f: ClientFlags) => {
        const a = await clientOf(f).agentAction(id, action);
        if (f.json) return printJson(a);
        console.log(`${a.id}: ${status(a.state)}${a.pid ? ` (pid ${a.pid})` : ''}`);
      },
    );
  }

  type RegisterFlags = ClientFlags & {
    name?: string;
    type?: string;
    capability?: string[];
    capacity?: number;
    meta?: Record<string, unknown>;
    state?: string;
  };
  const registerOptions = (cmd: Command): Command =>
    withClient(cmd)
      .option('--name <name>', 'display name')
      .option('--type <type>', 'type or role')
      .option('--capability <c>', 'a capability (repeatable; replaces the whole set)', collect)
      .option('--capacity <n>', 'tasks at once', intFlag('--capacity', 0, 1_000_000))
      .option('--state <state>', 'lifecycle state (RUNNING, PAUSED, ...)')
      .option('--meta <json>', 'metadata (a JSON object)', parseJsonFlag('--meta'));
  const flagNames = {
    name: '--name',
    type: '--type',
    capabilities: '--capability',
    capacity: '--capacity',
    meta: '--meta',
    state: '--state',
  };
  const body = (f: RegisterFlags, base: Partial<AgentInputBody>): AgentInputBody =>
    ({
      ...base,
      ...(f.name !== undefined ? { name: f.name } : {}),
      ...(f.type !== undefined ? { type: f.type } : {}),
      ...(f.capability !== undefined ? { capabilities: f.capability } : {}),
      ...(f.capacity !== undefined ? { capacity: f.capacity } : {}),
      ...(f.meta !== undefined ? { meta: f.meta } : {}),
      ...(f.state !== undefined ? { state: f.state } : {}),
    }) as AgentInputBody;

  registerOptions(
    agent
      .command('register')
      .description('register an agent in the registry, hosted by this node (an external worker)')
      .argument('<id>'),
  ).action(async (id: string, f: RegisterFlags) => {
    if (f.type === undefined) throw new CliError(CliErrorCode.BAD_ARGUMENT, '--type is required to register an agent');
    const a = await clientOf(f).putAgent(id, body(f, { name: f.name ?? id }), flagNames);
    if (f.json) return printJson(a);
    console.log(`registered agent ${a.id} on node ${a.owner}`);
  });
  registerOptions(
    agent.command('update').description('change a registered agent (only the given fields)').argument('<id>'),
  ).action(async (id: string, f: RegisterFlags) => {
    const client = clientOf(f);
    const cur = await client.agent(id);
    const base: AgentInputBody = {
      name: cur.name,
      type: cur.type,
      capabilities: cur.capabilities,
      capacity: cur.capacity,
      meta: cur.meta,
    };
    const a = await client.putAgent(id, body(f, base), flagNames);
    if (f.json) return printJson(a);
    console.log(`updated agent ${a.id}`);
  });
  withClient(agent.command('remove').description('remove an agent from the registry').argument('<id>')).action(
    async (id: string, f: ClientFlags) => {
      const a = await clientOf(f).removeAgent(id);
      if (f.json) return printJson(a);
      console.log(`removed agent ${a.id}`);
    },
  );
}

function taskCommands(program: Command): void {
  withClient(program.command('tasks').description('list tasks (oldest first)'))
    .option('--status <s>', 'only tasks in this status (PENDING, IN_PROGRESS, FAILED, ...)')
    .option('--capability <c>', 'only tasks that need this capability')
    .option('--assignee <agent>', 'only tasks held by this agent')
    .option('--limit <n>', 'at most this many', intFlag('--limit', 0, 10_000))
    .action(async (f: ClientFlags & { status?: string; capability?: string; assignee?: string; limit?: number }) => {
      const { tasks, total } = await clientOf(f).tasks({
        status: f.status,
        capability: f.capability,
        assignee: f.assignee,
        ...(f.limit !== undefined ? { limit: String(f.limit) } : {}),
      });
      if (f.json) return printJson(tasks);
      if (tasks.length === 0) return console.log('no tasks');
      console.log(
        table(
          ['ID', 'TYPE', 'TITLE', 'STATUS', 'ATTEMPT', 'ASSIGNEE', 'PROGRESS', 'CREATED'],
          tasks.map((t) => taskRow(t, out(f))),
        ),
      );
      if (total > tasks.length) console.log(c.dim(`${tasks.length} of ${total} tasks shown (--limit)`));
    });

  withClient(program.command('submit').description('submit a task'))
    .requiredOption('--type <type>', 'task type')
    .option('--title <title>', 'a title people read', '')
    .option('--payload <json>', 'task payload (JSON)', parseJsonFlag('--payload'), {})
    .option('--capability <c>', 'required capability (repeatable)', collect)
    .option('--priority <0-9>', 'priority (9 first)', intFlag('--priority', 0, 9), 5)
    .option('--max-retries <n>', 'automatic retries of a retryable failure', intFlag('--max-retries', 0, 999))
    .option('--agent <id>', 'assign the task to this agent at once (its node runs it)')
    .option('--wait', 'wait until the task ends, showing its progress')
    .option('--timeout <s>', 'with --wait: give up after this many seconds', intFlag('--timeout', 1, 86_400), 120)
    .action(
      async (
        f: ClientFlags & {
          type: string;
          title: string;
          payload: unknown;
          capability?: string[];
          priority: number;
          maxRetries?: number;
          agent?: string;
          wait?: boolean;
          timeout: number;
        },
      ) => {
        const client = clientOf(f);
        const task = await client.submit(
          {
            type: f.type,
            title: f.title,
            payload: f.payload,
            capabilities: f.capability ?? [],
            priority: f.priority,
            ...(f.maxRetries !== undefined ? { maxRetries: f.maxRetries } : {}),
            ...(f.agent === undefined ? {} : { assignee: f.agent }),
          },
          {
            type: '--type',
            title: '--title',
            payload: '--payload',
            capabilities: '--capability',
            priority: '--priority',
            maxRetries: '--max-retries',
            assignee: '--agent',
          },
        );
        if (f.wait !== true) {
          if (f.json) return printJson(task);
          return console.log(`submitted task ${task.id} (${status(task.status)})`);
        }
        const done = await waitForEnd(client, task.id, f.timeout * 1000);
        if (done.status !== 'COMPLETED') process.exitCode = 1;
        if (f.json) return printJson(done);
        showTask(done, out(f));
      },
    );

  // One command with the action as an optional first word: commander would hand options given
  // after a subcommand (`mesh task cancel ID --api X`) to the parent `task <id>`, not the subcommand.
  withClient(
    program
      .command('task')
      .description('show one task; `task cancel <id>` cancels it, `task retry <id>` runs a FAILED one again')
      .usage('[cancel|retry] <id> [options]')
      .argument('<id>', 'the task id, or cancel / retry followed by the id')
      .argument('[id]'),
  ).action(async (first: string, second: string | undefined, f: ClientFlags) => {
    const client = clientOf(f);
    if (second === undefined) {
      const t = await client.task(first);
      if (f.json) return printJson(t);
      return showTask(t, out(f));
    }
    if (first !== 'cancel' && first !== 'retry') {
      throw new CliError(CliErrorCode.BAD_ARGUMENT, `unknown task action ${first}: expected cancel or retry`);
    }
    const t = first === 'cancel' ? await client.cancel(second) : await client.retry(second);
    if (f.json) return printJson(t);
    console.log(`task ${t.id}: ${status(t.status)}${first === 'retry' ? ` (attempt ${t.attempt})` : ''}`);
  });
}
