/**
 * `mesh backup` and `mesh restore`, offline, over the store's snapshot format (src/store/snapshot.ts).
 *
 * Offline on purpose: a snapshot holds the node's identity key and its version vector, so it is a
 * node, not just data. A backup is taken from a stopped node's data directory (LevelDB's lock
 * refuses a running one), which makes it that node's final state; restoring it into an empty
 * directory then continues that node where it stopped, without ever issuing a sequence number
 * twice. (Restoring an older backup of a node that kept running would re-issue sequence numbers
 * its peers already hold, and they would drop those writes as duplicates: `--new-identity` starts
 * the restored node under a fresh peer id instead, with all the data.)
 *
 * Both verify: the backup is read back (checksums, structure, every record decoded with the mesh's
 * schemas) before it is reported written; the restore verifies the whole file before writing
 * anything.
 */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_DATA_DIR } from '../node/options.js';
import type { DurableStore, SnapshotInfo } from '../store/index.js';
import type * as Store from '../store/index.js';
import { CliError, CliErrorCode } from './errors.js';
import { printJson } from './format.js';
import { progress } from './progress.js';

/** The meta entry holding the node's identity key (see src/node/mesh-node.ts). */
const META_IDENTITY = 'identity';

/** Decodes every record with the mesh's schemas: what a node would refuse to load is refused here. */
async function recordValidator(): Promise<(key: string, value: Uint8Array) => void> {
  // Loaded here, not at the top: client commands should not pay for the replica and its schemas.
  const [{ Replica }, { meshFenced, meshPolicy, meshSchemaFor }] = await Promise.all([
    import('../replica/index.js'),
    import('../node/schemas.js'),
  ]);
  const replica = new Replica({ nodeId: 'restore', schemaFor: meshSchemaFor, policy: meshPolicy, fenced: meshFenced });
  return (key, value) => {
    replica.decodeRecord(key, value);
  };
}

const store = (): Promise<typeof Store> => import('../store/index.js');

function storeFailure(isStoreError: typeof Store.isStoreError, err: unknown, dir: string, doing: string): CliError {
  if (isStoreError(err, 'STORE_LOCKED'))
    return new CliError(
      CliErrorCode.BACKUP_FAILED,
      `${dir} is in use by a running mesh node; stop it first (backups and restores are offline)`,
      { cause: err },
    );
  if (isStoreError(err, 'STORE_NOT_EMPTY'))
    return new CliError(
      CliErrorCode.BACKUP_FAILED,
      `${dir} already holds a node's data; restore into an empty (or new) directory`,
      { cause: err },
    );
  return new CliError(CliErrorCode.BACKUP_FAILED, `${doing}: ${(err as Error).message}`, { cause: err });
}

/** Reads a snapshot back in full, showing progress; returns its info. Throws on any defect. */
async function verify(
  file: string,
  validate: (k: string, v: Uint8Array) => void,
  title: string,
): Promise<SnapshotInfo> {
  const snap = await (await store()).LoadedSnapshot.read(file);
  const total = snap.info.records + snap.info.meta;
  const bar = progress({ title, total: Math.max(total, 1), unit: 'entries', step: Math.max(1, Math.ceil(total / 10)) });
  let seen = 0;
  try {
    for await (const batch of snap.entries()) {
      for (const e of batch) if (e.kind === 'record') validate(e.key, e.value);
      seen += batch.length;
      bar.update(seen, 'verifying');
    }
    bar.update(total, 'verified');
  } finally {
    bar.stop();
  }
  return snap.info;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export function backupCommands(program: Command): void {
  program
    .command('backup')
    .description("write a verified snapshot of a stopped node's data directory")
    .argument('<file>', 'the snapshot file to write (refused if it exists)')
    .option('--data <dir>', "the node's data directory", DEFAULT_DATA_DIR)
    .option('--json', 'print the result as JSON')
    .action(async (file: string, f: { data: string; json?: boolean }) => {
      if (await exists(file))
        throw new CliError(CliErrorCode.BACKUP_FAILED, `${file} exists; refusing to overwrite it`);
      if (!(await exists(resolve(f.data, 'CURRENT'))))
        throw new CliError(CliErrorCode.BACKUP_FAILED, `${f.data} holds no mesh node data (no LevelDB there)`);
      const { DurableStore: Durable, isStoreError } = await store();
      let db: DurableStore;
      try {
        db = await Durable.open(f.data);
      } catch (err) {
        throw storeFailure(isStoreError, err, f.data, `cannot open ${f.data}`);
      }
      try {
        await db.exportSnapshot(file);
      } catch (err) {
        throw storeFailure(isStoreError, err, f.data, `backup of ${f.data} failed`);
      } finally {
        await db.close();
      }
      const info = await verify(file, await recordValidator(), 'backup').catch((err: unknown) => {
        throw new CliError(CliErrorCode.BACKUP_FAILED, `the backup does not read back: ${(err as Error).message}`, {
          cause: err,
        });
      });
      if (f.json) return printJson({ file, ...info });
      console.log(`backup ${file}: ${info.records} records, ${info.meta} meta entries, ${info.bytes} bytes`);
    });

  program
    .command('restore')
    .description('restore a snapshot into an empty data directory (then start a node on it)')
    .argument('<file>', 'a snapshot written by mesh backup')
    .option('--data <dir>', 'the data directory to restore into (must be empty or absent)', DEFAULT_DATA_DIR)
    .option('--new-identity', 'start the restored node under a new peer id (the original may have run on)')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, f: { data: string; newIdentity?: boolean; json?: boolean }) => {
      const { DurableStore: Durable, isStoreError } = await store();
      const validate = await recordValidator();
      await verify(file, validate, 'restore').catch((err: unknown) => {
        throw new CliError(CliErrorCode.BACKUP_FAILED, `${file} is not a usable backup: ${(err as Error).message}`, {
          cause: err,
        });
      });
      let info: SnapshotInfo;
      try {
        info = await Durable.importSnapshot(f.data, file, { validate });
      } catch (err) {
        throw storeFailure(isStoreError, err, f.data, `restore into ${f.data} failed`);
      }
      if (f.newIdentity) {
        const db = await Durable.open(f.data);
        try {
          await db.write({ meta: [[META_IDENTITY, null]] });
        } finally {
          await db.close();
        }
      }
      if (f.json) return printJson({ data: f.data, ...info, newIdentity: f.newIdentity === true });
      console.log(
        `restored ${info.records} records into ${f.data}${f.newIdentity ? ' (a new peer id will be made at start)' : ''}; start it with: mesh start --data ${f.data}`,
      );
    });
}
