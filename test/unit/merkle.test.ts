import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { bytesEqual, entryHash, entryHashStreaming, keyHash, keyPrefix, toHex } from '../../src/replica/entry-hash.js';
import {
  DEFAULT_MERKLE_DEPTH,
  type FetchNodes,
  MerkleError,
  MerkleTree,
  merkleDiff,
  type NodeView,
  serveNodes,
} from '../../src/replica/merkle.js';

/** Reproducible by default; FC_SEED explores other seeds (fast-check prints the failing seed and path). */
const SEED = Number(process.env.FC_SEED ?? 20261121);

// ---- an independent reference of the hashing spec, written against createHash ----

function sha16(...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest().subarray(0, 16));
}

const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));

function refEntryHash(key: string, digest: Uint8Array): Uint8Array {
  return sha16(utf8(key), digest);
}

function refLeaf(key: string, depth: number): number {
  const h = sha16(utf8(key));
  let v = 0;
  for (let i = 0; i < depth; i++) v = v * 16 + ((h[i >> 1]! >> (i % 2 === 0 ? 4 : 0)) & 15);
  return v;
}

/** Root hash of `content` per the spec: leaf = XOR of entry hashes, inner = sha256(children) or zero if empty. */
function refRoot(content: ReadonlyMap<string, Uint8Array>, depth: number): Uint8Array {
  const leaves = new Map<number, Uint8Array>();
  for (const [key, digest] of content) {
    const leaf = refLeaf(key, depth);
    const acc = leaves.get(leaf) ?? new Uint8Array(16);
    const eh = refEntryHash(key, digest);
    for (let i = 0; i < 16; i++) acc[i]! ^= eh[i]!;
    leaves.set(leaf, acc);
  }
  const nonEmpty = new Set<string>();
  for (const leaf of leaves.keys()) {
    const path = leaf.toString(16).padStart(depth, '0');
    for (let l = 0; l <= depth; l++) nonEmpty.add(path.slice(0, l));
  }
  const hashAt = (path: string): Uint8Array => {
    if (!nonEmpty.has(path)) return new Uint8Array(16);
    if (path.length === depth) return leaves.get(parseInt(path, 16))!;
    const children: Uint8Array[] = [];
    for (let c = 0; c < 16; c++) children.push(hashAt(path + c.toString(16)));
    return sha16(...children);
  };
  return hashAt('');
}

// ---- helpers ----

function digestOf(text: string): Uint8Array {
  return sha16(utf8(text));
}

/** mulberry32: a small seeded PRNG for the large randomized fixtures. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function treeOf(content: ReadonlyMap<string, Uint8Array>, depth = DEFAULT_MERKLE_DEPTH): MerkleTree {
  return MerkleTree.from(content, { depth });
}

/** A peer reached over a "wire": views are structured-cloned so nothing is shared with the local side. */
function peer(tree: MerkleTree): FetchNodes {
  return (paths) => Promise.resolve(structuredClone(serveNodes(tree, paths)));
}

function referenceDiff(a: ReadonlyMap<string, Uint8Array>, b: ReadonlyMap<string, Uint8Array>): string[] {
  const out = new Set<string>();
  for (const [k, v] of a) {
    const w = b.get(k);
    if (w === undefined || !bytesEqual(v, w)) out.add(k);
  }
  for (const k of b.keys()) if (!a.has(k)) out.add(k);
  return [...out].sort();
}

function mapsEqual(a: ReadonlyMap<string, Uint8Array>, b: ReadonlyMap<string, Uint8Array>): boolean {
  return a.size === b.size && referenceDiff(a, b).length === 0;
}

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof MerkleError, `expected MerkleError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

// ---- tests ----

describe('entry hashes', () => {
  it('match sha256(utf8(key) || digest) and sha256(utf8(key)) for any key, including long and non-ASCII ones', () => {
    const keys = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: 'grapheme', maxLength: 10 }),
      fc.constantFrom('\ud800', 'a\udfffb', 'x'.repeat(5000), '\u{1F600}'.repeat(700), ''),
    );
    fc.assert(
      fc.property(keys, fc.uint8Array({ minLength: 16, maxLength: 16 }), (key, digest) => {
        const expected = refEntryHash(key, digest);
        assert.deepEqual(entryHash(key, digest), expected);
        assert.deepEqual(entryHashStreaming(key, digest), expected);
        assert.deepEqual(keyHash(key), sha16(utf8(key)));
        assert.equal(keyPrefix(key, 16), refLeaf(key, 4));
        assert.equal(keyPrefix(key, 32), Buffer.from(sha16(utf8(key))).readUInt32BE(0));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });
});

describe('MerkleTree basics', () => {
  it('stores, updates and deletes records', () => {
    const t = new MerkleTree();
    assert.equal(t.size, 0);
    assert.deepEqual(t.root(), new Uint8Array(16), 'empty tree has the zero root');
    assert.equal(t.rootHex(), '0'.repeat(32));
    const d1 = digestOf('v1');
    const d2 = digestOf('v2');
    t.set('agent/a', d1).set('task/x', d2);
    assert.equal(t.size, 2);
    assert.ok(t.has('agent/a'));
    assert.ok(!t.has('agent/b'));
    assert.deepEqual(t.get('agent/a'), d1);
    assert.equal(t.get('agent/b'), undefined);
    assert.deepEqual(t.getEntryHash('task/x'), refEntryHash('task/x', d2));
    const copy = t.get('agent/a')!;
    copy.fill(0);
    assert.deepEqual(t.get('agent/a'), d1, 'get returns a copy');
    assert.equal(t.delete('agent/b'), false);
    assert.equal(t.delete('agent/a'), true);
    assert.equal(t.size, 1);
    assert.ok(!t.has('agent/a'));
    assert.deepEqual(
      [...t.entries()].map(([k, v]) => [k, toHex(v)]),
      [['task/x', toHex(d2)]],
    );
    assert.deepEqual([...t.keys()], ['task/x']);
    assert.deepEqual(
      [...t.entryHashes()].map(([k, v]) => [k, toHex(v)]),
      [['task/x', toHex(refEntryHash('task/x', d2))]],
    );
  });

  it('rejects bad input with typed errors', () => {
    const t = new MerkleTree();
    for (const digest of [new Uint8Array(15), new Uint8Array(17), 'x'.repeat(16), undefined]) {
      assert.throws(
        () => t.set('k', digest as unknown as Uint8Array),
        (e: unknown) => e instanceof MerkleError && e.code === 'MERKLE_INVALID_INPUT',
      );
    }
    for (const depth of [0, 7, 2.5, NaN]) {
      assert.throws(
        () => new MerkleTree({ depth }),
        (e: unknown) => e instanceof MerkleError && e.code === 'MERKLE_INVALID_INPUT',
      );
    }
    for (const initialCapacity of [-1, NaN, 2 ** 40]) {
      assert.throws(
        () => new MerkleTree({ initialCapacity }),
        (e: unknown) => e instanceof MerkleError && e.code === 'MERKLE_INVALID_INPUT',
      );
    }
    for (const path of ['g', 'A', '00000', ' ', '0x']) {
      assert.throws(
        () => t.nodes([path]),
        (e: unknown) => e instanceof MerkleError && e.code === 'MERKLE_INVALID_PATH',
        path,
      );
    }
    assert.throws(
      () => t.nodes([3 as unknown as string]),
      (e: unknown) => e instanceof MerkleError && e.code === 'MERKLE_INVALID_PATH',
    );
    assert.throws(
      () => t.keysUnder('xyz'),
      (e: unknown) => e instanceof MerkleError && e.code === 'MERKLE_INVALID_PATH',
    );
  });

  it('places a key by its key hash only, so updating a record keeps it in the same leaf', () => {
    const t = new MerkleTree();
    t.set('agent/moving', digestOf('1'));
    const path = t.leafPath('agent/moving');
    assert.equal(path, refLeaf('agent/moving', 4).toString(16).padStart(4, '0'));
    assert.deepEqual(t.keysUnder(path), ['agent/moving']);
    t.set('agent/moving', digestOf('2'));
    assert.deepEqual(t.keysUnder(path), ['agent/moving']);
    const [view] = t.nodes([path]);
    assert.equal(view!.kind, 'leaf');
    assert.deepEqual(view, {
      path,
      kind: 'leaf',
      entries: [['agent/moving', refEntryHash('agent/moving', digestOf('2'))]],
    });
  });

  it('serves inner views of 16 child hashes and leaf views of sorted entries', () => {
    const content = new Map<string, Uint8Array>();
    for (let i = 0; i < 300; i++) content.set(`task/${i}`, digestOf(`v${i}`));
    const t = treeOf(content, 2);
    const [root, child, leaf] = t.nodes(['', '3', '3a']) as [NodeView, NodeView, NodeView];
    assert.equal(root.kind, 'inner');
    assert.equal(child.kind, 'inner');
    assert.equal(leaf.kind, 'leaf');
    if (root.kind !== 'inner' || child.kind !== 'inner' || leaf.kind !== 'leaf') return;
    assert.equal(root.children.length, 16);
    assert.ok(root.children.every((c) => c.length === 16));
    assert.deepEqual(root.children[3], t.nodeHash('3'));
    assert.deepEqual(child.children[10], t.nodeHash('3a'));
    assert.deepEqual(t.root(), sha16(...root.children));
    const keys = leaf.entries.map(([k]) => k);
    assert.deepEqual(keys, [...keys].sort());
    assert.deepEqual(keys, t.keysUnder('3a').sort());
    const xor = new Uint8Array(16);
    for (const [k, eh] of leaf.entries) {
      assert.deepEqual(eh, refEntryHash(k, content.get(k)!));
      for (let i = 0; i < 16; i++) xor[i]! ^= eh[i]!;
    }
    assert.deepEqual(t.nodeHash('3a'), xor, 'leaf hash is the XOR of its entry hashes');
    assert.equal(t.keysUnder('').length, 300);
    assert.equal(
      t.keysUnder('3').length,
      Array.from({ length: 16 }, (_, c) => t.keysUnder('3' + c.toString(16)).length).reduce((a, b) => a + b),
    );
  });

  it('recomputes lazily and correctly across interleaved set/delete/root', () => {
    const t = new MerkleTree();
    const model = new Map<string, Uint8Array>();
    const rnd = prng(SEED);
    const roots: string[] = [];
    for (let step = 0; step < 3000; step++) {
      const key = `k/${Math.floor(rnd() * 400)}`;
      if (rnd() < 0.3) {
        assert.equal(t.delete(key), model.delete(key));
      } else {
        const d = digestOf(String(Math.floor(rnd() * 3)));
        t.set(key, d);
        model.set(key, d);
      }
      if (rnd() < 0.05) {
        const r = t.rootHex();
        assert.equal(r, toHex(refRoot(model, 4)), `root after step ${step}`);
        assert.equal(t.rootHex(), r, 'root() is idempotent');
        roots.push(r);
      }
      if (rnd() < 0.02) {
        // A node view must see the same lazily refreshed hashes as a tree rebuilt from scratch.
        const path = key.length ? t.leafPath(key).slice(0, 1 + Math.floor(rnd() * 4)) : '';
        assert.deepEqual(t.nodes([path]), treeOf(model).nodes([path]));
      }
    }
    assert.ok(roots.length > 50);
    assert.equal(t.size, model.size);
  });

  it('a no-op update or a set-then-delete leaves the root unchanged', () => {
    const t = new MerkleTree();
    for (let i = 0; i < 100; i++) t.set(`a/${i}`, digestOf(`${i}`));
    const before = t.rootHex();
    t.set('a/5', digestOf('5'));
    assert.equal(t.rootHex(), before);
    t.set('fresh', digestOf('x'));
    t.set('fresh', digestOf('y'));
    t.delete('fresh');
    assert.equal(t.rootHex(), before);
    t.set('a/7', digestOf('other'));
    assert.notEqual(t.rootHex(), before);
    t.set('a/7', digestOf('7'));
    assert.equal(t.rootHex(), before);
  });

  it('property: incremental tree == rebuilt-from-scratch tree == reference spec (random op sequences)', () => {
    const keyPool = [
      'a',
      'b',
      'agent/1',
      'agent/2',
      'task/é',
      'task/\u{1F600}',
      'node/x',
      'k',
      'z/0',
      'z/1',
      'z/2',
      '',
    ];
    const op = fc.oneof(
      fc.record({ t: fc.constant('set' as const), k: fc.constantFrom(...keyPool), v: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ t: fc.constant('del' as const), k: fc.constantFrom(...keyPool) }),
      fc.record({ t: fc.constant('root' as const) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.array(op, { maxLength: 40 }), (depth, ops) => {
        const t = new MerkleTree({ depth, initialCapacity: 1 });
        const model = new Map<string, Uint8Array>();
        for (const o of ops) {
          if (o.t === 'set') {
            const d = digestOf(String(o.v));
            t.set(o.k, d);
            model.set(o.k, d);
          } else if (o.t === 'del') {
            assert.equal(t.delete(o.k), model.delete(o.k));
          } else {
            assert.deepEqual(t.root(), refRoot(model, depth));
          }
        }
        assert.equal(t.size, model.size);
        for (const k of keyPool) assert.deepEqual(t.get(k), model.get(k));
        const shuffled = [...model].reverse();
        const rebuilt = MerkleTree.from(shuffled, { depth });
        assert.deepEqual(t.root(), rebuilt.root());
        assert.deepEqual(t.root(), refRoot(model, depth));
        assert.deepEqual(t.nodes(['']), rebuilt.nodes(['']));
      }),
      { seed: SEED, numRuns: 1000 },
    );
  });

  it('property: roots are equal iff contents are equal', () => {
    const content = fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g'), fc.integer({ min: 0, max: 2 }), {
      maxKeys: 7,
    });
    fc.assert(
      fc.property(content, content, fc.boolean(), (x, y, same) => {
        const toMap = (o: Record<string, number>) =>
          new Map(Object.entries(o).map(([k, v]) => [k, digestOf(String(v))] as const));
        const a = toMap(x);
        const b = same ? new Map([...a].reverse()) : toMap(y);
        const ta = treeOf(a, 2);
        const tb = treeOf(b, 2);
        assert.equal(bytesEqual(ta.root(), tb.root()), mapsEqual(a, b));
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('keeps working after heavy churn (slot reuse, key-table growth and backward-shift deletes)', () => {
    const t = new MerkleTree({ depth: 1 });
    const model = new Map<string, Uint8Array>();
    const rnd = prng(SEED ^ 0x5bd1e995);
    for (let step = 0; step < 20000; step++) {
      const key = `churn/${Math.floor(rnd() * 2000)}`;
      if (rnd() < 0.45) {
        t.delete(key);
        model.delete(key);
      } else {
        const d = digestOf(`${step}`);
        t.set(key, d);
        model.set(key, d);
      }
    }
    assert.equal(t.size, model.size);
    for (let i = 0; i < 2000; i++) assert.deepEqual(t.get(`churn/${i}`), model.get(`churn/${i}`));
    assert.deepEqual(t.root(), refRoot(model, 1));
    assert.deepEqual(new Set(t.keys()), new Set(model.keys()));
  });
});

describe('merkleDiff', () => {
  it('finds exactly the differing keys of two randomly diverged trees (both directions)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer(),
        fc.integer({ min: 0, max: 2000 }),
        fc.integer({ min: 0, max: 200 }),
        fc.constantFrom(2, 3, 4, 4),
        async (seed, n, d, depth) => {
          const rnd = prng(seed);
          const a = new Map<string, Uint8Array>();
          for (let i = 0; i < n; i++) a.set(`${rnd() < 0.5 ? 'agent' : 'task'}/${i}`, digestOf(`${seed}/${i}`));
          const b = new Map(a);
          const keys = [...a.keys()];
          for (let i = 0; i < d; i++) {
            const r = rnd();
            const existing = keys[Math.floor(rnd() * keys.length)];
            if (r < 0.3 && existing !== undefined)
              b.set(existing, digestOf(`changed/${i}`)); // changed digest
            else if (r < 0.5 && existing !== undefined)
              b.delete(existing); // only on a
            else if (r < 0.7 && existing !== undefined)
              a.delete(existing); // only on b (or gone from both)
            else if (r < 0.85)
              b.set(`new/b/${i}`, digestOf(`nb${i}`)); // only on b
            else a.set(`new/a/${i}`, digestOf(`na${i}`)); // only on a
          }
          const expected = referenceDiff(a, b);
          const ta = treeOf(a, depth);
          const tb = treeOf(b, depth);
          const ab = await merkleDiff(ta, peer(tb));
          const ba = await merkleDiff(tb, peer(ta));
          assert.deepEqual(ab.differing, expected);
          assert.deepEqual(ba.differing, expected);
          assert.ok(ab.rounds >= 1 && ab.rounds <= depth + 1, `rounds ${ab.rounds}`);
          if (expected.length === 0) {
            assert.equal(ab.rounds, 1);
            assert.equal(ab.nodesFetched, 1);
          } else {
            // Only differing branches are visited: never more than one path per differing key per level.
            assert.ok(ab.nodesFetched <= 1 + expected.length * depth, `fetched ${ab.nodesFetched}`);
          }
          assert.ok((ab.bytesEstimate ?? 0) > 0);
        },
      ),
      { seed: SEED, numRuns: 20 },
    );
  });

  it('batches every differing path of a level into one round trip', async () => {
    const a = new Map<string, Uint8Array>();
    for (let i = 0; i < 5000; i++) a.set(`k/${i}`, digestOf(`${i}`));
    const b = new Map(a);
    for (let i = 0; i < 50; i++) b.set(`k/${i * 97}`, digestOf(`x${i}`));
    const calls: string[][] = [];
    const tb = treeOf(b);
    const res = await merkleDiff(treeOf(a), (paths) => {
      calls.push(paths);
      return Promise.resolve(tb.nodes(paths));
    });
    assert.deepEqual(res.differing, referenceDiff(a, b));
    assert.equal(res.rounds, DEFAULT_MERKLE_DEPTH + 1);
    assert.equal(calls.length, res.rounds);
    calls.forEach((paths, level) => assert.ok(paths.every((p) => p.length === level)));
    assert.equal(calls.at(-1)!.length, new Set(res.differing.map((k) => tb.leafPath(k))).size);
    assert.equal(
      res.nodesFetched,
      calls.reduce((s, p) => s + p.length, 0),
    );
  });

  it('skips the walk when the remote root is known and equal, and handles empty trees', async () => {
    const a = new Map([['x', digestOf('1')]]);
    const ta = treeOf(a);
    const same = await merkleDiff(ta, peer(treeOf(a)), { remoteRoot: treeOf(a).root() });
    assert.deepEqual(same, { differing: [], rounds: 0, nodesFetched: 0, bytesEstimate: 0 });
    const empty = new MerkleTree();
    // The remote child is empty, so the local keys below it differ without descending further.
    assert.deepEqual((await merkleDiff(ta, peer(empty))).differing, ['x']);
    assert.equal((await merkleDiff(ta, peer(empty))).rounds, 1);
    assert.deepEqual((await merkleDiff(empty, peer(ta))).differing, ['x']);
    assert.deepEqual((await merkleDiff(empty, peer(new MerkleTree()))).differing, []);
  });

  it('splits large levels with maxPathsPerRequest and enforces maxRounds', async () => {
    const a = new Map<string, Uint8Array>();
    for (let i = 0; i < 1000; i++) a.set(`k/${i}`, digestOf(`${i}`));
    const b = new Map(a);
    for (let i = 0; i < 40; i++) b.delete(`k/${i * 7}`);
    const ta = treeOf(a);
    const tb = treeOf(b);
    const whole = await merkleDiff(ta, peer(tb));
    const split = await merkleDiff(ta, peer(tb), { maxPathsPerRequest: 3 });
    assert.deepEqual(split.differing, whole.differing);
    assert.deepEqual(split.differing, referenceDiff(a, b));
    assert.equal(split.nodesFetched, whole.nodesFetched);
    assert.ok(split.rounds > whole.rounds);
    await rejectsWithCode(merkleDiff(ta, peer(tb), { maxRounds: 2 }), 'MERKLE_MAX_ROUNDS');
  });

  it('honours an AbortSignal', async () => {
    const ta = treeOf(new Map([['x', digestOf('1')]]));
    const tb = new MerkleTree().set('y', digestOf('2'));
    await assert.rejects(merkleDiff(ta, peer(tb), { signal: AbortSignal.abort() }), { name: 'AbortError' });
    const ac = new AbortController();
    let seen: AbortSignal | undefined;
    const slow: FetchNodes = (paths, signal) => {
      seen = signal;
      ac.abort();
      return Promise.resolve(tb.nodes(paths));
    };
    await assert.rejects(merkleDiff(ta, slow, { signal: ac.signal }), { name: 'AbortError' });
    assert.equal(seen, ac.signal, 'the signal is passed on to fetchRemote');
  });

  it('rejects malformed or inconsistent remote node views with MERKLE_INVALID_NODE', async () => {
    const a = new Map<string, Uint8Array>();
    for (let i = 0; i < 200; i++) a.set(`k/${i}`, digestOf(`${i}`));
    const b = new Map(a);
    b.set('k/1', digestOf('changed'));
    const ta = treeOf(a);
    const tb = treeOf(b);
    const leafOfChange = tb.leafPath('k/1');
    const foreignKey = [...a.keys()].find((k) => tb.leafPath(k) !== leafOfChange)!;

    type Tamper = (views: NodeView[], paths: string[]) => unknown;
    /** Serves tb honestly except that the response to the request at `level` is tampered with. */
    const tampered =
      (level: number, f: Tamper): FetchNodes =>
      (paths) => {
        const views = structuredClone(tb.nodes(paths));
        return Promise.resolve((paths[0]!.length === level ? f(views, paths) : views) as NodeView[]);
      };
    const inner = (v: NodeView) => v as Extract<NodeView, { kind: 'inner' }>;
    const leaf = (v: NodeView) => v as Extract<NodeView, { kind: 'leaf' }>;
    const cases: Array<[string, number, Tamper]> = [
      ['not an array', 0, () => ({ path: '' })],
      ['null view', 0, () => [null]],
      ['missing view', 0, () => []],
      ['unrequested path', 0, (v) => [...v, { ...v[0]!, path: '0' }]],
      ['duplicated view', 0, (v) => [v[0], v[0]]],
      ['path not a string', 0, (v) => [{ ...v[0]!, path: 0 }]],
      ['leaf instead of inner', 0, () => [{ path: '', kind: 'leaf', entries: [] }]],
      ['15 children', 0, (v) => [{ ...v[0]!, children: inner(v[0]!).children.slice(1) }]],
      ['children not an array', 0, (v) => [{ ...v[0]!, children: 'x' }]],
      ['short child hash', 0, (v) => [{ ...v[0]!, children: inner(v[0]!).children.map((c) => c.subarray(1)) }]],
      ['child hash not bytes', 0, (v) => [{ ...v[0]!, children: inner(v[0]!).children.map((c) => [...c]) }]],
      ['inner instead of leaf', 4, (v) => v.map((x) => ({ path: x.path, kind: 'inner', children: [] }))],
      ['unknown kind', 4, (v) => v.map((x) => ({ ...x, kind: 'branch' }))],
      ['entries not an array', 4, (v) => v.map((x) => ({ ...x, entries: {} }))],
      ['entry not a pair', 4, (v) => v.map((x) => ({ ...x, entries: [['k/1']] }))],
      ['entry key not a string', 4, (v) => v.map((x) => ({ ...x, entries: [[1, new Uint8Array(16)]] }))],
      [
        'entry hash too long',
        4,
        (v) => v.map((x) => ({ ...x, entries: leaf(x).entries.map(([k]) => [k, new Uint8Array(17)]) })),
      ],
      ['duplicate key', 4, (v) => v.map((x) => ({ ...x, entries: [...leaf(x).entries, ...leaf(x).entries] }))],
      [
        'key in the wrong leaf',
        4,
        (v) => v.map((x) => ({ ...x, entries: [...leaf(x).entries, [foreignKey, new Uint8Array(16)]] })),
      ],
    ];
    // Sanity: the honest peer yields the single change.
    assert.deepEqual(
      (
        await merkleDiff(
          ta,
          tampered(-1, (v) => v),
        )
      ).differing,
      ['k/1'],
    );
    for (const [name, level, f] of cases) {
      await assert.rejects(
        merkleDiff(ta, tampered(level, f)),
        (err: unknown) => err instanceof MerkleError && err.code === 'MERKLE_INVALID_NODE',
        name,
      );
    }
  });

  it('rejects a peer whose tree has a different depth', async () => {
    const a = new Map([
      ['x', digestOf('1')],
      ['y', digestOf('2')],
    ]);
    const b = new Map([['x', digestOf('1')]]);
    await rejectsWithCode(merkleDiff(treeOf(a, 4), peer(treeOf(b, 3))), 'MERKLE_INVALID_NODE');
    await rejectsWithCode(merkleDiff(treeOf(a, 3), peer(treeOf(b, 4))), 'MERKLE_INVALID_NODE');
  });
});
