/**
 * msgpack without the envelope: the value encoding inside every envelope, and the canonical
 * encoding other modules hash for digests (`encodeMsgpack`).
 *
 * Value model (what round-trips exactly):
 * - null, booleans, strings, numbers (integers as the smallest msgpack int, everything else as
 *   float64; -0 encodes as the integer 0), arrays, plain objects with string keys, Uint8Array
 *   (and other ArrayBufferViews, decoded as Uint8Array), valid Dates (msgpack timestamp extension,
 *   millisecond precision; an invalid Date is rejected).
 * - bigint: an agentmesh extension (ext type 1: a sign byte, 0 or 1, then the big-endian
 *   magnitude without leading zero bytes; zero is the single byte 0), so any bigint round-trips
 *   as a bigint and numbers stay numbers. We do not use @msgpack/msgpack's `useBigInt64`: with it
 *   the decoder returns every int64/uint64 as a bigint and the encoder writes safe integers
 *   above 2^32 (timestamps) as float64, and bigints outside 64 bits would be silently wrapped.
 * - `undefined` (and array holes) encode as nil and decode as null. Map and Set are rejected
 *   (the msgpack encoder would silently write them as `{}`), and so are objects with an own
 *   `__proto__` key (the Decoder refuses them); other class instances encode their own
 *   enumerable properties, like JSON.
 *
 * Determinism: the encoders are module-level instances reused for every call. The fast encoder
 * writes object keys in insertion order, so the same object built the same way gives the same
 * bytes. The canonical encoder (`encodeMsgpack`, `encode(v, { canonical: true })`) sorts keys
 * (`Object.keys(o).sort()`, UTF-16 code-unit order), so equal values give equal bytes whatever
 * their construction order; that costs a key array and a sort per object (see bench/codec.ts).
 * Not canonicalized: NaN payload bits (a NaN made by reinterpreting typed-array bytes keeps its
 * bits; arithmetic NaN is always 0x7ff8000000000000).
 *
 * Decoding limits: @msgpack/msgpack's Decoder is iterative (an explicit state stack, no
 * recursion), so deep nesting cannot overflow the JS stack while decoding; it would only hand a
 * 100k-deep value to code that recurses over it. It has no depth limit, and it allocates
 * `new Array(n)` for a declared array length before any element arrives. So every buffer is
 * first walked by `checkMsgpack`, a single non-allocating pass over the bytes that enforces the
 * nesting depth, the str/bin/array/map/ext length limits and a total value count, checks every
 * declared length against the bytes actually present and rejects trailing bytes; only then does
 * the Decoder run. The pass touches headers only (string and binary bodies are skipped).
 */
import { Buffer } from 'node:buffer';
import { Decoder, Encoder, ExtensionCodec, decodeTimestampExtension, encodeTimestampExtension } from '@msgpack/msgpack';
import { CodecError } from './errors.js';

/** Limits applied when decoding. All lengths are counts of bytes (str, bin, ext) or entries. */
export interface CodecLimits {
  /** Largest envelope accepted (before decompression), in bytes. */
  maxEnvelopeBytes: number;
  /** Largest msgpack payload accepted after decompression (or uncompressed), in bytes. */
  maxDecompressedBytes: number;
  /** Longest string, in UTF-8 bytes. */
  maxStrLength: number;
  /** Longest binary value, in bytes. */
  maxBinLength: number;
  /** Most elements in one array. */
  maxArrayLength: number;
  /** Most entries in one map. */
  maxMapLength: number;
  /** Longest extension value (bigint, timestamp, ...), in bytes. */
  maxExtLength: number;
  /** Deepest nesting of arrays and maps (the top-level container is depth 1). */
  maxDepth: number;
  /** Most values in one document, counting every scalar, container, map key and value. */
  maxValues: number;
}

/** Encoder nesting limit; the decoder's default `maxDepth` is the same, so everything we encode decodes. */
export const MAX_ENCODE_DEPTH = 100;

export const DEFAULT_LIMITS: Readonly<CodecLimits> = Object.freeze({
  maxEnvelopeBytes: 16 * 1024 * 1024,
  maxDecompressedBytes: 64 * 1024 * 1024,
  maxStrLength: 16 * 1024 * 1024,
  maxBinLength: 64 * 1024 * 1024,
  maxArrayLength: 1_000_000,
  maxMapLength: 1_000_000,
  maxExtLength: 1024 * 1024,
  maxDepth: MAX_ENCODE_DEPTH,
  maxValues: 4_000_000,
});

/** msgpack extension type of agentmesh bigints. */
export const BIGINT_EXT_TYPE = 1;

function encodeBigInt(value: bigint): Uint8Array {
  if (value === 0n) return Uint8Array.of(0);
  const negative = value < 0n;
  let hex = (negative ? -value : value).toString(16);
  if ((hex.length & 1) === 1) hex = '0' + hex;
  const out = new Uint8Array(1 + hex.length / 2);
  out[0] = negative ? 1 : 0;
  out.set(Buffer.from(hex, 'hex'), 1);
  return out;
}

function decodeBigInt(data: Uint8Array): bigint {
  const sign = data[0];
  // Canonical form only, so that every bigint has exactly one encoding.
  if (sign === undefined || sign > 1 || (data.length === 1 && sign === 1) || (data.length > 1 && data[1] === 0)) {
    throw new CodecError('DESERIALIZATION_FAILED', 'malformed bigint extension');
  }
  if (data.length === 1) return 0n;
  const magnitude = BigInt('0x' + Buffer.from(data.buffer, data.byteOffset + 1, data.length - 1).toString('hex'));
  return sign === 1 ? -magnitude : magnitude;
}

const extensionCodec = new ExtensionCodec();
// Replaces the built-in timestamp extension (-1) to refuse invalid Dates, which it would
// otherwise silently write as the epoch.
extensionCodec.register({
  type: -1,
  encode: (input: unknown): Uint8Array | null => {
    if (!(input instanceof Date)) return null;
    if (Number.isNaN(input.getTime())) throw new CodecError('SERIALIZATION_FAILED', 'cannot encode an invalid Date');
    return encodeTimestampExtension(input);
  },
  decode: decodeTimestampExtension,
});
extensionCodec.register({
  type: BIGINT_EXT_TYPE,
  encode: (input: unknown): Uint8Array | null => {
    if (typeof input === 'bigint') return encodeBigInt(input);
    if (input instanceof Map || input instanceof Set) {
      throw new CodecError('SERIALIZATION_FAILED', `cannot encode a ${input.constructor.name}: use an array or object`);
    }
    // The Decoder refuses a `__proto__` key (prototype pollution guard): refuse to write one.
    if (Object.hasOwn(input as object, '__proto__')) {
      throw new CodecError('SERIALIZATION_FAILED', 'cannot encode an object with an own "__proto__" key');
    }
    return null;
  },
  decode: decodeBigInt,
});

/** Payloads above this size get a fresh encoder afterwards, so one huge message does not pin a huge buffer. */
const RETAINED_BUFFER_MAX = 1024 * 1024;

function newEncoder(sortKeys: boolean): Encoder {
  return new Encoder({ extensionCodec, maxDepth: MAX_ENCODE_DEPTH, sortKeys, initialBufferSize: 4096 });
}

let fastEncoder = newEncoder(false);
let canonicalEncoder = newEncoder(true);
const decoder = new Decoder({ extensionCodec });

function serializationFailed(err: unknown): CodecError {
  if (err instanceof CodecError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CodecError('SERIALIZATION_FAILED', `cannot encode value: ${message}`, { cause: err });
}

/**
 * Encodes `value` into the shared buffer of a module-level encoder and returns a view of it,
 * valid until the next call; the envelope copies it straight into its output.
 * @internal
 */
export function encodeMsgpackShared(value: unknown, canonical: boolean): Uint8Array {
  try {
    return (canonical ? canonicalEncoder : fastEncoder).encodeSharedRef(value);
  } catch (err) {
    throw serializationFailed(err);
  }
}

/** Replaces an encoder whose buffer grew past `RETAINED_BUFFER_MAX` (call after copying out). @internal */
export function releaseLargeBuffer(length: number, canonical: boolean): void {
  if (length <= RETAINED_BUFFER_MAX) return;
  if (canonical) canonicalEncoder = newEncoder(true);
  else fastEncoder = newEncoder(false);
}

export interface MsgpackEncodeOptions {
  /** Sort object keys so that equal values always give equal bytes (default true). */
  canonical?: boolean;
}

/**
 * Plain msgpack (no envelope). Canonical by default: the encoding other modules hash for digests.
 * Returns a fresh Uint8Array. Throws `CodecError` SERIALIZATION_FAILED.
 */
export function encodeMsgpack(value: unknown, options?: MsgpackEncodeOptions): Uint8Array {
  const canonical = options?.canonical ?? true;
  const shared = encodeMsgpackShared(value, canonical);
  const out = shared.slice();
  releaseLargeBuffer(out.length, canonical);
  return out;
}

/**
 * Decodes one plain msgpack document after `checkMsgpack`. Binary values are Uint8Array views
 * into `input` (no copy): copy them if you keep them and reuse the buffer. Throws `CodecError`
 * DESERIALIZATION_FAILED, SIZE_LIMIT_EXCEEDED.
 */
export function decodeMsgpack<T = unknown>(input: Uint8Array, limits?: Partial<CodecLimits>): T {
  const bytes = plainBytes(input);
  const max = limits?.maxDecompressedBytes ?? DEFAULT_LIMITS.maxDecompressedBytes;
  if (bytes.length > max) {
    throw limitExceeded('maxDecompressedBytes', bytes.length, max);
  }
  checkMsgpack(bytes, limits);
  return decodeChecked(bytes) as T;
}

/**
 * A plain Uint8Array over the same memory, so that binary values decode as Uint8Array views even
 * when the input is a Buffer (whose `slice` has different semantics). @internal
 */
export function plainBytes(input: Uint8Array): Uint8Array {
  return input.constructor === Uint8Array ? input : new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
}

/** Runs the Decoder over bytes that `checkMsgpack` accepted. @internal */
export function decodeChecked(bytes: Uint8Array): unknown {
  try {
    return decoder.decode(bytes);
  } catch (err) {
    if (err instanceof CodecError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new CodecError('DESERIALIZATION_FAILED', `malformed msgpack: ${message}`, { cause: err });
  }
}

function limitExceeded(limit: keyof CodecLimits, value: number, max: number): CodecError {
  return new CodecError('SIZE_LIMIT_EXCEEDED', `${limit} exceeded: ${value} > ${max}`, {
    details: { limit, value, max },
  });
}

function malformed(reason: string, pos: number): CodecError {
  return new CodecError('DESERIALIZATION_FAILED', `malformed msgpack at byte ${pos}: ${reason}`, {
    details: { pos },
  });
}

/** Items still expected by each open container, indexed by depth - 1; reused across calls. */
let pending = new Float64Array(MAX_ENCODE_DEPTH + 1);

/**
 * Walks one msgpack document in `bytes` without building it, enforcing `limits` (defaults:
 * `DEFAULT_LIMITS`). Throws SIZE_LIMIT_EXCEEDED for a limit and DESERIALIZATION_FAILED for
 * truncated data, a declared length larger than the bytes left, the reserved byte 0xc1, or
 * trailing bytes.
 */
export function checkMsgpack(bytes: Uint8Array, limits?: Partial<CodecLimits>): void {
  const maxStr = limits?.maxStrLength ?? DEFAULT_LIMITS.maxStrLength;
  const maxBin = limits?.maxBinLength ?? DEFAULT_LIMITS.maxBinLength;
  const maxArray = limits?.maxArrayLength ?? DEFAULT_LIMITS.maxArrayLength;
  const maxMap = limits?.maxMapLength ?? DEFAULT_LIMITS.maxMapLength;
  const maxExt = limits?.maxExtLength ?? DEFAULT_LIMITS.maxExtLength;
  const maxDepth = limits?.maxDepth ?? DEFAULT_LIMITS.maxDepth;
  const maxValues = limits?.maxValues ?? DEFAULT_LIMITS.maxValues;
  const end = bytes.length;
  // Depth never exceeds maxDepth nor the byte count; keep only small stacks for reuse.
  const capacity = Math.min(maxDepth, end);
  let stack = pending;
  if (capacity > stack.length) {
    stack = new Float64Array(capacity);
    if (capacity <= 4096) pending = stack;
  }
  let pos = 0;
  let depth = 0;
  let values = 0;
  for (;;) {
    if (pos >= end) throw malformed('truncated', pos);
    if (++values > maxValues) throw limitExceeded('maxValues', values, maxValues);
    const head = bytes[pos++]!;
    // Container headers set `items` (array elements, or 2 x map entries); -1 means scalar.
    let items = -1;
    // Bytes to skip after the head byte for scalars, strings, binaries and extensions.
    let skip = 0;
    if (head < 0x80 || head >= 0xe0) {
      // positive / negative fixint
    } else if (head < 0x90) {
      const n = head & 0x0f;
      if (n > maxMap) throw limitExceeded('maxMapLength', n, maxMap);
      items = n * 2;
    } else if (head < 0xa0) {
      const n = head & 0x0f;
      if (n > maxArray) throw limitExceeded('maxArrayLength', n, maxArray);
      items = n;
    } else if (head < 0xc0) {
      skip = head & 0x1f;
      if (skip > maxStr) throw limitExceeded('maxStrLength', skip, maxStr);
    } else {
      let n: number;
      switch (head) {
        case 0xc0: // nil
        case 0xc2: // false
        case 0xc3: // true
          break;
        case 0xc1:
          throw malformed('reserved type byte 0xc1', pos - 1);
        case 0xcc: // uint 8
        case 0xd0: // int 8
          skip = 1;
          break;
        case 0xcd: // uint 16
        case 0xd1: // int 16
          skip = 2;
          break;
        case 0xca: // float 32
        case 0xce: // uint 32
        case 0xd2: // int 32
          skip = 4;
          break;
        case 0xcb: // float 64
        case 0xcf: // uint 64
        case 0xd3: // int 64
          skip = 8;
          break;
        case 0xd9: // str 8
        case 0xda: // str 16
        case 0xdb: // str 32
          n = readLength(bytes, pos, head - 0xd9);
          pos += 1 << (head - 0xd9);
          if (n > maxStr) throw limitExceeded('maxStrLength', n, maxStr);
          skip = n;
          break;
        case 0xc4: // bin 8
        case 0xc5: // bin 16
        case 0xc6: // bin 32
          n = readLength(bytes, pos, head - 0xc4);
          pos += 1 << (head - 0xc4);
          if (n > maxBin) throw limitExceeded('maxBinLength', n, maxBin);
          skip = n;
          break;
        case 0xc7: // ext 8
        case 0xc8: // ext 16
        case 0xc9: // ext 32
          n = readLength(bytes, pos, head - 0xc7);
          pos += 1 << (head - 0xc7);
          if (n > maxExt) throw limitExceeded('maxExtLength', n, maxExt);
          skip = n + 1; // type byte + data
          break;
        case 0xd4: // fixext 1, 2, 4, 8, 16
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
          n = 1 << (head - 0xd4);
          if (n > maxExt) throw limitExceeded('maxExtLength', n, maxExt);
          skip = n + 1;
          break;
        case 0xdc: // array 16
        case 0xdd: // array 32
          n = readLength(bytes, pos, head - 0xdc + 1);
          pos += 2 << (head - 0xdc);
          if (n > maxArray) throw limitExceeded('maxArrayLength', n, maxArray);
          items = n;
          break;
        case 0xde: // map 16
        case 0xdf: // map 32
          n = readLength(bytes, pos, head - 0xde + 1);
          pos += 2 << (head - 0xde);
          if (n > maxMap) throw limitExceeded('maxMapLength', n, maxMap);
          items = n * 2;
          break;
      }
    }
    if (items >= 0) {
      if (depth >= maxDepth) throw limitExceeded('maxDepth', depth + 1, maxDepth);
      if (items > 0) {
        // Every item takes at least one byte: a declared length beyond the data is malformed,
        // and rejecting it here keeps the Decoder from allocating `new Array(n)` for it.
        if (items > end - pos) throw malformed(`container declares ${items} items, ${end - pos} bytes left`, pos);
        stack[depth++] = items;
        continue;
      }
    } else if (skip > 0) {
      if (skip > end - pos) throw malformed(`value needs ${skip} bytes, ${end - pos} left`, pos);
      pos += skip;
    }
    // A value is complete: count it against its container(s).
    while (depth > 0 && --stack[depth - 1]! === 0) depth--;
    if (depth === 0) break;
  }
  if (pos !== end) throw malformed(`${end - pos} trailing bytes`, pos);
}

/** Reads the 1 << `width` byte big-endian length at `pos` (width 0, 1, 2). */
function readLength(bytes: Uint8Array, pos: number, width: number): number {
  if (pos + (1 << width) > bytes.length) throw malformed('truncated length', pos);
  switch (width) {
    case 0:
      return bytes[pos]!;
    case 1:
      return (bytes[pos]! << 8) | bytes[pos + 1]!;
    default:
      return ((bytes[pos]! << 24) | (bytes[pos + 1]! << 16) | (bytes[pos + 2]! << 8) | bytes[pos + 3]!) >>> 0;
  }
}
