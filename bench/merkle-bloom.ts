/**
 * Anti-entropy data structures: Merkle tree maintenance and diff, Bloom summary build and query,
 * and the hand-written Bloom filter side by side with the `bloom-filters` package.
 *
 *   npx node --expose-gc --import tsx -e "import('./bench/merkle-bloom.ts').then(async m=>console.table(await m.benchMerkleBloom()))"
 *
 * Every timing is the median of several runs (after a warm-up run). `value` is wall-clock time;
 * `cpu` is the same measurement in process CPU time (user + system), which stays meaningful when
 * other processes compete for the cores. Memory rows need --expose-gc.
 */
import { Buffer } from 'node:buffer';
import { createHash, hash } from 'node:crypto';
import bloomFilters from 'bloom-filters';
import { bloomOf, BloomSummary, buildBloom, missingFrom } from '../src/replica/bloom.js';
import { entryHash, entryHashStreaming, HASH_BYTES, keyPrefix } from '../src/replica/entry-hash.js';
import { MerkleTree, merkleDiff } from '../src/replica/merkle.js';

/** One table row; a type alias (not an interface) so it fits both Record<string, unknown> and the harness's Row. */
export type BenchRow = {
  case: string;
  value: number;
  cpu: number | null;
  unit: string;
  detail: string;
};

interface Timing {
  wall: number;
  cpu: number;
}

const N = 100_000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e3;
}

/**
 * Runs `fn` `runs` times after one warm-up and returns the median wall and CPU milliseconds. `fn`
 * may time its own critical section by calling `start()` (default: the whole call).
 */
function timeMs(runs: number, fn: (start: () => void) => void): Timing {
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let r = 0; r <= runs; r++) {
    let t0 = performance.now();
    let c0 = process.cpuUsage();
    fn(() => {
      t0 = performance.now();
      c0 = process.cpuUsage();
    });
    const cpu = cpuMs(c0);
    const wall = performance.now() - t0;
    if (r > 0) {
      walls.push(wall);
      cpus.push(cpu);
    }
  }
  return { wall: median(walls), cpu: median(cpus) };
}

async function timeMsAsync(runs: number, fn: () => Promise<void>): Promise<Timing> {
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let r = 0; r <= runs; r++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await fn();
    const cpu = cpuMs(c0);
    if (r > 0) {
      walls.push(performance.now() - t0);
      cpus.push(cpu);
    }
  }
  return { wall: median(walls), cpu: median(cpus) };
}

function digestOf(i: number, version = 0): Uint8Array {
  return new Uint8Array(createHash('sha256').update(`${i}:${version}`).digest().subarray(0, 16));
}

/** Flat (not rope) strings, as keys decoded from the wire or the store are; ropes would skew memory. */
function makeKeys(n: number): string[] {
  return Array.from({ length: n }, (_, i) =>
    Buffer.from(`${i % 2 ? 'agent' : 'task'}/${(i * 2654435761) >>> 0}-${i}`).toString(),
  );
}

/** Full GCs with pauses so that array buffers released by sweeping are accounted for. */
async function gc(): Promise<boolean> {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) return false;
  for (let i = 0; i < 3; i++) {
    g();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

function heapBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 2 ** 32;
  };
}

export async function benchMerkleBloom(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  /** A timing row scaled to `unit` by `per` (e.g. ms -> us/key: 1e3 / n). */
  const timed = (c: string, t: Timing, unit: string, per: number, detail = ''): void => {
    rows.push({ case: c, value: round(t.wall * per), cpu: round(t.cpu * per), unit, detail });
  };
  const plain = (c: string, value: number, unit: string, detail = ''): void => {
    rows.push({ case: c, value: round(value), cpu: null, unit, detail });
  };

  const keys = makeKeys(N);
  const digests = keys.map((_, i) => digestOf(i));

  // ---- hashing: which sha256 call is fastest for 16-byte truncated hashes ----
  const scratch = Buffer.allocUnsafe(1024);
  const viaBufferOutput = (key: string, digest: Uint8Array): Uint8Array => {
    const n = scratch.write(key, 0, 'utf8');
    scratch.set(digest, n);
    return hash('sha256', scratch.subarray(0, n + 16), 'buffer').subarray(0, 16);
  };
  const perOp = (c: string, fn: (key: string, d: Uint8Array) => unknown, detail: string): void =>
    timed(
      c,
      timeMs(5, () => {
        for (let i = 0; i < N; i++) fn(keys[i]!, digests[i]!);
      }),
      'ns/op',
      1e6 / N,
      detail,
    );
  perOp('entryHash: crypto.hash latin1 (used)', entryHash, "crypto.hash one-shot, 'binary' output read by charCodeAt");
  perOp('entryHash: crypto.hash buffer', viaBufferOutput, "crypto.hash one-shot, 'buffer' output");
  perOp('entryHash: createHash', entryHashStreaming, 'createHash().update().update().digest()');
  perOp('keyPrefix (leaf position)', (k) => keyPrefix(k, 16), 'sha256(utf8 key), top 16 bits');

  // ---- Merkle: build, memory, incremental updates ----
  let tree = new MerkleTree();
  const build = timeMs(3, () => {
    tree = new MerkleTree();
    for (let i = 0; i < N; i++) tree.set(keys[i]!, digests[i]!);
    tree.root();
  });
  timed('merkle build 100k + root', build, 'us/key', 1e3 / N, `total ${round(build.wall, 1)} ms, depth ${tree.depth}`);

  if (await gc()) {
    const base = heapBytes();
    const empty = new MerkleTree();
    await gc();
    const fixed = heapBytes() - base;
    const full = new MerkleTree();
    for (let i = 0; i < N; i++) full.set(keys[i]!, digests[i]!);
    full.root();
    await gc();
    const variable = heapBytes() - base - 2 * fixed;
    plain(
      'merkle memory, 100k keys',
      variable / N + fixed / N,
      'bytes/key',
      `excl. key strings: ${round(variable / N, 1)} per key + ${round(fixed / 2 ** 20, 2)} MiB fixed (depth-${empty.depth} node arrays)`,
    );
    if (full.size !== N || empty.size !== 0) throw new Error('unreachable');
  } else {
    plain('merkle memory, 100k keys', NaN, 'bytes/key', 'run node with --expose-gc');
  }

  const r = rng(7);
  const pick = (): string => keys[Math.floor(r() * N)]!;
  const fresh = Array.from({ length: 4096 }, (_, j) => digestOf(j, -1));
  let v = 0;
  const updates = 20_000;
  timed(
    'merkle update: single + root()',
    timeMs(5, () => {
      for (let j = 0; j < updates; j++) {
        tree.set(pick(), fresh[v++ & 4095]!);
        tree.root();
      }
    }),
    'us/key',
    1e3 / updates,
    '100k keys; set(existing key) then root() each time',
  );
  const batch = 1000;
  timed(
    'merkle update: batch 1000 + root()',
    timeMs(5, () => {
      for (let b = 0; b < 20; b++) {
        for (let j = 0; j < batch; j++) tree.set(pick(), fresh[v++ & 4095]!);
        tree.root();
      }
    }),
    'us/key',
    1e3 / (20 * batch),
    '100k keys; 1000 set(existing key) then one root()',
  );
  timed(
    'merkle insert: batch 1000 + root()',
    timeMs(5, (start) => {
      const t = MerkleTree.from(tree.entries(), { initialCapacity: N + 20 * batch });
      start();
      for (let b = 0; b < 20; b++) {
        for (let j = 0; j < batch; j++) t.set(`new/${v++}`, fresh[v & 4095]!);
        t.root();
      }
    }),
    'us/key',
    1e3 / (20 * batch),
    '100k keys; 1000 new keys then one root()',
  );

  // ---- Merkle diff over an in-process "peer" ----
  for (const d of [10, 1000]) {
    const a = MerkleTree.from(tree.entries());
    const b = MerkleTree.from(tree.entries());
    const rd = rng(d);
    for (let j = 0; j < d; j++) {
      const i = Math.floor(rd() * N);
      const x = rd();
      if (x < 0.5) b.set(keys[i]!, digestOf(i, -2 - j));
      else if (x < 0.75) b.delete(keys[i]!);
      else a.set(`only-a/${j}`, digestOf(j, -3));
    }
    a.root();
    b.root();
    let res = await merkleDiff(a, (paths) => Promise.resolve(b.nodes(paths)));
    const t = await timeMsAsync(5, async () => {
      res = await merkleDiff(a, (paths) => Promise.resolve(b.nodes(paths)));
    });
    timed(
      `merkle diff: n=100k d=${d}`,
      t,
      'ms',
      1,
      `found ${res.differing.length}; rounds ${res.rounds}; nodes fetched ${res.nodesFetched}; ~${round((res.bytesEstimate ?? 0) / 1024, 1)} KiB`,
    );
  }

  // ---- Bloom: hand-written vs bloom-filters ----
  const entryHashes = [...tree.entryHashes()];
  const ehs = entryHashes.map(([, eh]) => eh);
  let filter = buildBloom(ehs, N, 0.01);
  timed(
    'bloom build: n=100k fp=1% (used)',
    timeMs(5, () => {
      filter = buildBloom(ehs, N, 0.01);
    }),
    'ms',
    1,
    `${filter.byteLength} bytes on the wire, k=${filter.hashCount}`,
  );
  timed(
    'bloom build: bloomOf(tree) (used)',
    timeMs(5, () => {
      filter = bloomOf(tree, 0.01);
    }),
    'ms',
    1,
    'walks the tree storage, no copies',
  );
  timed(
    'bloom build: from tree.entryHashes()',
    timeMs(5, () => {
      filter = buildBloom(
        (function* () {
          for (const [, eh] of tree.entryHashes()) yield eh;
        })(),
        tree.size,
        0.01,
      );
    }),
    'ms',
    1,
    'iterator of fresh copies, for comparison',
  );
  const outsiders = Array.from(
    { length: N },
    (_, i) => new Uint8Array(createHash('sha256').update(`out${i}`).digest().subarray(0, HASH_BYTES)),
  );
  const fp = outsiders.filter((x) => filter.has(x)).length / N;
  plain('bloom: measured fp rate (used)', fp * 100, '%', '100k non-members, target 1%');
  const local: Array<[string, Uint8Array]> = [
    ...entryHashes.slice(0, N - 1000),
    ...outsiders.slice(0, 1000).map((h, i) => [`missing/${i}`, h] as [string, Uint8Array]),
  ];
  let missing: string[] = [];
  const peerTree = MerkleTree.from(tree.entries());
  for (let i = 0; i < 1000; i++) peerTree.delete(keys[i]!);
  const peerOfTree = bloomOf(peerTree);
  timed(
    'bloom missingFrom(filter, tree)',
    timeMs(5, () => {
      missing = missingFrom(peerOfTree, tree);
    }),
    'ms',
    1,
    `100k-key tree vs a peer lacking 1000; ${missing.length} reported`,
  );
  timed(
    'bloom missingFrom(filter, pairs)',
    timeMs(5, () => {
      missing = missingFrom(filter, local);
    }),
    'ms',
    1,
    `${missing.length} of the 1000 truly missing reported`,
  );
  const wire = filter.toBytes();
  timed(
    'bloom fromBytes: n=100k',
    timeMs(5, () => {
      BloomSummary.fromBytes(wire);
    }),
    'ms',
    1,
    'validate + copy',
  );
  const sample = 20_000;
  timed(
    'bloom has() (used)',
    timeMs(5, () => {
      for (let i = 0; i < sample; i++) filter.has(outsiders[i]!);
    }),
    'us/key',
    1e3 / sample,
    'positions straight from the entry hash',
  );

  const { BloomFilter } = bloomFilters;
  const ehBuffers = ehs.map((eh) => Buffer.from(eh));
  let lib = BloomFilter.create(N, 0.01);
  timed(
    'bloom-filters build: n=100k fp=1%',
    timeMs(3, () => {
      lib = BloomFilter.create(N, 0.01);
      for (const b of ehBuffers) lib.add(b);
    }),
    'ms',
    1,
    `bloom-filters 3.0.4 BloomFilter; JSON export ${JSON.stringify(lib.saveAsJSON()).length} bytes (base64 bits); k=${lib._nbHashes}`,
  );
  const outBuffers = outsiders.slice(0, sample).map((x) => Buffer.from(x));
  let libFp = 0;
  timed(
    'bloom-filters has()',
    timeMs(3, () => {
      libFp = 0;
      for (const x of outBuffers) if (lib.has(x)) libFp++;
    }),
    'us/key',
    1e3 / sample,
    `measured fp ${round((libFp / sample) * 100, 2)}% on ${sample} non-members`,
  );

  return rows;
}
