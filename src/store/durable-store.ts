import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Level } from 'level';
import { logger } from '../util/log.js';
import { StoreError, describe, mapOpError, mapOpenError } from './errors.js';
import { LoadedSnapshot, writeSnapshotFile, type RawSnapshotEntry, type SnapshotInfo } from './snapshot.js';

/**
 * Key layout inside the one LevelDB of a data directory. Plain key prefixes rather than `level`
 * sublevels: both load 100k records in the same time (measured, see bench/store.ts), and prefixes
 * let one batch and one iterator (one implicit LevelDB snapshot) span records and meta without
 * per-op sublevel encoding.
 *
 *   `m:<name>`  metadata blobs (version vector, HLC high-water mark, identity key, peers, ...)
 *   `r:<key>`   records
 *   `s:<name>`  the store's own bookkeeping (format marker, interrupted-import marker)
 *
 * `m` < `r` < `s`, so `[m:, r;)` covers exactly the exportable data.
 */
const META = 'm:';
const RECORD = 'r:';
const RECORD_END = 'r;';
const SYS_FORMAT = 's:format';
const SYS_IMPORT = 's:import';
const FORMAT_VERSION = 1;
const FORMAT_VALUE = Uint8Array.of(FORMAT_VERSION);

/** Longest record key or meta name accepted, in UTF-16 code units. */
export const MAX_KEY_LENGTH = 4096;
const DEFAULT_MAX_BATCH_OPS = 10_000;
const IMPORT_BATCH_OPS = 10_000;
const READ_BATCH = 1000;
const READ_HIGH_WATER_BYTES = 1 << 20;

const log = logger('mesh:store');

/** Called for every record put; throwing refuses the whole write (VALIDATION_FAILED). */
export type RecordValidator = (key: string, value: Uint8Array) => void;

export interface OpenOptions {
  /**
   * Checks every record value before it is persisted (and every record of an imported snapshot).
   * Runs synchronously inside `write()`, before the write joins a batch. Deletes are not validated.
   */
  validate?: RecordValidator;
  /**
   * Upper bound on the LevelDB ops in one group-commit batch (default 10 000). A single `write()`
   * is never split across batches, so one larger than this goes alone in its own batch.
   */
  maxBatchOps?: number;
  /** Aborts opening (including waiting for the lock); the open rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * How long to keep retrying while another process holds the directory's lock (default 0: fail
   * at once with STORE_LOCKED). Useful right after a previous owner was killed.
   */
  lockWaitMs?: number;
  /**
   * Test hook: called before each group-commit batch; an error it returns fails that batch as if
   * LevelDB had raised it (say `Object.assign(new Error('No space left on device'), { code: 'ENOSPC' })`).
   */
  writeFault?: () => Error | undefined;
}

export interface WriteOps {
  /** Record puts (`Uint8Array`) and deletes (`null`), applied in order. */
  records?: ReadonlyArray<readonly [key: string, value: Uint8Array | null]>;
  /** Metadata puts (`Uint8Array`) and deletes (`null`), applied after the records. */
  meta?: ReadonlyArray<readonly [name: string, value: Uint8Array | null]>;
}

export interface StoreStats {
  /** `write()` calls committed. */
  writes: number;
  /** Record and meta ops committed. */
  ops: number;
  /** Group-commit batches committed. */
  batches: number;
  /** LevelDB writes made with `sync: true` (batches plus bookkeeping and import writes). */
  syncWrites: number;
  /** Key and value bytes committed. */
  bytes: number;
  /** Most `write()` calls that shared one batch. */
  maxBatchWrites: number;
  /** Most ops in one batch. */
  maxBatchOps: number;
  /** Milliseconds the last batch took to commit. */
  lastBatchMs: number;
  /** Writes refused before joining a batch. */
  validationFailures: number;
  /** Batches LevelDB failed to write (each of their writes was rejected). */
  failedBatches: number;
  /** Times the database was reopened to retry after a failed batch. */
  reopens: number;
  /** Writes waiting for a batch right now. */
  pendingWrites: number;
  /** Snapshots exported by this instance. */
  snapshotsExported: number;
}

/**
 * What LevelDB reported while recovering the directory on open. LevelDB skips write-ahead-log
 * records that fail their checksum (a damaged disk or a file edited by hand) and opens anyway,
 * silently dropping those writes; the store reads LevelDB's info log to surface it. When
 * `dataLoss` is true, writes acknowledged in an earlier run may be gone, so metadata such as a
 * version vector may claim data the store no longer has: the node should resynchronise fully from
 * its peers instead of trusting it.
 */
export interface RecoveryReport {
  dataLoss: boolean;
  /** The LevelDB info-log lines that reported skipped or corrupt data. */
  messages: string[];
}

export interface ExportOptions {
  /** zlib compression level, 0-9 (default: zlib's default, 6). */
  level?: number;
  signal?: AbortSignal;
}

export interface ImportOptions {
  validate?: RecordValidator;
  /**
   * Replace whatever the target store holds (records and meta). Without it, importing into a store
   * that holds any data fails with STORE_NOT_EMPTY.
   */
  overwrite?: boolean;
  signal?: AbortSignal;
  lockWaitMs?: number;
}

export interface ImportResult extends SnapshotInfo {
  /** True when the target held data (or an interrupted import) that the import replaced. */
  replaced: boolean;
}

type BatchOp =
  | { type: 'put'; key: string; value: Uint8Array }
  | {
      type: 'del';
      key: string;
    };

interface PendingWrite {
  ops: BatchOp[];
  bytes: number;
  sync: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

type State = 'open' | 'closing' | 'closed';

function checkName(name: unknown, what: string): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new StoreError('VALIDATION_FAILED', `${what} must be a non-empty string`, { details: { [what]: name } });
  }
  if (name.length > MAX_KEY_LENGTH) {
    throw new StoreError('VALIDATION_FAILED', `${what} is longer than ${MAX_KEY_LENGTH} characters`, {
      details: { [what]: name.slice(0, 64) },
    });
  }
  // A lone surrogate would not survive the UTF-8 round trip: the key read back would differ.
  if (!(name as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    throw new StoreError('VALIDATION_FAILED', `${what} is not well-formed Unicode`, { details: { [what]: name } });
  }
}

const RECOVERY_LOSS = /corruption|dropping|ignoring error/i;

/** Scans LevelDB's info log, which LevelDB starts afresh on every open, for skipped data. */
async function readRecoveryReport(dir: string): Promise<RecoveryReport> {
  let text: string;
  try {
    text = await readFile(join(dir, 'LOG'), 'utf8');
  } catch {
    return { dataLoss: false, messages: [] };
  }
  const messages = text.split('\n').filter((line) => RECOVERY_LOSS.test(line));
  return { dataLoss: messages.length > 0, messages: messages.slice(0, 20) };
}

function closedError(what: string): StoreError {
  return new StoreError('STORE_CLOSED', `store is closed (${what})`);
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

/**
 * Durable, crash-safe persistence of one node's data directory: records (opaque bytes keyed by
 * string, already encoded and validated by the replica layer) and small metadata blobs, in one
 * LevelDB.
 *
 * Durability contract: a `write()` promise resolves only after the LevelDB batch holding it was
 * written with `sync: true` (fsync of the write-ahead log), so a process killed at any instant
 * restarts with every acknowledged write. Writes are group-committed: while one batch is being
 * synced, new writes queue and go together into the next batch. Each `write()` is atomic (never
 * split across batches) and writes commit in call order.
 *
 * Validation happens at enqueue time: the key/value checks and the `validate` hook run
 * synchronously inside `write()`; a refused write rejects with VALIDATION_FAILED and never joins a
 * batch, so nothing of it reaches disk and the writes batched around it are unaffected.
 *
 * Values passed to `write()` must not be mutated until its promise settles.
 */
export class DurableStore {
  readonly dir: string;
  /** What LevelDB reported while recovering this directory on open (see RecoveryReport). */
  readonly recovery: RecoveryReport;
  readonly #db: Level<string, Uint8Array>;
  readonly #validate: RecordValidator | undefined;
  readonly #writeFault: (() => Error | undefined) | undefined;
  /** The code of the last batch failure, until a batch succeeds. */
  #failingCode: string | undefined;
  readonly #maxBatchOps: number;
  #state: State = 'open';
  #queue: PendingWrite[] = [];
  #flushing: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  readonly #exports = new Set<Promise<unknown>>();
  readonly #stats: Omit<StoreStats, 'pendingWrites'> = {
    writes: 0,
    ops: 0,
    batches: 0,
    syncWrites: 0,
    bytes: 0,
    maxBatchWrites: 0,
    maxBatchOps: 0,
    lastBatchMs: 0,
    validationFailures: 0,
    failedBatches: 0,
    reopens: 0,
    snapshotsExported: 0,
  };

  private constructor(dir: string, db: Level<string, Uint8Array>, options: OpenOptions, recovery: RecoveryReport) {
    this.dir = dir;
    this.recovery = recovery;
    this.#db = db;
    this.#validate = options.validate;
    this.#writeFault = options.writeFault;
    this.#maxBatchOps = options.maxBatchOps ?? DEFAULT_MAX_BATCH_OPS;
  }

  /**
   * Opens (creating if missing) the store in `dir`. Rejects with STORE_LOCKED when another process
   * holds the directory, STORE_CORRUPT when it is not a readable agentmesh store.
   */
  static async open(dir: string, options: OpenOptions = {}): Promise<DurableStore> {
    return DurableStore.#open(dir, options, false);
  }

  static async #open(dir: string, options: OpenOptions, forImport: boolean): Promise<DurableStore> {
    const { signal } = options;
    if (options.maxBatchOps !== undefined && !(Number.isInteger(options.maxBatchOps) && options.maxBatchOps >= 1)) {
      throw new RangeError(`maxBatchOps must be a positive integer, got ${options.maxBatchOps}`);
    }
    signal?.throwIfAborted();
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw mapOpenError(err, dir);
    }
    const db = new Level<string, Uint8Array>(dir, {
      keyEncoding: 'utf8',
      valueEncoding: 'view',
      createIfMissing: true,
    });
    const deadline = Date.now() + (options.lockWaitMs ?? 0);
    for (;;) {
      try {
        await db.open();
        break;
      } catch (err) {
        const mapped = mapOpenError(err, dir);
        if (mapped.code !== 'STORE_LOCKED' || Date.now() >= deadline) throw mapped;
        await sleep(Math.min(50, Math.max(1, deadline - Date.now())), undefined, signal ? { signal } : {}).catch(() => {
          throw abortReason(signal as AbortSignal);
        });
      }
    }
    const store = new DurableStore(dir, db, options, await readRecoveryReport(dir));
    if (store.recovery.dataLoss) {
      log.error({ dir, messages: store.recovery.messages }, 'LevelDB dropped corrupt data while recovering the store');
    }
    try {
      signal?.throwIfAborted();
      await store.#checkFormat(forImport);
      signal?.throwIfAborted();
    } catch (err) {
      await db.close().catch(() => undefined);
      store.#state = 'closed';
      throw err;
    }
    log.debug({ dir }, 'store opened');
    return store;
  }

  async #checkFormat(forImport: boolean): Promise<void> {
    let format: Uint8Array | undefined;
    let importing: Uint8Array | undefined;
    try {
      [format, importing] = await this.#db.getMany([SYS_FORMAT, SYS_IMPORT]);
    } catch (err) {
      throw mapOpError(err, 'reading the format marker');
    }
    if (format === undefined) {
      if (!(await this.#isEmpty(''))) {
        throw new StoreError('STORE_CORRUPT', `${this.dir} holds a LevelDB that is not an agentmesh store`, {
          details: { dir: this.dir },
        });
      }
      await this.#sysWrite([{ type: 'put', key: SYS_FORMAT, value: FORMAT_VALUE }]);
      return;
    }
    if (format.length !== 1 || format[0] !== FORMAT_VERSION) {
      throw new StoreError('STORE_CORRUPT', `${this.dir} has an unsupported store format`, {
        details: { dir: this.dir, format: Array.from(format) },
      });
    }
    if (importing !== undefined && !forImport) {
      throw new StoreError(
        'STORE_CORRUPT',
        `a snapshot import into ${this.dir} was interrupted; run the import again with overwrite`,
        { details: { dir: this.dir, reason: 'interrupted-import' } },
      );
    }
  }

  async #isEmpty(prefix: string, end?: string): Promise<boolean> {
    try {
      const keys = await this.#db.keys({ gte: prefix, ...(end === undefined ? {} : { lt: end }), limit: 1 }).all();
      return keys.length === 0;
    } catch (err) {
      throw mapOpError(err, 'scanning');
    }
  }

  async #sysWrite(ops: BatchOp[]): Promise<void> {
    try {
      await this.#db.batch(ops, { sync: true });
      this.#stats.syncWrites += 1;
    } catch (err) {
      throw mapOpError(err, 'bookkeeping write');
    }
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#state !== 'open';
  }

  get stats(): StoreStats {
    return { ...this.#stats, pendingWrites: this.#queue.length };
  }

  /**
   * Persists `ops` atomically, and durably unless `sync: false`. Resolves once the batch holding
   * it was written (with `sync: true` when any write in it asked for durability; a later synced
   * batch makes every earlier one durable too, as they share one log). Rejects with VALIDATION_FAILED (nothing written), STORE_CLOSED, or STORE_IO /
   * STORE_CORRUPT if LevelDB fails the batch (then every write in that batch rejects).
   * An empty write resolves once every earlier write has settled.
   */
  write(ops: WriteOps, options: { sync?: boolean } = {}): Promise<void> {
    if (this.#state !== 'open') return Promise.reject(closedError('write'));
    const batchOps: BatchOp[] = [];
    let bytes = 0;
    try {
      const { records, meta } = ops;
      if (records !== undefined) {
        for (const [key, value] of records) {
          checkName(key, 'key');
          if (value === null) {
            batchOps.push({ type: 'del', key: RECORD + key });
            bytes += key.length;
            continue;
          }
          if (!(value instanceof Uint8Array)) {
            throw new StoreError('VALIDATION_FAILED', `value of ${key} must be a Uint8Array or null`, {
              details: { key },
            });
          }
          if (this.#validate !== undefined) {
            try {
              this.#validate(key, value);
            } catch (err) {
              throw new StoreError('VALIDATION_FAILED', `record ${key} refused: ${describe(err)}`, {
                cause: err,
                details: { key },
              });
            }
          }
          batchOps.push({ type: 'put', key: RECORD + key, value });
          bytes += key.length + value.length;
        }
      }
      if (meta !== undefined) {
        for (const [name, value] of meta) {
          checkName(name, 'name');
          if (value === null) {
            batchOps.push({ type: 'del', key: META + name });
          } else if (value instanceof Uint8Array) {
            batchOps.push({ type: 'put', key: META + name, value });
            bytes += value.length;
          } else {
            throw new StoreError('VALIDATION_FAILED', `meta ${name} must be a Uint8Array or null`, {
              details: { name },
            });
          }
          bytes += name.length;
        }
      }
    } catch (err) {
      this.#stats.validationFailures += 1;
      return Promise.reject(err);
    }
    if (batchOps.length === 0) return this.flush();
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ ops: batchOps, bytes, sync: options.sync ?? true, resolve, reject });
      this.#flushing ??= this.#flushLoop();
    });
  }

  /** Resolves once every write enqueued so far has settled (committed or failed). Never rejects. */
  flush(): Promise<void> {
    return this.#flushing ?? Promise.resolve();
  }

  async #flushLoop(): Promise<void> {
    // Let writes issued in the same tick as the first one join its batch.
    await Promise.resolve();
    try {
      while (this.#queue.length > 0) {
        let n = 0;
        let opCount = 0;
        while (n < this.#queue.length) {
          const next = (this.#queue[n] as PendingWrite).ops.length;
          if (n > 0 && opCount + next > this.#maxBatchOps) break;
          opCount += next;
          n += 1;
        }
        const group = this.#queue.splice(0, n);
        const ops: BatchOp[] = group.length === 1 ? (group[0] as PendingWrite).ops : [];
        const sync = group.some((w) => w.sync);
        if (group.length > 1) for (const w of group) for (const op of w.ops) ops.push(op);
        const started = performance.now();
        if (this.#failingCode === 'STORE_FULL' || this.#failingCode === 'STORE_IO') {
          // LevelDB makes a failed log sync sticky (every later write fails until the database is
          // reopened), and a failed log append can leave a partial record at the log's end. Reopen
          // (replay the old log, start a new one) so that this batch is a real retry.
          try {
            await this.#db.close();
            await this.#db.open();
            this.#stats.reopens += 1;
            log.info({ dir: this.dir }, 'database reopened after a failed write');
          } catch (err) {
            const mapped = mapOpError(err, 'reopen after a failed write');
            this.#stats.failedBatches += 1;
            log.debug({ code: mapped.code, writes: group.length }, 'reopen failed');
            for (const w of group) w.reject(mapped);
            continue;
          }
        }
        try {
          const fault = this.#writeFault?.();
          if (fault !== undefined) throw fault;
          await this.#db.batch(ops, { sync });
        } catch (err) {
          const mapped = mapOpError(err, 'batch write');
          this.#stats.failedBatches += 1;
          // One line per streak of failures with the same cause, not one per batch.
          if (this.#failingCode !== mapped.code) {
            log.error({ err: mapped, writes: group.length, ops: ops.length }, 'batch write failed');
          } else {
            log.debug({ code: mapped.code, writes: group.length }, 'batch write failed again');
          }
          this.#failingCode = mapped.code;
          for (const w of group) w.reject(mapped);
          continue;
        }
        this.#failingCode = undefined;
        const s = this.#stats;
        s.lastBatchMs = performance.now() - started;
        s.batches += 1;
        if (sync) s.syncWrites += 1;
        s.writes += group.length;
        s.ops += ops.length;
        if (group.length > s.maxBatchWrites) s.maxBatchWrites = group.length;
        if (ops.length > s.maxBatchOps) s.maxBatchOps = ops.length;
        for (const w of group) {
          s.bytes += w.bytes;
          w.resolve();
        }
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  #assertOpen(what: string): void {
    if (this.#state !== 'open') throw closedError(what);
  }

  /** The committed value of record `key`, or undefined. */
  async get(key: string): Promise<Uint8Array | undefined> {
    this.#assertOpen('get');
    try {
      return await this.#db.get(RECORD + key);
    } catch (err) {
      throw mapOpError(err, 'get');
    }
  }

  /** The committed value of metadata entry `name`, or undefined. */
  async getMeta(name: string): Promise<Uint8Array | undefined> {
    this.#assertOpen('getMeta');
    try {
      return await this.#db.get(META + name);
    } catch (err) {
      throw mapOpError(err, 'getMeta');
    }
  }

  /** Every metadata entry, in name order. */
  async metaEntries(): Promise<Array<[string, Uint8Array]>> {
    this.#assertOpen('metaEntries');
    try {
      const entries = await this.#db.iterator({ gte: META, lt: RECORD }).all();
      return entries.map(([k, v]) => [k.slice(META.length), v]);
    } catch (err) {
      throw mapOpError(err, 'metaEntries');
    }
  }

  /**
   * Streams records in key order, read from one consistent LevelDB snapshot taken when iteration
   * starts. With `prefix`, only keys starting with it.
   */
  async *records(options: { prefix?: string } = {}): AsyncGenerator<[string, Uint8Array]> {
    for await (const batch of this.recordBatches(options)) yield* batch;
  }

  /**
   * Like `records()`, in arrays of up to 1000 entries: one await per batch instead of one per
   * record, the fastest way to stream a large store.
   */
  async *recordBatches(options: { prefix?: string } = {}): AsyncGenerator<Array<[string, Uint8Array]>> {
    this.#assertOpen('records');
    const prefix = options.prefix ?? '';
    const from = RECORD + prefix;
    const it = this.#db.iterator({ gte: from, lt: RECORD_END, highWaterMarkBytes: READ_HIGH_WATER_BYTES });
    try {
      for (;;) {
        let entries: Array<[string, Uint8Array]>;
        try {
          entries = await it.nextv(READ_BATCH);
        } catch (err) {
          throw mapOpError(err, 'records');
        }
        if (entries.length === 0) return;
        let done = false;
        let out = entries;
        if (prefix !== '') {
          // Matching keys are contiguous from `from`; the first one that does not match ends them.
          const last = entries[entries.length - 1] as [string, Uint8Array];
          if (!last[0].startsWith(from)) {
            const end = entries.findIndex(([k]) => !k.startsWith(from));
            out = entries.slice(0, end);
            done = true;
          }
        }
        for (const e of out) e[0] = e[0].slice(RECORD.length);
        if (out.length > 0) yield out;
        if (done) return;
      }
    } finally {
      await it.close().catch(() => undefined);
    }
  }

  /** Loads every record (or those under `prefix`) into a Map. */
  async loadRecords(options: { prefix?: string } = {}): Promise<Map<string, Uint8Array>> {
    const map = new Map<string, Uint8Array>();
    for await (const batch of this.recordBatches(options)) for (const [k, v] of batch) map.set(k, v);
    return map;
  }

  /**
   * Writes a compressed snapshot of every record and meta entry to `file` (atomically: temporary
   * file, fsync, rename). It reflects one consistent LevelDB snapshot that includes every write
   * acknowledged before the call. Format: see snapshot.ts.
   */
  async exportSnapshot(file: string, options: ExportOptions = {}): Promise<SnapshotInfo> {
    this.#assertOpen('exportSnapshot');
    const it = this.#db.iterator<Uint8Array, Uint8Array>({
      gte: Buffer.from(META),
      lt: Buffer.from(RECORD_END),
      keyEncoding: 'view',
      valueEncoding: 'view',
      highWaterMarkBytes: READ_HIGH_WATER_BYTES,
    });
    const m = META.charCodeAt(0);
    const r = RECORD.charCodeAt(0);
    async function* batches(): AsyncGenerator<RawSnapshotEntry[]> {
      try {
        for (;;) {
          let entries: Array<[Uint8Array, Uint8Array]>;
          try {
            entries = await it.nextv(READ_BATCH);
          } catch (err) {
            throw mapOpError(err, 'exportSnapshot');
          }
          if (entries.length === 0) return;
          const out: RawSnapshotEntry[] = [];
          for (const [k, v] of entries) {
            if (k[0] === r) out.push({ kind: 'record', key: k.subarray(2), value: v });
            else if (k[0] === m) out.push({ kind: 'meta', key: k.subarray(2), value: v });
          }
          yield out;
        }
      } finally {
        await it.close().catch(() => undefined);
      }
    }
    const task = writeSnapshotFile(file, batches(), options);
    this.#exports.add(task);
    try {
      const info = await task;
      this.#stats.snapshotsExported += 1;
      log.info({ file, records: info.records, meta: info.meta, bytes: info.bytes }, 'snapshot exported');
      return info;
    } catch (err) {
      if (err instanceof StoreError || (err instanceof Error && err.name === 'AbortError')) throw err;
      throw new StoreError('STORE_IO', `exporting snapshot ${file} failed: ${describe(err)}`, {
        cause: err,
        details: { file },
      });
    } finally {
      this.#exports.delete(task);
    }
  }

  /**
   * Restores a snapshot into the store in `dir` (created if missing). The whole file is verified
   * first, before the directory is even opened: header, checksums, structure, entry counts, and
   * `validate` on every record; any failure rejects with SNAPSHOT_INVALID and writes nothing.
   * The target must be empty unless `overwrite` is set, in which case its records and meta are
   * replaced. The store must not be open elsewhere (STORE_LOCKED).
   *
   * A crash during the write phase leaves an import marker: `open()` then refuses the directory
   * with STORE_CORRUPT until the import is run again with `overwrite`.
   */
  static async importSnapshot(dir: string, file: string, options: ImportOptions = {}): Promise<ImportResult> {
    const { validate, signal } = options;
    signal?.throwIfAborted();
    const snap = await LoadedSnapshot.read(file);
    for await (const batch of snap.entries()) {
      signal?.throwIfAborted();
      for (const e of batch) {
        try {
          checkName(e.key, e.kind === 'record' ? 'key' : 'name');
          if (e.kind === 'record') validate?.(e.key, e.value);
        } catch (err) {
          throw new StoreError('SNAPSHOT_INVALID', `snapshot ${file}: ${e.kind} ${e.key} refused: ${describe(err)}`, {
            cause: err,
            details: { file, key: e.key },
          });
        }
      }
    }
    const openOptions: OpenOptions = {};
    if (signal !== undefined) openOptions.signal = signal;
    if (options.lockWaitMs !== undefined) openOptions.lockWaitMs = options.lockWaitMs;
    const store = await DurableStore.#open(dir, openOptions, true);
    try {
      return await store.#importVerified(snap, options.overwrite === true);
    } finally {
      await store.close();
    }
  }

  async #importVerified(snap: LoadedSnapshot, overwrite: boolean): Promise<ImportResult> {
    const db = this.#db;
    let interrupted: boolean;
    try {
      interrupted = (await db.get(SYS_IMPORT)) !== undefined;
    } catch (err) {
      throw mapOpError(err, 'import');
    }
    const empty = !interrupted && (await this.#isEmpty(META, RECORD_END));
    if (!empty && !overwrite) {
      throw new StoreError(
        'STORE_NOT_EMPTY',
        interrupted
          ? `${this.dir} holds an interrupted import; pass overwrite to replace it`
          : `${this.dir} already holds data; pass overwrite to replace it`,
        { details: { dir: this.dir } },
      );
    }
    const marker = new TextEncoder().encode(JSON.stringify({ file: snap.file, startedAt: Date.now() }));
    await this.#sysWrite([{ type: 'put', key: SYS_IMPORT, value: marker }]);
    if (!empty) {
      try {
        await db.clear({ gte: META, lt: RECORD_END });
      } catch (err) {
        throw mapOpError(err, 'clearing before import');
      }
    }
    let ops: BatchOp[] = [];
    for await (const batch of snap.entries()) {
      for (const e of batch) {
        ops.push({ type: 'put', key: (e.kind === 'record' ? RECORD : META) + e.key, value: e.value });
      }
      if (ops.length >= IMPORT_BATCH_OPS) {
        await this.#sysWrite(ops);
        ops = [];
      }
    }
    ops.push({ type: 'del', key: SYS_IMPORT });
    await this.#sysWrite(ops);
    log.info({ dir: this.dir, file: snap.file, records: snap.info.records }, 'snapshot imported');
    return { ...snap.info, replaced: !empty };
  }

  /**
   * Stops accepting writes (they reject with STORE_CLOSED), waits for every pending write to be
   * committed and for running exports, then closes LevelDB. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    await this.flush();
    await Promise.allSettled(this.#exports);
    try {
      await this.#db.close();
    } catch (err) {
      throw mapOpError(err, 'close');
    } finally {
      this.#state = 'closed';
      log.debug({ dir: this.dir, stats: this.stats }, 'store closed');
    }
  }
}
