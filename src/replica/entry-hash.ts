import { Buffer } from 'node:buffer';
import { createHash, hash } from 'node:crypto';

/**
 * Hashes shared by the anti-entropy structures (Merkle tree, Bloom summary). All of them are
 * truncated sha256, so two peers compute bit-identical values from the same (key, digest) pairs.
 *
 * - `entryHash(key, digest)` = sha256(utf8(key) || digest)[0..16]: identifies one version of one
 *   record. The digest has a fixed length (16 bytes), so the concatenation is unambiguous without
 *   a length prefix.
 * - `keyHash(key)` = sha256(utf8(key))[0..16]: places a key in the Merkle tree. It depends on the
 *   key only, so a record that changes stays in the same leaf.
 *
 * Speed: `crypto.hash` one-shot asked for a `'binary'` (latin1) string, one char per byte read
 * back with charCodeAt, is the fastest path measured on Node 24: an entry hash costs ~0.5 us
 * against ~1.3 us with `crypto.hash(..., 'buffer')` and ~2.5 us with `createHash().update()
 * .digest()` (CPU time, 2-vCPU EPYC VM), because allocating the output Buffer dominates the cost
 * of hashing ~40 bytes. See the `entryHash:` rows of bench/merkle-bloom.ts.
 */

/** Bytes in a record digest (truncated sha256 of the record's canonical encoding). */
export const DIGEST_BYTES = 16;
/** Bytes in an entry hash, a key hash and every Merkle node hash. */
export const HASH_BYTES = 16;

/** Scratch for utf8(key) || digest; keys longer than this fall back to a one-off allocation. */
const SCRATCH_BYTES = 4096;
const scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);

/** Writes the first 16 bytes of sha256(data) into out[offset..offset+16). */
export function sha256Into(data: Uint8Array | string, out: Uint8Array, offset: number): void {
  const s = hash('sha256', data, 'binary');
  for (let i = 0; i < HASH_BYTES; i++) out[offset + i] = s.charCodeAt(i);
}

/** Writes entryHash(key, digest) into out[offset..offset+16) without allocating for normal keys. */
export function entryHashInto(key: string, digest: Uint8Array, out: Uint8Array, offset: number): void {
  // utf8 needs at most 3 bytes per UTF-16 code unit.
  if (key.length * 3 + DIGEST_BYTES <= SCRATCH_BYTES) {
    const n = scratch.write(key, 0, 'utf8');
    scratch.set(digest, n);
    sha256Into(scratch.subarray(0, n + digest.length), out, offset);
  } else {
    const bytes = Buffer.from(key, 'utf8');
    sha256Into(Buffer.concat([bytes, digest]), out, offset);
  }
}

/** First 16 bytes of sha256(utf8(key) || digest). */
export function entryHash(key: string, digest: Uint8Array): Uint8Array {
  const out = new Uint8Array(HASH_BYTES);
  entryHashInto(key, digest, out, 0);
  return out;
}

/** Reference implementation of `entryHash` through `createHash`; kept for tests and the benchmark. */
export function entryHashStreaming(key: string, digest: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(key, 'utf8').update(digest).digest().subarray(0, HASH_BYTES));
}

/** First 16 bytes of sha256(utf8(key)): the key's position in the Merkle tree. */
export function keyHash(key: string): Uint8Array {
  const out = new Uint8Array(HASH_BYTES);
  sha256Into(key, out, 0);
  return out;
}

/**
 * The top `bits` bits (1..32) of keyHash(key) as an unsigned integer, i.e. the index of the key's
 * leaf in a tree with 2^bits leaves. Allocation-free.
 */
export function keyPrefix(key: string, bits: number): number {
  const s = hash('sha256', key, 'binary');
  const top = ((s.charCodeAt(0) << 24) | (s.charCodeAt(1) << 16) | (s.charCodeAt(2) << 8) | s.charCodeAt(3)) >>> 0;
  return bits >= 32 ? top : top >>> (32 - bits);
}

/** Byte-wise equality of two 16-byte hashes (or any two byte arrays). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
