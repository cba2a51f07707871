/**
 * Rendezvous (highest random weight) hashing: every node ranks a task's candidate agents the same
 * way from replicated state alone, so all agree on the designated claimant without talking.
 * Thaler & Ravishankar, "Using name-based mappings to increase hit rates", 1998.
 */

/** FNV-1a over UTF-16 code units, then murmur3's fmix32 finalizer for avalanche. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The candidates in rendezvous order for `key`: highest score first, ties by id. */
export function rendezvousOrder<T extends { id: string }>(key: string, candidates: readonly T[]): T[] {
  const scored = candidates.map((c) => ({ c, s: hash32(`${key}\u0000${c.id}`) }));
  scored.sort((a, b) => b.s - a.s || (a.c.id < b.c.id ? -1 : a.c.id > b.c.id ? 1 : 0));
  return scored.map((x) => x.c);
}
