/**
 * Wire messages of the direct sync protocol (`/agentmesh/sync/1.0.0`). Every frame is one codec
 * envelope holding one message; messages are discriminated by `t` and validated on receipt
 * (never trusted by shape).
 *
 * Conversation (I = initiator, R = responder):
 *   I -> R  hello        R -> I  hello
 *   then any number of request/response pairs driven by I:
 *     nodes  -> nodes-res     Merkle nodes by path (descent into differing branches)
 *     want   -> recs*         full records by key (chunked; the last chunk has more = false)
 *     bloom  -> recs* + bloom-res   records not in I's filter, then R's own filter
 *     gaps   -> deltas        deltas by dot ranges from R's delta log
 *   and one-way pushes from I: recs* (records R lacks), deltas (R's gaps)
 *   I -> R  done         (complete = the exchange covered every difference, so R may adopt I's dots)
 */
import type { DotSetWire } from '../crdt/index.js';
import { MERKLE_FANOUT, type NodeView } from '../replica/index.js';
import { protocolError } from './errors.js';

/**
 * The sync protocol id of one mesh. The mesh name is part of it so that nodes of two meshes that
 * happen to connect (a wrong --join, mDNS on one LAN) never exchange a record: the other mesh's
 * node does not speak this id, and the stream is refused at negotiation.
 */
export const syncProtocol = (mesh: string): string => `/agentmesh/${mesh}/sync/1`;
/** The sync protocol id of the mesh named `default`. */
export const SYNC_PROTOCOL = syncProtocol('default');
export const SYNC_VERSION = 1;

export interface Hello {
  t: 'hello';
  v: number;
  dots: DotSetWire;
  root: Uint8Array;
  count: number;
  depth: number;
}
export interface NodesRequest {
  t: 'nodes';
  paths: string[];
}
/** Inner nodes: [path, 0, 16 concatenated child hashes]; leaves: [path, 1, [key, entryHash][]]. */
export type NodeWire = [string, 0, Uint8Array] | [string, 1, Array<[string, Uint8Array]>];
export interface NodesResponse {
  t: 'nodes-res';
  nodes: NodeWire[];
}
export interface WantRecords {
  t: 'want';
  keys: string[];
}
export interface Records {
  t: 'recs';
  recs: Array<[string, Uint8Array]>;
  more: boolean;
}
export interface BloomRequest {
  t: 'bloom';
  filter: Uint8Array;
  /** Ask R for its own filter after its records (for the reverse direction). */
  reverse: boolean;
}
export interface BloomResponse {
  t: 'bloom-res';
  filter: Uint8Array | null;
}
export interface GapsRequest {
  t: 'gaps';
  ranges: Array<[string, number, number]>;
}
export interface Deltas {
  t: 'deltas';
  deltas: unknown[];
  /** Some requested dots were not in the log (the requester falls back to Merkle). */
  incomplete: boolean;
}
export interface Done {
  t: 'done';
  complete: boolean;
}

export type SyncMessage =
  | Hello
  | NodesRequest
  | NodesResponse
  | WantRecords
  | Records
  | BloomRequest
  | BloomResponse
  | GapsRequest
  | Deltas
  | Done;

/** Caps on what one message may carry, so a peer cannot make us allocate without bound. */
export const SYNC_LIMITS = {
  maxPaths: 70_000,
  maxKeys: 100_000,
  maxRecordsPerFrame: 50_000,
  maxRanges: 10_000,
  maxDeltasPerFrame: 50_000,
  maxKeyLength: 256,
};

const isStr = (x: unknown, max = SYNC_LIMITS.maxKeyLength): x is string => typeof x === 'string' && x.length <= max;
const isBytes = (x: unknown): x is Uint8Array => x instanceof Uint8Array;
const isNat = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

function arrayOf<T>(x: unknown, max: number, item: (v: unknown) => v is T, what: string): T[] {
  if (!Array.isArray(x)) throw protocolError(`${what} must be an array`);
  if (x.length > max) throw protocolError(`${what}: ${x.length} items exceed the limit of ${max}`);
  for (const v of x) if (!item(v)) throw protocolError(`${what}: malformed item`);
  return x as T[];
}

const isRecord = (v: unknown): v is [string, Uint8Array] =>
  Array.isArray(v) && v.length === 2 && isStr(v[0]) && isBytes(v[1]);
const isRange = (v: unknown): v is [string, number, number] =>
  Array.isArray(v) && v.length === 3 && isStr(v[0]) && isNat(v[1]) && isNat(v[2]) && v[1] <= v[2];
const isNodeWire = (v: unknown): v is NodeWire => {
  if (!Array.isArray(v) || v.length !== 3 || !isStr(v[0], 16)) return false;
  if (v[1] === 0) return isBytes(v[2]);
  if (v[1] === 1) return Array.isArray(v[2]) && v[2].every(isRecord);
  return false;
};

/** Validates a decoded message's shape; throws SyncError PROTOCOL_ERROR. */
export function parseMessage(x: unknown): SyncMessage {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw protocolError('message must be a map');
  const m = x as Record<string, unknown>;
  switch (m.t) {
    case 'hello':
      if (!isNat(m.v) || !Array.isArray(m.dots) || !isBytes(m.root) || !isNat(m.count) || !isNat(m.depth)) {
        throw protocolError('malformed hello');
      }
      return m as unknown as Hello;
    case 'nodes':
      arrayOf(m.paths, SYNC_LIMITS.maxPaths, (p): p is string => isStr(p, 16), 'paths');
      return m as unknown as NodesRequest;
    case 'nodes-res':
      arrayOf(m.nodes, SYNC_LIMITS.maxPaths, isNodeWire, 'nodes');
      return m as unknown as NodesResponse;
    case 'want':
      arrayOf(m.keys, SYNC_LIMITS.maxKeys, (k): k is string => isStr(k), 'keys');
      return m as unknown as WantRecords;
    case 'recs':
      arrayOf(m.recs, SYNC_LIMITS.maxRecordsPerFrame, isRecord, 'recs');
      if (typeof m.more !== 'boolean') throw protocolError('malformed recs');
      return m as unknown as Records;
    case 'bloom':
      if (!isBytes(m.filter) || typeof m.reverse !== 'boolean') throw protocolError('malformed bloom');
      return m as unknown as BloomRequest;
    case 'bloom-res':
      if (m.filter !== null && !isBytes(m.filter)) throw protocolError('malformed bloom-res');
      return m as unknown as BloomResponse;
    case 'gaps':
      arrayOf(m.ranges, SYNC_LIMITS.maxRanges, isRange, 'ranges');
      return m as unknown as GapsRequest;
    case 'deltas':
      arrayOf(m.deltas, SYNC_LIMITS.maxDeltasPerFrame, (d): d is unknown => Array.isArray(d), 'deltas');
      if (typeof m.incomplete !== 'boolean') throw protocolError('malformed deltas');
      return m as unknown as Deltas;
    case 'done':
      if (typeof m.complete !== 'boolean') throw protocolError('malformed done');
      return m as unknown as Done;
    default:
      throw protocolError(`unknown message type ${String(m.t)}`);
  }
}

export function expect<T extends SyncMessage['t']>(m: SyncMessage, t: T): Extract<SyncMessage, { t: T }> {
  if (m.t !== t) throw protocolError(`expected ${t}, got ${m.t}`);
  return m as Extract<SyncMessage, { t: T }>;
}

export function nodeToWire(n: NodeView): NodeWire {
  if (n.kind === 'inner') {
    const out = new Uint8Array(MERKLE_FANOUT * 16);
    n.children.forEach((h, i) => out.set(h, i * 16));
    return [n.path, 0, out];
  }
  return [n.path, 1, n.entries.map(([k, h]) => [k, h])];
}

export function nodeFromWire(w: NodeWire): NodeView {
  if (w[1] === 0) {
    const bytes = w[2];
    if (bytes.length !== MERKLE_FANOUT * 16) throw protocolError('inner node must hold 16 hashes');
    const children: Uint8Array[] = [];
    for (let i = 0; i < MERKLE_FANOUT; i++) children.push(bytes.subarray(i * 16, i * 16 + 16));
    return { path: w[0], kind: 'inner', children };
  }
  return { path: w[0], kind: 'leaf', entries: w[2] };
}
