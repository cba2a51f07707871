/**
 * codec: the envelope for everything that crosses a process boundary (msgpack, lz4 above a
 * threshold, CRC32, format version, decoding limits, typed errors), and the canonical msgpack
 * encoding used for digests. See envelope.ts for the byte layout and msgpack.ts for the value model.
 */
export { CodecError, CodecErrorCode, isCodecError } from './errors.js';
export {
  COMPRESSED_HEADER_BYTES,
  COMPRESSION_LZ4,
  COMPRESSION_NONE,
  DEFAULT_COMPRESS_THRESHOLD,
  ENCODING_MSGPACK,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  HEADER_BYTES,
  MAGIC,
  TRAILER_BYTES,
  decode,
  encode,
  type DecodeOptions,
  type EncodeOptions,
} from './envelope.js';
export {
  BIGINT_EXT_TYPE,
  DEFAULT_LIMITS,
  MAX_ENCODE_DEPTH,
  checkMsgpack,
  decodeMsgpack,
  encodeMsgpack,
  type CodecLimits,
  type MsgpackEncodeOptions,
} from './msgpack.js';
