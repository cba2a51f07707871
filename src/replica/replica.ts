import { encodeMsgpack, decodeMsgpack } from '../codec/index.js';
import {
  ClockDriftError,
  type CrdtLimits,
  DEFAULT_LIMITS,
  DotSet,
  HybridClock,
  type AnyRecordSchema,
  type RecordState,
  type StateVisitor,
  type Timestamp,
  type VersionVector,
} from '../crdt/index.js';
import { Emitter } from '../util/emitter.js';
import { type Delta, deltaFromWire, deltaToWire, type DeltaWire, isValidKey } from './delta.js';
import { DIGEST_BYTES, sha256Into } from './entry-hash.js';
import { PolicyError, ReplicaError, ReplicaErrorCode } from './errors.js';
import { MerkleTree } from './merkle.js';

/** What a policy hook sees: the change about to be committed, before anything is applied. */
export interface PolicyInput {
  /** 'local' for this node's own mutations, 'delta' for a remote delta, 'record' for a full-state record from sync. */
  readonly kind: 'local' | 'delta' | 'record';
  readonly key: string;
  readonly schema: AnyRecordSchema;
  readonly current: RecordState;
  readonly incoming: RecordState;
  readonly merged: RecordState;
  /** The delta's origin (absent for full-state records). */
  readonly origin?: string;
  /** The authenticated peer that delivered it (absent for local mutations). */
  readonly from?: string;
}

/** Throws PolicyError to refuse a change; anything else it throws is a bug and propagates. */
export type Policy = (input: PolicyInput) => void;

export interface ChangeEvent {
  readonly key: string;
  readonly schema: AnyRecordSchema;
  /** The record after the change. */
  readonly state: RecordState;
  /** The part that changed it: the delta, or the incoming full record. */
  readonly incoming: RecordState;
  /** Who made the change: the delta's origin, or the peer a full record came from. */
  readonly origin: string | undefined;
  readonly local: boolean;
  /** How it arrived: a local mutation, a remote delta, or a full record from sync. */
  readonly via: 'local' | 'delta' | 'record';
}

export interface ReplicaEvents extends Record<string, unknown> {
  change: ChangeEvent;
  rejected: { key: string; reason: string; error: Error; from: string | undefined };
}

export type ApplyOutcome = 'applied' | 'unchanged' | 'duplicate';

export interface ReplicaOptions {
  /** This node's id: the origin of its dots and the writer of its registers. */
  nodeId: string;
  /** The schema of a key (by prefix), or undefined for keys this mesh does not know. */
  schemaFor: (key: string) => AnyRecordSchema | undefined;
  policy?: Policy;
  /**
   * Names a remote delta that changes nothing but is a write the mesh fences off (a stale epoch):
   * it is counted as rejected with that reason, yet marked seen, so that no gap repair asks for
   * it again. Consulted only for deltas that lose the merge entirely.
   */
  fenced?: (input: PolicyInput) => string | undefined;
  clock?: HybridClock;
  limits?: CrdtLimits;
  /** Merkle tree depth (fanout 16). */
  merkleDepth?: number;
}

export interface ReplicaStats {
  localMutations: number;
  deltasApplied: number;
  deltasUnchanged: number;
  deltasDuplicate: number;
  recordsMerged: number;
  rejected: number;
  rejectedByReason: Record<string, number>;
}

/**
 * The replicated keyspace: key -> schema-typed CRDT record, the dots seen so far, and a Merkle
 * tree over record digests for anti-entropy. Pure in-memory state with no I/O; persistence and
 * networking subscribe to its change events.
 *
 * Digests are computed lazily: a change only marks its key dirty, and the Merkle tree catches up
 * when someone asks for a digest, a root, tree nodes or a Bloom summary. Remote delta application
 * stays a merge plus a few map operations, and a burst of changes to one record is hashed once.
 */
export class Replica {
  readonly nodeId: string;
  readonly clock: HybridClock;
  readonly limits: CrdtLimits;
  readonly events: Emitter<ReplicaEvents> = new Emitter();
  readonly stats: ReplicaStats = {
    localMutations: 0,
    deltasApplied: 0,
    deltasUnchanged: 0,
    deltasDuplicate: 0,
    recordsMerged: 0,
    rejected: 0,
    rejectedByReason: {},
  };
  /**
   * Decoded records, or the canonical bytes of a record loaded from disk and not touched since:
   * start-up hashes stored bytes straight into the Merkle tree and defers decoding (about 12 us
   * per record) to first access, and a sync peer can be sent those bytes as they are.
   */
  private readonly records = new Map<string, RecordState | Uint8Array>();
  /** Canonical bytes of changed records, encoded once for persistence, reused for the digest. */
  private readonly encoded = new Map<string, Uint8Array>();
  private readonly seen = new DotSet();
  private readonly tree: MerkleTree;
  private readonly dirty = new Set<string>();
  private readonly schemaFor: (key: string) => AnyRecordSchema | undefined;
  private readonly policy: Policy | undefined;
  private readonly fenced: ((input: PolicyInput) => string | undefined) | undefined;

  constructor(options: ReplicaOptions) {
    this.nodeId = options.nodeId;
    this.schemaFor = options.schemaFor;
    this.policy = options.policy;
    this.fenced = options.fenced;
    this.clock = options.clock ?? new HybridClock();
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.tree = new MerkleTree(options.merkleDepth === undefined ? {} : { depth: options.merkleDepth });
  }

  get size(): number {
    return this.records.size;
  }

  schemaOf(key: string): AnyRecordSchema {
    const schema = isValidKey(key) ? this.schemaFor(key) : undefined;
    if (schema === undefined) throw new ReplicaError(ReplicaErrorCode.UNKNOWN_SCHEMA, `no schema for key ${key}`);
    return schema;
  }

  get(key: string): RecordState | undefined {
    const v = this.records.get(key);
    return v instanceof Uint8Array ? this.inflate(key, v) : v;
  }

  private inflate(key: string, bytes: Uint8Array): RecordState {
    const state = this.decodeRecord(key, bytes);
    this.records.set(key, state);
    return state;
  }

  has(key: string): boolean {
    return this.records.has(key);
  }

  keys(): IterableIterator<string> {
    return this.records.keys();
  }

  /** Records whose key starts with prefix (e.g. `agent/`). */
  *entries(prefix = ''): IterableIterator<[string, RecordState]> {
    for (const [key, v] of this.records) {
      if (key.startsWith(prefix)) yield [key, v instanceof Uint8Array ? this.inflate(key, v) : v];
    }
  }

  /** The dots seen so far (contiguous prefix plus exceptions per origin). */
  get dots(): DotSet {
    return this.seen;
  }

  versionVector(): VersionVector {
    return this.seen.toVersionVector();
  }

  /** The next seq this node will stamp on a mutation. */
  get nextSeq(): number {
    return this.seen.max(this.nodeId) + 1;
  }

  /**
   * A local mutation: `build` returns the record delta to apply (using the CRDT mutators on the
   * current state, with this node as origin). Returns the delta stamped with a fresh dot.
   */
  mutate(key: string, build: (current: RecordState, schema: AnyRecordSchema) => RecordState): Delta {
    const schema = this.schemaOf(key);
    const current = this.get(key) ?? schema.empty();
    const incoming = build(current, schema);
    const merged = schema.merge(current, incoming);
    // Our own record must decode within the limits peers (and our own restart) apply, so that
    // nothing we acknowledge is refused later; the checked bytes are what gets persisted.
    this.check({ kind: 'local', key, schema, current, incoming, merged, origin: this.nodeId }, undefined);
    const bytes = merged === current ? undefined : this.checkedEncoding(key, schema, merged);
    const seq = this.nextSeq;
    this.seen.add(this.nodeId, seq);
    this.stats.localMutations++;
    if (bytes !== undefined) this.commit(key, schema, merged, incoming, this.nodeId, 'local', bytes);
    return { key, origin: this.nodeId, seq, state: incoming };
  }

  /**
   * Applies a remote delta. Idempotent: a dot seen before is a no-op. Checks that the delta only
   * carries writes by its origin and no clock reading beyond the drift bound, then the policy.
   * Throws PolicyError (counted, nothing applied) when refused.
   */
  applyDelta(delta: Delta, from?: string): ApplyOutcome {
    if (this.seen.has(delta.origin, delta.seq)) {
      this.stats.deltasDuplicate++;
      return 'duplicate';
    }
    const schema = this.schemaOf(delta.key);
    const current = this.get(delta.key) ?? schema.empty();
    const merged = schema.merge(current, delta.state);
    const input: PolicyInput = {
      kind: 'delta',
      key: delta.key,
      schema,
      current,
      incoming: delta.state,
      merged,
      origin: delta.origin,
      ...(from === undefined ? {} : { from }),
    };
    const maxTs = this.checkAuthorship(input, delta.origin);
    if (merged !== current) this.check(input, from);
    if (maxTs > 0) this.clock.observe(maxTs);
    this.seen.add(delta.origin, delta.seq);
    if (merged === current) {
      this.stats.deltasUnchanged++;
      const reason = this.fenced?.(input);
      if (reason !== undefined) {
        this.reject(
          delta.key,
          reason,
          new PolicyError(reason, `${delta.key}: fenced write from ${delta.origin}`),
          from,
        );
      }
      return 'unchanged';
    }
    this.stats.deltasApplied++;
    this.commit(delta.key, schema, merged, delta.state, delta.origin, 'delta');
    return 'applied';
  }

  /**
   * Merges a full-state record received from a peer during sync. Returns whether it changed
   * anything. Policy applies; authorship cannot (a full record carries everyone's writes).
   */
  mergeRecord(key: string, state: RecordState, from?: string): boolean {
    const schema = this.schemaOf(key);
    const current = this.get(key) ?? schema.empty();
    const merged = schema.merge(current, state);
    if (merged === current) return false;
    const input: PolicyInput = {
      kind: 'record',
      key,
      schema,
      current,
      incoming: state,
      merged,
      ...(from === undefined ? {} : { from }),
    };
    const maxTs = this.checkTimestamps(input);
    this.check(input, from);
    if (maxTs > 0) this.clock.observe(maxTs);
    this.stats.recordsMerged++;
    this.commit(key, schema, merged, state, from, 'record');
    return true;
  }

  /** Restores our own persisted dots at start-up (trusted: we wrote them). */
  restoreDots(dots: DotSet): void {
    this.seen.merge(dots);
  }

  /**
   * Marks dots as seen without content (they arrived inside full records during sync). Claims
   * about our own origin are ignored: we are the authority on what we issued, and adopting a
   * peer's inflated claim would make us skip seqs (and peers drop our next deltas).
   */
  observeDots(dots: DotSet): void {
    this.seen.merge(dots, this.nodeId);
  }

  // --- encoding -------------------------------------------------------------------------------

  /** Canonical bytes of a record: what is persisted, hashed and sent in full-state transfers. */
  encodeRecord(key: string, state?: RecordState): Uint8Array {
    if (state === undefined) {
      const v = this.records.get(key);
      if (v instanceof Uint8Array) return v;
      const cached = this.encoded.get(key);
      if (cached !== undefined) return cached;
      const bytes = encodeMsgpack(this.schemaOf(key).toWire(v ?? this.schemaOf(key).empty()));
      // Only a pending digest will want these bytes again; clean records are not cached.
      if (v !== undefined && this.dirty.has(key)) this.encoded.set(key, bytes);
      return bytes;
    }
    return encodeMsgpack(this.schemaOf(key).toWire(state));
  }

  private checkedEncoding(key: string, schema: AnyRecordSchema, state: RecordState): Uint8Array {
    const bytes = encodeMsgpack(schema.toWire(state));
    this.decodeRecord(key, bytes);
    return bytes;
  }

  /** Validating decode of a record's bytes (limits apply). */
  decodeRecord(key: string, bytes: Uint8Array): RecordState {
    const schema = this.schemaOf(key);
    try {
      return schema.fromWire(decodeMsgpack(bytes), this.limits);
    } catch (err) {
      throw new ReplicaError(ReplicaErrorCode.INVALID_DELTA, `invalid record for ${key}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  deltaToWire(delta: Delta): DeltaWire {
    return deltaToWire(delta, this.schemaOf(delta.key));
  }

  deltaFromWire(w: unknown): Delta {
    return deltaFromWire(w, (k) => this.schemaFor(k), this.limits);
  }

  /**
   * Restores records from persisted canonical bytes, without events or policy (they were
   * validated before they were written). Used at start-up: each record is hashed into the Merkle
   * tree now and decoded (and validated again) at first access.
   */
  load(records: Iterable<readonly [string, Uint8Array]>, dots?: DotSet): number {
    let n = 0;
    const digest = new Uint8Array(DIGEST_BYTES);
    for (const [key, bytes] of records) {
      this.schemaOf(key); // refuse keys of unknown types now, not at first access
      this.records.set(key, bytes);
      this.encoded.delete(key);
      this.dirty.delete(key);
      sha256Into(bytes, digest, 0);
      this.tree.set(key, digest);
      n++;
    }
    if (dots) this.seen.merge(dots);
    return n;
  }

  // --- anti-entropy views ---------------------------------------------------------------------

  /** The Merkle tree over (key, digest), brought up to date. */
  merkle(): MerkleTree {
    this.flushDigests();
    return this.tree;
  }

  digest(key: string): Uint8Array | undefined {
    this.flushDigests();
    return this.tree.get(key);
  }

  /** Number of records whose digest is stale (for tests and metrics). */
  get pendingDigests(): number {
    return this.dirty.size;
  }

  private flushDigests(): void {
    if (this.dirty.size === 0) return;
    const digest = new Uint8Array(DIGEST_BYTES); // the tree copies it
    for (const key of this.dirty) {
      if (!this.records.has(key)) this.tree.delete(key);
      else {
        sha256Into(this.encodeRecord(key), digest, 0);
        this.tree.set(key, digest);
      }
    }
    this.dirty.clear();
    this.encoded.clear();
  }

  // --- internals ------------------------------------------------------------------------------

  private commit(
    key: string,
    schema: AnyRecordSchema,
    merged: RecordState,
    incoming: RecordState,
    origin: string | undefined,
    via: ChangeEvent['via'],
    bytes?: Uint8Array,
  ): void {
    this.records.set(key, merged);
    // Set before listeners run: one that mutates this key again replaces the bytes after us.
    if (bytes === undefined) this.encoded.delete(key);
    else this.encoded.set(key, bytes);
    this.dirty.add(key);
    if (this.events.has('change')) {
      this.events.emit('change', { key, schema, state: merged, incoming, origin, local: via === 'local', via });
    }
  }

  private check(input: PolicyInput, from: string | undefined): void {
    if (this.policy === undefined) return;
    try {
      this.policy(input);
    } catch (err) {
      if (err instanceof PolicyError) this.reject(input.key, err.reason, err, from);
      throw err;
    }
  }

  /** Only the origin may write its own slots, dots and registers; clocks must be in bounds. */
  private checkAuthorship(input: PolicyInput, origin: string): Timestamp {
    let foreign: string | undefined;
    let maxTs = 0;
    const visitor: StateVisitor = {
      writer: (w) => {
        if (w !== origin) foreign ??= w;
      },
      timestamp: (t) => {
        if (t > maxTs) maxTs = t;
      },
    };
    input.schema.visit(input.incoming, visitor);
    if (foreign !== undefined) {
      const err = new PolicyError('foreign_writer', `a delta from ${origin} carries a write by ${foreign}`, {
        key: input.key,
      });
      this.reject(input.key, err.reason, err, input.from);
      throw err;
    }
    this.checkClock(input, maxTs);
    return maxTs;
  }

  private checkTimestamps(input: PolicyInput): Timestamp {
    let maxTs = 0;
    input.schema.visit(input.incoming, {
      writer: () => {},
      timestamp: (t) => {
        if (t > maxTs) maxTs = t;
      },
    });
    this.checkClock(input, maxTs);
    return maxTs;
  }

  private checkClock(input: PolicyInput, maxTs: Timestamp): void {
    if (maxTs === 0) return;
    try {
      this.clock.check(maxTs);
    } catch (err) {
      if (err instanceof ClockDriftError) {
        const policyErr = new PolicyError('clock_drift', err.message, { key: input.key });
        this.reject(input.key, policyErr.reason, policyErr, input.from);
        throw policyErr;
      }
      throw err;
    }
  }

  private reject(key: string, reason: string, error: Error, from: string | undefined): void {
    this.stats.rejected++;
    this.stats.rejectedByReason[reason] = (this.stats.rejectedByReason[reason] ?? 0) + 1;
    this.events.emit('rejected', { key, reason, error, from });
  }
}
