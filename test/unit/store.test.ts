import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Level } from 'level';
import { DurableStore, StoreError, isStoreError } from '../../src/store/index.js';
import { checkRecord, recordKey, recordValue } from '../fixtures/store-records.js';

const HOLDER = fileURLToPath(new URL('../fixtures/store-holder.ts', import.meta.url));
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined): string | undefined =>
  b === undefined ? undefined : new TextDecoder().decode(b);

const dirs: string[] = [];
const open: DurableStore[] = [];
const children = new Set<ChildProcess>();

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'agentmesh-store-'));
  dirs.push(dir);
  return dir;
}

async function openStore(dir: string, options?: Parameters<typeof DurableStore.open>[1]): Promise<DurableStore> {
  const s = await DurableStore.open(dir, options);
  open.push(s);
  return s;
}

afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((s) => s.close()));
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function rejectsWith(p: Promise<unknown>, code: StoreError['code']): Promise<StoreError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

describe('records and meta', () => {
  test('write, read, delete and persist across reopen', async () => {
    const dir = await tempDir();
    const s = await openStore(dir);
    await s.write({
      records: [
        ['task/1', enc('one')],
        ['task/2', enc('two')],
        ['agent/a', enc('A')],
      ],
    });
    assert.equal(dec(await s.get('task/1')), 'one');
    assert.equal(await s.get('task/9'), undefined);
    await s.write({ records: [['task/1', null]] });
    assert.equal(await s.get('task/1'), undefined);
    await s.write({ records: [['task/2', enc('two-b')]] });
    await s.close();

    const s2 = await openStore(dir);
    const all: Array<[string, string | undefined]> = [];
    for await (const [k, v] of s2.records()) all.push([k, dec(v)]);
    assert.deepEqual(all, [
      ['agent/a', 'A'],
      ['task/2', 'two-b'],
    ]);
    assert.equal(s2.recovery.dataLoss, false);
  });

  test('prefix iteration returns exactly the keys under the prefix', async () => {
    const s = await openStore(await tempDir());
    const keys = ['a', 'task', 'task/', 'task/1', 'task/2', 'task0', 'taskz', 'tas', 'u/1', 'ü/1'];
    await s.write({ records: keys.map((k) => [k, enc(k)]) });
    assert.deepEqual([...(await s.loadRecords({ prefix: 'task/' })).keys()], ['task/', 'task/1', 'task/2']);
    assert.deepEqual([...(await s.loadRecords({ prefix: 'ü' })).keys()], ['ü/1']);
    assert.deepEqual([...(await s.loadRecords({ prefix: 'zz' })).keys()], []);
    assert.equal((await s.loadRecords()).size, keys.length);
  });

  test('iterates more records than one read batch', async () => {
    const s = await openStore(await tempDir());
    const n = 2500;
    await s.write({ records: Array.from({ length: n }, (_, i) => [recordKey(i), recordValue(recordKey(i))] as const) });
    let count = 0;
    let prev = '';
    for await (const [k, v] of s.records()) {
      assert.ok(k > prev, 'key order');
      checkRecord(k, v);
      prev = k;
      count++;
    }
    assert.equal(count, n);
  });

  test('meta is separate from records, supports delete, and persists', async () => {
    const dir = await tempDir();
    const s = await openStore(dir);
    await s.write({ records: [['vv', enc('record')]], meta: [['vv', enc('meta')]] });
    await s.write({
      meta: [
        ['hlc', enc('123')],
        ['identity', enc('key')],
      ],
    });
    assert.equal(dec(await s.getMeta('vv')), 'meta');
    assert.equal(dec(await s.get('vv')), 'record');
    await s.write({ meta: [['identity', null]] });
    assert.equal(await s.getMeta('identity'), undefined);
    assert.equal(await s.getMeta('missing'), undefined);
    await s.close();
    const s2 = await openStore(dir);
    assert.deepEqual(
      (await s2.metaEntries()).map(([k, v]) => [k, dec(v)]),
      [
        ['hlc', '123'],
        ['vv', 'meta'],
      ],
    );
    assert.deepEqual([...(await s2.loadRecords()).keys()], ['vv']);
  });

  test('creates a missing, nested data directory', async () => {
    const dir = join(await tempDir(), 'a', 'b', 'data');
    const s = await openStore(dir);
    await s.write({ records: [['k', enc('v')]] });
    assert.ok((await readdir(dir)).includes('CURRENT'));
  });

  test('an empty write resolves', async () => {
    const s = await openStore(await tempDir());
    await s.write({});
    await s.write({ records: [], meta: [] });
    assert.equal(s.stats.batches, 0);
  });
});

describe('group commit', () => {
  test('concurrent writes share batches, all commit durably, in call order', async () => {
    const dir = await tempDir();
    const s = await openStore(dir);
    const n = 500;
    const writes: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      writes.push(s.write({ records: [[recordKey(i), recordValue(recordKey(i))]], meta: [['last', enc(String(i))]] }));
      if (i % 50 === 49) await sleep(1); // spread arrivals over several batches
    }
    await Promise.all(writes);
    const st = s.stats;
    assert.equal(st.writes, n);
    assert.equal(st.ops, 2 * n);
    assert.equal(st.syncWrites >= st.batches, true);
    assert.ok(st.batches < n, `expected grouping, got ${st.batches} batches for ${n} writes`);
    assert.ok(st.batches > 1, 'writes arriving while a batch is in flight go in a later batch');
    assert.ok(st.maxBatchWrites > 1);
    await s.close();
    const s2 = await openStore(dir);
    assert.equal((await s2.loadRecords()).size, n);
    assert.equal(dec(await s2.getMeta('last')), String(n - 1), 'the last write of a key wins');
  });

  test('maxBatchOps caps batches but never splits a write', async () => {
    const s = await openStore(await tempDir(), { maxBatchOps: 10 });
    const small = Array.from({ length: 40 }, (_, i) => s.write({ records: [[`k${i}`, enc('x')]] }));
    const big = s.write({ records: Array.from({ length: 25 }, (_, i) => [`big${i}`, enc('y')] as const) });
    await Promise.all([...small, big]);
    assert.equal(s.stats.maxBatchOps, 25, 'the 25-op write went whole, alone');
    assert.ok(s.stats.batches >= 5);
    assert.equal((await s.loadRecords({ prefix: 'big' })).size, 25);
  });

  test('close flushes pending writes, then refuses new ones', async () => {
    const dir = await tempDir();
    const s = await openStore(dir);
    const writes = Array.from({ length: 200 }, (_, i) =>
      s.write({ records: [[recordKey(i), recordValue(recordKey(i))]] }),
    );
    const closing = s.close();
    assert.equal(s.closed, true);
    await rejectsWith(s.write({ records: [['late', enc('x')]] }), 'STORE_CLOSED');
    await closing;
    await Promise.all(writes);
    assert.equal(s.stats.writes, 200);
    await rejectsWith(s.getMeta('x'), 'STORE_CLOSED');
    await rejectsWith(s.get('x'), 'STORE_CLOSED');
    await rejectsWith(s.exportSnapshot(join(dir, 'x.snap')), 'STORE_CLOSED');
    await s.close(); // idempotent
    const s2 = await openStore(dir);
    const all = await s2.loadRecords();
    assert.equal(all.size, 200);
    assert.ok(!all.has('late'));
  });
});

describe('validation', () => {
  test('a refused write rejects, reaches nothing on disk, and does not harm its batch-mates', async () => {
    const dir = await tempDir();
    const s = await openStore(dir, { validate: checkRecord });
    const good1 = s.write({ records: [[recordKey(1), recordValue(recordKey(1))]] });
    // Second record invalid: the whole write is refused, including its valid first record.
    const bad = s.write({
      records: [
        [recordKey(2), recordValue(recordKey(2))],
        [recordKey(3), recordValue(recordKey(4))],
      ],
      meta: [['m', enc('from the bad write')]],
    });
    const good2 = s.write({ records: [[recordKey(5), recordValue(recordKey(5))]] });
    const err = await rejectsWith(bad, 'VALIDATION_FAILED');
    assert.equal(err.details?.key, recordKey(3));
    assert.ok(err.cause instanceof Error);
    await Promise.all([good1, good2]);
    assert.equal(s.stats.validationFailures, 1);
    // Deletes are not validated.
    await s.write({ records: [[recordKey(1), null]] });
    await s.close();
    const s2 = await openStore(dir);
    assert.deepEqual([...(await s2.loadRecords()).keys()], [recordKey(5)]);
    assert.equal(await s2.getMeta('m'), undefined);
  });

  test('rejects malformed keys and values', async () => {
    const s = await openStore(await tempDir());
    const cases: unknown[] = [
      { records: [['', enc('x')]] },
      { records: [['k\uD800', enc('x')]] },
      { records: [['x'.repeat(5000), enc('x')]] },
      { records: [['k', 'not bytes']] },
      { records: [[42, enc('x')]] },
      { meta: [['', enc('x')]] },
      { meta: [['m', [1, 2]]] },
    ];
    for (const c of cases) await rejectsWith(s.write(c as Parameters<DurableStore['write']>[0]), 'VALIDATION_FAILED');
    assert.equal(s.stats.batches, 0);
    assert.equal((await s.loadRecords()).size, 0);
  });
});

describe('locking and opening', () => {
  test('a second process holding the directory gives STORE_LOCKED', { timeout: 30_000 }, async () => {
    const dir = await tempDir();
    const child = spawn(process.execPath, ['--import', 'tsx', HOLDER, dir], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.add(child);
    const exited = once(child, 'exit');
    try {
      let out = '';
      child.stdout.setEncoding('utf8');
      for await (const chunk of child.stdout as AsyncIterable<string>) {
        out += chunk;
        if (out.includes('ready\n')) break;
      }
      assert.ok(out.includes('ready'), 'holder started');
      const err = await rejectsWith(DurableStore.open(dir), 'STORE_LOCKED');
      assert.equal(err.details?.dir, dir);
      assert.ok(err.cause !== undefined, 'keeps the LevelDB error as cause');

      // With lockWaitMs the open waits for the holder to go away.
      const waiting = DurableStore.open(dir, { lockWaitMs: 15_000 });
      await sleep(200);
      child.stdin.end();
      const s = await waiting;
      open.push(s);
      await exited;
    } finally {
      child.kill('SIGKILL');
      children.delete(child);
    }
  });

  test('the same directory opened twice in one process gives STORE_LOCKED', async () => {
    const dir = await tempDir();
    await openStore(dir);
    await rejectsWith(DurableStore.open(dir), 'STORE_LOCKED');
  });

  test('an aborted signal rejects the open and releases the directory', async () => {
    const dir = await tempDir();
    await assert.rejects(DurableStore.open(dir, { signal: AbortSignal.abort() }), { name: 'AbortError' });
    const holder = await openStore(dir);
    const ac = new AbortController();
    const waiting = DurableStore.open(dir, { lockWaitMs: 10_000, signal: ac.signal });
    await sleep(100);
    ac.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    await holder.close();
    await openStore(dir);
  });

  test('a LevelDB that is not an agentmesh store gives STORE_CORRUPT', async () => {
    const dir = await tempDir();
    const db = new Level(dir);
    await db.put('foreign', 'data');
    await db.close();
    await rejectsWith(DurableStore.open(dir), 'STORE_CORRUPT');
  });

  test('a damaged MANIFEST gives STORE_CORRUPT', async () => {
    const dir = await tempDir();
    const s = await openStore(dir);
    await s.write({ records: [['k', enc('v')]] });
    await s.close();
    const manifest = (await readdir(dir)).find((f) => f.startsWith('MANIFEST-')) as string;
    const bytes = await readFile(join(dir, manifest));
    for (let i = 0; i < bytes.length; i += 7) bytes[i] = (bytes[i] as number) ^ 0xff;
    await writeFile(join(dir, manifest), bytes);
    await rejectsWith(DurableStore.open(dir), 'STORE_CORRUPT');
  });

  test('writes LevelDB drops while recovering a damaged log are reported', async () => {
    const dir = await tempDir();
    const s = await openStore(dir);
    for (let i = 0; i < 50; i++) await s.write({ records: [[recordKey(i), recordValue(recordKey(i))]] });
    await s.close();
    const walFile = (await readdir(dir)).find((f) => f.endsWith('.log')) as string;
    const bytes = await readFile(join(dir, walFile));
    bytes[Math.floor(bytes.length / 2)] = (bytes[Math.floor(bytes.length / 2)] as number) ^ 0xff;
    await writeFile(join(dir, walFile), bytes);
    const s2 = await openStore(dir);
    assert.equal(s2.recovery.dataLoss, true);
    assert.ok(s2.recovery.messages.some((m) => /checksum/i.test(m)));
    assert.ok((await s2.loadRecords()).size < 50, 'LevelDB really dropped data');
  });
});

describe('snapshots', () => {
  async function filled(n: number): Promise<DurableStore> {
    const s = await openStore(await tempDir(), { validate: checkRecord });
    for (let i = 0; i < n; i += 500) {
      const recs = [];
      for (let j = i; j < Math.min(n, i + 500); j++) recs.push([recordKey(j), recordValue(recordKey(j))] as const);
      await s.write({ records: recs });
    }
    await s.write({
      meta: [
        ['vv', enc('{"a":3}')],
        ['hlc', enc('99')],
      ],
    });
    return s;
  }

  test('export then import into a fresh directory round-trips records and meta', async () => {
    const src = await filled(3000);
    const file = join(await tempDir(), 'node.snap');
    const info = await src.exportSnapshot(file);
    assert.equal(info.records, 3000);
    assert.equal(info.meta, 2);
    assert.equal(info.bytes, (await readFile(file)).length);
    assert.ok(info.bytes < info.rawBytes, 'compressed');
    assert.equal(src.stats.snapshotsExported, 1);

    const target = join(await tempDir(), 'restored');
    const result = await DurableStore.importSnapshot(target, file, { validate: checkRecord });
    assert.equal(result.records, 3000);
    assert.equal(result.replaced, false);
    const dst = await openStore(target);
    const a = await src.loadRecords();
    const b = await dst.loadRecords();
    assert.equal(b.size, a.size);
    for (const [k, v] of a) assert.deepEqual(Buffer.from(b.get(k) as Uint8Array), Buffer.from(v), k);
    assert.deepEqual(await dst.metaEntries(), await src.metaEntries());
  });

  test('an empty store round-trips', async () => {
    const src = await openStore(await tempDir());
    const file = join(await tempDir(), 'empty.snap');
    assert.deepEqual(
      { ...(await src.exportSnapshot(file)), createdAt: 0 },
      {
        records: 0,
        meta: 0,
        bytes: (await readFile(file)).length,
        rawBytes: 0,
        createdAt: 0,
      },
    );
    const target = join(await tempDir(), 'r');
    await DurableStore.importSnapshot(target, file);
    assert.equal((await (await openStore(target)).loadRecords()).size, 0);
  });

  test('damaged snapshots give SNAPSHOT_INVALID and write nothing', async () => {
    const src = await filled(1000);
    const work = await tempDir();
    const file = join(work, 'good.snap');
    await src.exportSnapshot(file);
    const good = await readFile(file);
    const damaged: Array<[string, Buffer]> = [
      ['flipped body byte', flip(good, good.length - 10)],
      ['flipped header count', flip(good, 16)],
      ['bad magic', flip(good, 0)],
      ['truncated', good.subarray(0, good.length - 100)],
      ['only a header', good.subarray(0, 72)],
      ['too short', good.subarray(0, 20)],
      ['trailing garbage', Buffer.concat([good, Buffer.from('xx')])],
      ['not a snapshot', Buffer.from('hello world, this is definitely not a snapshot file at all!!!!!!!!!!!!!!')],
    ];
    // An existing store that must stay untouched even with overwrite.
    const existingDir = join(work, 'existing');
    const existing = await DurableStore.open(existingDir);
    await existing.write({ records: [['keep', enc('me')]], meta: [['keep', enc('meta')]] });
    await existing.close();
    for (const [name, bytes] of damaged) {
      const bad = join(work, 'bad.snap');
      await writeFile(bad, bytes);
      const fresh = join(work, `fresh-${name.replace(/\W/g, '-')}`);
      await rejectsWith(DurableStore.importSnapshot(fresh, bad), 'SNAPSHOT_INVALID');
      assert.ok(!(await readdir(work)).includes(fresh.split('/').pop() as string), `${name}: no directory created`);
      await rejectsWith(DurableStore.importSnapshot(existingDir, bad, { overwrite: true }), 'SNAPSHOT_INVALID');
    }
    const s = await openStore(existingDir);
    assert.deepEqual([...(await s.loadRecords()).keys()], ['keep']);
    assert.equal(dec(await s.getMeta('keep')), 'meta');
  });

  test('a record failing validate rejects the import before anything is written', async () => {
    const src = await openStore(await tempDir());
    await src.write({
      records: [
        [recordKey(1), recordValue(recordKey(1))],
        [recordKey(2), enc('not msgpack of the right shape')],
      ],
    });
    const file = join(await tempDir(), 's.snap');
    await src.exportSnapshot(file);
    const target = join(await tempDir(), 'target');
    const err = await rejectsWith(
      DurableStore.importSnapshot(target, file, { validate: checkRecord }),
      'SNAPSHOT_INVALID',
    );
    assert.equal(err.details?.key, recordKey(2));
    await assert.rejects(readdir(target), { code: 'ENOENT' });
  });

  test('import refuses a non-empty store unless overwrite, which replaces everything', async () => {
    const src = await filled(100);
    const file = join(await tempDir(), 's.snap');
    await src.exportSnapshot(file);
    const dir = await tempDir();
    const t = await DurableStore.open(dir);
    await t.write({ records: [['old', enc('x')]], meta: [['old', enc('y')]] });
    await t.close();
    await rejectsWith(DurableStore.importSnapshot(dir, file), 'STORE_NOT_EMPTY');
    const r = await DurableStore.importSnapshot(dir, file, { overwrite: true });
    assert.equal(r.replaced, true);
    const s = await openStore(dir);
    const all = await s.loadRecords();
    assert.equal(all.size, 100);
    assert.ok(!all.has('old'));
    assert.equal(await s.getMeta('old'), undefined);
    assert.equal(dec(await s.getMeta('hlc')), '99');
  });

  test('import into an open store gives STORE_LOCKED', async () => {
    const src = await filled(10);
    const file = join(await tempDir(), 's.snap');
    await src.exportSnapshot(file);
    await rejectsWith(DurableStore.importSnapshot(src.dir, file, { overwrite: true }), 'STORE_LOCKED');
  });

  test('an interrupted import makes open refuse the directory until it is re-imported', async () => {
    const src = await filled(10);
    const file = join(await tempDir(), 's.snap');
    await src.exportSnapshot(file);
    const dir = join(await tempDir(), 'target');
    await DurableStore.importSnapshot(dir, file);
    // Simulate a crash during the write phase: the marker the import writes first is still there.
    const db = new Level<string, string>(dir);
    await db.put('s:import', '{}');
    await db.close();
    const err = await rejectsWith(DurableStore.open(dir), 'STORE_CORRUPT');
    assert.equal(err.details?.reason, 'interrupted-import');
    await rejectsWith(DurableStore.importSnapshot(dir, file), 'STORE_NOT_EMPTY');
    await DurableStore.importSnapshot(dir, file, { overwrite: true });
    const s = await openStore(dir);
    assert.equal((await s.loadRecords()).size, 10);
  });

  test('export is consistent while writes continue, and close waits for it', async () => {
    const s = await filled(2000);
    const file = join(await tempDir(), 's.snap');
    const exporting = s.exportSnapshot(file);
    const writes = Array.from({ length: 100 }, (_, i) =>
      s.write({ records: [[recordKey(10_000 + i), recordValue(recordKey(10_000 + i))]] }),
    );
    await s.close();
    await Promise.all(writes);
    const info = await exporting;
    assert.ok(info.records >= 2000 && info.records <= 2100);
    const target = join(await tempDir(), 't');
    const r = await DurableStore.importSnapshot(target, file, { validate: checkRecord });
    assert.equal(r.records, info.records);
  });

  test('a missing snapshot file gives STORE_IO', async () => {
    const err = await rejectsWith(
      DurableStore.importSnapshot(join(await tempDir(), 't'), join(await tempDir(), 'nope.snap')),
      'STORE_IO',
    );
    assert.ok(isStoreError(err, 'STORE_IO'));
  });
});

function flip(buf: Buffer, at: number): Buffer {
  const copy = Buffer.from(buf);
  copy[at] = (copy[at] as number) ^ 0x5a;
  return copy;
}
