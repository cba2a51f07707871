import { MeshError } from '../util/errors.js';

/** Stable codes of the errors the agent registry throws; they cross the HTTP boundary as strings. */
export const RegistryErrorCode = {
  /** The agent id or input is malformed (pattern, types, lengths, counts, ranges). */
  INVALID_AGENT: 'INVALID_AGENT',
  /** A JSON-valued input (meta) is larger than its byte limit. */
  TOO_LARGE: 'TOO_LARGE',
  /** No agent with that id is known to this node. */
  NOT_FOUND: 'NOT_FOUND',
  /** The agent is hosted by another node; only its owner may write its owner fields. */
  NOT_OWNER: 'NOT_OWNER',
  /** The agent was removed; re-register it (upsert) before sending heartbeats. */
  AGENT_REMOVED: 'AGENT_REMOVED',
  /** A peer that is this node, connected, alive or suspect cannot be forgotten. */
  PEER_ALIVE: 'PEER_ALIVE',
} as const;
export type RegistryErrorCode = (typeof RegistryErrorCode)[keyof typeof RegistryErrorCode];

/** The HTTP status each code maps to (the API layer uses this table). */
export const REGISTRY_HTTP_STATUS: Readonly<Record<RegistryErrorCode, number>> = {
  INVALID_AGENT: 400,
  TOO_LARGE: 413,
  NOT_FOUND: 404,
  NOT_OWNER: 409,
  AGENT_REMOVED: 409,
  PEER_ALIVE: 409,
};

export class RegistryError extends MeshError<RegistryErrorCode> {
  /** The HTTP status this error maps to. */
  get status(): number {
    return REGISTRY_HTTP_STATUS[this.code];
  }
}

export function isRegistryError(err: unknown): err is RegistryError {
  return err instanceof RegistryError;
}
