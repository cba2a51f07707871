/**
 * The envelope: the one format for everything that crosses a process boundary (gossip, sync
 * streams, snapshots, the agent protocol).
 *
 * Byte layout (multi-byte integers are big-endian):
 *
 *   offset  size  field
 *   0       2     magic 0x41 0x4d ("AM")
 *   2       1     format version major (1)
 *   3       1     format version minor (0)
 *   4       1     flags: bits 0-2 encoding (0 = msgpack; others invalid in 1.x)
 *                        bits 3-4 compression (0 = none, 1 = lz4 raw block; others invalid)
 *                        bits 5-7 reserved: written 0, ignored by readers
 *   5       4     payload length P: bytes stored between the header and the trailer
 *   9       4     uncompressed length U: only present when compression != none
 *   H       P     payload (H = 9, or 13 when compressed): msgpack, or an lz4 block of U bytes
 *   H+P     4     CRC32 (zlib polynomial, `crc32` from node:zlib) of bytes [0, H+P)
 *
 * The checksum is a trailer so that it covers every other byte (magic, versions, flags, lengths
 * and payload) in a single `crc32` call.
 *
 * Versioning: readers accept any minor version of their major (a minor may only add things an
 * older reader can ignore, such as the reserved flag bits); another major is VERSION_INCOMPATIBLE.
 *
 * Compression: lz4 only when the msgpack payload is at least `compressThreshold` bytes
 * (default 1 KiB) and the compressed form, with its 4-byte length field, is strictly smaller.
 *
 * Decoding checks, in order: envelope size limit, magic, major version, checksum, flags, length
 * fields against the actual size, declared uncompressed size against the limit (before any
 * decompression), lz4 output length equal to the declared one, msgpack limits (`checkMsgpack`),
 * msgpack decoding, then the caller's `validate`.
 */
import { crc32 } from 'node:zlib';
import { CodecError } from './errors.js';
import { lz4CompressBlock, lz4DecompressBlock } from './lz4.js';
import {
  DEFAULT_LIMITS,
  checkMsgpack,
  decodeChecked,
  encodeMsgpackShared,
  plainBytes,
  releaseLargeBuffer,
  type CodecLimits,
} from './msgpack.js';

export const MAGIC = Object.freeze([0x41, 0x4d] as const);
export const FORMAT_MAJOR = 1;
export const FORMAT_MINOR = 0;
/** Header size without compression; compressed envelopes add the 4-byte uncompressed length. */
export const HEADER_BYTES = 9;
export const COMPRESSED_HEADER_BYTES = 13;
export const TRAILER_BYTES = 4;
export const DEFAULT_COMPRESS_THRESHOLD = 1024;

export const ENCODING_MSGPACK = 0;
export const COMPRESSION_NONE = 0;
export const COMPRESSION_LZ4 = 1;
const ENCODING_MASK = 0x07;
const COMPRESSION_SHIFT = 3;
const COMPRESSION_MASK = 0x03;

export interface EncodeOptions {
  /** 'lz4' (default): compress payloads of at least `compressThreshold` bytes when that shrinks them. */
  compression?: 'lz4' | 'none';
  /** Smallest msgpack payload, in bytes, worth trying to compress (default 1024). */
  compressThreshold?: number;
  /** Sort object keys so that equal values give equal bytes (default false: insertion order). */
  canonical?: boolean;
  /** Refuse to produce an envelope larger than this (default `DEFAULT_LIMITS.maxEnvelopeBytes`). */
  maxEnvelopeBytes?: number;
  /** Refuse a msgpack payload larger than this (default `DEFAULT_LIMITS.maxDecompressedBytes`). */
  maxDecompressedBytes?: number;
}

export interface DecodeOptions<T = unknown> extends Partial<CodecLimits> {
  /** Type guard run on the decoded value; `false` or a throw gives SCHEMA_VALIDATION_FAILED. */
  validate?: (value: unknown) => value is T;
}

function writeU32(out: Uint8Array, pos: number, v: number): void {
  out[pos] = v >>> 24;
  out[pos + 1] = v >>> 16;
  out[pos + 2] = v >>> 8;
  out[pos + 3] = v;
}

function readU32(bytes: Uint8Array, pos: number): number {
  return ((bytes[pos]! << 24) | (bytes[pos + 1]! << 16) | (bytes[pos + 2]! << 8) | bytes[pos + 3]!) >>> 0;
}

function limitExceeded(limit: keyof CodecLimits, value: number, max: number): CodecError {
  return new CodecError('SIZE_LIMIT_EXCEEDED', `${limit} exceeded: ${value} > ${max}`, {
    details: { limit, value, max },
  });
}

/**
 * Encodes `value` as an envelope (msgpack, lz4 above the threshold, CRC32). Returns a fresh
 * Uint8Array. Throws `CodecError` SERIALIZATION_FAILED (unencodable value) or
 * SIZE_LIMIT_EXCEEDED.
 */
export function encode(value: unknown, options?: EncodeOptions): Uint8Array {
  const canonical = options?.canonical === true;
  const payload = encodeMsgpackShared(value, canonical);
  const n = payload.length;
  const maxPayload = options?.maxDecompressedBytes ?? DEFAULT_LIMITS.maxDecompressedBytes;
  if (n > maxPayload) {
    releaseLargeBuffer(n, canonical);
    throw limitExceeded('maxDecompressedBytes', n, maxPayload);
  }
  let packed: Uint8Array | undefined;
  if (n >= (options?.compressThreshold ?? DEFAULT_COMPRESS_THRESHOLD) && options?.compression !== 'none') {
    const compressed = lz4CompressBlock(payload);
    if (compressed !== undefined && compressed.length + 4 < n) packed = compressed;
  }
  const header = packed === undefined ? HEADER_BYTES : COMPRESSED_HEADER_BYTES;
  const body = packed ?? payload;
  const total = header + body.length + TRAILER_BYTES;
  const maxEnvelope = options?.maxEnvelopeBytes ?? DEFAULT_LIMITS.maxEnvelopeBytes;
  if (total > maxEnvelope) {
    releaseLargeBuffer(n, canonical);
    throw limitExceeded('maxEnvelopeBytes', total, maxEnvelope);
  }
  const out = new Uint8Array(total);
  out[0] = MAGIC[0];
  out[1] = MAGIC[1];
  out[2] = FORMAT_MAJOR;
  out[3] = FORMAT_MINOR;
  out[4] = ENCODING_MSGPACK | ((packed === undefined ? COMPRESSION_NONE : COMPRESSION_LZ4) << COMPRESSION_SHIFT);
  writeU32(out, 5, body.length);
  if (packed !== undefined) writeU32(out, 9, n);
  out.set(body, header);
  writeU32(out, total - TRAILER_BYTES, crc32(out.subarray(0, total - TRAILER_BYTES)));
  releaseLargeBuffer(n, canonical);
  return out;
}

/**
 * Decodes an envelope produced by `encode`. Binary values inside an uncompressed envelope are
 * Uint8Array views into `input` (no copy), also when `input` is a Buffer. Throws `CodecError` with any code except SERIALIZATION_FAILED;
 * never anything else.
 */
export function decode<T = unknown>(input: Uint8Array, options?: DecodeOptions<T>): T {
  const bytes = plainBytes(input);
  const length = bytes.length;
  const maxEnvelope = options?.maxEnvelopeBytes ?? DEFAULT_LIMITS.maxEnvelopeBytes;
  if (length > maxEnvelope) throw limitExceeded('maxEnvelopeBytes', length, maxEnvelope);
  if (length < 4) throw new CodecError('DESERIALIZATION_FAILED', `truncated envelope: ${length} bytes`);
  if (bytes[0] !== MAGIC[0] || bytes[1] !== MAGIC[1]) {
    throw new CodecError('DESERIALIZATION_FAILED', 'not an agentmesh envelope (bad magic)');
  }
  const major = bytes[2]!;
  if (major !== FORMAT_MAJOR) {
    throw new CodecError(
      'VERSION_INCOMPATIBLE',
      `envelope format ${major}.${bytes[3]!} is incompatible with ${FORMAT_MAJOR}.${FORMAT_MINOR}`,
      { details: { major, minor: bytes[3]!, supportedMajor: FORMAT_MAJOR } },
    );
  }
  if (length < HEADER_BYTES + TRAILER_BYTES) {
    throw new CodecError('DESERIALIZATION_FAILED', `truncated envelope: ${length} bytes`);
  }
  const crcEnd = length - TRAILER_BYTES;
  const expected = readU32(bytes, crcEnd);
  const actual = crc32(bytes.subarray(0, crcEnd));
  if (actual !== expected) {
    throw new CodecError('CHECKSUM_MISMATCH', `envelope checksum mismatch (${length} bytes)`, {
      details: { expected, actual, length },
    });
  }
  const flags = bytes[4]!;
  const encoding = flags & ENCODING_MASK;
  const compression = (flags >>> COMPRESSION_SHIFT) & COMPRESSION_MASK;
  if (encoding !== ENCODING_MSGPACK || compression > COMPRESSION_LZ4) {
    throw new CodecError('DESERIALIZATION_FAILED', `unsupported envelope flags 0x${flags.toString(16)}`, {
      details: { flags },
    });
  }
  const header = compression === COMPRESSION_NONE ? HEADER_BYTES : COMPRESSED_HEADER_BYTES;
  const payloadLength = readU32(bytes, 5);
  if (header + payloadLength + TRAILER_BYTES !== length) {
    throw new CodecError(
      'DESERIALIZATION_FAILED',
      `envelope length ${length} does not match its header (${header} + ${payloadLength} + ${TRAILER_BYTES})`,
      { details: { length, header, payloadLength } },
    );
  }
  const maxPayload = options?.maxDecompressedBytes ?? DEFAULT_LIMITS.maxDecompressedBytes;
  let payload: Uint8Array;
  if (compression === COMPRESSION_NONE) {
    if (payloadLength > maxPayload) throw limitExceeded('maxDecompressedBytes', payloadLength, maxPayload);
    payload = bytes.subarray(header, header + payloadLength);
  } else {
    const declared = readU32(bytes, 9);
    // Checked before allocating or decompressing anything.
    if (declared > maxPayload) throw limitExceeded('maxDecompressedBytes', declared, maxPayload);
    payload = new Uint8Array(declared);
    const produced = lz4DecompressBlock(bytes.subarray(header, header + payloadLength), payload);
    if (produced !== declared) {
      throw new CodecError(
        'COMPRESSION_FAILED',
        `lz4 block decompressed to ${produced} bytes, header says ${declared}`,
        {
          details: { produced, declared },
        },
      );
    }
  }
  checkMsgpack(payload, options);
  const value = decodeChecked(payload);
  const validate = options?.validate;
  if (validate !== undefined) {
    let ok: boolean;
    try {
      ok = validate(value);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new CodecError('SCHEMA_VALIDATION_FAILED', `decoded value failed validation: ${message}`, { cause: err });
    }
    if (!ok) throw new CodecError('SCHEMA_VALIDATION_FAILED', 'decoded value failed validation');
  }
  return value as T;
}
