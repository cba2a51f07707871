import { gCounter, lwwRegister, orSet, RecordSchema } from '../../src/crdt/index.js';
import { Replica, type ReplicaOptions } from '../../src/replica/index.js';

/** A small schema for replica-level tests: a title, a counter and a tag set. */
export const noteSchema = new RecordSchema('note', { title: lwwRegister(), hits: gCounter, tags: orSet });

export function noteReplica(nodeId: string, options: Partial<ReplicaOptions> = {}): Replica {
  return new Replica({ nodeId, schemaFor: (k) => (k.startsWith('note/') ? noteSchema : undefined), ...options });
}

/** A deterministic PRNG (mulberry32) so randomized tests replay from a seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
