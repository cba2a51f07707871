/**
 * DurableReplica: a Replica bound to its LevelDB store. Records, dots, the HLC high-water mark
 * and the Merkle root survive close and reopen; remote changes are persisted like local ones;
 * nothing that fails validation reaches disk; a directory held by another process is refused;
 * snapshots restore into a fresh directory.
 */
import { after, afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CrdtErrorCode,
  gCounter,
  HybridClock,
  orSet,
  type RecordState,
  timestamp,
  type Timestamp,
} from '../../src/crdt/index.js';
import { encodeMsgpack } from '../../src/codec/index.js';
import { type Delta, DurableReplica, type Replica, ReplicaError, ReplicaErrorCode } from '../../src/replica/index.js';
import { DurableStore, StoreError } from '../../src/store/index.js';
import { noteReplica, noteSchema } from '../helpers/replicas.js';

const CHILD = fileURLToPath(new URL('../fixtures/replica-crash-child.ts', import.meta.url));

const dirs: string[] = [];
const opened: DurableReplica[] = [];
const children = new Set<ChildProcess>();

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'agentmesh-durable-replica-'));
  dirs.push(dir);
  return dir;
}

async function openDurable(replica: Replica, dir: string): Promise<{ durable: DurableReplica; loaded: number }> {
  const result = await DurableReplica.open(replica, dir);
  opened.push(result.durable);
  return result;
}

afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((d) => d.close()));
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.allSettled(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

function setTitle(d: DurableReplica, key: string, title: string): Promise<Delta> {
  const r = d.replica;
  return d.mutate(key, () => noteSchema.delta({ title: noteSchema.fields.title.set(title, r.clock.now(), r.nodeId) }));
}
function hit(d: DurableReplica, key: string, n = 1): Promise<Delta> {
  const r = d.replica;
  return d.mutate(key, (cur) =>
    noteSchema.delta({ hits: gCounter.increment(noteSchema.get(cur, 'hits'), r.nodeId, n) }),
  );
}
function tag(d: DurableReplica, key: string, t: string): Promise<Delta> {
  const r = d.replica;
  return d.mutate(key, (cur) => noteSchema.delta({ tags: orSet.add(noteSchema.get(cur, 'tags'), t, r.nodeId) }));
}

/** Plain-replica versions, for a remote peer. */
function remoteTitle(r: Replica, key: string, title: string): Delta {
  return r.mutate(key, () => noteSchema.delta({ title: noteSchema.fields.title.set(title, r.clock.now(), r.nodeId) }));
}
function remoteHit(r: Replica, key: string, n = 1): Delta {
  return r.mutate(key, (cur) =>
    noteSchema.delta({ hits: gCounter.increment(noteSchema.get(cur, 'hits'), r.nodeId, n) }),
  );
}

function snapshotOf(r: Replica): Map<string, RecordState> {
  return new Map([...r.keys()].map((k) => [k, r.get(k) as RecordState]));
}

function assertSameRecords(actual: Replica, expected: Map<string, RecordState>, what: string): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort(), `${what}: key sets differ`);
  for (const [key, state] of expected) {
    const got = actual.get(key) as RecordState;
    assert.ok(
      noteSchema.equals(got, state),
      `${what}: ${key} differs: ${JSON.stringify(noteSchema.value(got))} vs ${JSON.stringify(noteSchema.value(state))}`,
    );
  }
}

function maxTimestamp(r: Replica): Timestamp {
  let max = 0;
  for (const [, state] of r.entries()) {
    noteSchema.visit(state, { writer: () => {}, timestamp: (t) => (max = Math.max(max, t)) });
  }
  return max;
}

async function rejectsWithStore(p: Promise<unknown>, code: StoreError['code']): Promise<StoreError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

describe('DurableReplica', () => {
  test('records, dots and the Merkle root survive close and reopen; seqs continue', async () => {
    const dir = await tempDir();
    const a = noteReplica('node-a');
    const { durable, loaded } = await openDurable(a, dir);
    assert.equal(loaded, 0);

    const deltas: Delta[] = [];
    deltas.push(await setTitle(durable, 'note/1', 'first'));
    deltas.push(await hit(durable, 'note/1', 2));
    // Concurrent mutations in one tick, several on the same record.
    deltas.push(
      ...(await Promise.all([
        tag(durable, 'note/1', 'red'),
        tag(durable, 'note/2', 'blue'),
        hit(durable, 'note/2'),
        hit(durable, 'note/2', 5),
        setTitle(durable, 'note/3', 'third'),
        setTitle(durable, 'note/3', 'third, again'),
      ])),
    );
    for (let i = 0; i < 20; i++) deltas.push(await hit(durable, `note/k${i % 7}`, i));
    // A mutation that changes nothing still takes a seq; it must not be reused after a restart.
    const writes = durable.store.stats.writes;
    deltas.push(await durable.mutate('note/3', () => noteSchema.empty()));
    assert.equal(durable.store.stats.writes, writes + 1, 'the no-op mutation persisted its dot');

    // Acknowledged means on disk: the store already holds each record's current bytes.
    for (const key of a.keys()) {
      const bytes = await durable.store.get(key);
      assert.ok(bytes !== undefined, `${key} is not on disk`);
      assert.deepEqual(Buffer.from(bytes), Buffer.from(a.encodeRecord(key)), `${key} on disk is stale`);
    }

    const seqs = deltas.map((d) => d.seq);
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => i + 1),
      'seqs are consecutive from 1',
    );
    const records = snapshotOf(a);
    const root = a.merkle().rootHex();
    const dots = a.dots.toWire();
    const nextSeq = a.nextSeq;
    assert.equal(nextSeq, deltas.length + 1);
    await durable.close();

    const b = noteReplica('node-a');
    const reopened = await openDurable(b, dir);
    assert.equal(reopened.loaded, records.size);
    assertSameRecords(b, records, 'after reopen');
    assert.deepEqual(b.dots.toWire(), dots, 'dots survive');
    assert.equal(b.nextSeq, nextSeq, 'nextSeq continues');
    assert.equal(b.merkle().rootHex(), root, 'Merkle root survives');
    assert.deepEqual(noteSchema.value(b.get('note/2') as RecordState), { title: undefined, hits: 6, tags: ['blue'] });
    assert.equal(noteSchema.value(b.get('note/3') as RecordState).title, 'third, again');

    const next = await tag(reopened.durable, 'note/1', 'green');
    assert.equal(next.seq, nextSeq, 'the first seq after reopen is the next one');
    assert.ok(!seqs.includes(next.seq), 'no seq is reused');
    assert.notEqual(b.merkle().rootHex(), root);
  });

  test('changes of one tick are coalesced into one store write', async () => {
    const dir = await tempDir();
    const { durable } = await openDurable(noteReplica('node-a'), dir);
    await hit(durable, 'note/warm');
    const before = durable.store.stats.writes;
    const all = await Promise.all(Array.from({ length: 50 }, (_, i) => hit(durable, `note/${i % 5}`, 1)));
    assert.equal(all.length, 50);
    assert.equal(durable.store.stats.writes - before, 1, 'one write for the 50 mutations of one tick');
    for (let i = 0; i < 5; i++)
      assert.equal(noteSchema.value(durable.replica.get(`note/${i}`) as RecordState).hits, 10);
  });

  test('the clock resumes after the persisted high-water mark even if the physical clock went back', async () => {
    const dir = await tempDir();
    let wall = 1_700_000_000_000;
    const clock = new HybridClock({ now: () => wall });
    const a = noteReplica('node-a', { clock });
    const { durable } = await openDurable(a, dir);
    for (let i = 0; i < 5; i++) {
      await setTitle(durable, 'note/t', `a${i}`);
      wall += 1;
    }
    // A peer 30 s ahead (within the drift bound): its timestamps are observed and persisted too.
    const peerClock = new HybridClock({ now: () => wall + 30_000 });
    const peer = noteReplica('node-p', { clock: peerClock });
    assert.equal(a.applyDelta(remoteTitle(peer, 'note/p', 'from the future')), 'applied');
    await durable.flush();
    const persistedMax = maxTimestamp(a);
    assert.ok(persistedMax >= timestamp(wall + 30_000), 'the peer timestamp is the highest');
    await durable.close();

    // Restart 10 s earlier by the physical clock: 40 s behind the highest persisted timestamp.
    wall -= 10_000;
    const clock2 = new HybridClock({ now: () => wall });
    const b = noteReplica('node-a', { clock: clock2 });
    const reopened = await openDurable(b, dir);
    assert.equal(maxTimestamp(b), persistedMax);
    assert.ok(clock2.current >= persistedMax, `clock ${clock2.current} resumed before ${persistedMax}`);
    const first = clock2.now();
    assert.ok(first > persistedMax, 'the next timestamp orders after every persisted one');
    // The user-visible consequence: a write after the restart wins over the ones before it.
    await setTitle(reopened.durable, 'note/t', 'after restart');
    await setTitle(reopened.durable, 'note/p', 'after restart');
    assert.equal(noteSchema.value(b.get('note/t') as RecordState).title, 'after restart');
    assert.equal(noteSchema.value(b.get('note/p') as RecordState).title, 'after restart');
    await reopened.durable.close();

    // A step back far beyond the drift bound: the clock still resumes after our own persisted
    // mark (no drift check applies to it), so a new write orders after every earlier one.
    wall -= 3_600_000;
    const clock3 = new HybridClock({ now: () => wall });
    const c = noteReplica('node-a', { clock: clock3 });
    await openDurable(c, dir);
    assert.equal(noteSchema.value(c.get('note/t') as RecordState).title, 'after restart');
    assert.ok(clock3.current > timestamp(wall + clock3.maxDriftMs), 'resumed past the drift bound, after the mark');
    c.mutate('note/t', (_cur, s) =>
      s.delta({ title: noteSchema.fields.title.set('after big step back', clock3.now(), 'node-a') }),
    );
    assert.equal(noteSchema.value(c.get('note/t') as RecordState).title, 'after big step back');
  });

  test('remote deltas and merged full records are persisted too', async () => {
    const dir = await tempDir();
    const peer = noteReplica('node-p');
    const peer2 = noteReplica('node-q');
    const a = noteReplica('node-a');
    const { durable } = await openDurable(a, dir);
    await setTitle(durable, 'note/mine', 'local');

    const remote = [
      remoteTitle(peer, 'note/r1', 'remote title'),
      remoteHit(peer, 'note/r1', 4),
      remoteHit(peer, 'note/r2', 1),
      peer.mutate('note/r2', (cur) =>
        noteSchema.delta({ tags: orSet.add(noteSchema.get(cur, 'tags'), 'x', 'node-p') }),
      ),
    ];
    // Out of order: the dots keep the gap until the missing delta arrives.
    for (const d of [remote[0], remote[2], remote[3]]) assert.equal(a.applyDelta(d as Delta, 'node-p'), 'applied');
    assert.deepEqual(a.dots.gaps('node-p'), [[2, 2]]);
    // A full record from sync, written by another peer.
    remoteHit(peer2, 'note/r3', 7);
    assert.equal(a.mergeRecord('note/r3', peer2.get('note/r3') as RecordState, 'node-q'), true);
    a.observeDots(peer2.dots);
    // No flush: close must persist whatever is pending.
    const records = snapshotOf(a);
    const root = a.merkle().rootHex();
    await durable.close();

    const b = noteReplica('node-a');
    const reopened = await openDurable(b, dir);
    assertSameRecords(b, records, 'after reopen');
    assert.equal(b.merkle().rootHex(), root);
    assert.deepEqual(b.dots.gaps('node-p'), [[2, 2]], 'the gap survives, so the node can ask for seq 2');
    assert.equal(b.dots.max('node-p'), 4);
    assert.equal(b.dots.max('node-q'), 1);
    assert.equal(b.applyDelta(remote[3] as Delta), 'duplicate', 'a persisted dot is not applied twice');
    assert.equal(b.applyDelta(remote[1] as Delta), 'applied');
    await reopened.durable.close();

    const c = noteReplica('node-a');
    await openDurable(c, dir);
    assert.deepEqual(c.dots.gaps('node-p'), []);
    assert.deepEqual(noteSchema.value(c.get('note/r1') as RecordState), { title: 'remote title', hits: 4, tags: [] });
    assert.deepEqual(noteSchema.value(c.get('note/r3') as RecordState).hits, 7);
  });

  test('only batches holding a local mutation are synced; remote changes alone are written without fsync', async () => {
    const dir = await tempDir();
    const peer = noteReplica('node-p');
    const a = noteReplica('node-a');
    const { durable } = await openDurable(a, dir);
    const s0 = durable.store.stats;
    await setTitle(durable, 'note/mine', 'local');
    const s1 = durable.store.stats;
    assert.equal(s1.syncWrites - s0.syncWrites, 1, 'the local mutation was acknowledged after a synced batch');

    assert.equal(a.applyDelta(remoteTitle(peer, 'note/r1', 'remote'), 'node-p'), 'applied');
    await durable.flush();
    const s2 = durable.store.stats;
    assert.equal(s2.batches - s1.batches, 1, 'the remote change was written');
    assert.equal(s2.syncWrites, s1.syncWrites, 'without an fsync');

    // A local mutation in the same tick as a remote change: one batch, synced.
    assert.equal(a.applyDelta(remoteTitle(peer, 'note/r2', 'remote 2'), 'node-p'), 'applied');
    await setTitle(durable, 'note/mine', 'local 2');
    const s3 = durable.store.stats;
    assert.equal(s3.batches - s2.batches, 1);
    assert.equal(s3.syncWrites - s2.syncWrites, 1);
    await durable.close();

    const b = noteReplica('node-a');
    await openDurable(b, dir);
    assert.equal(noteSchema.value(b.get('note/r1') as RecordState).title, 'remote');
    assert.equal(noteSchema.value(b.get('note/r2') as RecordState).title, 'remote 2');
  });

  test('a record that fails validation never reaches disk', async () => {
    const dir = await tempDir();
    const a = noteReplica('node-a');
    const { durable } = await openDurable(a, dir);
    await setTitle(durable, 'note/good', 'fine');
    const badWrites: Array<[string, Uint8Array, string]> = [
      ['note/bad', Uint8Array.of(0xc1), ReplicaErrorCode.INVALID_DELTA], // not msgpack at all
      ['note/bad', encodeMsgpack(['not', 'a', 'note']), ReplicaErrorCode.INVALID_DELTA],
      ['note/bad', encodeMsgpack([null, 'not a counter', null]), ReplicaErrorCode.INVALID_DELTA],
      ['nope/1', a.encodeRecord('note/good'), ReplicaErrorCode.UNKNOWN_SCHEMA],
    ];
    for (const [key, value, code] of badWrites) {
      const err = await rejectsWithStore(durable.store.write({ records: [[key, value]] }), 'VALIDATION_FAILED');
      assert.ok(err.cause instanceof ReplicaError, 'the replica error is the cause');
      assert.equal(err.cause.code, code);
    }
    // A mixed write is refused whole: the good record next to the bad one is not written either.
    await rejectsWithStore(
      durable.store.write({
        records: [
          ['note/other', a.encodeRecord('note/good')],
          ['note/bad', Uint8Array.of(0xc1)],
        ],
      }),
      'VALIDATION_FAILED',
    );
    // The replica keeps working.
    await setTitle(durable, 'note/good', 'still fine');
    await durable.close();

    const b = noteReplica('node-a');
    const { durable: reopened, loaded } = await openDurable(b, dir);
    assert.equal(loaded, 1);
    assert.deepEqual([...b.keys()], ['note/good']);
    assert.equal(noteSchema.value(b.get('note/good') as RecordState).title, 'still fine');
    for (const key of ['note/bad', 'note/other', 'nope/1']) assert.equal(await reopened.store.get(key), undefined);
  });

  test('a local mutation beyond the limits is refused before it is applied, and later ones still are acknowledged', async () => {
    const dir = await tempDir();
    const limits = { maxEntries: 3, maxStringLength: 64 };
    const a = noteReplica('node-a', { limits });
    const { durable } = await openDurable(a, dir);
    for (const t of ['a', 'b', 'c']) await tag(durable, 'note/tags', t);
    await assert.rejects(tag(durable, 'note/tags', 'd'), (err: unknown) => {
      assert.ok(err instanceof ReplicaError);
      assert.equal(err.code, ReplicaErrorCode.INVALID_DELTA);
      assert.equal((err.cause as { code?: string }).code, CrdtErrorCode.LIMIT_EXCEEDED);
      return true;
    });
    assert.deepEqual(noteSchema.value(a.get('note/tags') as RecordState).tags, ['a', 'b', 'c'], 'memory unchanged');
    // Memory never got ahead of disk: the next mutation is acknowledged.
    await hit(durable, 'note/other');
    await durable.close();

    const b = noteReplica('node-a', { limits });
    await openDurable(b, dir);
    assert.deepEqual(noteSchema.value(b.get('note/tags') as RecordState).tags, ['a', 'b', 'c']);
    assert.equal(b.has('note/other'), true);
    assert.equal(b.nextSeq, 5, 'the refused mutation left no dot behind');
  });

  test('a directory held by a DurableReplica in another process gives STORE_LOCKED', { timeout: 30_000 }, async () => {
    const dir = await tempDir();
    const a = noteReplica('node-a');
    const { durable } = await openDurable(a, dir);
    await setTitle(durable, 'note/1', 'before');
    await durable.close();

    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, 'hold', dir], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.add(child);
    const exited = once(child, 'exit');
    try {
      let out = '';
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d.slice(0, 4000)));
      const ready = new Promise<void>((resolve, reject) => {
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('ready\n')) resolve();
        });
        void exited.then(() => reject(new Error(`holder exited before ready: ${err}`)));
      });
      const gaveUp = new AbortController();
      try {
        await Promise.race([
          ready,
          sleep(15_000, undefined, { signal: gaveUp.signal }).then(() => {
            throw new Error(`holder not ready within 15 s: ${err}`);
          }),
        ]);
      } finally {
        gaveUp.abort();
      }

      const b = noteReplica('node-a');
      const locked = await rejectsWithStore(DurableReplica.open(b, dir), 'STORE_LOCKED');
      assert.equal(locked.details?.dir, dir);
      assert.equal(b.size, 0, 'a refused open loads nothing');
      assert.equal(b.nextSeq, 1);

      child.stdin.end();
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0, `holder exit: ${err}`);
      const c = noteReplica('node-a');
      await openDurable(c, dir);
      assert.equal(noteSchema.value(c.get('note/1') as RecordState).title, 'before');
      assert.equal(c.nextSeq, 2);
    } finally {
      child.kill('SIGKILL');
      children.delete(child);
    }
  });

  test('a snapshot imported into a new directory opens with the same records, dots and root', async () => {
    const dir = await tempDir();
    const a = noteReplica('node-a');
    const peer = noteReplica('node-p');
    const { durable } = await openDurable(a, dir);
    for (let i = 0; i < 40; i++) {
      const key = `note/${i % 11}`;
      if (i % 3 === 0) await setTitle(durable, key, `title ${i}`);
      else if (i % 3 === 1) await hit(durable, key, i);
      else await tag(durable, key, `t${i}`);
    }
    a.applyDelta(remoteHit(peer, 'note/peer', 3));
    await durable.flush();

    const file = join(await tempDir(), 'replica.snap');
    const info = await durable.store.exportSnapshot(file);
    assert.equal(info.records, a.size);
    const records = snapshotOf(a);
    const root = a.merkle().rootHex();
    const dots = a.dots.toWire();
    const hlc = a.clock.current;

    const target = join(await tempDir(), 'restored');
    const probe = noteReplica('probe');
    const imported = await DurableStore.importSnapshot(target, file, {
      validate: (key, value) => {
        probe.decodeRecord(key, value);
      },
    });
    assert.equal(imported.records, records.size);

    const b = noteReplica('node-a');
    const restored = await openDurable(b, target);
    assert.equal(restored.loaded, records.size);
    assertSameRecords(b, records, 'restored');
    assert.equal(b.merkle().rootHex(), root);
    assert.deepEqual(b.dots.toWire(), dots);
    assert.ok(b.clock.current >= hlc, 'the HLC mark travels with the snapshot');
    const next = await hit(restored.durable, 'note/0');
    assert.equal(next.seq, 41, 'seqs continue after the restored ones');

    // The source is still open: its directory cannot be a target.
    await rejectsWithStore(DurableStore.importSnapshot(dir, file, { overwrite: true }), 'STORE_LOCKED');
  });

  test('a mutation issued after close is refused, not acknowledged', async () => {
    const dir = await tempDir();
    const { durable } = await openDurable(noteReplica('node-a'), dir);
    await hit(durable, 'note/1');
    await durable.close();
    await rejectsWithStore(hit(durable, 'note/1'), 'STORE_CLOSED');
    const b = noteReplica('node-a');
    await openDurable(b, dir);
    assert.equal(noteSchema.value(b.get('note/1') as RecordState).hits, 1);
  });
});
