import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gCounter, LOGICAL_RANGE, orSet } from '../../src/crdt/index.js';
import { type ChangeEvent, merkleDiff, PolicyError, type Replica, ReplicaError } from '../../src/replica/index.js';
import { noteReplica, noteSchema, prng } from '../helpers/replicas.js';

function setTitle(r: Replica, key: string, title: string) {
  return r.mutate(key, (_cur, s) => s.delta({ title: noteSchema.fields.title.set(title, r.clock.now(), r.nodeId) }));
}
function hit(r: Replica, key: string, n = 1) {
  return r.mutate(key, (cur) =>
    noteSchema.delta({ hits: gCounter.increment(noteSchema.get(cur, 'hits'), r.nodeId, n) }),
  );
}
function tag(r: Replica, key: string, t: string) {
  return r.mutate(key, (cur) => noteSchema.delta({ tags: orSet.add(noteSchema.get(cur, 'tags'), t, r.nodeId) }));
}

describe('replica keyspace', () => {
  it('stamps local mutations with consecutive dots and replicates them idempotently', () => {
    const a = noteReplica('node-a');
    const b = noteReplica('node-b');
    const d1 = setTitle(a, 'note/1', 'hello');
    const d2 = hit(a, 'note/1', 3);
    assert.deepEqual([d1.origin, d1.seq, d2.seq], ['node-a', 1, 2]);
    assert.equal(b.applyDelta(d2), 'applied');
    assert.equal(b.applyDelta(d1), 'applied');
    assert.equal(b.applyDelta(d1), 'duplicate');
    assert.ok(noteSchema.equals(a.get('note/1') as never, b.get('note/1') as never));
    assert.deepEqual(noteSchema.value(b.get('note/1') as never), { title: 'hello', hits: 3, tags: [] });
    assert.equal(b.versionVector().get('node-a'), 2);
    // A new dot that brings nothing new reports 'unchanged' and still counts as seen.
    assert.equal(b.applyDelta({ ...d2, seq: 3 }), 'unchanged');
    assert.equal(b.dots.has('node-a', 3), true);
  });

  it('a change listener that mutates the same key again leaves the newest bytes for persistence', () => {
    const a = noteReplica('node-a');
    let again = true;
    a.events.on('change', (e) => {
      if (again && e.key === 'note/1') {
        again = false;
        hit(a, 'note/1', 5);
      }
    });
    hit(a, 'note/1', 1);
    const live = a.get('note/1') as never;
    assert.deepEqual(noteSchema.value(live).hits, 6);
    assert.deepEqual(a.encodeRecord('note/1'), a.encodeRecord('note/1', live), 'cached bytes match the live state');
  });

  it('detects gaps in the dots it has seen', () => {
    const a = noteReplica('node-a');
    const b = noteReplica('node-b');
    const ds = [1, 2, 3, 4, 5].map((i) => setTitle(a, `note/${i}`, `t${i}`));
    for (const d of [ds[0], ds[3], ds[4]]) b.applyDelta(d as never);
    assert.deepEqual(b.dots.gaps('node-a'), [[2, 3]]);
    assert.equal(b.versionVector().get('node-a'), 1);
  });

  it('emits one change event per effective change, local or remote', () => {
    const a = noteReplica('node-a');
    const b = noteReplica('node-b');
    const seen: ChangeEvent[] = [];
    b.events.on('change', (e) => seen.push(e));
    const d = tag(a, 'note/x', 'red');
    setTitle(b, 'note/y', 'local');
    b.applyDelta(d);
    b.applyDelta(d);
    assert.deepEqual(
      seen.map((e) => [e.key, e.origin, e.local]),
      [
        ['note/y', 'node-b', true],
        ['note/x', 'node-a', false],
      ],
    );
  });

  it('refuses out-of-policy deltas: counted, never applied, state and dots unchanged', () => {
    const a = noteReplica('node-a');
    const b = noteReplica('node-b', {
      policy: (input) => {
        const title = noteSchema.value(input.merged).title;
        if (title === 'forbidden') throw new PolicyError('bad_title', 'title not allowed');
      },
    });
    b.applyDelta(setTitle(a, 'note/1', 'fine'));
    const before = b.get('note/1');
    const bad = setTitle(a, 'note/1', 'forbidden');
    assert.throws(
      () => b.applyDelta(bad),
      (e: unknown) => e instanceof PolicyError && e.code === 'POLICY_REJECTED',
    );
    assert.equal(b.get('note/1'), before);
    assert.equal(b.dots.has('node-a', bad.seq), false);
    assert.equal(b.stats.rejectedByReason.bad_title, 1);
  });

  it('refuses a delta carrying writes by another node than its origin', () => {
    const a = noteReplica('node-a');
    const b = noteReplica('node-b');
    const d = hit(a, 'note/1', 5);
    const forged = { ...d, origin: 'node-c' }; // node-c replays node-a's counter slot as its own
    assert.throws(
      () => b.applyDelta(forged),
      (e: unknown) => e instanceof PolicyError && e.reason === 'foreign_writer',
    );
    assert.equal(b.has('note/1'), false);
    assert.equal(b.stats.rejectedByReason.foreign_writer, 1);
  });

  it('refuses clock readings beyond the drift bound', () => {
    const a = noteReplica('node-a');
    const b = noteReplica('node-b');
    const future = (Date.now() + 3_600_000) * LOGICAL_RANGE;
    const d = a.mutate('note/1', (_c, s) => s.delta({ title: noteSchema.fields.title.set('x', future, 'node-a') }));
    assert.throws(
      () => b.applyDelta(d),
      (e: unknown) => e instanceof PolicyError && e.reason === 'clock_drift',
    );
    assert.equal(b.has('note/1'), false);
    assert.ok(b.clock.current < future, 'the clock did not jump');
  });

  it('rejects unknown key prefixes and malformed wire deltas with typed errors', () => {
    const a = noteReplica('node-a');
    assert.throws(
      () => a.mutate('nope/1', (c) => c),
      (e: unknown) => e instanceof ReplicaError && e.code === 'UNKNOWN_SCHEMA',
    );
    for (const bad of [
      null,
      [],
      ['note/1', 'a', 0, []],
      ['note/1', '', 1, []],
      ['note/1', 'a', 1, 'x'],
      [1, 'a', 1, []],
    ]) {
      assert.throws(
        () => a.deltaFromWire(bad),
        (e: unknown) => e instanceof ReplicaError,
        JSON.stringify(bad),
      );
    }
    const d = hit(a, 'note/1');
    assert.deepEqual(a.deltaFromWire(a.deltaToWire(d)), d);
  });

  it('round-trips records through their canonical bytes and reloads them', () => {
    const a = noteReplica('node-a');
    for (let i = 0; i < 50; i++) {
      setTitle(a, `note/${i}`, `t${i}`);
      tag(a, `note/${i}`, `g${i % 3}`);
    }
    const b = noteReplica('node-a');
    b.load(
      [...a.keys()].map((k) => [k, a.encodeRecord(k)] as const),
      a.dots,
    );
    assert.deepEqual(b.merkle().root(), a.merkle().root());
    assert.equal(b.nextSeq, a.nextSeq);
  });

  it('Merkle diff between two divergent replicas finds exactly the differing keys', async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const rand = prng(seed);
      const a = noteReplica('node-a');
      const b = noteReplica('node-b');
      const n = 200 + Math.floor(rand() * 800);
      for (let i = 0; i < n; i++) b.applyDelta(setTitle(a, `note/${i}`, `v${i}`));
      const expected = new Set<string>();
      const d = Math.floor(rand() * 60);
      for (let i = 0; i < d; i++) {
        const k = `note/${Math.floor(rand() * (n + 40))}`; // some keys exist on one side only
        const side = rand() < 0.5 ? a : b;
        if (rand() < 0.5) setTitle(side, k, `changed-${i}`);
        else hit(side, k);
      }
      // The truth: keys whose canonical bytes differ between the replicas.
      for (const k of new Set([...a.keys(), ...b.keys()])) {
        const x = a.has(k) ? Buffer.from(a.encodeRecord(k)).toString('hex') : '';
        const y = b.has(k) ? Buffer.from(b.encodeRecord(k)).toString('hex') : '';
        if (x !== y) expected.add(k);
      }
      const bt = b.merkle();
      const result = await merkleDiff(a.merkle(), async (paths) => bt.nodes(paths));
      assert.deepEqual(new Set(result.differing), expected, `seed ${seed}`);
      // Exchanging exactly those records makes the replicas equal.
      for (const k of result.differing) {
        if (a.has(k)) b.mergeRecord(k, a.get(k) as never, 'node-a');
        if (b.has(k)) a.mergeRecord(k, b.get(k) as never, 'node-b');
      }
      assert.deepEqual(a.merkle().rootHex(), b.merkle().rootHex(), `seed ${seed}: roots equal after repair`);
    }
  });
});
