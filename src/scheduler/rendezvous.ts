/**
 * Rendezvous (highest random weight) hashing: every node ranks a task's candidate agents the same
 * way from replicated state alone, so all agree on the designated claimant without talking.
 * Thaler & Ravishankar, "Using name-based mappings to increase hit rates", 1998.
 */
import { strHash } from '../util/hash.js';

/** An unsigned 32-bit hash of a string (util/hash.ts). */
export const hash32 = (s: string): number => strHash(s) >>> 0;

/** The candidates in rendezvous order for `key`: highest score first, ties by id. */
export function rendezvousOrder<T extends { id: string }>(key: string, candidates: readonly T[]): T[] {
  const scored = candidates.map((c) => ({ c, s: hash32(`${key}\u0000${c.id}`) }));
  scored.sort((a, b) => b.s - a.s || (a.c.id < b.c.id ? -1 : a.c.id > b.c.id ? 1 : 0));
  return scored.map((x) => x.c);
}
