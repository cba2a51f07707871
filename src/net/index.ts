/** The networking layer: libp2p host, signed pubsub, framed stream sessions, identities and keys. */
export { createHost, DEFAULT_LISTEN } from './host.js';
export type { ConnectionInfo, HostEvents, HostOptions, MeshHost, PeerGater } from './host.js';
export { MeshPubsub, DEFAULT_MAX_MESSAGE_SIZE } from './pubsub.js';
export type {
  PubsubHandler,
  PubsubMessage,
  PubsubOptions,
  PubsubStats,
  PubsubValidator,
  ValidationResult,
} from './pubsub.js';
export {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_OPERATION_TIMEOUT_MS,
  DEFAULT_SESSION_TIMEOUT_MS,
  FrameDecoder,
  Session,
  encodeFrame,
} from './stream.js';
export type {
  HandleOptions,
  OpenSessionOptions,
  OperationOptions,
  ProtocolStats,
  SessionHandler,
  SessionOptions,
} from './stream.js';
export { KNOWN_PEER_TAG } from './peers.js';
export type { MaintainerOptions, PeerSource } from './peers.js';
export { NetError, NetErrorCode, isNetError } from './errors.js';
export { generateIdentity, generatePsk, loadIdentity, peerIdOf, validatePsk } from './keys.js';
export type { PrivateKey } from './keys.js';
