import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { PeerView } from '../../src/api/backend.js';
import { type ApiServer, createApiServer } from '../../src/api/index.js';
import { RegistryError, RegistryErrorCode } from '../../src/registry/errors.js';
import { isForgotten, nodeSchema } from '../../src/registry/node-schema.js';
import { PolicyError } from '../../src/replica/index.js';
import { meshReplica, type TestBackend, testBackend } from '../helpers/api-backend.js';

const T = { timeout: 15_000 };
const isPolicyError =
  (reason: string) =>
  (err: unknown): boolean =>
    err instanceof PolicyError && err.reason === reason;
const quiet = pino({ level: 'silent' });

interface Res {
  status: number;
  text: string;
  json: { error?: { code: string; message: string } } & Record<string, unknown>;
}

async function call(base: string, method: string, path: string, json?: unknown): Promise<Res> {
  const res = await fetch(base + path, {
    method,
    headers: json === undefined ? {} : { 'content-type': 'application/json' },
    ...(json === undefined ? {} : { body: JSON.stringify(json) }),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  return { status: res.status, text, json: text ? (JSON.parse(text) as Res['json']) : {} };
}

function assertError(r: Res, status: number, code: string, message?: RegExp): void {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status}: ${r.text}`);
  assert.equal(r.json.error?.code, code, r.text);
  if (message) assert.match(r.json.error?.message ?? '', message);
}

describe('POST /v1/tasks/:id/retry', T, () => {
  let backend: TestBackend;
  let server: ApiServer;
  let base: string;
  before(async () => {
    backend = testBackend();
    server = await createApiServer(backend, { host: '127.0.0.1', port: 0, log: quiet });
    base = server.url;
  });
  after(() => server.close());

  async function failed(id: string, maxRetries = 0): Promise<void> {
    assert.equal((await call(base, 'POST', '/v1/tasks', { id, type: 't', title: id, maxRetries })).status, 201);
    assert.equal((await call(base, 'PATCH', `/v1/tasks/${id}`, { status: 'IN_PROGRESS' })).status, 200);
    const r = await call(base, 'PATCH', `/v1/tasks/${id}`, { status: 'FAILED', error: { code: 'BOOM' } });
    assert.equal(r.json.status, 'FAILED', r.text);
  }

  it('returns a FAILED task to PENDING as a new attempt, past maxRetries, keeping the failed attempt', async () => {
    await failed('r1', 0);
    const r = await call(base, 'POST', '/v1/tasks/r1/retry');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'PENDING');
    assert.equal(r.json.attempt, 2, 'a new attempt');
    assert.equal(r.json.epoch, 1, 'epoch + 1 outranks the failed attempt on every replica');
    assert.equal(r.json.error, null);
    assert.equal(r.json.notBefore, null, 'no backoff: an operator asked');
    const attempts = r.json.attempts as Array<{ attempt: number; status: string; error: { code: string } }>;
    assert.equal(attempts.length, 1);
    assert.equal(attempts[0]?.status, 'FAILED');
    assert.equal(attempts[0]?.error.code, 'BOOM');
    // It is the board's state, not only the response.
    assert.equal(backend.tasks.get('r1')?.status, 'PENDING');
    // And it can fail and be retried again.
    await call(base, 'PATCH', '/v1/tasks/r1', { status: 'IN_PROGRESS' });
    await call(base, 'PATCH', '/v1/tasks/r1', { status: 'FAILED' });
    const again = await call(base, 'POST', '/v1/tasks/r1/retry', {});
    assert.equal(again.json.attempt, 3, again.text);
  });

  it('refuses with 409 a task that is pending, running, completed or cancelled, saying why', async () => {
    await call(base, 'POST', '/v1/tasks', { id: 'p1', type: 't', title: 'p' });
    assertError(await call(base, 'POST', '/v1/tasks/p1/retry'), 409, 'INVALID_TRANSITION', /PENDING: cannot retry/);
    await call(base, 'PATCH', '/v1/tasks/p1', { status: 'IN_PROGRESS' });
    assertError(await call(base, 'POST', '/v1/tasks/p1/retry'), 409, 'INVALID_TRANSITION', /IN_PROGRESS/);
    await call(base, 'PATCH', '/v1/tasks/p1', { status: 'COMPLETED', result: 1 });
    assertError(await call(base, 'POST', '/v1/tasks/p1/retry'), 409, 'INVALID_TRANSITION', /completed/);
    await call(base, 'POST', '/v1/tasks', { id: 'c1', type: 't', title: 'c' });
    assert.equal((await call(base, 'POST', '/v1/tasks/c1/cancel')).status, 200);
    assertError(
      await call(base, 'POST', '/v1/tasks/c1/retry'),
      409,
      'INVALID_TRANSITION',
      /cancel is final.*submit the task again/,
    );
    assert.equal(backend.tasks.get('c1')?.status, 'CANCELLED');
  });

  it('404 for an unknown task, 400 for a bad id or a body with fields', async () => {
    assertError(await call(base, 'POST', '/v1/tasks/nope/retry'), 404, 'NOT_FOUND');
    assertError(await call(base, 'POST', '/v1/tasks/bad%20id/retry'), 400, 'INVALID_INPUT');
    await failed('r2');
    assertError(await call(base, 'POST', '/v1/tasks/r2/retry', { force: true }), 400, 'INVALID_INPUT');
    assert.equal(backend.tasks.get('r2')?.status, 'FAILED', 'a refused request changes nothing');
  });
});

describe('DELETE /v1/peers/:id', T, () => {
  let server: ApiServer;
  let base: string;
  const forgotten: string[] = [];
  before(async () => {
    const backend = testBackend();
    const dead: PeerView = {
      id: 'node-dead',
      name: 'gone',
      state: 'dead',
      phi: 30,
      connected: false,
      addresses: [],
      lastHeartbeat: 5,
      api: null,
    };
    // The node's own rules are tested in the CLI integration test against real processes; here
    // the route's mapping of the backend's answers and errors.
    const withForget: TestBackend = Object.assign(backend, {
      async forgetPeer(id: string): Promise<PeerView> {
        if (id === 'node-b') throw new RegistryError(RegistryErrorCode.PEER_ALIVE, 'peer node-b is alive');
        if (id !== 'node-dead') throw new RegistryError(RegistryErrorCode.NOT_FOUND, `peer ${id} not found`);
        forgotten.push(id);
        return { ...dead, state: 'unknown' as const, phi: null };
      },
    });
    server = await createApiServer(withForget, { host: '127.0.0.1', port: 0, log: quiet });
    base = server.url;
  });
  after(() => server.close());

  it('forgets a dead peer (200 with the peer), refuses a live one (409) and an unknown one (404)', async () => {
    const r = await call(base, 'DELETE', '/v1/peers/node-dead');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.id, 'node-dead');
    assert.deepEqual(forgotten, ['node-dead']);
    assertError(await call(base, 'DELETE', '/v1/peers/node-b'), 409, 'PEER_ALIVE', /alive/);
    assertError(await call(base, 'DELETE', '/v1/peers/node-x'), 404, 'NOT_FOUND');
    assertError(await call(base, 'DELETE', '/v1/peers/bad%20id'), 400, 'INVALID_INPUT');
    assert.deepEqual(forgotten, ['node-dead'], 'refused requests reach nothing');
  });

  it('is 404 on a backend that cannot forget peers', async () => {
    const plain = await createApiServer(testBackend(), { host: '127.0.0.1', port: 0, log: quiet });
    try {
      assertError(await call(plain.url, 'DELETE', '/v1/peers/node-b'), 404, 'NOT_FOUND');
    } finally {
      await plain.close();
    }
  });
});

describe('node record policy: the forgotten mark', () => {
  it('lets any member write `forgotten` on another node record, and nothing else', () => {
    const a = meshReplica('node-a');
    const b = meshReplica('node-b');
    const key = 'node/node-a';
    const S = nodeSchema;
    const d1 = a.mutate(key, () => S.delta({ heartbeat: S.fields.heartbeat.set(7, a.clock.now(), 'node-a') }));
    b.applyDelta(d1, 'node-a');
    // B marks A forgotten: allowed locally and on A's replica.
    const d2 = b.mutate(key, () => S.delta({ forgotten: S.fields.forgotten.set(7, b.clock.now(), 'node-b') }));
    assert.equal(a.applyDelta(d2, 'node-b'), 'applied');
    assert.equal(isForgotten(S.value(a.get(key) ?? S.empty())), true);
    // B writing A's heartbeat is still refused.
    assert.throws(
      () => b.mutate(key, () => S.delta({ heartbeat: S.fields.heartbeat.set(99, b.clock.now(), 'node-b') })),
      isPolicyError('not_owner'),
    );
    // A full record carrying both (A's fields by A, the mark by B) merges from sync.
    const c = meshReplica('node-c');
    assert.equal(c.mergeRecord(key, b.get(key) ?? S.empty(), 'node-b'), true);
    // A beats again: no longer forgotten.
    const d3 = a.mutate(key, () => S.delta({ heartbeat: S.fields.heartbeat.set(8, a.clock.now(), 'node-a') }));
    b.applyDelta(d3, 'node-a');
    assert.equal(isForgotten(S.value(b.get(key) ?? S.empty())), false);
  });
});
