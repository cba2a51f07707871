// Minimal types for the parts of lz4js (0.2.x, plain CommonJS, no bundled types) the codec uses.
declare module 'lz4js' {
  /** Upper bound of the compressed size of `n` input bytes. */
  export function compressBound(n: number): number;
  /**
   * Compresses `src[sIndex, sIndex + sLength)` as one raw lz4 block into `dst` (which must hold
   * `compressBound(sLength)` bytes) and returns the compressed length; 0 when nothing matched and
   * `sIndex` is 0. `hashTable` must hold 65536 entries.
   */
  export function compressBlock(
    src: Uint8Array,
    dst: Uint8Array,
    sIndex: number,
    sLength: number,
    hashTable: Uint32Array,
  ): number;
  /** Decompresses one raw block; performs no bounds checks (never use on untrusted input). */
  export function decompressBlock(
    src: Uint8Array,
    dst: Uint8Array,
    sIndex: number,
    sLength: number,
    dIndex: number,
  ): number;
  /** Frame API (magic, descriptor, 4 MiB blocks). */
  export function compress(src: Uint8Array, maxSize?: number): Uint8Array;
  export function decompress(src: Uint8Array, maxSize?: number): Uint8Array;
}
