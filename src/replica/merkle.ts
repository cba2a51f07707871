import { Buffer } from 'node:buffer';
import { MeshError } from '../util/errors.js';
import { bytesEqual, DIGEST_BYTES, entryHashInto, HASH_BYTES, keyPrefix, sha256Into, toHex } from './entry-hash.js';
import { strHash } from '../util/hash.js';

/**
 * Merkle anti-entropy tree over the replica's keyspace (DESIGN.md, Replication 2).
 *
 * Shape: fixed fanout 16 over the nibbles of keyHash(key) and a fixed depth D (default 4, so 16^4 =
 * 65536 leaves: 100k keys average 1.5 keys per leaf, 1M keys 15). A node is named by its path, the
 * hex nibbles from the root ('' = root, 'a3' = child 3 of child 10 of the root); leaves sit at
 * paths of length D. Both peers must use the same depth.
 *
 * Hashes (all 16 bytes):
 * - leaf = XOR of the entry hashes of its keys (zero when empty). XOR is commutative and
 *   associative, so the leaf hash does not depend on insertion order, and it is its own inverse, so
 *   set/delete update it in O(1) (XOR the old entry hash out, the new one in) instead of re-hashing
 *   the bucket. Entry hashes are uniform 128-bit sha256 outputs, so two different buckets collide
 *   (or a non-empty bucket XORs to zero) with probability ~2^-128. XOR is linear, so a peer that
 *   crafts many records in one leaf can solve for a collision; such a peer is an authenticated
 *   mesh member that can already write arbitrary records, and the worst outcome is that anti-entropy
 *   misses its own crafted records in that leaf (delta gossip and Bloom sync still carry them).
 * - inner = zero when its subtree holds no key, else sha256(child_0 || ... || child_15)[0..16]:
 *   a real hash of the 16 child hashes.
 *
 * Maintenance is lazy: `set`/`delete` update the leaf XOR at once and mark the leaf's ancestors
 * dirty in O(D) (stopping at the first already-dirty ancestor); `root()`/`nodes()` re-hash only the
 * dirty inner nodes, deepest level first, each once however many updates it absorbed.
 *
 * Memory: records live in flat typed arrays indexed by a slot number (digest + entry hash 32 B,
 * leaf/next/hash ints 12 B, the key reference 8 B), found through an open-addressing index
 * (Int32Array, linear probing, load <= 0.8), with no per-record JS objects. Measured at 100k keys
 * (bench/merkle-bloom.ts, "merkle memory" row): ~60 B/key beyond the key strings, plus 1.34 MiB
 * of fixed node arrays at depth 4 (13 B/key at 100k, 1.3 B/key at 1M).
 */

export type MerkleErrorCode =
  'MERKLE_INVALID_NODE' | 'MERKLE_INVALID_PATH' | 'MERKLE_INVALID_INPUT' | 'MERKLE_MAX_ROUNDS';

export class MerkleError extends MeshError<MerkleErrorCode> {}

export const MERKLE_FANOUT = 16;
export const DEFAULT_MERKLE_DEPTH = 4;
/** 16^6 = 16M leaves (256 MiB of leaf hashes) is already far beyond any sensible keyspace. */
export const MAX_MERKLE_DEPTH = 6;

export interface InnerNodeView {
  path: string;
  kind: 'inner';
  /** The 16 child hashes, child i at index i; an empty child is 16 zero bytes. */
  children: Uint8Array[];
}

export interface LeafNodeView {
  path: string;
  kind: 'leaf';
  /** The leaf's keys with their entry hashes, sorted by key. */
  entries: Array<[key: string, entryHash: Uint8Array]>;
}

export type NodeView = InnerNodeView | LeafNodeView;

export interface MerkleTreeOptions {
  /** Levels below the root; leaves are at this depth. 1..6, default 4. */
  depth?: number;
  /** Number of keys to pre-size the storage for. */
  initialCapacity?: number;
}

const HEX = '0123456789abcdef';
const ZERO_HASH = new Uint8Array(HASH_BYTES);
/** Linear probing stays short at this load because probes compare the stored 32-bit hash first. */
const MAX_LOAD = 0.8;
/** Slot storage grows by 1.25x: less slack than doubling, still amortized O(1) per insert. */
const GROWTH = 1.25;
/** Bytes per slot in `#hashes`: digest (16) then entry hash (16). */
const SLOT_BYTES = DIGEST_BYTES + HASH_BYTES;

function invalidInput(message: string, details?: Record<string, unknown>): MerkleError {
  return new MerkleError('MERKLE_INVALID_INPUT', message, details === undefined ? {} : { details });
}

// The key table's hash (util/hash.ts) is seeded per tree: probe clusters differ between nodes.
// It only indexes the local key table (never on the wire), so it favours speed; a deliberately
// colliding key set would only cost lookup time, never correctness.

export class MerkleTree {
  readonly depth: number;
  readonly #leafCount: number;
  /** #inner[l] holds the 16-byte hashes of the 16^l nodes of level l (0 = root), l < depth. */
  readonly #inner: Uint8Array[];
  readonly #inner32: Int32Array[];
  /** Leaf hashes (XOR accumulators), 16 bytes per leaf. */
  readonly #leafXor: Uint8Array;
  readonly #leafXor32: Int32Array;
  /** First slot of each leaf's bucket (singly linked through the slots' `next`), -1 when empty. */
  readonly #leafHead: Int32Array;
  /** Per inner level: dirty flag per node, and a stack of the dirty node indexes. */
  readonly #dirty: Uint8Array[];
  readonly #dirtyStack: Int32Array[];
  readonly #dirtyTop: Int32Array;

  // Record storage, indexed by slot.
  #capacity: number;
  /** Slots ever handed out; slots below it are live or on the free list. */
  #highWater = 0;
  /** Head of the free-slot list (linked through the slots' `next`), -1 when empty. */
  #freeHead = -1;
  #size = 0;
  #keys: (string | undefined)[] = [];
  /** Per slot: digest (16 bytes) then entry hash (16 bytes). */
  #hashes: Uint8Array;
  #hashes32: Int32Array;
  /** Per slot: [leaf index, next slot in the leaf bucket or free list, key table hash]. */
  #meta: Int32Array;

  // Key index: open addressing with linear probing; entries are slot + 1, 0 = empty.
  #table: Int32Array;
  #mask: number;
  readonly #seed = (Math.random() * 0x100000000) | 0;

  constructor(options: MerkleTreeOptions = {}) {
    const depth = options.depth ?? DEFAULT_MERKLE_DEPTH;
    if (!Number.isInteger(depth) || depth < 1 || depth > MAX_MERKLE_DEPTH) {
      throw invalidInput(`Merkle depth must be an integer in 1..${MAX_MERKLE_DEPTH}`, { depth });
    }
    this.depth = depth;
    this.#leafCount = MERKLE_FANOUT ** depth;
    this.#inner = [];
    this.#inner32 = [];
    this.#dirty = [];
    this.#dirtyStack = [];
    for (let l = 0; l < depth; l++) {
      const nodes = MERKLE_FANOUT ** l;
      const level = new Uint8Array(nodes * HASH_BYTES);
      this.#inner.push(level);
      this.#inner32.push(new Int32Array(level.buffer));
      this.#dirty.push(new Uint8Array(nodes));
      this.#dirtyStack.push(new Int32Array(nodes));
    }
    this.#dirtyTop = new Int32Array(depth);
    this.#leafXor = new Uint8Array(this.#leafCount * HASH_BYTES);
    this.#leafXor32 = new Int32Array(this.#leafXor.buffer);
    this.#leafHead = new Int32Array(this.#leafCount).fill(-1);

    const hint = options.initialCapacity ?? 0;
    if (!(hint >= 0 && hint <= 2 ** 26)) {
      throw invalidInput('initialCapacity must be a number in 0..2^26', { initialCapacity: hint });
    }
    const initial = Math.max(16, Math.ceil(hint));
    this.#capacity = initial;
    this.#hashes = new Uint8Array(initial * SLOT_BYTES);
    this.#hashes32 = new Int32Array(this.#hashes.buffer);
    this.#meta = new Int32Array(initial * 3);
    let tableSize = 16;
    while (tableSize * MAX_LOAD < initial) tableSize *= 2;
    this.#table = new Int32Array(tableSize);
    this.#mask = tableSize - 1;
  }

  /** Builds a tree from [key, digest] pairs. */
  static from(entries: Iterable<readonly [string, Uint8Array]>, options: MerkleTreeOptions = {}): MerkleTree {
    const tree = new MerkleTree(options);
    for (const [key, digest] of entries) tree.set(key, digest);
    return tree;
  }

  get size(): number {
    return this.#size;
  }

  has(key: string): boolean {
    return this.#find(key, strHash(key, this.#seed)) >= 0;
  }

  /** The digest stored for `key` (a copy), or undefined. */
  get(key: string): Uint8Array | undefined {
    const pos = this.#find(key, strHash(key, this.#seed));
    if (pos < 0) return undefined;
    const at = (this.#table[pos]! - 1) * SLOT_BYTES;
    return this.#hashes.slice(at, at + DIGEST_BYTES);
  }

  /** The entry hash of `key`'s current version (a copy), or undefined. */
  getEntryHash(key: string): Uint8Array | undefined {
    const pos = this.#find(key, strHash(key, this.#seed));
    if (pos < 0) return undefined;
    const at = (this.#table[pos]! - 1) * SLOT_BYTES + DIGEST_BYTES;
    return this.#hashes.slice(at, at + HASH_BYTES);
  }

  /** Inserts or updates `key` with its record digest. O(1) plus O(depth) dirty marking. */
  set(key: string, digest: Uint8Array): this {
    if (typeof key !== 'string') throw invalidInput('key must be a string');
    if (!(digest instanceof Uint8Array) || digest.length !== DIGEST_BYTES) {
      throw invalidInput(`digest must be a ${DIGEST_BYTES}-byte Uint8Array`, {
        key: key.slice(0, 64),
        length: (digest as { length?: unknown } | undefined)?.length,
      });
    }
    const h = strHash(key, this.#seed);
    const pos = this.#find(key, h);
    const hashes = this.#hashes;
    if (pos >= 0) {
      const slot = this.#table[pos]! - 1;
      const at = slot * SLOT_BYTES;
      let same = true;
      for (let i = 0; i < DIGEST_BYTES; i++) {
        if (hashes[at + i] !== digest[i]) {
          same = false;
          break;
        }
      }
      if (same) return this;
      const leaf = this.#meta[slot * 3]!;
      this.#xorIntoLeaf(leaf, slot);
      hashes.set(digest, at);
      entryHashInto(key, digest, hashes, at + DIGEST_BYTES);
      this.#xorIntoLeaf(leaf, slot);
      this.#markDirty(leaf);
      return this;
    }

    if (this.#size + 1 > this.#table.length * MAX_LOAD) this.#growTable();
    const slot = this.#allocSlot();
    const leaf = keyPrefix(key, 4 * this.depth);
    const at = slot * SLOT_BYTES;
    this.#hashes.set(digest, at);
    entryHashInto(key, digest, this.#hashes, at + DIGEST_BYTES);
    this.#keys[slot] = key;
    const meta = this.#meta;
    meta[slot * 3] = leaf;
    meta[slot * 3 + 1] = this.#leafHead[leaf]!;
    meta[slot * 3 + 2] = h;
    this.#leafHead[leaf] = slot;
    this.#tableInsert(slot, h);
    this.#size++;
    this.#xorIntoLeaf(leaf, slot);
    this.#markDirty(leaf);
    return this;
  }

  /** Removes `key`; returns whether it was present. */
  delete(key: string): boolean {
    const pos = this.#find(key, strHash(key, this.#seed));
    if (pos < 0) return false;
    const slot = this.#table[pos]! - 1;
    const meta = this.#meta;
    const leaf = meta[slot * 3]!;
    this.#xorIntoLeaf(leaf, slot);
    // Unlink from the leaf bucket (buckets are short: ~n / 16^depth).
    const next = meta[slot * 3 + 1]!;
    let cur = this.#leafHead[leaf]!;
    if (cur === slot) {
      this.#leafHead[leaf] = next;
    } else {
      while (meta[cur * 3 + 1] !== slot) cur = meta[cur * 3 + 1]!;
      meta[cur * 3 + 1] = next;
    }
    this.#tableRemove(pos);
    this.#keys[slot] = undefined;
    this.#hashes.fill(0, slot * SLOT_BYTES, (slot + 1) * SLOT_BYTES);
    meta[slot * 3 + 1] = this.#freeHead;
    this.#freeHead = slot;
    this.#size--;
    this.#markDirty(leaf);
    return true;
  }

  /** The root hash (a copy); zero for an empty tree. Re-hashes dirty nodes first. */
  root(): Uint8Array {
    this.#flush();
    return this.#inner[0]!.slice(0, HASH_BYTES);
  }

  rootHex(): string {
    return toHex(this.root());
  }

  /** Hash of the node at `path` (a copy). */
  nodeHash(path: string): Uint8Array {
    const level = this.#checkPath(path);
    this.#flush();
    const idx = level === 0 ? 0 : parseInt(path, 16);
    const arr = level === this.depth ? this.#leafXor : this.#inner[level]!;
    return arr.slice(idx * HASH_BYTES, (idx + 1) * HASH_BYTES);
  }

  /**
   * Views of the nodes at `paths` (what a peer serves during anti-entropy): inner nodes list their
   * 16 child hashes, leaves their [key, entryHash] pairs. Throws MERKLE_INVALID_PATH on a path that
   * is not 0..depth lowercase hex nibbles.
   */
  nodes(paths: readonly string[]): NodeView[] {
    if (!Array.isArray(paths)) throw new MerkleError('MERKLE_INVALID_PATH', 'paths must be an array');
    const levels = paths.map((p) => this.#checkPath(p));
    this.#flush();
    return paths.map((path, i) => {
      const level = levels[i]!;
      const idx = level === 0 ? 0 : parseInt(path, 16);
      if (level === this.depth) return { path, kind: 'leaf', entries: this.#leafEntries(idx) };
      const src = level + 1 === this.depth ? this.#leafXor : this.#inner[level + 1]!;
      const children: Uint8Array[] = [];
      const base = idx * MERKLE_FANOUT * HASH_BYTES;
      for (let c = 0; c < MERKLE_FANOUT; c++) {
        children.push(src.slice(base + c * HASH_BYTES, base + (c + 1) * HASH_BYTES));
      }
      return { path, kind: 'inner', children };
    });
  }

  /** Keys stored under the node at `path` ('' = all keys), in no particular order. */
  keysUnder(path: string): string[] {
    const level = this.#checkPath(path);
    const out: string[] = [];
    const shift = 4 * (this.depth - level);
    const first = (level === 0 ? 0 : parseInt(path, 16)) * 2 ** shift;
    const end = first + 2 ** shift;
    for (let leaf = first; leaf < end; leaf++) {
      for (let s = this.#leafHead[leaf]!; s >= 0; s = this.#meta[s * 3 + 1]!) out.push(this.#keys[s]!);
    }
    return out;
  }

  /** The path of the leaf that holds (or would hold) `key`. */
  leafPath(key: string): string {
    return keyPrefix(key, 4 * this.depth)
      .toString(16)
      .padStart(this.depth, '0');
  }

  /** [key, digest] pairs (fresh copies). Do not mutate the tree while iterating. */
  *entries(): IterableIterator<[string, Uint8Array]> {
    for (let s = 0; s < this.#highWater; s++) {
      const key = this.#keys[s];
      if (key !== undefined) yield [key, this.#hashes.slice(s * SLOT_BYTES, s * SLOT_BYTES + DIGEST_BYTES)];
    }
  }

  /** [key, entryHash] pairs (fresh copies): the input of a Bloom summary. Do not mutate while iterating. */
  *entryHashes(): IterableIterator<[string, Uint8Array]> {
    for (let s = 0; s < this.#highWater; s++) {
      const key = this.#keys[s];
      if (key !== undefined) {
        const at = s * SLOT_BYTES + DIGEST_BYTES;
        yield [key, this.#hashes.slice(at, at + HASH_BYTES)];
      }
    }
  }

  /**
   * Calls `fn(key, bytes, offset)` for every record, where bytes[offset..offset+16) is its entry
   * hash: the allocation-free path for building Bloom summaries (`bloomOf`, `missingFrom`). `bytes`
   * is internal storage: read it only during the call and never write to it. Do not mutate the
   * tree from `fn`.
   */
  forEachEntryHash(fn: (key: string, bytes: Uint8Array, offset: number) => void): void {
    const hashes = this.#hashes;
    for (let s = 0; s < this.#highWater; s++) {
      const key = this.#keys[s];
      if (key !== undefined) fn(key, hashes, s * SLOT_BYTES + DIGEST_BYTES);
    }
  }

  /** Keys, in no particular order. Do not mutate the tree while iterating. */
  *keys(): IterableIterator<string> {
    for (let s = 0; s < this.#highWater; s++) {
      const key = this.#keys[s];
      if (key !== undefined) yield key;
    }
  }

  [Symbol.iterator](): IterableIterator<[string, Uint8Array]> {
    return this.entries();
  }

  // ---- anti-entropy driver (a static method so it can read the hash arrays without copies) ----

  /** See `merkleDiff`. */
  static async diff(
    local: MerkleTree,
    fetchRemote: FetchNodes,
    options: MerkleDiffOptions = {},
  ): Promise<MerkleDiffResult> {
    const { signal } = options;
    const maxRounds = options.maxRounds ?? Infinity;
    const maxPaths = options.maxPathsPerRequest ?? Infinity;
    if (!(maxPaths >= 1)) throw invalidInput('maxPathsPerRequest must be >= 1');
    signal?.throwIfAborted();
    local.#flush();
    if (options.remoteRoot !== undefined && bytesEqual(options.remoteRoot, local.#inner[0]!.subarray(0, HASH_BYTES))) {
      return { differing: [], rounds: 0, nodesFetched: 0, bytesEstimate: 0 };
    }
    const differing: string[] = [];
    let rounds = 0;
    let nodesFetched = 0;
    let bytes = 0;
    let frontier: string[] = [''];
    while (frontier.length > 0) {
      const next: string[] = [];
      for (let start = 0; start < frontier.length; start += maxPaths) {
        const batch = frontier.length <= maxPaths ? frontier : frontier.slice(start, start + maxPaths);
        if (rounds >= maxRounds) {
          throw new MerkleError('MERKLE_MAX_ROUNDS', `Merkle diff needs more than ${maxRounds} round trips`, {
            details: { maxRounds, pending: frontier.length - start, foundSoFar: differing.length },
          });
        }
        signal?.throwIfAborted();
        rounds++;
        for (const p of batch) bytes += p.length + 2;
        const views: unknown = await fetchRemote(batch, signal);
        signal?.throwIfAborted();
        // The local tree may have changed while we waited: compare against its current hashes.
        local.#flush();
        const byPath = local.#indexResponse(batch, views);
        nodesFetched += batch.length;
        for (const path of batch) bytes += local.#compareView(path, byPath.get(path)!, differing, next);
      }
      frontier = next;
    }
    differing.sort();
    return { differing, rounds, nodesFetched, bytesEstimate: bytes };
  }

  /** Checks the shape of a peer's response and indexes it by path. */
  #indexResponse(batch: readonly string[], views: unknown): Map<string, Record<string, unknown>> {
    if (!Array.isArray(views)) throw invalidNode('remote returned a non-array node list');
    const wanted = new Set(batch);
    const byPath = new Map<string, Record<string, unknown>>();
    for (const v of views as unknown[]) {
      if (typeof v !== 'object' || v === null) throw invalidNode('remote node view is not an object');
      const path = (v as { path?: unknown }).path;
      if (typeof path !== 'string' || !wanted.has(path)) {
        throw invalidNode('remote returned a node that was not requested', { path: String(path).slice(0, 64) });
      }
      if (byPath.has(path)) throw invalidNode('remote returned a node twice', { path });
      byPath.set(path, v as Record<string, unknown>);
    }
    if (byPath.size !== wanted.size) {
      const missing = batch.find((p) => !byPath.has(p));
      throw invalidNode('remote did not return every requested node', { path: missing });
    }
    return byPath;
  }

  /**
   * Compares one validated-by-path remote view with the local node: pushes differing keys found at
   * a leaf (or under a child the remote reports empty) to `differing` and differing child paths to
   * `next`. Returns an estimate of the view's encoded size.
   */
  #compareView(path: string, view: Record<string, unknown>, differing: string[], next: string[]): number {
    const level = path.length;
    const idx = level === 0 ? 0 : parseInt(path, 16);
    if (level < this.depth) {
      if (view.kind !== 'inner')
        throw invalidNode(`expected an inner node at depth ${level}`, { path, kind: view.kind });
      const children = view.children;
      if (!Array.isArray(children) || children.length !== MERKLE_FANOUT) {
        throw invalidNode('inner node must have 16 children', { path });
      }
      for (const c of children as unknown[]) {
        if (!(c instanceof Uint8Array) || c.length !== HASH_BYTES) {
          throw invalidNode(`child hashes must be ${HASH_BYTES}-byte Uint8Arrays`, { path });
        }
      }
      const src = level + 1 === this.depth ? this.#leafXor : this.#inner[level + 1]!;
      const base = idx * MERKLE_FANOUT * HASH_BYTES;
      for (let c = 0; c < MERKLE_FANOUT; c++) {
        const remote = children[c] as Uint8Array;
        const at = base + c * HASH_BYTES;
        let equal = true;
        for (let i = 0; i < HASH_BYTES; i++) {
          if (src[at + i] !== remote[i]) {
            equal = false;
            break;
          }
        }
        if (equal) continue;
        const childPath = path + HEX[c]!;
        // The remote subtree is empty: every local key under it differs, no need to ask.
        if (bytesEqual(remote, ZERO_HASH)) differing.push(...this.keysUnder(childPath));
        else next.push(childPath);
      }
      return level + 2 + MERKLE_FANOUT * (HASH_BYTES + 1);
    }

    if (view.kind !== 'leaf') throw invalidNode(`expected a leaf at depth ${level}`, { path, kind: view.kind });
    const entries = view.entries;
    if (!Array.isArray(entries)) throw invalidNode('leaf entries must be an array', { path });
    const remote = new Map<string, Uint8Array>();
    let bytes = level + 2;
    const bits = 4 * this.depth;
    for (const e of entries as unknown[]) {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string') {
        throw invalidNode('leaf entry must be [key, entryHash]', { path });
      }
      const [key, eh] = e as [string, unknown];
      if (!(eh instanceof Uint8Array) || eh.length !== HASH_BYTES) {
        throw invalidNode(`entry hashes must be ${HASH_BYTES}-byte Uint8Arrays`, { path, key: key.slice(0, 64) });
      }
      if (remote.has(key)) throw invalidNode('leaf lists a key twice', { path, key: key.slice(0, 64) });
      if (keyPrefix(key, bits) !== idx) {
        throw invalidNode('leaf lists a key that does not belong to it', { path, key: key.slice(0, 64) });
      }
      remote.set(key, eh);
      bytes += Buffer.byteLength(key) + 3 + HASH_BYTES + 1;
    }
    for (let s = this.#leafHead[idx]!; s >= 0; s = this.#meta[s * 3 + 1]!) {
      const key = this.#keys[s]!;
      const theirs = remote.get(key);
      if (theirs === undefined) {
        differing.push(key);
        continue;
      }
      remote.delete(key);
      const at = s * SLOT_BYTES + DIGEST_BYTES;
      for (let i = 0; i < HASH_BYTES; i++) {
        if (this.#hashes[at + i] !== theirs[i]) {
          differing.push(key);
          break;
        }
      }
    }
    for (const key of remote.keys()) differing.push(key);
    return bytes;
  }

  // ---- internals ----

  #checkPath(path: string): number {
    if (typeof path !== 'string' || path.length > this.depth || !/^[0-9a-f]*$/.test(path)) {
      throw new MerkleError('MERKLE_INVALID_PATH', `Merkle path must be 0..${this.depth} lowercase hex nibbles`, {
        details: { path: typeof path === 'string' ? path.slice(0, 64) : typeof path },
      });
    }
    return path.length;
  }

  #leafEntries(leaf: number): Array<[string, Uint8Array]> {
    const out: Array<[string, Uint8Array]> = [];
    for (let s = this.#leafHead[leaf]!; s >= 0; s = this.#meta[s * 3 + 1]!) {
      const at = s * SLOT_BYTES + DIGEST_BYTES;
      out.push([this.#keys[s]!, this.#hashes.slice(at, at + HASH_BYTES)]);
    }
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  #find(key: string, h: number): number {
    const table = this.#table;
    const mask = this.#mask;
    const meta = this.#meta;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const e = table[i]!;
      if (e === 0) return -1;
      const slot = e - 1;
      if (meta[slot * 3 + 2] === h && this.#keys[slot] === key) return i;
    }
  }

  #tableInsert(slot: number, h: number): void {
    const table = this.#table;
    const mask = this.#mask;
    let i = h & mask;
    while (table[i] !== 0) i = (i + 1) & mask;
    table[i] = slot + 1;
  }

  /** Backward-shift deletion keeps linear probing free of tombstones. */
  #tableRemove(pos: number): void {
    const table = this.#table;
    const mask = this.#mask;
    const meta = this.#meta;
    let hole = pos;
    table[hole] = 0;
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const e = table[j]!;
      if (e === 0) return;
      const home = meta[(e - 1) * 3 + 2]! & mask;
      // The entry at j may move into the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (!stays) {
        table[hole] = e;
        table[j] = 0;
        hole = j;
      }
    }
  }

  #growTable(): void {
    const size = this.#table.length * 2;
    this.#table = new Int32Array(size);
    this.#mask = size - 1;
    for (let s = 0; s < this.#highWater; s++) {
      if (this.#keys[s] !== undefined) this.#tableInsert(s, this.#meta[s * 3 + 2]!);
    }
  }

  #allocSlot(): number {
    if (this.#freeHead >= 0) {
      const slot = this.#freeHead;
      this.#freeHead = this.#meta[slot * 3 + 1]!;
      return slot;
    }
    if (this.#highWater === this.#capacity) {
      const capacity = Math.ceil(this.#capacity * GROWTH) + 16;
      const hashes = new Uint8Array(capacity * SLOT_BYTES);
      hashes.set(this.#hashes);
      this.#hashes = hashes;
      this.#hashes32 = new Int32Array(hashes.buffer);
      const meta = new Int32Array(capacity * 3);
      meta.set(this.#meta);
      this.#meta = meta;
      this.#capacity = capacity;
    }
    return this.#highWater++;
  }

  #xorIntoLeaf(leaf: number, slot: number): void {
    const dst = this.#leafXor32;
    const src = this.#hashes32;
    const d = leaf * 4;
    const s = slot * 8 + 4; // entry hash = second half of the slot's 32 bytes
    dst[d] = dst[d]! ^ src[s]!;
    dst[d + 1] = dst[d + 1]! ^ src[s + 1]!;
    dst[d + 2] = dst[d + 2]! ^ src[s + 2]!;
    dst[d + 3] = dst[d + 3]! ^ src[s + 3]!;
  }

  #markDirty(leaf: number): void {
    let idx = leaf;
    for (let l = this.depth - 1; l >= 0; l--) {
      idx >>>= 4;
      const flags = this.#dirty[l]!;
      // Invariant: a dirty node's ancestors are all dirty, so stop at the first one.
      if (flags[idx] === 1) return;
      flags[idx] = 1;
      this.#dirtyStack[l]![this.#dirtyTop[l]!++] = idx;
    }
  }

  /** Re-hashes dirty inner nodes, deepest level first. */
  #flush(): void {
    const depth = this.depth;
    for (let l = depth - 1; l >= 0; l--) {
      const top = this.#dirtyTop[l]!;
      if (top === 0) continue;
      const stack = this.#dirtyStack[l]!;
      const flags = this.#dirty[l]!;
      const out = this.#inner[l]!;
      const out32 = this.#inner32[l]!;
      const childrenAreLeaves = l + 1 === depth;
      const src = childrenAreLeaves ? this.#leafXor : this.#inner[l + 1]!;
      const src32 = childrenAreLeaves ? this.#leafXor32 : this.#inner32[l + 1]!;
      for (let t = 0; t < top; t++) {
        const idx = stack[t]!;
        flags[idx] = 0;
        let empty = true;
        if (childrenAreLeaves) {
          // A leaf's XOR says nothing about emptiness (it is 0 only by astronomic chance), its bucket does.
          for (let c = idx * MERKLE_FANOUT, e = c + MERKLE_FANOUT; c < e; c++) {
            if (this.#leafHead[c] !== -1) {
              empty = false;
              break;
            }
          }
        } else {
          for (let w = idx * 64, e = w + 64; w < e; w++) {
            if (src32[w] !== 0) {
              empty = false;
              break;
            }
          }
        }
        if (empty) {
          out32.fill(0, idx * 4, idx * 4 + 4);
        } else {
          const base = idx * MERKLE_FANOUT * HASH_BYTES;
          sha256Into(src.subarray(base, base + MERKLE_FANOUT * HASH_BYTES), out, idx * HASH_BYTES);
        }
      }
      this.#dirtyTop[l] = 0;
    }
  }
}

function invalidNode(message: string, details: Record<string, unknown> = {}): MerkleError {
  return new MerkleError('MERKLE_INVALID_NODE', `invalid Merkle node from peer: ${message}`, { details });
}

/** Asks the peer for the nodes at `paths` (one round trip) and resolves to its views. */
export type FetchNodes = (paths: string[], signal?: AbortSignal) => Promise<NodeView[]>;

export interface MerkleDiffOptions {
  signal?: AbortSignal;
  /** Upper bound on round trips (fetchRemote calls); exceeded -> MerkleError MERKLE_MAX_ROUNDS. */
  maxRounds?: number;
  /** Split a level's paths into requests of at most this many paths (sent one after another). */
  maxPathsPerRequest?: number;
  /** The peer's root hash if already known (e.g. from the sync handshake): equal roots -> 0 rounds. */
  remoteRoot?: Uint8Array;
}

export interface MerkleDiffResult {
  /** Keys whose entry differs: present on one side only or with a different entry hash. Sorted. */
  differing: string[];
  /** Round trips made (fetchRemote calls). */
  rounds: number;
  /** Node views fetched from the peer. */
  nodesFetched: number;
  /** Rough payload bytes exchanged (paths asked + views received, before framing/compression). */
  bytesEstimate?: number;
}

/**
 * Finds exactly the keys on which `local` and a peer's tree differ. Breadth-first: one round trip
 * per level batching every differing path of that level, descending only into children whose
 * hashes differ; a child the peer reports empty contributes its local keys without a round trip.
 * With depth D it takes at most D + 1 round trips (plus splits by `maxPathsPerRequest`). The
 * peer's views are validated (shape, lengths, depth, that each key belongs to its leaf); a bad view
 * rejects with MerkleError MERKLE_INVALID_NODE.
 */
export function merkleDiff(
  local: MerkleTree,
  fetchRemote: FetchNodes,
  options: MerkleDiffOptions = {},
): Promise<MerkleDiffResult> {
  return MerkleTree.diff(local, fetchRemote, options);
}

/** The serving side of `merkleDiff`: the views a peer asked for. */
export function serveNodes(tree: MerkleTree, paths: readonly string[]): NodeView[] {
  return tree.nodes(paths);
}
