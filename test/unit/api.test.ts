import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ApiError, type ApiServer, type ApiServerOptions, buildApi, createApiServer } from '../../src/api/index.js';
import { AgentRegistry } from '../../src/registry/agents.js';
import { FakeFaults, meshReplica, type TestBackend, testBackend } from '../helpers/api-backend.js';

const T = { timeout: 15_000 };
const quiet = pino({ level: 'silent' });

interface Res {
  status: number;
  headers: Headers;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

async function call(
  base: string,
  method: string,
  path: string,
  opts: { json?: unknown; body?: string; headers?: Record<string, string> } = {},
): Promise<Res> {
  const headers: Record<string, string> = { ...opts.headers };
  let body: string | undefined;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['content-type'] ??= 'application/json';
  } else if (opts.body !== undefined) {
    body = opts.body;
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, { method, headers, body, signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

function assertError(r: Res, status: number, code: string): void {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status}: ${r.text}`);
  assert.equal(r.headers.get('content-type')?.startsWith('application/json'), true, r.text);
  assert.equal(r.json?.error?.code, code, r.text);
  assert.equal(typeof r.json.error.message, 'string');
  assert.ok(r.json.error.message.length > 0);
}

async function startServer(
  backend: TestBackend,
  options: Partial<ApiServerOptions> = {},
): Promise<{ server: ApiServer; base: string }> {
  const server = await createApiServer(backend, { host: '127.0.0.1', port: 0, log: quiet, ...options });
  return { server, base: server.url };
}

// --- a minimal SSE reader over fetch ------------------------------------------------------------

interface Frame {
  id?: string;
  event?: string;
  data?: string;
  comment?: string;
}

class EventReader {
  private buf = '';
  private constructor(
    readonly response: Response,
    private readonly reader: ReadableStreamDefaultReader<string>,
    private readonly abort: AbortController,
  ) {}

  static async open(url: string, headers: Record<string, string> = {}): Promise<EventReader> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 5_000);
    const response = await fetch(url, { headers, signal: abort.signal });
    clearTimeout(timer);
    assert.ok(response.body);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    return new EventReader(response, reader, abort);
  }

  /** The next frame (event or comment), or a rejection after timeoutMs. */
  async next(timeoutMs = 3_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.buf.indexOf('\n\n');
      if (end >= 0) {
        const raw = this.buf.slice(0, end);
        this.buf = this.buf.slice(end + 2);
        return parseFrame(raw);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for an SSE frame');
      let timer: NodeJS.Timeout | undefined;
      const chunk = await Promise.race([
        this.reader.read(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('timed out waiting for an SSE frame')), left);
        }),
      ]).finally(() => clearTimeout(timer));
      if (chunk.done) throw new Error('stream ended');
      this.buf += chunk.value;
    }
  }

  /** The next event (skipping comments). */
  async nextEvent(timeoutMs = 3_000): Promise<Frame & { event: string; data: string }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = await this.next(Math.max(1, deadline - Date.now()));
      if (f.event !== undefined && f.data !== undefined) return f as Frame & { event: string; data: string };
    }
  }

  /** Resolves when the server ends the stream; rejects after timeoutMs. */
  async ended(timeoutMs = 3_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('stream did not end');
      let timer: NodeJS.Timeout | undefined;
      const chunk = await Promise.race([
        this.reader.read(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('stream did not end')), left);
        }),
      ]).finally(() => clearTimeout(timer));
      if (chunk.done) return this.buf;
      this.buf += chunk.value;
    }
  }

  close(): void {
    this.abort.abort();
  }
}

function parseFrame(raw: string): Frame {
  const f: Frame = {};
  const data: string[] = [];
  for (const line of raw.split('\n')) {
    if (line.startsWith(':')) f.comment = line.slice(1).trim();
    else if (line.startsWith('event: ')) f.event = line.slice(7);
    else if (line.startsWith('id: ')) f.id = line.slice(4);
    else if (line.startsWith('data: ')) data.push(line.slice(6));
  }
  if (data.length > 0) f.data = data.join('\n');
  return f;
}

async function eventually(check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

// --- tests --------------------------------------------------------------------------------------

describe('HTTP API: node routes', T, () => {
  let backend: TestBackend;
  let server: ApiServer;
  let base: string;
  before(async () => {
    backend = testBackend();
    ({ server, base } = await startServer(backend));
  });
  after(() => server.close());

  it('listens on loopback with an ephemeral port', () => {
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(server.port > 0);
  });

  it('GET /v1/health', async () => {
    const r = await call(base, 'GET', '/v1/health');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { ok: true });
  });

  it('GET /v1/status returns the backend status', async () => {
    await backend.agents.upsert('s1', { name: 's', type: 't' });
    const r = await call(base, 'GET', '/v1/status');
    assert.equal(r.status, 200);
    assert.equal(r.json.id, 'node-a');
    assert.equal(r.json.keys, backend.replica.size);
    assert.equal(r.json.merkleRoot, backend.replica.merkle().rootHex());
    assert.equal(r.json.versionVector['node-a'], backend.replica.versionVector().get('node-a'));
  });

  it('GET /v1/peers returns the backend peers', async () => {
    const r = await call(base, 'GET', '/v1/peers');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, backend.peers());
  });

  it('unknown routes and methods are 404 NOT_FOUND in the error shape', async () => {
    assertError(await call(base, 'GET', '/v1/nope'), 404, 'NOT_FOUND');
    assertError(await call(base, 'GET', '/nope'), 404, 'NOT_FOUND');
    assertError(await call(base, 'POST', '/v1/health', { json: {} }), 404, 'NOT_FOUND');
    assertError(await call(base, 'DELETE', '/v1/tasks/x'), 404, 'NOT_FOUND');
  });

  it('the fault switch routes do not exist without a fault switch', async () => {
    assertError(await call(base, 'POST', '/v1/admin/partition', { json: { peers: ['x'] } }), 404, 'NOT_FOUND');
    assertError(await call(base, 'POST', '/v1/admin/heal'), 404, 'NOT_FOUND');
  });

  it('a malformed URL escape is 400 in the error shape', async () => {
    assertError(await call(base, 'GET', '/v1/agents/%E0%A4%A'), 400, 'INVALID_INPUT');
  });
});

describe('HTTP API: agents', T, () => {
  let backend: TestBackend;
  let server: ApiServer;
  let base: string;
  before(async () => {
    backend = testBackend();
    ({ server, base } = await startServer(backend));
    // An agent hosted by another node, arrived by sync.
    const b = meshReplica('node-b');
    const regB = new AgentRegistry({ replica: b, mutate: async (k, f) => b.mutate(k, f) });
    await regB.upsert('remote-1', { name: 'far', type: 'llm', capabilities: ['summarize'], state: 'RUNNING' });
    const rec = b.get('agent/remote-1');
    assert.ok(rec);
    assert.equal(backend.replica.mergeRecord('agent/remote-1', rec, 'node-b'), true);
  });
  after(() => server.close());

  it('PUT registers, then updates an agent of this node (200 both times)', async () => {
    const created = await call(base, 'PUT', '/v1/agents/coder-1', {
      json: { name: 'Coder', type: 'llm', capabilities: ['code', 'review'], meta: { model: 'x' } },
    });
    assert.equal(created.status, 200, created.text);
    assert.equal(created.json.id, 'coder-1');
    assert.equal(created.json.owner, 'node-a');
    assert.deepEqual([...created.json.capabilities].sort(), ['code', 'review']);
    assert.equal(created.json.state, 'INITIALIZING');
    assert.equal(created.json.reachable, true);
    assert.deepEqual(created.json.meta, { model: 'x' });

    const updated = await call(base, 'PUT', '/v1/agents/coder-1', {
      json: { name: 'Coder', type: 'llm', capabilities: ['code'], state: 'RUNNING', load: 0.5 },
    });
    assert.equal(updated.status, 200, updated.text);
    assert.deepEqual(updated.json.capabilities, ['code']);
    assert.equal(updated.json.state, 'RUNNING');
    assert.equal(updated.json.load, 0.5);
    assert.equal(backend.agents.get('coder-1')?.state, 'RUNNING');
  });

  it('GET /v1/agents/:id returns the agent with reachability; unknown id is 404', async () => {
    const r = await call(base, 'GET', '/v1/agents/remote-1');
    assert.equal(r.status, 200);
    assert.equal(r.json.owner, 'node-b');
    assert.equal(r.json.reachable, true);
    backend.unreachable.add('node-b');
    try {
      const r2 = await call(base, 'GET', '/v1/agents/remote-1');
      assert.equal(r2.json.reachable, false);
    } finally {
      backend.unreachable.delete('node-b');
    }
    assertError(await call(base, 'GET', '/v1/agents/nobody'), 404, 'NOT_FOUND');
  });

  it('GET /v1/agents filters by capability, type, state and node', async () => {
    await call(base, 'PUT', '/v1/agents/tool-1', { json: { name: 'Tool', type: 'tool', capabilities: ['grep'] } });
    const all = await call(base, 'GET', '/v1/agents');
    assert.equal(all.status, 200);
    const ids = (q: string) => call(base, 'GET', `/v1/agents${q}`).then((r) => r.json.map((a: { id: string }) => a.id));
    assert.deepEqual(
      all.json.map((a: { id: string }) => a.id),
      ['coder-1', 'remote-1', 'tool-1'],
    );
    assert.deepEqual(await ids('?capability=grep'), ['tool-1']);
    assert.deepEqual(await ids('?type=llm'), ['coder-1', 'remote-1']);
    assert.deepEqual(await ids('?state=RUNNING'), ['coder-1', 'remote-1']);
    assert.deepEqual(await ids('?node=node-b'), ['remote-1']);
    assert.deepEqual(await ids('?type=llm&node=node-a'), ['coder-1']);
    assert.deepEqual(await ids('?capability=&type='), ['coder-1', 'remote-1', 'tool-1']);
    backend.unreachable.add('node-b');
    try {
      const r = await call(base, 'GET', '/v1/agents?node=node-b');
      assert.equal(r.json[0].reachable, false);
    } finally {
      backend.unreachable.delete('node-b');
    }
  });

  it('bad queries are 400 INVALID_INPUT', async () => {
    assertError(await call(base, 'GET', '/v1/agents?state=BOGUS'), 400, 'INVALID_INPUT');
    assertError(await call(base, 'GET', '/v1/agents?capabilty=code'), 400, 'INVALID_INPUT');
    assertError(await call(base, 'GET', '/v1/agents?node=bad%20id'), 400, 'INVALID_INPUT');
    assertError(await call(base, 'GET', '/v1/agents?type=a&type=b'), 400, 'INVALID_INPUT');
  });

  it('bad ids and bodies are 400 INVALID_INPUT, with every issue listed', async () => {
    assertError(await call(base, 'GET', `/v1/agents/${'a'.repeat(129)}`), 400, 'INVALID_INPUT');
    assertError(
      await call(base, 'PUT', `/v1/agents/bad%20id`, { json: { name: 'n', type: 't' } }),
      400,
      'INVALID_INPUT',
    );
    const missing = await call(base, 'PUT', '/v1/agents/x1', { json: { type: 't', load: -1 } });
    assertError(missing, 400, 'INVALID_INPUT');
    const paths = missing.json.error.details.issues.map((i: { path: string }) => i.path).sort();
    assert.deepEqual(paths, ['body.load', 'body.name']);
    assertError(
      await call(base, 'PUT', '/v1/agents/x1', { json: { name: 'n', type: 't', extra: 1 } }),
      400,
      'INVALID_INPUT',
    );
    assertError(
      await call(base, 'PUT', '/v1/agents/x1', { json: { name: 'n', type: 't', capabilities: Array(65).fill('c') } }),
      400,
      'INVALID_INPUT',
    );
    assertError(
      await call(base, 'PUT', '/v1/agents/x1', { json: { name: 'n', type: 't', state: 'ON' } }),
      400,
      'INVALID_INPUT',
    );
    assertError(await call(base, 'PUT', '/v1/agents/x1', { json: ['not', 'an', 'object'] }), 400, 'INVALID_INPUT');
    assertError(
      await call(base, 'PUT', '/v1/agents/x1', { json: { name: 'n', type: 't', meta: [1] } }),
      400,
      'INVALID_INPUT',
    );
    assert.equal(backend.agents.get('x1'), undefined);
  });

  it('meta beyond the registry limit is 413 from the domain (TOO_LARGE)', async () => {
    const r = await call(base, 'PUT', '/v1/agents/big', {
      json: { name: 'n', type: 't', meta: { s: 'x'.repeat(9000) } },
    });
    assertError(r, 413, 'TOO_LARGE');
    assert.equal(backend.agents.get('big'), undefined);
  });

  it("writing or removing another node's agent is 409 NOT_OWNER", async () => {
    assertError(
      await call(base, 'PUT', '/v1/agents/remote-1', { json: { name: 'mine', type: 'llm' } }),
      409,
      'NOT_OWNER',
    );
    assertError(await call(base, 'DELETE', '/v1/agents/remote-1'), 409, 'NOT_OWNER');
    assert.equal(backend.agents.get('remote-1')?.name, 'far');
  });

  it('DELETE removes an agent (idempotently); it leaves the list; unknown is 404', async () => {
    await call(base, 'PUT', '/v1/agents/gone-1', { json: { name: 'g', type: 't' } });
    const r = await call(base, 'DELETE', '/v1/agents/gone-1');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.removed, true);
    assert.equal(r.json.state, 'TERMINATED');
    assert.equal((await call(base, 'DELETE', '/v1/agents/gone-1')).status, 200);
    const list = await call(base, 'GET', '/v1/agents');
    assert.equal(
      list.json.some((a: { id: string }) => a.id === 'gone-1'),
      false,
    );
    assertError(await call(base, 'DELETE', '/v1/agents/never-was'), 404, 'NOT_FOUND');
    // Registering it again brings it back.
    const again = await call(base, 'PUT', '/v1/agents/gone-1', { json: { name: 'g', type: 't' } });
    assert.equal(again.status, 200);
    assert.equal(again.json.removed, false);
  });
});

describe('HTTP API: tasks', T, () => {
  let backend: TestBackend;
  let server: ApiServer;
  let base: string;
  before(async () => {
    backend = testBackend();
    ({ server, base } = await startServer(backend));
  });
  after(() => server.close());

  it('POST /v1/tasks creates a PENDING task: 201, Location, TaskView', async () => {
    const r = await call(base, 'POST', '/v1/tasks', {
      json: { id: 't1', type: 'summarize', title: 'Sum', payload: { doc: 'hi' }, capabilities: ['summarize'] },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.headers.get('location'), '/v1/tasks/t1');
    assert.equal(r.json.id, 't1');
    assert.equal(r.json.status, 'PENDING');
    assert.equal(r.json.attempt, 1);
    assert.equal(r.json.creator, 'node-a');
    assert.deepEqual(r.json.payload, { doc: 'hi' });
    assert.deepEqual(backend.tasks.get('t1')?.payload, { doc: 'hi' });

    const gen = await call(base, 'POST', '/v1/tasks', { json: { type: 'x' } });
    assert.equal(gen.status, 201);
    assert.match(gen.json.id, /^[A-Za-z0-9._:-]+$/);
  });

  it('a duplicate id is 409 TASK_EXISTS', async () => {
    assertError(await call(base, 'POST', '/v1/tasks', { json: { id: 't1', type: 'other' } }), 409, 'TASK_EXISTS');
    assert.equal(backend.tasks.get('t1')?.type, 'summarize');
  });

  it('bad task bodies are 400 INVALID_INPUT', async () => {
    const bad: unknown[] = [
      {},
      { type: '' },
      { type: 'x', priority: 10 },
      { type: 'x', priority: 1.5 },
      { type: 'x', id: 'has space' },
      { type: 'x', dependencies: Array(65).fill('d') },
      { type: 'x', title: 't'.repeat(257) },
      { type: 'x', unknown: true },
      'a string',
      null,
    ];
    for (const json of bad) {
      assertError(await call(base, 'POST', '/v1/tasks', { body: JSON.stringify(json) }), 400, 'INVALID_INPUT');
    }
    // The domain's own checks come through with its code.
    assertError(
      await call(base, 'POST', '/v1/tasks', { json: { id: 'self', type: 'x', parent: 'self' } }),
      400,
      'INVALID_TASK',
    );
  });

  it('a payload beyond the board limit is 413 TOO_LARGE from the domain', async () => {
    const r = await call(base, 'POST', '/v1/tasks', { json: { id: 'big', type: 'x', payload: 'p'.repeat(70_000) } });
    assertError(r, 413, 'TOO_LARGE');
    assert.equal(backend.tasks.get('big'), undefined);
  });

  it('GET /v1/tasks/:id; unknown is 404; bad id is 400', async () => {
    const r = await call(base, 'GET', '/v1/tasks/t1');
    assert.equal(r.status, 200);
    assert.equal(r.json.title, 'Sum');
    assertError(await call(base, 'GET', '/v1/tasks/nope'), 404, 'NOT_FOUND');
    assertError(await call(base, 'GET', '/v1/tasks/bad!id'), 400, 'INVALID_INPUT');
  });

  it('PATCH walks the state machine and refuses invalid transitions with 409', async () => {
    await call(base, 'POST', '/v1/tasks', { json: { id: 'flow', type: 'x', capabilities: ['c'] } });
    const assign = await call(base, 'PATCH', '/v1/tasks/flow', { json: { status: 'ASSIGNED', assignee: 'coder-1' } });
    assert.equal(assign.status, 200, assign.text);
    assert.equal(assign.json.status, 'ASSIGNED');
    assert.equal(assign.json.assignee, 'coder-1');
    const progress = await call(base, 'PATCH', '/v1/tasks/flow', { json: { status: 'IN_PROGRESS', progress: 40 } });
    assert.equal(progress.json.status, 'IN_PROGRESS');
    assert.equal(progress.json.progress, 40);
    const back = await call(base, 'PATCH', '/v1/tasks/flow', { json: { status: 'PENDING' } });
    assertError(back, 409, 'INVALID_TRANSITION');
    assert.equal(back.json.error.details.from, 'IN_PROGRESS');
    const done = await call(base, 'PATCH', '/v1/tasks/flow', { json: { status: 'COMPLETED', result: { ok: 1 } } });
    assert.equal(done.json.status, 'COMPLETED');
    assert.deepEqual(done.json.result, { ok: 1 });
    assertError(await call(base, 'PATCH', '/v1/tasks/flow', { json: { progress: 10 } }), 409, 'INVALID_TRANSITION');
    assertError(await call(base, 'POST', '/v1/tasks/flow/cancel'), 409, 'INVALID_TRANSITION');
    assert.equal(backend.tasks.get('flow')?.status, 'COMPLETED');
  });

  it('PATCH: bad bodies are 400, unknown tasks 404, ASSIGNED without assignee 400 from the domain', async () => {
    await call(base, 'POST', '/v1/tasks', { json: { id: 'p2', type: 'x' } });
    assertError(await call(base, 'PATCH', '/v1/tasks/p2', { json: { status: 'DONE' } }), 400, 'INVALID_INPUT');
    assertError(await call(base, 'PATCH', '/v1/tasks/p2', { json: { progress: 101 } }), 400, 'INVALID_INPUT');
    assertError(await call(base, 'PATCH', '/v1/tasks/p2', { json: { assignee: 'bad id' } }), 400, 'INVALID_INPUT');
    assertError(await call(base, 'PATCH', '/v1/tasks/p2', { json: { status: 'ASSIGNED' } }), 400, 'INVALID_TASK');
    assertError(await call(base, 'PATCH', '/v1/tasks/nope', { json: { progress: 1 } }), 404, 'NOT_FOUND');
    assert.equal(backend.tasks.get('p2')?.status, 'PENDING');
  });

  it('POST /v1/tasks/:id/cancel cancels, idempotently; unknown is 404; a body must be empty', async () => {
    await call(base, 'POST', '/v1/tasks', { json: { id: 'c1', type: 'x' } });
    const r = await call(base, 'POST', '/v1/tasks/c1/cancel');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'CANCELLED');
    const again = await call(base, 'POST', '/v1/tasks/c1/cancel', { json: {} });
    assert.equal(again.status, 200);
    assert.equal(again.json.status, 'CANCELLED');
    assertError(await call(base, 'POST', '/v1/tasks/nope/cancel'), 404, 'NOT_FOUND');
    assertError(await call(base, 'POST', '/v1/tasks/c1/cancel', { json: { why: 'x' } }), 400, 'INVALID_INPUT');
  });

  it('GET /v1/tasks filters by status, capability, assignee; limit caps the list and x-total-count says how many', async () => {
    const ids = async (q: string) => {
      const r = await call(base, 'GET', `/v1/tasks${q}`);
      assert.equal(r.status, 200, r.text);
      return r.json.map((t: { id: string }) => t.id) as string[];
    };
    const everything = await call(base, 'GET', '/v1/tasks');
    assert.equal(everything.json.length, backend.tasks.list().length);
    assert.equal(everything.headers.get('x-total-count'), String(backend.tasks.list().length));
    assert.deepEqual(await ids('?status=COMPLETED'), ['flow']);
    assert.deepEqual(await ids('?status=CANCELLED'), ['c1']);
    assert.deepEqual((await ids('?capability=c')).sort(), ['flow']);
    assert.deepEqual(await ids('?assignee=coder-1'), ['flow']);
    assert.deepEqual(await ids('?status=PENDING&capability=summarize'), ['t1']);
    const limited = await call(base, 'GET', '/v1/tasks?limit=2');
    assert.equal(limited.json.length, 2);
    assert.equal(limited.headers.get('x-total-count'), String(backend.tasks.list().length));
    assert.deepEqual(await ids('?limit=0'), []);
    assertError(await call(base, 'GET', '/v1/tasks?limit=abc'), 400, 'INVALID_INPUT');
    assertError(await call(base, 'GET', '/v1/tasks?limit=-1'), 400, 'INVALID_INPUT');
    assertError(await call(base, 'GET', '/v1/tasks?limit=999999'), 400, 'INVALID_INPUT');
    assertError(await call(base, 'GET', '/v1/tasks?status=DONE'), 400, 'INVALID_INPUT');
  });
});

describe('HTTP API: malformed requests', T, () => {
  let backend: TestBackend;
  let server: ApiServer;
  let base: string;
  before(async () => {
    backend = testBackend();
    ({ server, base } = await startServer(backend, { bodyLimit: 4096 }));
  });
  after(() => server.close());

  it('bad JSON is 400 BAD_JSON', async () => {
    assertError(await call(base, 'POST', '/v1/tasks', { body: '{"type": "x",' }), 400, 'BAD_JSON');
    assertError(await call(base, 'PUT', '/v1/agents/a1', { body: 'not json' }), 400, 'BAD_JSON');
    assertError(await call(base, 'POST', '/v1/tasks', { body: '' }), 400, 'BAD_JSON');
    assert.equal(backend.tasks.list().length, 0);
  });

  it('prototype poisoning is refused as bad JSON', async () => {
    const r = await call(base, 'PUT', '/v1/agents/a1', { body: '{"name":"n","type":"t","__proto__":{"x":1}}' });
    assertError(r, 400, 'BAD_JSON');
  });

  it('a body over the limit is 413 PAYLOAD_TOO_LARGE', async () => {
    const r = await call(base, 'POST', '/v1/tasks', { json: { type: 'x', payload: 'p'.repeat(5000) } });
    assertError(r, 413, 'PAYLOAD_TOO_LARGE');
    assert.equal(backend.tasks.list().length, 0);
  });

  it('a non-JSON content type is 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    const plain = { 'content-type': 'text/plain' };
    assertError(
      await call(base, 'POST', '/v1/tasks', { body: 'type=x', headers: plain }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    assertError(
      await call(base, 'POST', '/v1/tasks', { body: 'type=x', headers: form }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
  });

  it('the default body limit is 256 KiB', async () => {
    const b = testBackend();
    const s = await startServer(b);
    try {
      const big = JSON.stringify({ type: 'x', payload: 'p'.repeat(256 * 1024) });
      assertError(await call(s.base, 'POST', '/v1/tasks', { body: big }), 413, 'PAYLOAD_TOO_LARGE');
      // Just under the limit reaches the domain, which has its own (smaller) payload cap.
      const under = JSON.stringify({ type: 'x', payload: 'p'.repeat(200 * 1024) });
      assertError(await call(s.base, 'POST', '/v1/tasks', { body: under }), 413, 'TOO_LARGE');
    } finally {
      await s.server.close();
    }
  });
});

describe('HTTP API: unexpected errors', T, () => {
  it('are 500 INTERNAL without the message or a stack trace', async () => {
    const backend = testBackend();
    backend.status = () => {
      throw new Error('secret detail at /home/x/db');
    };
    backend.peers = () => {
      throw new TypeError('boom');
    };
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const { server, base } = await startServer(backend, { log: pino({ level: 'error' }, sink) });
    try {
      for (const path of ['/v1/status', '/v1/peers']) {
        const r = await call(base, 'GET', path);
        assertError(r, 500, 'INTERNAL');
        assert.equal(r.text.includes('secret'), false);
        assert.equal(r.text.includes('boom'), false);
        assert.equal(r.text.includes('at '), false);
      }
      // The cause goes to the server log instead.
      const log = lines.join('');
      assert.match(log, /secret detail/);
      assert.match(log, /boom/);
      // The server keeps serving.
      assert.equal((await call(base, 'GET', '/v1/health')).status, 200);
    } finally {
      await server.close();
    }
  });
});

describe('HTTP API: bearer token', T, () => {
  const token = 's3cret-token-0123456789';
  const auth = { authorization: `Bearer ${token}` };
  let backend: TestBackend;
  let server: ApiServer;
  let base: string;
  before(async () => {
    backend = testBackend();
    ({ server, base } = await startServer(backend, { token }));
  });
  after(() => server.close());

  it('GET /v1/health needs no token', async () => {
    assert.equal((await call(base, 'GET', '/v1/health')).status, 200);
  });

  it('every other route needs the token: 401 UNAUTHORIZED with WWW-Authenticate', async () => {
    for (const [method, path] of [
      ['GET', '/v1/status'],
      ['GET', '/v1/peers'],
      ['GET', '/v1/agents'],
      ['GET', '/v1/tasks'],
      ['GET', '/v1/events'],
      ['GET', '/metrics'],
      ['GET', '/v1/unknown'],
    ] as const) {
      const r = await call(base, method, path);
      assertError(r, 401, 'UNAUTHORIZED');
      assert.equal(r.headers.get('www-authenticate'), 'Bearer');
    }
    assertError(await call(base, 'POST', '/v1/tasks', { json: { id: 'x', type: 'x' } }), 401, 'UNAUTHORIZED');
    assert.equal(backend.tasks.get('x'), undefined);
  });

  it('a wrong, malformed or differently sized token is 401', async () => {
    for (const authorization of [
      'Bearer wrong',
      `Bearer ${token}x`,
      `Bearer ${token.slice(0, -1)}`,
      `Basic ${token}`,
      token,
      'Bearer',
      `Bearer ${token} extra`,
    ]) {
      assertError(await call(base, 'GET', '/v1/status', { headers: { authorization } }), 401, 'UNAUTHORIZED');
    }
  });

  it('the right token opens every route', async () => {
    assert.equal((await call(base, 'GET', '/v1/status', { headers: auth })).status, 200);
    assert.equal((await call(base, 'GET', '/metrics', { headers: auth })).status, 200);
    assert.equal(
      (await call(base, 'GET', '/v1/status', { headers: { authorization: `bearer ${token}` } })).status,
      200,
    );
    const r = await call(base, 'POST', '/v1/tasks', { json: { id: 'x', type: 'x' }, headers: auth });
    assert.equal(r.status, 201);
    assertError(await call(base, 'GET', '/v1/unknown', { headers: auth }), 404, 'NOT_FOUND');
    const events = await EventReader.open(`${base}/v1/events`, auth);
    try {
      assert.equal(events.response.status, 200);
    } finally {
      events.close();
    }
  });
});

describe('HTTP API: start-up guard', T, () => {
  it('refuses a non-loopback host without a token (without ever listening)', () => {
    const backend = testBackend();
    for (const host of ['0.0.0.0', '::', '192.168.1.10', 'example.com']) {
      assert.throws(
        () => buildApi(backend, { host, port: 0 }),
        (err: unknown) => err instanceof ApiError && err.code === 'TOKEN_REQUIRED',
        host,
      );
    }
    // With a token the same options are accepted (built, not started).
    const app = buildApi(backend, { host: '0.0.0.0', port: 0, token: 'tok' });
    return app.close();
  });

  it('createApiServer rejects bad options before listening', async () => {
    const backend = testBackend();
    const bad: Partial<ApiServerOptions>[] = [
      { port: -1 },
      { port: 70000 },
      { port: 1.5 },
      { host: '' },
      { bodyLimit: 0 },
      { token: '' },
      { token: 'has space' },
    ];
    for (const o of bad) {
      await assert.rejects(
        createApiServer(backend, { host: '127.0.0.1', port: 0, ...o }),
        (err: unknown) => err instanceof ApiError && err.code === 'INVALID_OPTIONS',
        JSON.stringify(o),
      );
    }
  });

  it('a port in use is LISTEN_FAILED', async () => {
    const backend = testBackend();
    const { server } = await startServer(backend);
    try {
      await assert.rejects(
        createApiServer(backend, { host: '127.0.0.1', port: server.port }),
        (err: unknown) => err instanceof ApiError && err.code === 'LISTEN_FAILED',
      );
    } finally {
      await server.close();
    }
  });
});

describe('HTTP API: event stream', T, () => {
  let backend: TestBackend;
  let server: ApiServer;
  let base: string;
  before(async () => {
    backend = testBackend();
    ({ server, base } = await startServer(backend, { sse: { heartbeatMs: 100 } }));
  });
  after(() => server.close());

  it('streams one event per change, named by kind, with the MeshEvent as data', async () => {
    const events = await EventReader.open(`${base}/v1/events`);
    try {
      assert.equal(events.response.status, 200);
      assert.match(events.response.headers.get('content-type') ?? '', /^text\/event-stream/);
      await call(base, 'PUT', '/v1/agents/ev-1', { json: { name: 'E', type: 't', capabilities: ['c'] } });
      const e = await events.nextEvent();
      assert.equal(e.event, 'agent');
      const data = JSON.parse(e.data);
      assert.equal(data.kind, 'agent');
      assert.equal(data.id, 'ev-1');
      assert.equal(data.local, true);
      assert.equal(data.origin, 'node-a');
      assert.equal(data.value.name, 'E');
      assert.equal(typeof data.at, 'number');

      await call(base, 'POST', '/v1/tasks', { json: { id: 'ev-t', type: 'x' } });
      const t = await events.nextEvent();
      assert.equal(t.event, 'task');
      assert.equal(JSON.parse(t.data).value.status, 'PENDING');
    } finally {
      events.close();
    }
  });

  it('?kind= filters the stream', async () => {
    const tasksOnly = await EventReader.open(`${base}/v1/events?kind=task`);
    const both = await EventReader.open(`${base}/v1/events?kind=agent,task`);
    try {
      await call(base, 'PUT', '/v1/agents/ev-2', { json: { name: 'E', type: 't' } });
      await call(base, 'POST', '/v1/tasks', { json: { id: 'ev-t2', type: 'x' } });
      const first = await tasksOnly.nextEvent();
      assert.equal(first.event, 'task');
      assert.equal(JSON.parse(first.data).id, 'ev-t2');
      assert.equal((await both.nextEvent()).event, 'agent');
      assert.equal((await both.nextEvent()).event, 'task');
    } finally {
      tasksOnly.close();
      both.close();
    }
    assertError(await call(base, 'GET', '/v1/events?kind=bogus'), 400, 'INVALID_INPUT');
    assertError(await call(base, 'GET', '/v1/events?since=1'), 400, 'INVALID_INPUT');
    assert.equal((await call(base, 'HEAD', '/v1/events')).status, 404);
  });

  it('sends heartbeat comments', async () => {
    const events = await EventReader.open(`${base}/v1/events`);
    try {
      let f = await events.next();
      assert.equal(f.comment, 'connected');
      f = await events.next(2_000);
      assert.equal(f.comment, 'ping');
    } finally {
      events.close();
    }
  });

  it('unsubscribes from the node once the last client left and the retention passed', async () => {
    const b = testBackend();
    const s = await startServer(b, { sse: { retainIdleMs: 50 } });
    try {
      const events = await EventReader.open(`${s.base}/v1/events`);
      await events.next();
      assert.equal(b.listenerCount(), 1);
      const second = await EventReader.open(`${s.base}/v1/events`);
      await second.next();
      // One shared subscription, whatever the number of clients.
      assert.equal(b.listenerCount(), 1);
      events.close();
      second.close();
      await eventually(() => b.listenerCount() === 0);
    } finally {
      await s.server.close();
    }
  });

  it('every event has an id; a reconnect with Last-Event-ID gets every later event, in order, filtered', async () => {
    const first = await EventReader.open(`${base}/v1/events?kind=task`);
    let lastId: string;
    try {
      const hello = await first.next();
      assert.equal(hello.comment, 'connected');
      assert.match(hello.id ?? '', /^[a-z0-9]+-\d+$/, 'the connected comment carries the current position');
      await call(base, 'POST', '/v1/tasks', { json: { id: 'rs-0', type: 'x' } });
      const e = await first.nextEvent();
      assert.equal(JSON.parse(e.data).id, 'rs-0');
      assert.match(e.id ?? '', /^[a-z0-9]+-\d+$/);
      lastId = e.id as string;
    } finally {
      first.close();
    }
    // Missed while disconnected: tasks (wanted) and agents (filtered out).
    for (let i = 1; i <= 5; i++) {
      await call(base, 'POST', '/v1/tasks', { json: { id: `rs-${i}`, type: 'x' } });
      await call(base, 'PUT', `/v1/agents/rs-a${i}`, { json: { name: 'A', type: 't' } });
    }
    const again = await EventReader.open(`${base}/v1/events?kind=task`, { 'last-event-id': lastId });
    try {
      // Written while the replay is under way: must follow it with no gap and no duplicate.
      const live = Promise.all(
        [6, 7, 8].map((i) => call(base, 'POST', '/v1/tasks', { json: { id: `rs-${i}`, type: 'x' } })),
      );
      const got: Array<{ id: string; task: string }> = [];
      while (got.length < 8) {
        const f = await again.nextEvent();
        assert.equal(f.event, 'task', `only tasks after ${JSON.stringify(got)}`);
        got.push({ id: f.id as string, task: JSON.parse(f.data).id });
      }
      await live;
      assert.deepEqual(
        got.slice(0, 5).map((g) => g.task),
        ['rs-1', 'rs-2', 'rs-3', 'rs-4', 'rs-5'],
      );
      assert.deepEqual(
        got
          .slice(5)
          .map((g) => g.task)
          .sort(),
        ['rs-6', 'rs-7', 'rs-8'],
      );
      const seqs = got.map((g) => Number(g.id.split('-')[1]));
      for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, `ids increase: ${seqs.join(',')}`);
      assert.ok(seqs[0]! > Number(lastId.split('-')[1]));
    } finally {
      again.close();
    }
  });

  it('the lastEventId query parameter resumes like the header; an id never issued is 400', async () => {
    const a = await EventReader.open(`${base}/v1/events`);
    const hello = await a.next();
    a.close();
    await call(base, 'POST', '/v1/tasks', { json: { id: 'rq-1', type: 'x' } });
    const b = await EventReader.open(`${base}/v1/events?lastEventId=${hello.id}`);
    try {
      const e = await b.nextEvent();
      assert.equal(JSON.parse(e.data).id, 'rq-1');
    } finally {
      b.close();
    }
    const run = (hello.id as string).split('-')[0];
    assertError(await call(base, 'GET', `/v1/events?lastEventId=${run}-999999999`), 400, 'INVALID_INPUT');
    assertError(
      await call(base, 'GET', '/v1/events', { headers: { 'last-event-id': 'not an id' } }),
      400,
      'INVALID_INPUT',
    );
  });

  it('a gap event when the window no longer holds the events after the id, then what it holds', async () => {
    const b = testBackend();
    const s = await startServer(b, { sse: { windowEvents: 5 } });
    try {
      const first = await EventReader.open(`${s.base}/v1/events`);
      const hello = await first.next();
      first.close();
      for (let i = 0; i < 12; i++) await call(s.base, 'POST', '/v1/tasks', { json: { id: `gw-${i}`, type: 'x' } });
      const again = await EventReader.open(`${s.base}/v1/events`, { 'last-event-id': hello.id as string });
      try {
        const gap = await again.nextEvent();
        assert.equal(gap.event, 'gap');
        const info = JSON.parse(gap.data);
        assert.equal(info.reason, 'evicted');
        assert.equal(info.lastEventId, hello.id);
        const held: string[] = [];
        for (let i = 0; i < 5; i++) held.push(JSON.parse((await again.nextEvent()).data).id);
        assert.deepEqual(held, ['gw-7', 'gw-8', 'gw-9', 'gw-10', 'gw-11']);
        // The gap's own id resumes right before the first held event.
        assert.equal(Number(gap.id?.split('-')[1]) + 1, Number(info.firstAvailable.split('-')[1]));
      } finally {
        again.close();
      }
      assert.match((await call(s.base, 'GET', '/metrics')).text, /^agentmesh_api_sse_gaps_total 1$/m);
    } finally {
      await s.server.close();
    }
  });

  it('an id from an earlier run of the node is a gap (restart), then the events of this run', async () => {
    const b = testBackend();
    const old = await startServer(b);
    const first = await EventReader.open(`${old.base}/v1/events`);
    const hello = await first.next();
    first.close();
    await old.server.close();
    const s = await startServer(b);
    try {
      await call(s.base, 'POST', '/v1/tasks', { json: { id: 'rr-1', type: 'x' } });
      // The log starts listening with the first stream: rr-1 came before it and is not held.
      const again = await EventReader.open(`${s.base}/v1/events`, { 'last-event-id': hello.id as string });
      try {
        const gap = await again.nextEvent();
        assert.equal(gap.event, 'gap');
        assert.equal(JSON.parse(gap.data).reason, 'restart');
        await call(s.base, 'POST', '/v1/tasks', { json: { id: 'rr-2', type: 'x' } });
        const e = await again.nextEvent();
        assert.equal(JSON.parse(e.data).id, 'rr-2');
        assert.notEqual(e.id?.split('-')[0], hello.id?.split('-')[0]);
      } finally {
        again.close();
      }
    } finally {
      await s.server.close();
    }
  });

  it('a replay larger than the per-client buffer is paced, not dropped as a slow client', async () => {
    const b = testBackend();
    const s = await startServer(b, { sse: { maxBufferBytes: 4096 } });
    try {
      const first = await EventReader.open(`${s.base}/v1/events`);
      const hello = await first.next();
      first.close();
      const n = 60;
      for (let i = 0; i < n; i++) {
        await call(s.base, 'POST', '/v1/tasks', { json: { id: `rp-${i}`, type: 'x', title: 'y'.repeat(200) } });
      }
      const again = await EventReader.open(`${s.base}/v1/events`, { 'last-event-id': hello.id as string });
      try {
        for (let i = 0; i < n; i++) assert.equal(JSON.parse((await again.nextEvent()).data).id, `rp-${i}`);
      } finally {
        again.close();
      }
      assert.match((await call(s.base, 'GET', '/metrics')).text, /^agentmesh_api_sse_dropped_total 0$/m);
    } finally {
      await s.server.close();
    }
  });

  it('a live client that stops reading during a burst is paced from the window, not dropped', async () => {
    const b = testBackend();
    const s = await startServer(b, { sse: { maxBufferBytes: 64 * 1024, windowBytes: 64 * 1024 * 1024 } });
    try {
      // A client that reads nothing while about 8 MB of events are written: more than the kernel's
      // socket buffers and far more than the per-client bound.
      const res = await new Promise<IncomingMessage>((ok, fail) =>
        httpGet(`${s.base}/v1/events?kind=task`, ok).on('error', fail),
      );
      res.pause();
      const n = 4000;
      const payload = { text: 'p'.repeat(1900) };
      for (let i = 0; i < n; i++) await b.tasks.create({ id: `burst-${i}`, type: 'x', payload });
      // Now read everything: every event, in order, and no error event.
      const ids: string[] = [];
      let buf = '';
      let errorEvent = false;
      await new Promise<void>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`only ${ids.length} of ${n} events arrived`)), 30_000);
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let k: number;
          while ((k = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, k);
            buf = buf.slice(k + 2);
            if (frame.includes('event: error')) errorEvent = true;
            const m = /"id":"(burst-\d+)"/.exec(frame);
            if (m !== null && frame.includes('event: task')) ids.push(m[1] as string);
          }
          if (ids.length >= n) {
            clearTimeout(timer);
            done();
          }
        });
        res.on('end', () => fail(new Error(`stream ended after ${ids.length} events`)));
        res.resume();
      });
      res.destroy();
      assert.equal(errorEvent, false, 'no SLOW_CONSUMER error');
      assert.deepEqual(
        ids,
        Array.from({ length: n }, (_, i) => `burst-${i}`),
      );
      assert.match((await call(s.base, 'GET', '/metrics')).text, /^agentmesh_api_sse_dropped_total 0$/m);
    } finally {
      await s.server.close();
    }
  });

  it('close() ends open streams instead of waiting for them', async () => {
    const b = testBackend();
    const s = await startServer(b);
    const events = await EventReader.open(`${s.base}/v1/events`);
    await events.next();
    await s.server.close();
    await events.ended();
    assert.equal(b.listenerCount(), 0);
  });
});

describe('HTTP API: metrics', T, () => {
  let backend: TestBackend;
  let server: ApiServer;
  let base: string;
  before(async () => {
    backend = testBackend();
    ({ server, base } = await startServer(backend));
  });
  after(() => server.close());

  it('GET /metrics exposes node counters, HTTP counters and process metrics', async () => {
    backend.extraCounters['sync.deltasApplied'] = 42;
    backend.extraCounters['net/bytes-in'] = 7;
    backend.extraCounters.gossip_messages_received_total = 5;
    await call(base, 'POST', '/v1/tasks', { json: { id: 'm1', type: 'x' } });
    await call(base, 'GET', '/v1/tasks/nope');
    const r = await call(base, 'GET', '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    const m = r.text;
    assert.match(m, /^agentmesh_sync_deltas_applied 42$/m);
    assert.match(m, /^agentmesh_net_bytes_in 7$/m);
    assert.match(m, /^# TYPE agentmesh_net_bytes_in gauge$/m);
    // `_total` entries are Prometheus counters, holding the snapshot's absolute value.
    assert.match(m, /^# TYPE agentmesh_gossip_messages_received_total counter$/m);
    assert.match(m, /^agentmesh_gossip_messages_received_total 5$/m);
    assert.match(
      m,
      new RegExp(`^agentmesh_replica_local_mutations_total ${backend.replica.stats.localMutations}$`, 'm'),
    );
    assert.match(m, /^# HELP agentmesh_replica_local_mutations_total Mutations made here$/m);
    // A node histogram: cumulative buckets per label set, +Inf, sum and count.
    assert.match(m, /^# TYPE agentmesh_test_latency_seconds histogram$/m);
    assert.match(m, /^agentmesh_test_latency_seconds_bucket\{kind="a",le="0.1"\} 1$/m);
    assert.match(m, /^agentmesh_test_latency_seconds_bucket\{kind="a",le="1"\} 2$/m);
    assert.match(m, /^agentmesh_test_latency_seconds_bucket\{kind="b",le="1"\} 0$/m);
    assert.match(m, /^agentmesh_test_latency_seconds_bucket\{kind="b",le="\+Inf"\} 1$/m);
    assert.match(m, /^agentmesh_test_latency_seconds_sum\{kind="a"\} 0.55$/m);
    assert.match(m, /^agentmesh_test_latency_seconds_count\{kind="b"\} 1$/m);
    // The task's creation was timed to its durable acknowledgement.
    assert.match(m, /^agentmesh_api_write_ack_seconds_count\{op="task_create"\} 1$/m);
    assert.match(m, /^agentmesh_api_http_requests_total\{method="POST",route="\/v1\/tasks",status="201"\} 1$/m);
    assert.match(m, /^agentmesh_api_http_requests_total\{method="GET",route="\/v1\/tasks\/:id",status="404"\} 1$/m);
    assert.match(m, /^process_cpu_user_seconds_total /m);
    assert.match(m, /^nodejs_heap_size_used_bytes /m);

    // Counters follow the snapshot: changed values, and names that went away.
    backend.extraCounters['sync.deltasApplied'] = 43;
    backend.extraCounters.gossip_messages_received_total = 9;
    delete backend.extraCounters['net/bytes-in'];
    const again = (await call(base, 'GET', '/metrics')).text;
    assert.match(again, /^agentmesh_sync_deltas_applied 43$/m);
    assert.match(again, /^agentmesh_gossip_messages_received_total 9$/m);
    assert.doesNotMatch(again, /agentmesh_net_bytes_in/);
  });

  it('unknown routes are counted under one label, not by raw URL', async () => {
    await call(base, 'GET', '/v1/random-123');
    const m = (await call(base, 'GET', '/metrics')).text;
    assert.match(m, /route="unmatched",status="404"/);
    assert.doesNotMatch(m, /random-123/);
  });
});

describe('HTTP API: fault switch', T, () => {
  let backend: TestBackend;
  let faults: FakeFaults;
  let server: ApiServer;
  let base: string;
  before(async () => {
    faults = new FakeFaults();
    backend = testBackend({ faults });
    ({ server, base } = await startServer(backend));
  });
  after(() => server.close());

  it('POST /v1/admin/partition and /v1/admin/heal drive the switch', async () => {
    const p = await call(base, 'POST', '/v1/admin/partition', { json: { peers: ['node-b', 'node-c'] } });
    assert.equal(p.status, 200, p.text);
    assert.deepEqual(p.json, { denied: ['node-b', 'node-c'] });
    const h = await call(base, 'POST', '/v1/admin/heal');
    assert.equal(h.status, 200);
    assert.deepEqual(h.json, { denied: [] });
    assert.deepEqual(faults.calls, ['partition:node-b,node-c', 'heal']);
  });

  it('POST /v1/admin/load drives the benchmark load and validates its body', async () => {
    const r = await call(base, 'POST', '/v1/admin/load', { json: { count: 10, agents: 2 } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { count: 10, ms: 0 });
    assert.equal(faults.calls.at(-1), 'load:10:2:512');
    assertError(await call(base, 'POST', '/v1/admin/load', { json: { count: 0 } }), 400, 'INVALID_INPUT');
    faults.calls.pop();
  });

  it('bad partition bodies are 400', async () => {
    assertError(await call(base, 'POST', '/v1/admin/partition', { json: {} }), 400, 'INVALID_INPUT');
    assertError(await call(base, 'POST', '/v1/admin/partition', { json: { peers: 'node-b' } }), 400, 'INVALID_INPUT');
    assertError(await call(base, 'POST', '/v1/admin/partition', { json: { peers: ['bad id'] } }), 400, 'INVALID_INPUT');
    assert.deepEqual(faults.calls, ['partition:node-b,node-c', 'heal']);
  });
});
