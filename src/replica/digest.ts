import { hash } from 'node:crypto';
import { DIGEST_BYTES } from './entry-hash.js';

/**
 * A record's digest: the first 16 bytes of sha256 over its canonical encoding. Two replicas
 * holding equal record states compute equal digests, which is what Merkle and Bloom sync compare.
 */
export function recordDigest(canonicalBytes: Uint8Array): Uint8Array {
  return new Uint8Array(hash('sha256', canonicalBytes, 'buffer').subarray(0, DIGEST_BYTES));
}
