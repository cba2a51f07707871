/**
 * Snapshot file format (version 1): a fixed 72-byte header followed by a raw-deflate body.
 *
 * Header (all integers little-endian):
 *
 * | offset | size | field                                                   |
 * | ------ | ---- | ------------------------------------------------------- |
 * | 0      | 8    | magic `AGMSNAP\n`                                       |
 * | 8      | 2    | format version (1)                                      |
 * | 10     | 2    | flags (bit 0: body is raw deflate; no other bit is set) |
 * | 12     | 4    | header length (72)                                      |
 * | 16     | 8    | record count                                            |
 * | 24     | 8    | meta entry count                                        |
 * | 32     | 8    | compressed body length (file length - header length)    |
 * | 40     | 8    | uncompressed body length                                |
 * | 48     | 8    | created at (ms since the epoch)                         |
 * | 56     | 4    | CRC-32 of the compressed body                           |
 * | 60     | 4    | CRC-32 of the uncompressed body                         |
 * | 64     | 4    | reserved (0)                                            |
 * | 68     | 4    | CRC-32 of header bytes 0..67                            |
 *
 * Uncompressed body: a sequence of entries `kind:u8 keyLength:u32 key:utf8 valueLength:u32 value`,
 * kind 1 = record, 2 = meta. Meta entries come first (export walks the key space in order).
 *
 * The compressor is node:zlib (native, streaming, with a native CRC-32) rather than lz4js: lz4js
 * is a pure-JS whole-buffer codec with a 4 MiB block limit, which fits small wire messages, not
 * multi-megabyte files; snapshots are written rarely and favour ratio and streaming over speed.
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zlibConstants, crc32, createDeflateRaw, createInflateRaw } from 'node:zlib';
import { StoreError, describe } from './errors.js';

export const SNAPSHOT_MAGIC = Buffer.from('AGMSNAP\n', 'latin1');
export const SNAPSHOT_VERSION = 1;
export const SNAPSHOT_HEADER_LENGTH = 72;
const FLAG_DEFLATE_RAW = 1;
const KIND_RECORD = 1;
const KIND_META = 2;
const ENTRY_OVERHEAD = 9;
/** Largest key accepted in a snapshot body (the store itself refuses longer keys). */
export const MAX_SNAPSHOT_KEY_BYTES = 64 * 1024;
/** Largest value accepted in a snapshot body. */
export const MAX_SNAPSHOT_VALUE_BYTES = 256 * 1024 * 1024;
const BODY_CHUNK_BYTES = 256 * 1024;
const ZLIB_CHUNK_BYTES = 256 * 1024;

export type SnapshotEntryKind = 'record' | 'meta';

/** One entry as export produces it: the key still UTF-8 encoded, straight from LevelDB. */
export interface RawSnapshotEntry {
  kind: SnapshotEntryKind;
  key: Uint8Array;
  value: Uint8Array;
}

export interface SnapshotEntry {
  kind: SnapshotEntryKind;
  key: string;
  value: Uint8Array;
}

export interface SnapshotInfo {
  /** Number of records in the snapshot. */
  records: number;
  /** Number of metadata entries in the snapshot. */
  meta: number;
  /** Size of the snapshot file in bytes. */
  bytes: number;
  /** Size of the uncompressed body in bytes. */
  rawBytes: number;
  /** When the snapshot was written (ms since the epoch). */
  createdAt: number;
}

function invalid(file: string, message: string, cause?: unknown): StoreError {
  return new StoreError('SNAPSHOT_INVALID', `snapshot ${file}: ${message}`, {
    cause,
    details: { file },
  });
}

interface Header {
  records: number;
  meta: number;
  compressedLength: number;
  rawLength: number;
  createdAt: number;
  compressedCrc: number;
  rawCrc: number;
}

function encodeHeader(h: Header): Buffer {
  const b = Buffer.alloc(SNAPSHOT_HEADER_LENGTH);
  SNAPSHOT_MAGIC.copy(b, 0);
  b.writeUInt16LE(SNAPSHOT_VERSION, 8);
  b.writeUInt16LE(FLAG_DEFLATE_RAW, 10);
  b.writeUInt32LE(SNAPSHOT_HEADER_LENGTH, 12);
  b.writeBigUInt64LE(BigInt(h.records), 16);
  b.writeBigUInt64LE(BigInt(h.meta), 24);
  b.writeBigUInt64LE(BigInt(h.compressedLength), 32);
  b.writeBigUInt64LE(BigInt(h.rawLength), 40);
  b.writeBigUInt64LE(BigInt(h.createdAt), 48);
  b.writeUInt32LE(h.compressedCrc, 56);
  b.writeUInt32LE(h.rawCrc, 60);
  b.writeUInt32LE(0, 64);
  b.writeUInt32LE(crc32(b.subarray(0, 68)), 68);
  return b;
}

function readSafeU64(b: Buffer, offset: number, file: string, field: string): number {
  const v = b.readBigUInt64LE(offset);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(file, `${field} out of range`);
  return Number(v);
}

function decodeHeader(b: Buffer, file: string): Header {
  if (b.length < SNAPSHOT_HEADER_LENGTH) throw invalid(file, `file is too short (${b.length} bytes)`);
  if (!b.subarray(0, 8).equals(SNAPSHOT_MAGIC)) throw invalid(file, 'bad magic: not an agentmesh snapshot');
  const version = b.readUInt16LE(8);
  if (version !== SNAPSHOT_VERSION) throw invalid(file, `unsupported format version ${version}`);
  if (b.readUInt32LE(68) !== crc32(b.subarray(0, 68))) throw invalid(file, 'header checksum mismatch');
  const flags = b.readUInt16LE(10);
  if (flags !== FLAG_DEFLATE_RAW) throw invalid(file, `unsupported flags 0x${flags.toString(16)}`);
  if (b.readUInt32LE(12) !== SNAPSHOT_HEADER_LENGTH) throw invalid(file, 'unexpected header length');
  return {
    records: readSafeU64(b, 16, file, 'record count'),
    meta: readSafeU64(b, 24, file, 'meta count'),
    compressedLength: readSafeU64(b, 32, file, 'compressed length'),
    rawLength: readSafeU64(b, 40, file, 'raw length'),
    createdAt: readSafeU64(b, 48, file, 'created at'),
    compressedCrc: b.readUInt32LE(56),
    rawCrc: b.readUInt32LE(60),
  };
}

/**
 * Writes a snapshot atomically: the body streams through deflate into a temporary file next to
 * `file`, the header is written last, the file is fsynced and then renamed over `file`.
 */
export async function writeSnapshotFile(
  file: string,
  batches: AsyncIterable<RawSnapshotEntry[]>,
  options: { level?: number; signal?: AbortSignal } = {},
): Promise<SnapshotInfo> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'wx');
  let renamed = false;
  try {
    let records = 0;
    let meta = 0;
    let rawLength = 0;
    let rawCrc = 0;
    let compressedLength = 0;
    let compressedCrc = 0;

    async function* body(): AsyncGenerator<Buffer> {
      let chunk = Buffer.allocUnsafe(BODY_CHUNK_BYTES);
      let used = 0;
      const emit = (): Buffer => {
        const out = chunk.subarray(0, used);
        rawCrc = crc32(out, rawCrc);
        rawLength += used;
        chunk = Buffer.allocUnsafe(BODY_CHUNK_BYTES);
        used = 0;
        return out;
      };
      for await (const batch of batches) {
        for (const e of batch) {
          const need = ENTRY_OVERHEAD + e.key.length + e.value.length;
          if (used + need > chunk.length) {
            if (used > 0) yield emit();
            if (need > chunk.length) chunk = Buffer.allocUnsafe(need);
          }
          chunk[used] = e.kind === 'record' ? KIND_RECORD : KIND_META;
          chunk.writeUInt32LE(e.key.length, used + 1);
          chunk.set(e.key, used + 5);
          used += 5 + e.key.length;
          chunk.writeUInt32LE(e.value.length, used);
          chunk.set(e.value, used + 4);
          used += 4 + e.value.length;
          if (e.kind === 'record') records += 1;
          else meta += 1;
        }
      }
      if (used > 0) yield emit();
    }

    await pipeline(
      body(),
      createDeflateRaw({ level: options.level ?? zlibConstants.Z_DEFAULT_COMPRESSION, chunkSize: ZLIB_CHUNK_BYTES }),
      async (source: AsyncIterable<Buffer>) => {
        for await (const c of source) {
          compressedCrc = crc32(c, compressedCrc);
          await fh.write(c, 0, c.length, SNAPSHOT_HEADER_LENGTH + compressedLength);
          compressedLength += c.length;
        }
      },
      options.signal === undefined ? {} : { signal: options.signal },
    );
    const createdAt = Date.now();
    const header = encodeHeader({ records, meta, compressedLength, rawLength, createdAt, compressedCrc, rawCrc });
    await fh.write(header, 0, header.length, 0);
    await fh.sync();
    await fh.close();
    await rename(tmp, file);
    renamed = true;
    await syncDir(dirname(file));
    return { records, meta, bytes: SNAPSHOT_HEADER_LENGTH + compressedLength, rawBytes: rawLength, createdAt };
  } finally {
    if (!renamed) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    }
  }
}

async function syncDir(dir: string): Promise<void> {
  // Makes the rename durable. Directories cannot be opened for fsync on every platform; best effort.
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    /* not supported here (e.g. Windows) */
  }
}

/**
 * A snapshot file read into memory with its header and body checksum verified. `entries()` inflates
 * and parses the body; every call re-reads the same in-memory bytes, so a verification pass followed
 * by a write pass sees identical data even if the file changes on disk meanwhile.
 */
export class LoadedSnapshot {
  readonly file: string;
  readonly info: SnapshotInfo;
  readonly #header: Header;
  readonly #body: Buffer;

  private constructor(file: string, header: Header, body: Buffer, bytes: number) {
    this.file = file;
    this.#header = header;
    this.#body = body;
    this.info = {
      records: header.records,
      meta: header.meta,
      bytes,
      rawBytes: header.rawLength,
      createdAt: header.createdAt,
    };
  }

  /** Reads `file` and checks magic, version, header checksum, length and body checksum. */
  static async read(file: string): Promise<LoadedSnapshot> {
    let buf: Buffer;
    try {
      buf = await readFile(file);
    } catch (err) {
      throw new StoreError('STORE_IO', `cannot read snapshot ${file}: ${describe(err)}`, {
        cause: err,
        details: { file },
      });
    }
    const header = decodeHeader(buf, file);
    if (buf.length !== SNAPSHOT_HEADER_LENGTH + header.compressedLength) {
      throw invalid(
        file,
        `length mismatch: header says ${SNAPSHOT_HEADER_LENGTH + header.compressedLength} bytes, file has ${buf.length}`,
      );
    }
    const body = buf.subarray(SNAPSHOT_HEADER_LENGTH);
    if (crc32(body) !== header.compressedCrc) throw invalid(file, 'body checksum mismatch');
    return new LoadedSnapshot(file, header, body, buf.length);
  }

  /**
   * Yields the entries in batches. Throws SNAPSHOT_INVALID on a malformed body, a raw length or
   * checksum mismatch, or counts that disagree with the header (checked at the end).
   */
  async *entries(): AsyncGenerator<SnapshotEntry[]> {
    const file = this.file;
    const h = this.#header;
    const inflate = createInflateRaw({ chunkSize: ZLIB_CHUNK_BYTES });
    const source = Readable.from([this.#body], { objectMode: false });
    source.pipe(inflate);
    let rawLength = 0;
    let rawCrc = 0;
    let records = 0;
    let meta = 0;
    let pending: Buffer = Buffer.alloc(0);
    try {
      for await (const chunk of inflate as AsyncIterable<Buffer>) {
        rawLength += chunk.length;
        if (rawLength > h.rawLength) throw invalid(file, 'body is longer than the header says');
        rawCrc = crc32(chunk, rawCrc);
        const buf = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        const out: SnapshotEntry[] = [];
        let off = 0;
        for (;;) {
          const rem = buf.length - off;
          if (rem < 5) break;
          const kindByte = buf[off];
          if (kindByte !== KIND_RECORD && kindByte !== KIND_META) throw invalid(file, `bad entry kind ${kindByte}`);
          const keyLength = buf.readUInt32LE(off + 1);
          if (keyLength === 0 || keyLength > MAX_SNAPSHOT_KEY_BYTES) throw invalid(file, `bad key length ${keyLength}`);
          if (rem < ENTRY_OVERHEAD + keyLength) break;
          const valueLength = buf.readUInt32LE(off + 5 + keyLength);
          if (valueLength > MAX_SNAPSHOT_VALUE_BYTES) throw invalid(file, `value too large (${valueLength} bytes)`);
          const end = off + ENTRY_OVERHEAD + keyLength + valueLength;
          if (end > buf.length) break;
          const key = buf.toString('utf8', off + 5, off + 5 + keyLength);
          const value = buf.subarray(off + ENTRY_OVERHEAD + keyLength, end);
          if (kindByte === KIND_RECORD) {
            records += 1;
            out.push({ kind: 'record', key, value });
          } else {
            meta += 1;
            out.push({ kind: 'meta', key, value });
          }
          off = end;
        }
        pending = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
        if (out.length > 0) yield out;
      }
    } catch (err) {
      if (err instanceof StoreError) throw err;
      throw invalid(file, `cannot decompress body: ${describe(err)}`, err);
    } finally {
      source.unpipe(inflate);
      inflate.destroy();
      source.destroy();
    }
    if (pending.length > 0) throw invalid(file, 'body ends inside an entry');
    if (rawLength !== h.rawLength) throw invalid(file, `raw length mismatch (${rawLength} != ${h.rawLength})`);
    if (rawCrc !== h.rawCrc) throw invalid(file, 'raw body checksum mismatch');
    if (records !== h.records || meta !== h.meta) {
      throw invalid(file, `entry counts mismatch (${records}/${meta} != ${h.records}/${h.meta})`);
    }
  }
}
