import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  BLOOM_HEADER_BYTES,
  BloomError,
  BloomSummary,
  bloomOf,
  bloomParameters,
  buildBloom,
  missingFrom,
} from '../../src/replica/bloom.js';
import { bytesEqual, entryHash, toHex } from '../../src/replica/entry-hash.js';
import { MerkleTree, merkleDiff } from '../../src/replica/merkle.js';

/** Reproducible by default; FC_SEED explores other seeds (fast-check prints the failing seed and path). */
const SEED = Number(process.env.FC_SEED ?? 20261121);

function sha16(text: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(text).digest().subarray(0, 16));
}

/** Distinct uniform 16-byte "entry hashes" for a label. */
function hashes(label: string, count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => sha16(`${SEED}/${label}/${i}`));
}

function isCode(code: string) {
  return (err: unknown): boolean => err instanceof BloomError && err.code === code;
}

describe('Bloom summary', () => {
  it('sizes itself with the textbook optimum', () => {
    assert.deepEqual(bloomParameters(100_000, 0.01), { bits: 958_506, hashes: 7 });
    assert.deepEqual(bloomParameters(0, 0.01), { bits: 10, hashes: 7 });
    const f = BloomSummary.create(100_000);
    assert.equal(f.byteLength, BLOOM_HEADER_BYTES + Math.ceil(958_506 / 8));
    assert.equal(f.hashCount, 7);
    assert.equal(f.capacity, 100_000);
    assert.equal(f.popCount(), 0);
  });

  it('has no false negatives, and round-trips through its binary form', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 16, maxLength: 16 }), { maxLength: 300 }),
        fc.integer({ min: 0, max: 400 }),
        fc.constantFrom(0.5, 0.1, 0.01, 0.0001),
        (items, n, p) => {
          const f = buildBloom(items, n, p);
          for (const x of items) assert.ok(f.has(x));
          const bytes = f.toBytes();
          assert.equal(bytes.length, f.byteLength);
          const g = BloomSummary.fromBytes(bytes);
          assert.deepEqual(g.toBytes(), bytes);
          assert.equal(g.bitCount, f.bitCount);
          assert.equal(g.hashCount, f.hashCount);
          assert.equal(g.capacity, n);
          for (const x of items) assert.ok(g.has(x));
          // fromBytes copies: mutating the wire buffer afterwards does not change the filter.
          bytes.fill(0, BLOOM_HEADER_BYTES);
          for (const x of items) assert.ok(g.has(x));
        },
      ),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('missingFrom never over-reports: every reported key is truly absent from the filter', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 500 }), fc.integer({ min: 0, max: 500 }), (shared, extra) => {
        const inFilter = hashes('in', shared);
        const notIn = hashes('out', extra);
        const f = buildBloom(inFilter, shared, 0.05);
        const local: Array<[string, Uint8Array]> = [
          ...inFilter.map((h, i) => [`shared/${i}`, h] as [string, Uint8Array]),
          ...notIn.map((h, i) => [`extra/${i}`, h] as [string, Uint8Array]),
        ];
        const reported = missingFrom(f, local);
        assert.ok(
          reported.every((k) => k.startsWith('extra/')),
          'only keys whose entry is not in the filter',
        );
        assert.equal(new Set(reported).size, reported.length);
        // Every unreported extra key is a false positive of the filter.
        const reportedSet = new Set(reported);
        notIn.forEach((h, i) => assert.equal(reportedSet.has(`extra/${i}`), !f.has(h)));
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it('misses at most ~the configured false-positive rate of 10k differences', () => {
    const fpRate = 0.01;
    const peer = hashes('peer', 20_000);
    const filter = BloomSummary.fromBytes(buildBloom(peer, peer.length, fpRate).toBytes());
    const ours = hashes('ours', 10_000);
    const local: Array<[string, Uint8Array]> = [
      ...peer.map((h, i) => [`same/${i}`, h] as [string, Uint8Array]),
      ...ours.map((h, i) => [`diff/${i}`, h] as [string, Uint8Array]),
    ];
    const reported = missingFrom(filter, local);
    assert.ok(reported.every((k) => k.startsWith('diff/')));
    const missRate = (ours.length - reported.length) / ours.length;
    assert.ok(missRate < 3 * fpRate, `miss rate ${missRate}`);
    assert.ok(filter.expectedFpRate() < 1.5 * fpRate, `fill-implied fp ${filter.expectedFpRate()}`);
  });

  it('rejects malformed binary summaries with BLOOM_INVALID', () => {
    const good = buildBloom(hashes('x', 50), 50, 0.01).toBytes();
    const patch = (f: (b: Uint8Array, v: DataView) => void): Uint8Array => {
      const b = good.slice();
      f(b, new DataView(b.buffer));
      return b;
    };
    const withBits = (m: number): Uint8Array => {
      const b = new Uint8Array(BLOOM_HEADER_BYTES + Math.ceil(m / 8));
      const v = new DataView(b.buffer);
      v.setUint8(0, 1);
      v.setUint8(1, 3);
      v.setUint32(2, m);
      return b;
    };
    const bad: Array<[string, unknown]> = [
      ['empty', new Uint8Array(0)],
      ['header only, truncated', good.subarray(0, BLOOM_HEADER_BYTES - 1)],
      ['truncated body', good.subarray(0, good.length - 1)],
      ['trailing byte', new Uint8Array([...good, 0])],
      ['unknown version', patch((b) => (b[0] = 2))],
      ['zero hashes', patch((b) => (b[1] = 0))],
      ['too many hashes', patch((b) => (b[1] = 33))],
      ['bit count mismatch', patch((_, v) => v.setUint32(2, v.getUint32(2) + 64))],
      ['zero bits', withBits(0).subarray(0, BLOOM_HEADER_BYTES)],
      ['too few bits', withBits(7)],
      ['too many bits', patch((_, v) => v.setUint32(2, 2 ** 31 + 8))],
      [
        'bits beyond m',
        (() => {
          const b = withBits(13);
          b[b.length - 1] = 0x80;
          return b;
        })(),
      ],
      ['not bytes', [1, 7, 0, 0, 0, 8, 0, 0, 0, 0, 0]],
    ];
    assert.ok(BloomSummary.fromBytes(withBits(13)), 'a well-formed 13-bit filter is accepted');
    for (const [name, bytes] of bad) {
      assert.throws(() => BloomSummary.fromBytes(bytes as Uint8Array), isCode('BLOOM_INVALID'), name);
    }
  });

  it('rejects bad arguments with BLOOM_INVALID_ARGUMENT', () => {
    for (const [n, p] of [
      [-1, 0.01],
      [1.5, 0.01],
      [10, 0],
      [10, 1],
      [10, NaN],
      [2 ** 40, 0.01],
    ] as const) {
      assert.throws(() => BloomSummary.create(n, p), isCode('BLOOM_INVALID_ARGUMENT'), `${n} ${p}`);
    }
    const f = BloomSummary.create(10);
    assert.throws(() => f.add(new Uint8Array(15)), isCode('BLOOM_INVALID_ARGUMENT'));
    assert.throws(() => f.has(new Uint8Array(32)), isCode('BLOOM_INVALID_ARGUMENT'));
    assert.throws(() => missingFrom(f, [['k', new Uint8Array(8)]]), isCode('BLOOM_INVALID_ARGUMENT'));
    for (const offset of [-1, 1.5, 17, NaN]) {
      assert.throws(() => f.hasAt(new Uint8Array(32), offset), isCode('BLOOM_INVALID_ARGUMENT'), String(offset));
      assert.throws(() => f.addAt(new Uint8Array(32), offset), isCode('BLOOM_INVALID_ARGUMENT'), String(offset));
    }
  });

  it('bloomOf(tree) and missingFrom(filter, tree) agree with the pair-based forms', () => {
    const tree = new MerkleTree();
    for (let i = 0; i < 3000; i++) tree.set(`k/${i}`, sha16(`v${i}`));
    const pairs = [...tree.entryHashes()];
    const viaTree = bloomOf(tree, 0.02);
    const viaPairs = buildBloom(
      pairs.map(([, eh]) => eh),
      tree.size,
      0.02,
    );
    assert.deepEqual(viaTree.toBytes(), viaPairs.toBytes());
    const other = new MerkleTree();
    for (let i = 0; i < 3000; i += 2) other.set(`k/${i}`, sha16(i % 4 === 0 ? `v${i}` : `w${i}`));
    const peerFilter = bloomOf(other);
    const fromTree = missingFrom(peerFilter, tree);
    assert.deepEqual(fromTree, missingFrom(peerFilter, pairs));
    assert.ok(fromTree.length > 2000 && fromTree.length <= 2250, `${fromTree.length}`);
  });
});

describe('Bloom delta sync then a Merkle pass', () => {
  /** A record is a version number; digest = H(key, version); replicas merge by keeping the higher version. */
  const digestOf = (key: string, version: number): Uint8Array => sha16(`${key}@${version}`);

  class Replica {
    readonly versions = new Map<string, number>();
    readonly tree = new MerkleTree();
    put(key: string, version: number): void {
      if ((this.versions.get(key) ?? -1) >= version) return;
      this.versions.set(key, version);
      this.tree.set(key, digestOf(key, version));
    }
    /** Bloom sync, requester side: send our filter, merge back what the peer says we lack. */
    bloomPullFrom(peer: Replica, fpRate: number): number {
      const wire = buildBloom(
        (function* (t) {
          for (const [, eh] of t.entryHashes()) yield eh;
        })(this.tree),
        this.tree.size,
        fpRate,
      ).toBytes();
      const keys = missingFrom(BloomSummary.fromBytes(wire), peer.tree.entryHashes());
      for (const k of keys) this.put(k, peer.versions.get(k)!);
      return keys.length;
    }
  }

  it('converges: Bloom in both directions, then Merkle mops up what false positives hid', async () => {
    const fpRate = 0.01;
    const a = new Replica();
    const b = new Replica();
    let rnd = SEED >>> 0;
    const next = (): number => {
      rnd = (Math.imul(rnd, 1664525) + 1013904223) >>> 0;
      return rnd / 2 ** 32;
    };
    for (let i = 0; i < 6000; i++) {
      const key = `${i % 3 === 0 ? 'agent' : 'task'}/${i}`;
      const r = next();
      if (r < 0.55) {
        a.put(key, 1);
        b.put(key, 1);
      } else if (r < 0.65) {
        a.put(key, 1);
        b.put(key, 2);
      } else if (r < 0.75) {
        a.put(key, 3);
        b.put(key, 1);
      } else if (r < 0.9) {
        a.put(key, 1); // b just joined and lacks it
      } else {
        b.put(key, 1);
      }
    }
    const before = (await merkleDiff(a.tree, (p) => Promise.resolve(b.tree.nodes(p)))).differing.length;
    assert.ok(before > 2000);

    a.bloomPullFrom(b, fpRate);
    b.bloomPullFrom(a, fpRate);

    const diff = await merkleDiff(a.tree, (p) => Promise.resolve(b.tree.nodes(p)));
    // What is left are the keys both filters hid; far fewer than the fp rate allows (x3 margin).
    assert.ok(diff.differing.length <= Math.ceil(3 * fpRate * before), `left after Bloom: ${diff.differing.length}`);
    for (const k of diff.differing) {
      const va = a.versions.get(k);
      const vb = b.versions.get(k);
      if (va !== undefined) b.put(k, va);
      if (vb !== undefined) a.put(k, vb);
    }

    assert.deepEqual([...a.versions].sort(), [...b.versions].sort());
    assert.equal(toHex(a.tree.root()), toHex(b.tree.root()));
    assert.deepEqual((await merkleDiff(a.tree, (p) => Promise.resolve(b.tree.nodes(p)))).differing, []);
    for (const [k, eh] of a.tree.entryHashes())
      assert.ok(bytesEqual(eh, entryHash(k, digestOf(k, a.versions.get(k)!))));
  });
});
