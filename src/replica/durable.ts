import { decodeMsgpack, encodeMsgpack } from '../codec/index.js';
import {
  DotSet,
  type HybridClock,
  isTimestamp,
  type AnyRecordSchema,
  type RecordState,
  wallOf,
} from '../crdt/index.js';
import { DurableStore, type OpenOptions } from '../store/index.js';
import { logger } from '../util/log.js';
import type { Delta } from './delta.js';
import { ReplicaError, ReplicaErrorCode } from './errors.js';
import type { Replica } from './replica.js';

const log = logger('mesh:replica');

const META_DOTS = 'dots';
export const DEFAULT_MAX_PENDING = 20_000;
const META_HLC = 'hlc';

/**
 * Resumes the clock after its persisted high-water mark, so that timestamps issued after a restart
 * order after every one issued or observed before it, even when the physical clock went back.
 * `observe` refuses a reading beyond the drift bound; the mark is our own, so a step back larger
 * than the bound is not an attack but a clock fault: resume as far as the bound allows and say so.
 * (Fully honouring the mark then would need a HybridClock method that skips the drift check.)
 */
function restoreClock(clock: HybridClock, mark: number): void {
  if (!isTimestamp(mark))
    throw new ReplicaError(ReplicaErrorCode.INVALID_DELTA, 'persisted HLC mark is not a timestamp');
  if (wallOf(mark) - Date.now() > clock.maxDriftMs) {
    log.warn({ mark }, 'the physical clock is far behind our persisted HLC mark; resuming after the mark');
  }
  clock.restore(mark);
}

/**
 * Binds a Replica to its node's DurableStore. At open it loads every record and the seen dots;
 * afterwards every change (local or remote) is persisted, and a local mutation is acknowledged
 * only once the LevelDB batch holding it was written with `sync: true`.
 *
 * Changes made in one turn of the event loop are coalesced into one store write: a record
 * touched many times is written once, and the dots and the HLC high-water mark ride in the same
 * atomic batch as the records they describe. Because that write is enqueued before any later
 * one, the persisted dots never claim a change whose record did not reach disk.
 */
export class DurableReplica {
  private readonly pending = new Set<string>();
  private flushScheduled = false;
  private current: Promise<void> | undefined;
  private resolveCurrent: (() => void) | undefined;
  private rejectCurrent: ((err: unknown) => void) | undefined;
  private readonly unsubscribe: () => void;
  private failed: unknown;
  /** One store write at a time: a later batch never lands if an earlier one failed. */
  private writing = false;
  private waiting = false;

  /** Local mutations refused because the store was too far behind. */
  refusedOverloaded = 0;
  /**
   * Records waiting for the store (behind the write in flight) past which local mutations are
   * refused with OVERLOADED instead of queueing without bound. A disk that keeps up never gets
   * near it: at 5,000 writes/s and a 10 ms fsync about 50 records wait.
   */
  maxPending = DEFAULT_MAX_PENDING;

  private constructor(
    readonly replica: Replica,
    readonly store: DurableStore,
    private readonly ownEncodings: WeakMap<Uint8Array, string>,
  ) {
    this.unsubscribe = replica.events.on('change', (e) => this.schedule(e.key));
  }

  /**
   * Opens the store in `dir`, validating every record that is about to be written with the
   * replica's schemas and limits (nothing undecodable reaches disk), and loads its contents.
   */
  static async open(
    replica: Replica,
    dir: string,
    options: Omit<OpenOptions, 'validate'> = {},
  ): Promise<{ durable: DurableReplica; loaded: number }> {
    // Bytes the replica encoded from a state it already validated are valid by construction; any
    // other bytes written to this store are decoded and validated in full before they are stored.
    const ownEncodings = new WeakMap<Uint8Array, string>();
    const store = await DurableStore.open(dir, {
      ...options,
      validate: (key, value) => {
        if (ownEncodings.get(value) !== key) replica.decodeRecord(key, value);
      },
    });
    try {
      const dotsBytes = await store.getMeta(META_DOTS);
      const hlcBytes = await store.getMeta(META_HLC);
      const dots = dotsBytes === undefined ? undefined : DotSet.fromWire(decodeMsgpack(dotsBytes));
      let loaded = 0;
      for await (const batch of store.recordBatches()) loaded += replica.load(batch, undefined);
      if (dots) replica.restoreDots(dots);
      if (hlcBytes !== undefined) restoreClock(replica.clock, decodeMsgpack<number>(hlcBytes));
      if (store.recovery.dataLoss) {
        log.warn({ messages: store.recovery.messages }, 'LevelDB reported dropped log records; peers will resync us');
      }
      return { durable: new DurableReplica(replica, store, ownEncodings), loaded };
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  /** A local mutation, resolved with its delta once it is durable. */
  async mutate(key: string, build: (current: RecordState, schema: AnyRecordSchema) => RecordState): Promise<Delta> {
    if (this.writing && this.pending.size >= this.maxPending) {
      this.refusedOverloaded++;
      throw new ReplicaError(
        ReplicaErrorCode.OVERLOADED,
        `the store is ${this.pending.size} records behind; write refused, retry later`,
        { details: { pending: this.pending.size, max: this.maxPending } },
      );
    }
    const delta = this.replica.mutate(key, build);
    // A mutation that changed nothing still advanced our seq: persist the dots anyway.
    if (!this.flushScheduled) this.schedule(undefined);
    await this.current;
    return delta;
  }

  /** Resolves once every change so far is durable. */
  async flush(): Promise<void> {
    await this.current;
    await this.store.flush();
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await this.flush().catch(() => {});
    await this.store.close();
  }

  private schedule(key: string | undefined): void {
    if (key !== undefined) this.pending.add(key);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    this.current = new Promise<void>((resolve, reject) => {
      this.resolveCurrent = resolve;
      this.rejectCurrent = reject;
    });
    // Never leave a rejected acknowledgement promise unobserved when nobody awaited it.
    this.current.catch(() => {});
    queueMicrotask(() => this.writePending());
  }

  private writePending(): void {
    // While a write is in flight, changes keep accumulating under the current promise; they go
    // in the next batch once this one is on disk. Persisted dots therefore never claim a change
    // from a batch that failed.
    if (this.writing) {
      this.waiting = true;
      return;
    }
    const resolve = this.resolveCurrent as () => void;
    const reject = this.rejectCurrent as (err: unknown) => void;
    this.flushScheduled = false;
    if (this.failed !== undefined) {
      reject(this.failed);
      return;
    }
    const records: Array<[string, Uint8Array]> = [];
    for (const key of this.pending) {
      const bytes = this.replica.encodeRecord(key);
      this.ownEncodings.set(bytes, key);
      records.push([key, bytes]);
    }
    this.pending.clear();
    const meta: Array<[string, Uint8Array]> = [
      [META_DOTS, encodeMsgpack(this.replica.dots.toWire())],
      [META_HLC, encodeMsgpack(this.replica.clock.current)],
    ];
    this.writing = true;
    const done = (): void => {
      this.writing = false;
      if (this.waiting) {
        this.waiting = false;
        this.writePending();
      }
    };
    this.store.write({ records, meta }).then(
      () => {
        resolve();
        done();
      },
      (err: unknown) => {
        // Memory is ahead of disk: refuse every further acknowledgement.
        this.failed = err;
        log.error({ err }, 'durable write failed; no further mutations will be acknowledged');
        reject(err);
        done();
      },
    );
  }
}
