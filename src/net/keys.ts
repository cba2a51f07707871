import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { generateKey } from '@libp2p/pnet';
import type { PrivateKey } from '@libp2p/interface';
import { NetError } from './errors.js';

export type { PrivateKey };

/**
 * A new Ed25519 node identity, as protobuf-marshalled private key bytes (the libp2p key format). The
 * caller persists these bytes (mode 0600) and passes them to {@link loadIdentity} on every start so the
 * node keeps its peer id.
 */
export async function generateIdentity(): Promise<Uint8Array> {
  const key = await generateKeyPair('Ed25519');
  return privateKeyToProtobuf(key);
}

/** Decode identity bytes produced by {@link generateIdentity}. Throws NetError INVALID_IDENTITY. */
export function loadIdentity(bytes: Uint8Array): PrivateKey {
  try {
    return privateKeyFromProtobuf(bytes);
  } catch (err) {
    throw new NetError('INVALID_IDENTITY', 'identity bytes are not a protobuf-encoded libp2p private key', {
      cause: err,
    });
  }
}

/** The peer id (base58btc string) that identity bytes or a private key stand for. */
export function peerIdOf(identity: Uint8Array | PrivateKey): string {
  const key = identity instanceof Uint8Array ? loadIdentity(identity) : identity;
  return peerIdFromPrivateKey(key).toString();
}

const PSK_HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n';
const PSK_LENGTH = PSK_HEADER.length + 64;
const PSK_PATTERN = /^\/key\/swarm\/psk\/1\.0\.0\/\r?\n\/base16\/\r?\n[0-9a-f]{64}\s*$/;

/**
 * A new pre-shared key for a private mesh, in the libp2p pnet key-file format
 * (`/key/swarm/psk/1.0.0/\n/base16/\n<64 hex chars>`); write it to a file as is.
 */
export function generatePsk(): Uint8Array {
  const out = new Uint8Array(PSK_LENGTH);
  generateKey(out);
  return out;
}

/** Check that bytes are a V1 pnet key file (what @libp2p/pnet accepts). Throws NetError INVALID_PSK. */
export function validatePsk(psk: Uint8Array): Uint8Array {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(psk);
  if (!PSK_PATTERN.test(text)) {
    throw new NetError('INVALID_PSK', 'pre-shared key is not a libp2p pnet key file (/key/swarm/psk/1.0.0/ base16)');
  }
  return psk;
}
