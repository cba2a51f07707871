/**
 * Raw lz4 blocks for the envelope: lz4js's block compressor, and a bounds-checked block
 * decompressor of our own.
 *
 * Why the block API, not lz4js's frame API (`compress`/`decompress`): the frame API adds a
 * 15-byte frame header/end mark that the envelope already covers (lengths, checksum), clears
 * lz4js's 64K-entry hash table with a JS loop on every call, and `decompress` without a size hint
 * allocates a 4 MiB block buffer per message (measured ~1.8 ms per 1 KiB message; see
 * bench/codec.ts).
 *
 * Why our own decompressor: lz4js's `decompressBlock` does no bounds checking. On hostile input
 * it writes past the end of the output (ignored by typed arrays), reads past the input
 * (`undefined` coerced to 0) and, with a block of 0xff length bytes, loops ~255 times per input
 * byte. `lz4DecompressBlock` below rejects every out-of-range literal run, match offset and match
 * length before touching memory, so its work is O(input + declared output) and it never writes
 * outside the buffer sized from the (already limit-checked) declared length.
 */
import { compressBlock } from 'lz4js';
import { CodecError } from './errors.js';

const HASH_ENTRIES = 1 << 16;
/** Smallest input lz4js tries to compress (its `minLength`). */
const MIN_BLOCK = 13;
const WINDOW = 1 << 20;

const hashTable = new Uint32Array(HASH_ENTRIES);
/**
 * lz4js stores `position + 1` in the hash table and only accepts a candidate `m` when
 * `0 < position - m < 65536` and the four bytes at `m` match. A stale entry left by an earlier
 * call is therefore harmless when it points at or after the end of the current input, but an
 * entry equal to the current position would produce a zero offset. Instead of clearing the
 * 256 KiB table on every call (~6.5 µs, more than compressing a 1 KiB message), each input is
 * copied into `window` just below the previous one, so every stale entry points past the current
 * input; the table is cleared only when the window is used up.
 */
const windowBuf = new Uint8Array(WINDOW);
let windowBase = 0; // 0: the table must be cleared before the next use
const out = new Uint8Array(lz4CompressBound(WINDOW));

export function lz4CompressBound(n: number): number {
  // lz4js's compressBound ((n + n/255 + 16) | 0) truncates to int32; keep it exact for large n.
  return n + Math.ceil(n / 255) + 16;
}

/**
 * Compresses `src` as one raw lz4 block. Returns the compressed bytes as a view of a shared
 * buffer (valid until the next call), or `undefined` when lz4js found nothing to compress.
 * Callers still compare the result's length with the input's.
 */
export function lz4CompressBlock(src: Uint8Array): Uint8Array | undefined {
  const n = src.length;
  if (n < MIN_BLOCK) return undefined;
  if (n > WINDOW) {
    // Rare and big: compress in place with a cleared table and one-off output buffer, so that
    // no large buffer stays alive after the call.
    hashTable.fill(0);
    windowBase = 0;
    const dst = new Uint8Array(lz4CompressBound(n));
    const len = compressBlock(src, dst, 0, n, hashTable);
    return len === 0 ? undefined : dst.subarray(0, len);
  }
  if (n > windowBase) {
    hashTable.fill(0);
    windowBase = WINDOW;
  }
  windowBase -= n;
  windowBuf.set(src, windowBase);
  const len = compressBlock(windowBuf, out, windowBase, n, hashTable);
  return len === 0 ? undefined : out.subarray(0, len);
}

function corrupt(reason: string): CodecError {
  return new CodecError('COMPRESSION_FAILED', `lz4 block is corrupt: ${reason}`);
}

/** Below this length a byte loop beats the call overhead of `set`/`copyWithin`. */
const COPY_LOOP_MAX = 32;

/**
 * Decompresses the raw lz4 block `src` into `dst` and returns the number of bytes written.
 * Throws `COMPRESSION_FAILED` if the block is malformed or would write past `dst`; the caller
 * checks the returned length against the length it expected.
 */
export function lz4DecompressBlock(src: Uint8Array, dst: Uint8Array): number {
  const sEnd = src.length;
  const dEnd = dst.length;
  let s = 0;
  let d = 0;
  while (s < sEnd) {
    const token = src[s++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (s >= sEnd) throw corrupt('literal length runs past the input');
        b = src[s++]!;
        lit += b;
      } while (b === 255);
    }
    if (lit > sEnd - s) throw corrupt('literals run past the input');
    if (lit > dEnd - d) throw corrupt('literals overflow the declared length');
    if (lit <= COPY_LOOP_MAX) {
      for (const stop = s + lit; s < stop;) dst[d++] = src[s++]!;
    } else {
      dst.set(src.subarray(s, s + lit), d);
      s += lit;
      d += lit;
    }
    if (s === sEnd) break; // the last sequence carries literals only
    if (sEnd - s < 2) throw corrupt('truncated match offset');
    const offset = src[s]! | (src[s + 1]! << 8);
    s += 2;
    if (offset === 0 || offset > d) throw corrupt(`match offset ${offset} out of range`);
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (s >= sEnd) throw corrupt('match length runs past the input');
        b = src[s++]!;
        len += b;
      } while (b === 255);
    }
    len += 4;
    if (len > dEnd - d) throw corrupt('match overflows the declared length');
    if (offset >= len && len > COPY_LOOP_MAX) {
      dst.copyWithin(d, d - offset, d - offset + len);
      d += len;
    } else {
      // Overlapping matches (offset < len) repeat the last `offset` bytes: copy byte by byte.
      for (let m = d - offset, stop = d + len; d < stop;) dst[d++] = dst[m++]!;
    }
  }
  return d;
}
