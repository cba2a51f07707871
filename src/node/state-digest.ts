import { encodeMsgpack } from '../codec/index.js';
import type { AnyRecordSchema, RecordState } from '../crdt/index.js';
import { agentSchema } from '../registry/agent-schema.js';
import { nodeSchema } from '../registry/node-schema.js';
import { entryHash, type Replica, sha256Into, toHex } from '../replica/index.js';

/**
 * Fields left out of the state digest because they change all the time without anyone changing
 * the mesh's state: a node's heartbeat (every second) and an agent's liveness register (state,
 * load, health, heartbeat; every few seconds). Everything else counts: agent profiles and
 * execution counters, node names and addresses, every field of every task.
 */
const LIVENESS_FIELDS: Readonly<Record<string, readonly number[]>> = {
  node: [nodeSchema.indexOf('heartbeat')],
  agent: [agentSchema.indexOf('live')],
};

const DIGEST_BYTES = 16;

/**
 * A digest of the replicated state without liveness fields, which operators compare across nodes
 * to see that they agree (the Merkle root differs nearly always, since heartbeats change it
 * every second). It is the XOR of one 128-bit hash per record, sha256(key || digest of the record
 * without its liveness fields), so it depends on the set of records only, not on the order they
 * arrived in, and it is maintained incrementally: a change marks its key, and reading the digest
 * rehashes the marked keys only (XOR the old hash out, the new one in).
 *
 * Cost (measured by test/unit/state-digest.test.ts on the 2-vCPU dev VM): the first read over
 * 10,000 task records takes about 25 ms (it reuses the Merkle leaf digests the replica keeps
 * anyway, so it is one entry hash per record); a read after one change takes microseconds.
 * Records of kinds with liveness fields (agents, nodes: tens to hundreds) are re-encoded without
 * those fields and hashed, ~10 us each.
 *
 * XOR of hashes is a fine checksum between honest nodes; it is not meant to resist a member
 * crafting records to collide (that member could write the state it wants anyway).
 */
export class StateDigest {
  private readonly hashes = new Map<string, bigint>();
  private readonly dirty = new Set<string>();
  private acc = 0n;
  private primed = false;
  private readonly off: () => void;

  constructor(private readonly replica: Replica) {
    this.off = replica.events.on('change', (e) => {
      if (this.primed) this.dirty.add(e.key);
    });
  }

  /** Stops following changes. */
  close(): void {
    this.off();
  }

  /** The digest now, as 32 hex digits. */
  hex(): string {
    if (!this.primed) {
      for (const key of this.replica.keys()) this.dirty.add(key);
      this.primed = true;
    }
    for (const key of this.dirty) {
      const old = this.hashes.get(key);
      if (old !== undefined) this.acc ^= old;
      const h = this.recordHash(key);
      if (h === undefined) this.hashes.delete(key);
      else {
        this.hashes.set(key, h);
        this.acc ^= h;
      }
    }
    this.dirty.clear();
    return this.acc.toString(16).padStart(DIGEST_BYTES * 2, '0');
  }

  private recordHash(key: string): bigint | undefined {
    const kind = key.slice(0, key.indexOf('/'));
    const skip = LIVENESS_FIELDS[kind];
    let digest: Uint8Array | undefined;
    if (skip === undefined) {
      // The replica's own digest of the whole record (its Merkle leaf): nothing to leave out.
      digest = this.replica.digest(key);
    } else {
      const state = this.replica.get(key);
      if (state !== undefined) digest = withoutFields(this.replica.schemaOf(key), state, skip);
    }
    return digest === undefined ? undefined : BigInt(`0x${toHex(entryHash(key, digest))}`);
  }
}

function withoutFields(schema: AnyRecordSchema, state: RecordState, skip: readonly number[]): Uint8Array {
  const copy = [...state];
  for (const i of skip) copy[i] = undefined;
  const out = new Uint8Array(DIGEST_BYTES);
  sha256Into(encodeMsgpack(schema.toWire(copy)), out, 0);
  return out;
}
