/**
 * A full disk (or another I/O failure) is named, health tells the truth, and the node recovers by
 * itself: writes fail with STORE_FULL / STORE_IO while the store cannot write (507 / 503 on the
 * API), `/v1/health` answers 503 with the reason, and once the store can write again the next
 * write (or the replica's own retry, with no new write) succeeds. Every acknowledged write is on
 * disk after recovery and after a restart. The fault is injected through the store's
 * `writeFault` hook, raised the way LevelDB reports it, and made real (no root needed) with a
 * file-size limit (`ulimit -f`), under which LevelDB's own log write fails: without the store's
 * reopen, that node would never write again.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createApiServer, toErrorResponse } from '../../src/api/index.js';
import { gCounter, type RecordState } from '../../src/crdt/index.js';
import { DurableReplica, type Replica } from '../../src/replica/index.js';
import { StoreError } from '../../src/store/index.js';
import { mapOpError } from '../../src/store/errors.js';
import { TaskBoard } from '../../src/tasks/tasks.js';
import { meshReplica, testBackend } from '../helpers/api-backend.js';
import { noteReplica, noteSchema } from '../helpers/replicas.js';

const dirs: string[] = [];
after(async () => {
  await Promise.allSettled(dirs.map((d) => rm(d, { recursive: true, force: true })));
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'agentmesh-store-full-'));
  dirs.push(dir);
  return dir;
}

/** How classic-level reports ENOSPC: a LEVEL_IO_ERROR whose message carries strerror's text. */
function noSpace(): Error {
  return Object.assign(new Error('IO error: /data/000005.log: No space left on device'), { code: 'LEVEL_IO_ERROR' });
}
function ioError(): Error {
  return Object.assign(new Error('IO error: /data/000005.log: Input/output error'), { code: 'LEVEL_IO_ERROR' });
}

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function hit(d: DurableReplica, key: string): Promise<unknown> {
  const r = d.replica;
  return d.mutate(key, (cur) =>
    noteSchema.delta({ hits: gCounter.increment(noteSchema.get(cur, 'hits'), r.nodeId, 1) }),
  );
}
function hitsOf(r: Replica, key: string): number {
  const s = r.get(key);
  return s === undefined ? 0 : (noteSchema.value(s as RecordState).hits ?? 0);
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('store errors are classified', () => {
  test('ENOSPC (as code or as LevelDB message) is STORE_FULL; other I/O errors STORE_IO', () => {
    assert.equal(mapOpError(noSpace(), 'batch write').code, 'STORE_FULL');
    assert.equal(mapOpError(Object.assign(new Error('write failed'), { code: 'ENOSPC' }), 'x').code, 'STORE_FULL');
    assert.equal(mapOpError(new Error('wrapped', { cause: noSpace() }), 'x').code, 'STORE_FULL');
    assert.equal(mapOpError(ioError(), 'batch write').code, 'STORE_IO');
  });

  test('the API answers 507 STORE_FULL and 503 STORE_IO, without internals', () => {
    const full = toErrorResponse(new StoreError('STORE_FULL', 'batch write failed: /secret/path'));
    assert.equal(full.status, 507);
    assert.equal(full.body.error.code, 'STORE_FULL');
    assert.doesNotMatch(full.body.error.message, /secret/);
    const io = toErrorResponse(new StoreError('STORE_IO', 'batch write failed'));
    assert.equal(io.status, 503);
    assert.equal(io.body.error.code, 'STORE_IO');
  });
});

describe('DurableReplica on a failing disk', () => {
  for (const [name, fault, code] of [
    ['full disk', noSpace, 'STORE_FULL'],
    ['I/O error', ioError, 'STORE_IO'],
  ] as const) {
    test(`${name}: writes fail with ${code}, health says so, and it recovers by itself`, async () => {
      const dir = await tempDir();
      let failing = false;
      const a = noteReplica('node-a');
      const { durable } = await DurableReplica.open(a, dir, { writeFault: () => (failing ? fault() : undefined) });
      try {
        let acked = 0;
        for (let i = 0; i < 3; i++) {
          await hit(durable, 'note/1');
          acked++;
        }
        assert.deepEqual(durable.health(), { ok: true });

        failing = true;
        await rejectsWith(hit(durable, 'note/1'), code);
        await rejectsWith(hit(durable, 'note/2'), code);
        const h = durable.health();
        assert.equal(h.ok, false);
        assert.equal(h.code, code);
        assert.ok((h.failedWrites ?? 0) >= 2, `failed writes counted: ${JSON.stringify(h)}`);
        assert.equal(typeof h.since, 'number');
        const failedBatches = durable.store.stats.failedBatches;
        assert.ok(failedBatches >= 2);

        // Space returns: the replica retries on its own, with no new write.
        failing = false;
        await waitFor(() => durable.health().ok, 5_000, 'the store to be writable again');
        await hit(durable, 'note/1');
        acked++;
        assert.equal(hitsOf(a, 'note/1'), acked + 1, 'the unacknowledged write is in memory');
        // LevelDB keeps a failed sync sticky until reopened: the store reopened before retrying.
        assert.ok(durable.store.stats.reopens >= 1, `reopened: ${durable.store.stats.reopens}`);
      } finally {
        await durable.close();
      }

      // After a restart: every acknowledged write, and the memory state as it was at close.
      const b = noteReplica('node-a');
      const reopened = await DurableReplica.open(b, dir);
      try {
        assert.equal(hitsOf(b, 'note/1'), 5, 'acknowledged writes (4) and the retried one survive the restart');
        assert.equal(hitsOf(b, 'note/2'), 1, 'the write refused during the fault reached disk with the retry');
        assert.equal(b.dots.toWire().length > 0, true);
      } finally {
        await reopened.durable.close();
      }
    });
  }
});

describe('HTTP API on a failing disk', () => {
  test('a write gets 507 STORE_FULL, /v1/health 503 with the reason, then both recover', async () => {
    const dir = await tempDir();
    let failing = false;
    const base = testBackend();
    const { durable } = await DurableReplica.open(base.replica, dir, {
      writeFault: () => (failing ? noSpace() : undefined),
    });
    const backend = {
      ...base,
      tasks: new TaskBoard({ replica: base.replica, mutate: (k, b) => durable.mutate(k, b) }),
      health: () => {
        const h = durable.health();
        return { ok: h.ok, problems: h.ok ? [] : [{ code: h.code ?? 'STORE_IO', message: h.message ?? '' }] };
      },
    };
    const server = await createApiServer(backend, { host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }) });
    const post = (id: string): Promise<Response> =>
      fetch(`${server.url}/v1/tasks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id, type: 'x' }),
        signal: AbortSignal.timeout(5_000),
      });
    const health = (): Promise<Response> => fetch(`${server.url}/v1/health`, { signal: AbortSignal.timeout(5_000) });
    try {
      assert.equal((await post('ok-1')).status, 201);
      assert.equal((await health()).status, 200);

      failing = true;
      const refused = await post('full-1');
      assert.equal(refused.status, 507);
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'STORE_FULL');
      const sick = await health();
      assert.equal(sick.status, 503);
      const body = (await sick.json()) as { ok: boolean; problems: Array<{ code: string }> };
      assert.equal(body.ok, false);
      assert.equal(body.problems[0]?.code, 'STORE_FULL');

      failing = false;
      const deadline = Date.now() + 5_000;
      while ((await health()).status !== 200) {
        assert.ok(Date.now() < deadline, 'health recovers by itself');
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal((await post('ok-2')).status, 201);
    } finally {
      await server.close();
      await durable.close();
    }
    const again = meshReplica('node-a');
    const reopened = await DurableReplica.open(again, dir);
    try {
      assert.ok(again.get('task/ok-1'), 'acknowledged before the fault');
      assert.ok(again.get('task/ok-2'), 'acknowledged after recovery');
    } finally {
      await reopened.durable.close();
    }
  });
});

describe('real LevelDB under a file-size limit', () => {
  test('a failed log write is retried after a reopen, and every acknowledged write survives', async () => {
    const dir = await tempDir();
    const child = fileURLToPath(new URL('../fixtures/store-fsize-child.ts', import.meta.url));
    // 1 MiB per file: LevelDB's log (4 MiB memtable) hits it long before anything else does.
    const out = execFileSync(
      'bash',
      ['-c', 'ulimit -f 1024 && exec "$0" --import tsx "$1" "$2"', process.execPath, child, dir],
      { encoding: 'utf8', timeout: 40_000 },
    );
    const r = JSON.parse(out.trim().split('\n').at(-1) as string) as {
      acked: string[];
      failedCode?: string;
      recovered: boolean;
      reopens: number;
    };
    assert.equal(r.failedCode, 'STORE_IO', `a write failed under the limit: ${out}`);
    assert.equal(r.recovered, true, `writes were acknowledged again after the failure: ${out}`);
    assert.ok(r.reopens >= 1);
    const { DurableStore } = await import('../../src/store/index.js');
    const store = await DurableStore.open(dir);
    try {
      for (const key of r.acked) assert.ok(await store.get(key), `acknowledged ${key} is on disk`);
    } finally {
      await store.close();
    }
  });
});
