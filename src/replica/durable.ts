import { decodeMsgpack, encodeMsgpack } from '../codec/index.js';
import {
  DotSet,
  type HybridClock,
  isTimestamp,
  type AnyRecordSchema,
  type RecordState,
  wallOf,
} from '../crdt/index.js';
import { DurableStore, isStoreError, type OpenOptions } from '../store/index.js';
import { logger } from '../util/log.js';
import type { Delta } from './delta.js';
import { ReplicaError, ReplicaErrorCode } from './errors.js';
import type { Replica } from './replica.js';

const log = logger('mesh:replica');

const META_DOTS = 'dots';
const META_HLC = 'hlc';
export const DEFAULT_MAX_PENDING = 20_000;
/** Retry of a failed write when nothing else triggers one: doubling from the first to the last. */
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 10_000;

/** Whether the node can persist (and so acknowledge) writes, and since when not. */
export interface StoreHealth {
  ok: boolean;
  /** STORE_FULL, STORE_IO, ...: the code of the failure that makes writes fail. */
  code?: string;
  message?: string;
  /** Wall ms of the first failure of the current streak. */
  since?: number;
  /** Writes (local and remote) that failed during the current streak. */
  failedWrites?: number;
}

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
  /** A failure no retry can mend (validation, corruption, closed): every later write rejects. */
  private failed: unknown;
  /** A failure a retry may mend (a full disk, an I/O error): the next write tries again. */
  private failing: { error: unknown; code: string; since: number; failedWrites: number } | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = RETRY_FIRST_MS;
  private closing = false;
  /** One store write at a time: a later batch never lands if an earlier one failed. */
  private writing = false;
  private waiting = false;

  /** A local mutation waits in `pending`: the next batch must be synced before it is acknowledged. */
  private localPending = false;
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
    if (this.pending.size >= this.maxPending) {
      this.refusedOverloaded++;
      throw new ReplicaError(
        ReplicaErrorCode.OVERLOADED,
        `the store is ${this.pending.size} records behind; write refused, retry later`,
        { details: { pending: this.pending.size, max: this.maxPending } },
      );
    }
    const delta = this.replica.mutate(key, build);
    this.localPending = true;
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

  /**
   * Whether writes reach disk. Not ok after a write failed with a full disk or an I/O error, until
   * a write succeeds again (retried by itself, with backoff, and with every new change).
   */
  health(): StoreHealth {
    if (this.failed !== undefined) {
      const code = isStoreError(this.failed) ? this.failed.code : 'STORE_IO';
      return { ok: false, code, message: describeErr(this.failed) };
    }
    const f = this.failing;
    if (f === undefined) return { ok: true };
    return { ok: false, code: f.code, message: describeErr(f.error), since: f.since, failedWrites: f.failedWrites };
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.retryTimer);
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
    // Only batches holding a local mutation are synced: an acknowledgement promises durability.
    // Remote changes alone are written without an fsync on every node: a crash may lose the
    // newest of them (a suffix of the log, records and dots together), and anti-entropy brings
    // them back from the peers that hold them; a later synced batch makes them durable too.
    const sync = this.localPending;
    this.localPending = false;
    this.writing = true;
    const done = (): void => {
      this.writing = false;
      if (this.waiting) {
        this.waiting = false;
        this.writePending();
      }
    };
    this.store.write({ records, meta }, { sync }).then(
      () => {
        if (this.failing !== undefined) this.recovered();
        resolve();
        done();
      },
      (err: unknown) => {
        if (isStoreError(err, 'STORE_FULL') || isStoreError(err, 'STORE_IO')) {
          // Memory is ahead of disk for these records: they go again with the next batch (with
          // the dots and clock of that moment), so the store catches up once it can write.
          for (const [key] of records) this.pending.add(key);
          if (sync) this.localPending = true;
          this.fail(err);
        } else {
          // Memory is ahead of disk and no retry can fix it: refuse every further acknowledgement.
          this.failed = err;
          log.error({ err }, 'durable write failed; no further mutations will be acknowledged');
        }
        reject(err);
        done();
      },
    );
  }

  private fail(err: StoreErrorLike): void {
    const now = Date.now();
    if (this.failing === undefined) {
      this.failing = { error: err, code: err.code, since: now, failedWrites: 1 };
      log.error(
        { code: err.code, dir: this.store.dir, err },
        err.code === 'STORE_FULL'
          ? `disk full: free space on the file system of ${this.store.dir}; writes are refused (507 STORE_FULL) until then, and resume by themselves`
          : `store I/O error: check the disk holding ${this.store.dir}; writes are refused (503 STORE_IO) until a write succeeds again`,
      );
    } else {
      this.failing.failedWrites += 1;
      this.failing.error = err;
      this.failing.code = err.code;
    }
    // Retry even if nothing else changes, so that health recovers by itself once space returns.
    if (this.retryTimer === undefined && !this.closing) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        if (!this.closing && !this.flushScheduled) this.schedule(undefined);
      }, this.retryDelayMs);
      this.retryTimer.unref();
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, RETRY_MAX_MS);
    }
  }

  private recovered(): void {
    const f = this.failing;
    if (f === undefined) return;
    this.failing = undefined;
    this.retryDelayMs = RETRY_FIRST_MS;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    log.warn(
      { code: f.code, downMs: Date.now() - f.since, failedWrites: f.failedWrites },
      'store writable again; writes are acknowledged again',
    );
  }
}

type StoreErrorLike = Error & { code: string };

function describeErr(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
