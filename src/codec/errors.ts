import { MeshError } from '../util/errors.js';

/** Stable codes of every error the codec throws; they cross process and HTTP boundaries as strings. */
export const CodecErrorCode = {
  /** The value cannot be represented (function, symbol, Map/Set, too deep, bigint ext too large...). */
  SERIALIZATION_FAILED: 'SERIALIZATION_FAILED',
  /** The bytes are not a well-formed envelope or msgpack document (bad magic, truncated, bad lengths, bad types). */
  DESERIALIZATION_FAILED: 'DESERIALIZATION_FAILED',
  /** The bytes decoded, but the caller's `validate` rejected (or threw on) the value. */
  SCHEMA_VALIDATION_FAILED: 'SCHEMA_VALIDATION_FAILED',
  /** The lz4 block is malformed or does not decompress to exactly the declared length. */
  COMPRESSION_FAILED: 'COMPRESSION_FAILED',
  /** The CRC32 trailer does not match the envelope bytes. */
  CHECKSUM_MISMATCH: 'CHECKSUM_MISMATCH',
  /** The envelope has a different major format version. */
  VERSION_INCOMPATIBLE: 'VERSION_INCOMPATIBLE',
  /** A configured limit (envelope size, decompressed size, str/bin/array/map/ext length, depth) was exceeded. */
  SIZE_LIMIT_EXCEEDED: 'SIZE_LIMIT_EXCEEDED',
} as const;

export type CodecErrorCode = (typeof CodecErrorCode)[keyof typeof CodecErrorCode];

/** The only error type that `encode`/`decode` and the msgpack helpers throw. */
export class CodecError extends MeshError<CodecErrorCode> {}

export function isCodecError(err: unknown): err is CodecError {
  return err instanceof CodecError;
}
