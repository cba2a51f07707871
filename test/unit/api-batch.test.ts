import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { type ApiServer, createApiServer } from '../../src/api/index.js';
import { MAX_BATCH_OPS } from '../../src/api/schemas.js';
import { type TestBackend, testBackend } from '../helpers/api-backend.js';

const T = { timeout: 15_000 };

async function post(
  base: string,
  path: string,
  json: unknown,
): // eslint-disable-next-line @typescript-eslint/no-explicit-any
Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(json),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  return { status: res.status, json: JSON.parse(text), text };
}

const meta = { model: 'm', region: 'eu', notes: 'n'.repeat(100) };

describe('HTTP API: POST /v1/batch and POST /v1/agents/:id/heartbeat', T, () => {
  let backend: TestBackend;
  let server: ApiServer;
  let base: string;
  before(async () => {
    backend = testBackend();
    server = await createApiServer(backend, { host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
    base = server.url;
  });
  after(() => server.close());

  it('applies every op in order and answers one result per op', async () => {
    const r = await post(base, '/v1/batch', {
      ops: [
        { op: 'agent.put', id: 'b-1', agent: { name: 'one', type: 'llm', capabilities: ['x'], meta } },
        { op: 'agent.put', id: 'b-1', agent: { name: 'one again', type: 'llm', state: 'RUNNING' } },
        { op: 'agent.heartbeat', id: 'b-1', heartbeat: { load: 3 } },
        { op: 'task.create', task: { id: 'bt-1', type: 'sum', payload: { n: 1 } } },
        { op: 'task.patch', id: 'bt-1', patch: { status: 'ASSIGNED', assignee: 'b-1' } },
        { op: 'task.cancel', id: 'bt-1' },
      ],
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.ok, 6, r.text);
    assert.equal(r.json.failed, 0);
    assert.equal(r.json.results.length, 6);
    const agent = backend.agents.get('b-1');
    assert.equal(agent?.name, 'one again', 'the later put of the same agent wins: ops apply in order');
    assert.equal(agent?.state, 'RUNNING');
    assert.equal(agent?.load, 3);
    assert.deepEqual(agent?.meta, meta, 'a put without meta keeps the earlier meta');
    assert.equal(r.json.results[3].value.id, 'bt-1');
    assert.equal(backend.tasks.get('bt-1')?.status, 'CANCELLED');
  });

  it('a bad or refused op fails alone, with its own typed error; the others apply', async () => {
    const r = await post(base, '/v1/batch', {
      ops: [
        { op: 'agent.put', id: 'b-2', agent: { name: 'two', type: 'llm' } },
        { op: 'agent.put', id: 'bad id!', agent: { name: 'x', type: 'llm' } },
        { op: 'frobnicate' },
        { op: 'task.patch', id: 'no-such-task', patch: { status: 'ASSIGNED', assignee: 'b-2' } },
        { op: 'agent.heartbeat', id: 'never-registered' },
        { op: 'task.create', task: { id: 'bt-2', type: 'sum' } },
      ],
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.ok, 2, r.text);
    assert.equal(r.json.failed, 4);
    const codes = r.json.results.map((x: { ok: boolean; error?: { code: string } }) => (x.ok ? 'ok' : x.error?.code));
    assert.equal(codes[0], 'ok');
    assert.equal(codes[1], 'INVALID_INPUT');
    assert.match(r.json.results[1].error.message, /^ops\.1\.id: /);
    assert.equal(codes[2], 'INVALID_INPUT');
    assert.equal(codes[3], 'NOT_FOUND', JSON.stringify(r.json.results[3]));
    assert.notEqual(codes[4], 'ok');
    assert.equal(codes[5], 'ok');
    assert.ok(backend.agents.get('b-2'));
    assert.ok(backend.tasks.get('bt-2'));
  });

  it('refuses a bad envelope whole: 400, nothing applied', async () => {
    const before = backend.replica.stats.localMutations;
    for (const body of [{}, { ops: [] }, { ops: 'x' }, { ops: [], extra: 1 }]) {
      const r = await post(base, '/v1/batch', body);
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.code, 'INVALID_INPUT');
    }
    const tooMany = Array.from({ length: MAX_BATCH_OPS + 1 }, (_, i) => ({
      op: 'task.create',
      task: { id: `m-${i}`, type: 'x' },
    }));
    const r = await post(base, '/v1/batch', { ops: tooMany });
    assert.equal(r.status, 400, r.text);
    assert.equal(backend.replica.stats.localMutations, before, 'nothing was written');
  });

  it('takes a thousand agent upserts in one request', async () => {
    const ops = Array.from({ length: MAX_BATCH_OPS }, (_, i) => ({
      op: 'agent.put',
      id: `bulk-${i}`,
      agent: { name: `bulk ${i}`, type: 'worker', capabilities: ['c'], meta },
    }));
    const r = await post(base, '/v1/batch', { ops });
    assert.equal(r.status, 200, r.text.slice(0, 200));
    assert.equal(r.json.ok, MAX_BATCH_OPS);
    assert.equal(backend.agents.list({ type: 'worker' }).length, MAX_BATCH_OPS);
  });

  it('updates liveness without rewriting the profile', async () => {
    await backend.agents.upsert('hb-1', { name: 'hb', type: 'llm', meta });
    const changes: Array<{ incoming: readonly unknown[] }> = [];
    const off = backend.replica.events.on('change', (c) => changes.push({ incoming: c.incoming }));
    const r = await post(base, '/v1/agents/hb-1/heartbeat', { load: 2, state: 'RUNNING' });
    off();
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.load, 2);
    assert.equal(r.json.state, 'RUNNING');
    assert.deepEqual(r.json.meta, meta, 'the profile is still there');
    assert.equal(changes.length, 1);
    const written = changes[0]!.incoming.filter((f) => f !== undefined).length;
    assert.equal(written, 1, 'one field (the liveness register) travels, not the profile');
  });

  it('refuses unknown fields and unknown agents', async () => {
    const bad = await post(base, '/v1/agents/hb-1/heartbeat', { meta: {} });
    assert.equal(bad.status, 400, bad.text);
    const unknown = await post(base, '/v1/agents/nobody/heartbeat', {});
    assert.equal(unknown.status, 404, unknown.text);
  });
});
