import { DIGEST_BYTES, sha256Into } from './entry-hash.js';

/**
 * A record's digest: the first 16 bytes of sha256 over its canonical encoding. Two replicas
 * holding equal record states compute equal digests, which is what Merkle and Bloom sync compare.
 */
export function recordDigest(canonicalBytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(DIGEST_BYTES);
  sha256Into(canonicalBytes, out, 0);
  return out;
}
