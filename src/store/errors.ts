import { MeshError } from '../util/errors.js';

/**
 * Stable codes of every error the store raises.
 *
 * - `STORE_LOCKED`: another process (or another open instance in this process) holds the data
 *   directory's LevelDB lock.
 * - `STORE_CLOSED`: the store was closed (or is closing) when the call was made.
 * - `STORE_CORRUPT`: the directory is not a readable agentmesh store: LevelDB reports corruption,
 *   the format marker is missing or unknown, or a snapshot import was interrupted.
 * - `STORE_NOT_EMPTY`: a snapshot import targeted a store that already holds data without
 *   `overwrite: true`.
 * - `STORE_FULL`: the file system has no space left (ENOSPC): the write was not made; the store
 *   accepts writes again once space is freed.
 * - `STORE_IO`: any other failure of the underlying database or file system.
 * - `SNAPSHOT_INVALID`: a snapshot file failed a header, checksum, structure or validation check.
 * - `VALIDATION_FAILED`: a write was refused before it joined a batch (bad key or value, or the
 *   `validate` hook threw); nothing of that write reaches disk.
 */
export type StoreErrorCode =
  | 'STORE_LOCKED'
  | 'STORE_CLOSED'
  | 'STORE_CORRUPT'
  | 'STORE_NOT_EMPTY'
  | 'STORE_FULL'
  | 'STORE_IO'
  | 'SNAPSHOT_INVALID'
  | 'VALIDATION_FAILED';

export class StoreError extends MeshError<StoreErrorCode> {}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}

function levelCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

/** Maps an error thrown by `level` / classic-level while opening `dir` onto a StoreError. */
export function mapOpenError(err: unknown, dir: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = levelCode(err);
  const cause = typeof err === 'object' && err !== null && 'cause' in err ? err.cause : undefined;
  const causeCode = levelCode(cause);
  if (code === 'LEVEL_LOCKED' || causeCode === 'LEVEL_LOCKED') {
    return new StoreError('STORE_LOCKED', `data directory ${dir} is locked by another process or instance`, {
      cause: err,
      details: { dir },
    });
  }
  if (code === 'LEVEL_CORRUPTION' || causeCode === 'LEVEL_CORRUPTION') {
    return new StoreError('STORE_CORRUPT', `data directory ${dir} holds a corrupt database`, {
      cause: err,
      details: { dir },
    });
  }
  return new StoreError('STORE_IO', `could not open data directory ${dir}: ${describe(cause ?? err)}`, {
    cause: err,
    details: { dir },
  });
}

/** Maps an error thrown by a database operation (after open) onto a StoreError. */
export function mapOpError(err: unknown, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = levelCode(err);
  if (code === 'LEVEL_DATABASE_NOT_OPEN' || code === 'LEVEL_ITERATOR_NOT_OPEN') {
    return new StoreError('STORE_CLOSED', `store is closed (${what})`, { cause: err });
  }
  if (code === 'LEVEL_CORRUPTION') {
    return new StoreError('STORE_CORRUPT', `database corruption during ${what}: ${describe(err)}`, { cause: err });
  }
  if (isNoSpace(err)) {
    return new StoreError('STORE_FULL', `${what} failed: no space left on the device (${describe(err)})`, {
      cause: err,
    });
  }
  return new StoreError('STORE_IO', `${what} failed: ${describe(err)}`, { cause: err });
}

/**
 * Whether a database error is a full disk. Node reports ENOSPC as `code`; LevelDB (through
 * classic-level) reports it only in the message, as strerror's "No space left on device".
 */
export function isNoSpace(err: unknown): boolean {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 4; depth++) {
    if (levelCode(e) === 'ENOSPC') return true;
    if (/No space left on device|ENOSPC/i.test(describe(e))) return true;
    e = typeof e === 'object' && 'cause' in e ? e.cause : undefined;
  }
  return false;
}

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
