/**
 * 32-bit FNV-1a over UTF-16 code units, seeded, with murmur3's fmix32 finalizer for avalanche.
 * Fast and well mixed; not a keyed PRF. Used for the Merkle tree's local key table and for the
 * scheduler's rendezvous order.
 */
export function strHash(s: string, seed = 0): number {
  let h = (seed ^ 0x811c9dc5) | 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}
