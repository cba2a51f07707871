/**
 * The stdio agent protocol from the agent's side, with real child processes: the Python example
 * agent (examples/agents/word-count.py), an agent built with the SDK (test/fixtures/sdk-agent.ts)
 * and the exec-mode example (examples/agents/hello.sh). The test plays the node: it writes node
 * messages to the child's stdin and checks every line the child prints on stdout against
 * protocol.ts's `agentMessageSchema` and against docs/agent-protocol.schema.json (with Ajv, which
 * is already installed for fastify and the MCP SDK). The JSON Schema is also checked to accept and
 * refuse the same messages as protocol.ts.
 *
 * Every wait is bounded; every child is killed when its test ends.
 */
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import {
  type AgentMessage,
  agentMessageSchema,
  DEFAULT_MAX_LINE_BYTES,
  type NodeMessage,
  PROTOCOL_VERSION,
  type TaskMessage,
} from '../../src/agents/protocol.js';
import { MAX_LINE_BYTES, PROTOCOL_VERSION as SDK_PROTOCOL_VERSION, runAgent } from '../../src/agent-sdk/index.js';

const path = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const WORD_COUNT = path('../../examples/agents/word-count.py');
const HELLO_SH = path('../../examples/agents/hello.sh');
const ECHO_AGENT = path('../../examples/agents/echo-agent.mjs');
const SDK_AGENT = path('../fixtures/sdk-agent.ts');
const BUILT_SDK = path('../../dist/agent-sdk/index.js');
const SCHEMA = JSON.parse(readFileSync(path('../../docs/agent-protocol.schema.json'), 'utf8')) as {
  $id: string;
  $defs: Record<string, { examples?: unknown[] }>;
};

/** Generous: a slow CI machine starting tsx; no wait here is expected to take it. */
const WAIT_MS = 15_000;

const ajv = new Ajv2020({ strict: true, allErrors: true });
ajv.addSchema(SCHEMA);
function schemaFor(def: string) {
  const validate = ajv.getSchema(`${SCHEMA.$id}#/$defs/${def}`);
  assert.ok(validate, `no $defs/${def} in the JSON Schema`);
  return validate;
}
const validAgentMessage = schemaFor('agentMessage');
const validNodeMessage = schemaFor('nodeMessage');
const validMessage = ajv.getSchema(SCHEMA.$id);

const hasPython = spawnSync('python3', ['--version']).status === 0;

type Type = AgentMessage['type'];
type Of<T extends Type> = Extract<AgentMessage, { type: T }>;

const live = new Set<AgentChild>();
afterEach(() => {
  for (const c of live) c.kill();
  live.clear();
});
after(() => {
  for (const c of live) c.kill();
});

/**
 * A child agent process the test talks to as its node. Messages it sends are kept until a test
 * takes them with `next`; a line that is not a valid agent message (by protocol.ts and by the JSON
 * Schema) fails the next wait and `assertClean`.
 */
class AgentChild {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly inbox: AgentMessage[] = [];
  private readonly bad: string[] = [];
  private stderr = '';
  private wake: (() => void) | undefined;

  constructor(command: string, args: string[]) {
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    live.add(this);
    this.exited = new Promise((resolve) => this.child.once('close', (code, signal) => resolve({ code, signal })));
    this.child.stderr.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4000)));
    this.child.stdin.on('error', () => undefined); // EPIPE once the child is gone: the test notices by exit
    this.child.once('exit', () => this.wake?.());
    createInterface({ input: this.child.stdout, crlfDelay: Infinity }).on('line', (line) => {
      const problem = checkAgentLine(line);
      if (problem === undefined) this.inbox.push(JSON.parse(line) as AgentMessage);
      else this.bad.push(`${problem}: ${line.slice(0, 300)}`);
      this.wake?.();
    });
  }

  static sdk(): AgentChild {
    return new AgentChild(process.execPath, ['--import', 'tsx', SDK_AGENT]);
  }

  static wordCount(): AgentChild {
    return new AgentChild(WORD_COUNT, []);
  }

  send(message: NodeMessage): void {
    assert.ok(
      validNodeMessage(message),
      `the test sends an invalid node message: ${ajv.errorsText(validNodeMessage.errors)}`,
    );
    this.child.stdin.write(`${JSON.stringify(message)}\n`);
  }

  sendRaw(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /** Takes the first message of `type` matching `where`, waiting for it at most `ms`. */
  async next<T extends Type>(type: T, where: (m: Of<T>) => boolean = () => true, ms = WAIT_MS): Promise<Of<T>> {
    const deadline = Date.now() + ms;
    for (;;) {
      this.assertClean();
      const i = this.inbox.findIndex((m) => m.type === type && where(m as Of<T>));
      if (i >= 0) return this.inbox.splice(i, 1)[0] as Of<T>;
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null || this.child.signalCode !== null) {
        assert.fail(
          `no ${type} message within ${ms} ms; kept: ${JSON.stringify(this.inbox).slice(0, 1000)}; ` +
            `exit ${this.child.exitCode}/${this.child.signalCode}; stderr: ${this.stderr}`,
        );
      }
      // Woken by the next line or the exit, or by the deadline.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }

  /** Messages received and not taken, of `type` for task `id`. */
  kept(type: Type, id: string): AgentMessage[] {
    return this.inbox.filter((m) => m.type === type && 'id' in m && m.id === id);
  }

  /** Sends hello and returns the ready. */
  async start(concurrency = 4): Promise<Of<'ready'>> {
    this.send({
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      agent: { id: 'agent-under-test', name: 'under test', capabilities: [], concurrency },
      node: 'test-node',
    });
    return this.next('ready');
  }

  /** Closes stdin and waits (bounded) for the process to end. */
  closeInput(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.stdin.end();
    return within(this.exited, `the agent did not exit after stdin closed (stderr: ${this.stderr})`);
  }

  assertClean(): void {
    assert.deepEqual(this.bad, [], `invalid lines from the agent; stderr: ${this.stderr}`);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** Why a line is not a valid agent message by protocol.ts or by the JSON Schema, or undefined. */
function checkAgentLine(line: string): string | undefined {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  const zod = agentMessageSchema.safeParse(json);
  if (!zod.success) return `protocol.ts: ${zod.error.issues[0]?.message}`;
  if (!validAgentMessage(json)) return `JSON Schema: ${ajv.errorsText(validAgentMessage.errors)}`;
  return undefined;
}

/** `promise`, or a failure after WAIT_MS. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${WAIT_MS} ms`)), WAIT_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

let taskSeq = 0;
function task(type: string, payload: unknown, capabilities: string[] = []): TaskMessage {
  return {
    type: 'task',
    task: { id: `t-${++taskSeq}`, type, title: `${type} task`, payload, capabilities, attempt: 1, deadline: null },
  };
}

describe('the protocol documents', () => {
  test('the JSON Schema accepts and refuses the same agent messages as protocol.ts', () => {
    const long = (n: number) => 'x'.repeat(n);
    const samples: unknown[] = [
      { type: 'ready' },
      { type: 'ready', protocol: 1, capabilities: ['a', 'b'] },
      { type: 'ready', protocol: 1.5 },
      { type: 'ready', capabilities: [''] },
      { type: 'ready', capabilities: [long(64)] },
      { type: 'ready', capabilities: [long(65)] },
      { type: 'ready', capabilities: Array.from({ length: 64 }, (_, i) => `c${i}`) },
      { type: 'ready', capabilities: Array.from({ length: 65 }, (_, i) => `c${i}`) },
      { type: 'ready', extra: { anything: true } },
      { type: 'progress', id: 't', progress: 0 },
      { type: 'progress', id: 't', progress: 100, message: long(4096) },
      { type: 'progress', id: 't', progress: 12.5 },
      { type: 'progress', id: 't', progress: 100.5 },
      { type: 'progress', id: 't', progress: -1 },
      { type: 'progress', id: 't', progress: 5, message: long(4097) },
      { type: 'progress', id: '', progress: 5 },
      { type: 'progress', id: long(256), progress: 5 },
      { type: 'progress', id: long(257), progress: 5 },
      { type: 'progress', id: 't' },
      { type: 'log', message: '' },
      { type: 'log', id: 't', level: 'warn', message: 'm' },
      { type: 'log', level: 'trace', message: 'm' },
      { type: 'log', id: '', message: 'm' },
      { type: 'log' },
      { type: 'result', id: 't', result: null },
      { type: 'result', id: 't', result: { deep: [1, 'two', { three: 3 }] } },
      { type: 'result', id: 't' },
      { type: 'result', id: 7, result: 1 },
      { type: 'error', id: 't', code: 'X', message: '' },
      { type: 'error', id: 't', code: long(64), message: 'm', retryable: true },
      { type: 'error', id: 't', code: long(65), message: 'm' },
      { type: 'error', id: 't', code: '', message: 'm' },
      { type: 'error', id: 't', code: 'X' },
      { type: 'error', id: 't', code: 'X', message: 'm', retryable: 'yes' },
      { type: 'pong', seq: 1 },
      { type: 'pong', seq: 1.5 },
      { type: 'pong', seq: '1' },
      { type: 'pong' },
      { type: 'tool_call', id: 'c', task: 't', capability: 'x' },
      { type: 'tool_call', id: 'c', task: 't', capability: 'x', payload: [1] },
      { type: 'tool_call', id: 'c', capability: 'x' },
      { type: 'tool_call', id: 'c', task: 't', capability: '' },
      { type: 'tool_call', id: 'c', task: 't', capability: long(65) },
      { type: 'hello', protocol: 1 },
      { type: 'nonsense' },
      {},
      null,
      [],
      'ready',
    ];
    let accepted = 0;
    for (const sample of samples) {
      const byZod = agentMessageSchema.safeParse(sample).success;
      const bySchema = validAgentMessage(sample);
      assert.equal(
        bySchema,
        byZod,
        `protocol.ts says ${byZod}, the JSON Schema ${bySchema}: ${JSON.stringify(sample)}`,
      );
      if (byZod) accepted++;
    }
    assert.ok(accepted > 10 && accepted < samples.length - 10, 'the samples exercise both sides');
  });

  test('every example in the JSON Schema is valid, and agent ones by protocol.ts too', () => {
    assert.ok(validMessage, 'the schema compiles');
    for (const [name, def] of Object.entries(SCHEMA.$defs)) {
      for (const example of def.examples ?? []) {
        assert.ok(schemaFor(name)(example), `$defs/${name} example: ${JSON.stringify(example)}`);
        if (name === 'taskInput') continue;
        assert.ok(validMessage(example), `top-level oneOf, ${name} example`);
        const agentSide: boolean = validAgentMessage(example) === true;
        assert.equal(agentMessageSchema.safeParse(example).success, agentSide, `protocol.ts on the ${name} example`);
      }
    }
  });

  test("the SDK's constants are protocol.ts's", () => {
    assert.equal(SDK_PROTOCOL_VERSION, PROTOCOL_VERSION);
    assert.equal(MAX_LINE_BYTES, DEFAULT_MAX_LINE_BYTES);
  });
});

describe('word-count.py (stdio example agent)', { skip: hasPython ? false : 'python3 is not installed' }, () => {
  test('answers hello with ready and its capabilities, ping with pong', async () => {
    const agent = AgentChild.wordCount();
    const ready = await agent.start();
    assert.equal(ready.protocol, 1);
    assert.deepEqual(ready.capabilities, ['wordcount', 'echo']);
    agent.send({ type: 'ping', seq: 41 });
    agent.send({ type: 'ping', seq: 42 });
    assert.equal((await agent.next('pong', (m) => m.seq === 41)).seq, 41);
    assert.equal((await agent.next('pong', (m) => m.seq === 42)).seq, 42);
    agent.assertClean();
  });

  test('runs two tasks at once, each with progress and a result', async () => {
    const agent = AgentChild.wordCount();
    await agent.start();
    const a = task('wordcount', { text: 'one two  three\nfour\n' }, ['wordcount']);
    const b = task('wordcount', { text: 'héllo wörld' }, ['wordcount']);
    agent.send(a);
    agent.send(b);
    const results = new Map<string, unknown>();
    for (const t of [a, b]) {
      const id = t.task.id;
      results.set(id, (await agent.next('result', (m) => m.id === id)).result);
      for (const pct of [0, 50, 100]) {
        // A result comes after its progress, so the reports are already here.
        assert.equal(agent.kept('progress', id).filter((m) => m.type === 'progress' && m.progress === pct).length, 1);
      }
      assert.equal(agent.kept('log', id).length, 1, `one log line for ${id}`);
    }
    assert.deepEqual(results.get(a.task.id), { words: 4, lines: 2, characters: 20 });
    assert.deepEqual(results.get(b.task.id), { words: 2, lines: 1, characters: 11 });

    // Concurrency without timing: a task that would sleep for ten minutes does not hold up the next.
    const slow = task('wordcount', { text: 'x', sleepMs: 600_000 });
    const quick = task('echo', { hi: 1 }, ['echo']);
    agent.send(slow);
    agent.send(quick);
    assert.deepEqual((await agent.next('result', (m) => m.id === quick.task.id)).result, { echo: { hi: 1 } });
    agent.send({ type: 'cancel', id: slow.task.id, reason: 'test' });
    await agent.next('error', (m) => m.id === slow.task.id && m.code === 'CANCELLED');
    agent.assertClean();
  });

  test('a cancelled long task answers CANCELLED at once, and the agent goes on', async () => {
    const agent = AgentChild.wordCount();
    await agent.start();
    const slow = task('wordcount', { text: 'x', sleepMs: 600_000 });
    agent.send(slow);
    await agent.next('progress', (m) => m.id === slow.task.id && m.progress === 0);
    agent.send({ type: 'cancel', id: slow.task.id, reason: 'no longer needed' });
    const err = await agent.next('error', (m) => m.id === slow.task.id);
    assert.equal(err.code, 'CANCELLED');
    assert.equal(err.retryable, false);
    assert.equal(agent.kept('result', slow.task.id).length, 0);
    agent.send({ type: 'cancel', id: 'no-such-task', reason: 'crossed' });
    agent.send({ type: 'ping', seq: 1 });
    await agent.next('pong', (m) => m.seq === 1);
    agent.assertClean();
  });

  test('payload.fail answers BAD_INPUT, not retryable; bad input too', async () => {
    const agent = AgentChild.wordCount();
    await agent.start();
    const failing = task('wordcount', { text: 'a', fail: 'the text is rude' });
    const noText = task('wordcount', { words: 3 });
    agent.send(failing);
    agent.send(noText);
    const e1 = await agent.next('error', (m) => m.id === failing.task.id);
    assert.deepEqual([e1.code, e1.message, e1.retryable], ['BAD_INPUT', 'the text is rude', false]);
    const e2 = await agent.next('error', (m) => m.id === noText.task.id);
    assert.equal(e2.code, 'BAD_INPUT');
    agent.assertClean();
  });

  test('lines it cannot use are ignored, and it keeps answering', async () => {
    const agent = AgentChild.wordCount();
    await agent.start();
    agent.sendRaw('this is not json');
    agent.sendRaw('[1,2,3]');
    agent.sendRaw('{"type":"from-the-future","x":1}');
    agent.sendRaw('');
    agent.send({ type: 'tool_result', id: 'nobody-asked', ok: true, result: 1 });
    agent.send({ type: 'ping', seq: 9 });
    await agent.next('pong', (m) => m.seq === 9);
    agent.assertClean();
  });

  test('closing stdin ends the process, even with a task running', async () => {
    const agent = AgentChild.wordCount();
    await agent.start();
    const slow = task('wordcount', { text: 'x', sleepMs: 600_000 });
    agent.send(slow);
    await agent.next('progress', (m) => m.id === slow.task.id);
    const exit = await agent.closeInput();
    assert.deepEqual(exit, { code: 0, signal: null });
    agent.assertClean();
  });
});

describe('an agent built with the SDK', () => {
  test('answers hello with ready (protocol and capabilities), ping with pong', async () => {
    const agent = AgentChild.sdk();
    const ready = await agent.start();
    assert.deepEqual(ready, { type: 'ready', protocol: 1, capabilities: ['echo', 'tool'] });
    for (const seq of [1, 2, 3.5]) agent.send({ type: 'ping', seq });
    for (const seq of [1, 2, 3.5]) await agent.next('pong', (m) => m.seq === seq);
    agent.assertClean();
  });

  test('runs tasks at once; a tool_result reaches the handler waiting in callTool', async () => {
    const agent = AgentChild.sdk();
    await agent.start();
    const waiting = task('tool', { capability: 'summarize', payload: { text: 'a b c' } });
    const echo = task('echo', { hello: 'world' });
    agent.send(waiting);
    agent.send(echo);
    const call = await agent.next('tool_call');
    assert.deepEqual(
      { task: call.task, capability: call.capability, payload: call.payload },
      { task: waiting.task.id, capability: 'summarize', payload: { text: 'a b c' } },
    );
    // The first task is blocked on its tool call; the second is answered meanwhile.
    const echoed = await agent.next('result', (m) => m.id === echo.task.id);
    assert.deepEqual(echoed.result, { echo: { hello: 'world' } });
    const progress = agent.kept('progress', echo.task.id);
    assert.deepEqual(progress, [{ type: 'progress', id: echo.task.id, progress: 50, message: 'echoing' }]);
    assert.deepEqual(agent.kept('log', echo.task.id), [
      { type: 'log', id: echo.task.id, level: 'info', message: 'echoing for test-node' },
    ]);
    assert.equal(agent.kept('result', waiting.task.id).length, 0, 'the tool task waits for its result');

    agent.send({ type: 'tool_result', id: call.id, ok: true, result: { summary: 'abc' } });
    const done = await agent.next('result', (m) => m.id === waiting.task.id);
    assert.deepEqual(done.result, { tool: { summary: 'abc' } });
    agent.assertClean();
  });

  test('an ok:false tool_result rejects callTool with its code', async () => {
    const agent = AgentChild.sdk();
    await agent.start();
    const t = task('tool', { capability: 'search' });
    agent.send(t);
    const call = await agent.next('tool_call', (m) => m.task === t.task.id);
    assert.equal('payload' in call, false, 'no payload given, none sent');
    agent.send({
      type: 'tool_result',
      id: call.id,
      ok: false,
      error: { code: 'TOOL_CALLS_UNSUPPORTED', message: 'not yet' },
    });
    const err = await agent.next('error', (m) => m.id === t.task.id);
    assert.deepEqual([err.code, err.message], ['TOOL_CALLS_UNSUPPORTED', 'not yet']);
    agent.assertClean();
  });

  test('cancel aborts the handler and answers CANCELLED, whatever the handler does then', async () => {
    const agent = AgentChild.sdk();
    await agent.start();
    const waiting = task('wait', null);
    const stubborn = task('stubborn', null);
    const onTool = task('tool', { capability: 'slow' });
    for (const t of [waiting, stubborn, onTool]) agent.send(t);
    const call = await agent.next('tool_call', (m) => m.task === onTool.task.id);
    for (const t of [waiting, stubborn, onTool]) {
      agent.send({ type: 'cancel', id: t.task.id, reason: `stop ${t.task.type}` });
      const err = await agent.next('error', (m) => m.id === t.task.id);
      assert.deepEqual(
        [err.code, err.message, err.retryable],
        ['CANCELLED', `stop ${t.task.type}`, false],
        t.task.type,
      );
    }
    // The late tool_result for the cancelled task is ignored; the agent is fine.
    agent.send({ type: 'tool_result', id: call.id, ok: true, result: 1 });
    agent.send({ type: 'ping', seq: 5 });
    await agent.next('pong', (m) => m.seq === 5);
    for (const t of [waiting, stubborn, onTool]) assert.equal(agent.kept('result', t.task.id).length, 0);
    agent.assertClean();
  });

  test('failures carry their code: AgentError, other throws, unsendable results', async () => {
    const agent = AgentChild.sdk();
    await agent.start();
    const coded = task('fail', { code: 'QUOTA', message: 'over quota', retryable: true });
    const crash = task('crash', null);
    const huge = task('huge', null);
    const bigint = task('bigint', null);
    const nothing = task('nothing', null);
    for (const t of [coded, crash, huge, bigint, nothing]) agent.send(t);

    const e1 = await agent.next('error', (m) => m.id === coded.task.id);
    assert.deepEqual([e1.code, e1.message, e1.retryable], ['QUOTA', 'over quota', true]);
    const e2 = await agent.next('error', (m) => m.id === crash.task.id);
    assert.deepEqual([e2.code, e2.message], ['AGENT_ERROR', 'boom']);
    const stack = agent.kept('log', crash.task.id);
    assert.ok(stack.length === 1 && stack[0]?.type === 'log' && stack[0].level === 'error', 'the stack is logged');
    const e3 = await agent.next('error', (m) => m.id === huge.task.id);
    assert.equal(e3.code, 'RESULT_TOO_LARGE');
    const e4 = await agent.next('error', (m) => m.id === bigint.task.id);
    assert.equal(e4.code, 'AGENT_ERROR');
    assert.equal((await agent.next('result', (m) => m.id === nothing.task.id)).result, null);
    agent.assertClean();
  });

  test('lines it cannot use are ignored; a malformed task with an id is answered', async () => {
    const agent = AgentChild.sdk();
    await agent.start();
    agent.sendRaw('not json at all');
    agent.sendRaw('{"type":"from-the-future"}');
    agent.sendRaw('{"type":"ping"}');
    agent.sendRaw('{"type":"task","task":{"id":"broken","type":"echo"}}');
    agent.send({ type: 'tool_result', id: 'nobody-asked', ok: true, result: 1 });
    agent.send({ type: 'cancel', id: 'no-such-task', reason: 'crossed' });
    const err = await agent.next('error', (m) => m.id === 'broken');
    assert.equal(err.code, 'INVALID_TASK');
    agent.send({ type: 'ping', seq: 77 });
    await agent.next('pong', (m) => m.seq === 77);
    agent.assertClean();
  });

  test('closing stdin cancels what runs and ends the process cleanly', async () => {
    const agent = AgentChild.sdk();
    await agent.start();
    const waiting = task('wait', null);
    agent.send(waiting);
    agent.send({ type: 'ping', seq: 1 });
    await agent.next('pong'); // the task has been taken in by now
    const exit = await agent.closeInput();
    assert.deepEqual(exit, { code: 0, signal: null });
    const err = await agent.next('error', (m) => m.id === waiting.task.id);
    assert.equal(err.code, 'CANCELLED');
    agent.assertClean();
  });

  test('stop() in-process: running tasks are answered CANCELLED and done resolves', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    const lines: string[] = [];
    const outputRead = new Promise<void>((resolve) =>
      createInterface({ input: output })
        .on('line', (l) => lines.push(l))
        .once('close', resolve),
    );
    const warnings: string[] = [];
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const agent = runAgent({
      input,
      output,
      onWarning: (w) => warnings.push(w),
      handle: (ctx) =>
        new Promise((_, reject) => {
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
          started();
        }),
    });
    const t = task('anything', null);
    input.write('garbage\n');
    input.write(`${JSON.stringify(t)}\n`);
    await within(running, 'the task did not start');
    agent.stop();
    await within(agent.done, 'done did not resolve');
    output.end();
    await within(outputRead, 'the output did not end');
    for (const line of lines) assert.equal(checkAgentLine(line), undefined, line);
    const answers = lines.map((l) => JSON.parse(l) as AgentMessage);
    assert.deepEqual(
      answers.map((m) => (m.type === 'error' ? [m.id, m.code] : m.type)),
      [[t.task.id, 'CANCELLED']],
    );
    assert.equal(warnings.length, 1, `one warning, for the garbage line: ${warnings.join('; ')}`);
  });

  test('runAgent refuses capabilities the protocol cannot carry', () => {
    assert.throws(() => runAgent({ capabilities: [''], handle: () => null, input: new PassThrough() }), RangeError);
    const tooMany = Array.from({ length: 65 }, (_, i) => `c${i}`);
    assert.throws(() => runAgent({ capabilities: tooMany, handle: () => null, input: new PassThrough() }), RangeError);
  });

  test(
    'examples/agents/echo-agent.mjs (needs npm run build)',
    { skip: !existsSync(BUILT_SDK) && 'no dist/' },
    async () => {
      const agent = new AgentChild(process.execPath, [ECHO_AGENT]);
      const ready = await agent.start();
      assert.deepEqual(ready.capabilities, ['echo']);
      const t = task('echo', { n: [1, 2] });
      agent.send(t);
      assert.deepEqual((await agent.next('result', (m) => m.id === t.task.id)).result, { echo: { n: [1, 2] } });
      assert.equal(agent.kept('progress', t.task.id).length, 1);
      assert.deepEqual(await agent.closeInput(), { code: 0, signal: null });
      agent.assertClean();
    },
  );
});

describe('hello.sh (exec example agent)', () => {
  test('prints a JSON greeting with the task id and exits 0', async () => {
    const t = task('hello', { id: 'not-this-one' }).task;
    const child = spawn(HELLO_SH, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdin.end(`${JSON.stringify(t)}\n`);
    const code = await within(
      new Promise<number | null>((resolve) => child.once('close', resolve)),
      'hello.sh did not exit',
    ).finally(() => child.kill('SIGKILL'));
    assert.equal(code, 0, err);
    const result = JSON.parse(out) as { greeting: string; task: string };
    assert.equal(result.task, t.id);
    assert.match(result.greeting, /^hello from \S+$/);
    assert.match(err, new RegExp(`task ${t.id}`), 'stderr is the task log');
  });
});
