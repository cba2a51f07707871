export {
  DurableStore,
  MAX_KEY_LENGTH,
  type ExportOptions,
  type ImportOptions,
  type ImportResult,
  type OpenOptions,
  type RecordValidator,
  type RecoveryReport,
  type StoreStats,
  type WriteOps,
} from './durable-store.js';
export { StoreError, isStoreError, type StoreErrorCode } from './errors.js';
export {
  LoadedSnapshot,
  SNAPSHOT_HEADER_LENGTH,
  SNAPSHOT_MAGIC,
  SNAPSHOT_VERSION,
  type SnapshotEntry,
  type SnapshotInfo,
} from './snapshot.js';
