/**
 * Pubsub over gossipsub. This is the ONLY module that imports the gossipsub implementation: swapping
 * `@libp2p/gossipsub` for `@chainsafe/libp2p-gossipsub` (once it ships a libp2p 3 release) is a change to
 * the import below.
 */
import { gossipsub, StrictSign, TopicValidatorResult } from '@libp2p/gossipsub';
import type { GossipSub, GossipsubMessage, GossipsubOpts, Message, SignedMessage } from '@libp2p/gossipsub';
import type { RPC } from '@libp2p/gossipsub/message';
import type { Logger } from '../util/log.js';
import { NetError } from './errors.js';

/** The libp2p service object behind {@link MeshPubsub} (opaque outside this module). */
export type PubsubService = GossipSub;

/** A received, signature-verified pubsub message. */
export interface PubsubMessage {
  topic: string;
  /** Peer id of the author. Gossipsub runs with StrictSign, so this is the verified signer. */
  from: string;
  data: Uint8Array;
  /** The author's sequence number (unique per author, increasing). */
  seqno: bigint;
  /** The peer that relayed the message to us (equals `from` when received first-hand). */
  relayedBy: string;
}

export type PubsubHandler = (message: PubsubMessage) => void;

export type ValidationResult = 'accept' | 'reject' | 'ignore';

/**
 * Runs before a message is delivered AND before it is forwarded to other peers: 'reject' drops it and
 * penalises the relaying peer's gossip score, 'ignore' drops it silently. Must be fast (< 100 ms).
 */
export type PubsubValidator = (message: PubsubMessage) => ValidationResult | Promise<ValidationResult>;

export interface PubsubOptions {
  /** Largest accepted message payload in bytes (publish and receive). Default 1 MiB. */
  maxMessageSize?: number;
  /** Gossipsub heartbeat (mesh maintenance, IHAVE gossip) in ms. Default 250. */
  heartbeatIntervalMs?: number;
  /** Mesh degree: target / low / high watermark. Defaults 3 / 2 / 4 (see PUBSUB_DEFAULTS). */
  D?: number;
  Dlo?: number;
  Dhi?: number;
  /** Send own messages to every subscribed peer, not only mesh peers. Default true. */
  floodPublish?: boolean;
}

export interface PubsubStats {
  published: number;
  publishedBytes: number;
  received: number;
  receivedBytes: number;
  rejectedTooLarge: number;
  rejectedByValidator: number;
  ignoredByValidator: number;
}

export const DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024;

export const PUBSUB_DEFAULTS = {
  maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
  heartbeatIntervalMs: 250,
  // Flood publish already sends each message to every subscribed peer, so in a mesh where nodes
  // connect to each other (up to 16 peers each) mesh forwarding only adds duplicate copies, each
  // verified and dropped at a CPU cost. A degree of 3 (instead of 4/3/8) measured N=10 p99
  // 126 -> 52 ms and N=5 p50 13.2 -> 9.3 ms (npm run bench -- mesh) while keeping spare paths
  // for larger meshes.
  D: 3,
  Dlo: 2,
  Dhi: 4,
  floodPublish: true,
} satisfies Required<PubsubOptions>;

/** The libp2p service factory for `services.pubsub` in the libp2p config. */
export function pubsubService(options: PubsubOptions = {}): ReturnType<typeof gossipsub> {
  const o = { ...PUBSUB_DEFAULTS, ...stripUndefined(options) };
  const heartbeat = o.heartbeatIntervalMs;
  const init: Partial<GossipsubOpts> = {
    // Every message carries from + seqno + signature; receivers verify the signature and drop
    // unsigned or badly signed messages before anything reaches us.
    globalSignaturePolicy: StrictSign,
    emitSelf: false,
    // A node alone in the mesh (or partitioned) still publishes; anti-entropy catches peers up later.
    allowPublishToZeroTopicPeers: true,
    floodPublish: o.floodPublish,
    batchPublish: false,
    fallbackToFloodsub: false,
    doPX: false,
    heartbeatInterval: heartbeat,
    D: o.D,
    Dlo: o.Dlo,
    Dhi: o.Dhi,
    Dout: Math.max(0, Math.min(o.Dlo - 1, Math.floor(o.D / 2), 2)),
    Dscore: Math.min(o.Dlo, 2),
    Dlazy: o.D,
    // Keep ~3 s of messages answerable by IWANT whatever the heartbeat (defaults: 5 windows of 1 s).
    mcacheLength: Math.max(5, Math.ceil(3000 / heartbeat)),
    mcacheGossip: Math.max(3, Math.ceil(1000 / heartbeat)),
    // maxInboundDataLength bounds a whole length-prefixed RPC frame (which may bundle several messages,
    // e.g. an IWANT reply), not one message: an RPC above it kills the peer's inbound pubsub stream. So
    // it is set generously and the per-message limit is enforced by a topic validator instead.
    maxInboundDataLength: Math.max(4 * 1024 * 1024, 4 * (o.maxMessageSize + 1024)),
    // Duplicates (every forwarded copy of a message) are recognised by author + seqno BEFORE their
    // signature is verified; by default gossipsub verifies each copy first, which was ~30% of the CPU
    // per message in a 5-node mesh. Only messages that passed verification enter this cache, so a
    // forged copy can never shadow the genuine one.
    fastMsgIdFn: fastMsgId,
    msgIdToStrFn: bytesToKey,
    // Many nodes of one mesh often share an IP (one machine, tests, benchmarks); the IP colocation
    // penalty would grey-list them.
    scoreParams: { IPColocationFactorWeight: 0 },
  };
  return gossipsub(init);
}

interface MeshPeersCapable {
  getMeshPeers(topic: string): string[];
}

function hasMeshPeers(service: object): service is MeshPeersCapable {
  return typeof (service as Partial<MeshPeersCapable>).getMeshPeers === 'function';
}

interface TopicState {
  handlers: Set<PubsubHandler>;
  validators: Set<PubsubValidator>;
}

/** Topic subscriptions, publishing and delivery of verified messages over the gossipsub service. */
export class MeshPubsub {
  readonly maxMessageSize: number;
  readonly #service: PubsubService;
  readonly #log: Logger;
  readonly #topics = new Map<string, TopicState>();
  readonly #stats: PubsubStats = {
    published: 0,
    publishedBytes: 0,
    received: 0,
    receivedBytes: 0,
    rejectedTooLarge: 0,
    rejectedByValidator: 0,
    ignoredByValidator: 0,
  };
  readonly #onMessage = (evt: CustomEvent<GossipsubMessage>): void => this.#deliver(evt.detail);

  constructor(service: PubsubService, log: Logger, options: PubsubOptions = {}) {
    this.#service = service;
    this.#log = log;
    this.maxMessageSize = options.maxMessageSize ?? PUBSUB_DEFAULTS.maxMessageSize;
    // 'gossipsub:message' is dispatched exactly when 'message' is, and also carries the relaying peer.
    service.addEventListener('gossipsub:message', this.#onMessage);
  }

  /**
   * Subscribe `handler` to `topic`; returns the unsubscribe function. Several handlers may share a topic;
   * the gossipsub subscription is dropped with the last one. `validate` runs before delivery and before
   * the message is forwarded to other peers.
   */
  subscribe(topic: string, handler: PubsubHandler, options: { validate?: PubsubValidator } = {}): () => void {
    let state = this.#topics.get(topic);
    if (state === undefined) {
      state = { handlers: new Set(), validators: new Set() };
      this.#topics.set(topic, state);
      const topicState = state;
      this.#service.topicValidators.set(topic, (peer, msg) => this.#validate(topicState, peer.toString(), msg));
      this.#service.subscribe(topic);
    }
    state.handlers.add(handler);
    if (options.validate !== undefined) state.validators.add(options.validate);
    const validate = options.validate;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const current = this.#topics.get(topic);
      if (current === undefined) return;
      current.handlers.delete(handler);
      if (validate !== undefined) current.validators.delete(validate);
      if (current.handlers.size === 0) {
        this.#topics.delete(topic);
        this.#service.topicValidators.delete(topic);
        try {
          this.#service.unsubscribe(topic);
        } catch (err) {
          this.#log.debug({ err, topic }, 'unsubscribe failed (host stopping?)');
        }
      }
    };
  }

  /**
   * Sign and publish `data` on `topic`. Resolves with the number of peers it was sent to directly (0 is
   * not an error: a lone or partitioned node still publishes). Throws NetError MESSAGE_TOO_LARGE or
   * PUBLISH_FAILED.
   */
  async publish(topic: string, data: Uint8Array): Promise<{ recipients: number }> {
    if (data.byteLength > this.maxMessageSize) {
      throw new NetError('MESSAGE_TOO_LARGE', `pubsub message of ${data.byteLength} bytes exceeds the limit`, {
        details: { size: data.byteLength, max: this.maxMessageSize, topic },
      });
    }
    let result;
    try {
      result = await this.#service.publish(topic, data);
    } catch (err) {
      throw new NetError('PUBLISH_FAILED', `publish on ${topic} failed: ${(err as Error).message}`, { cause: err });
    }
    this.#stats.published++;
    this.#stats.publishedBytes += data.byteLength;
    return { recipients: result.recipients.length };
  }

  /** Topics this node is subscribed to. */
  topics(): string[] {
    return this.#service.getTopics();
  }

  /** Peers known to be subscribed to `topic`. */
  subscribers(topic: string): string[] {
    return this.#service.getSubscribers(topic).map((p) => p.toString());
  }

  /** Peers in this node's gossip mesh for `topic` (grafted at heartbeats). */
  meshPeers(topic: string): string[] {
    return hasMeshPeers(this.#service) ? this.#service.getMeshPeers(topic) : [];
  }

  stats(): PubsubStats {
    return { ...this.#stats };
  }

  /** Detach from the service (the service itself stops with the libp2p node). */
  close(): void {
    this.#service.removeEventListener('gossipsub:message', this.#onMessage);
    for (const topic of this.#topics.keys()) this.#service.topicValidators.delete(topic);
    this.#topics.clear();
  }

  async #validate(state: TopicState, relayedBy: string, msg: Message): Promise<TopicValidatorResult> {
    if (msg.type !== 'signed') return TopicValidatorResult.Reject;
    if (msg.data.byteLength > this.maxMessageSize) {
      this.#stats.rejectedTooLarge++;
      this.#log.warn(
        { from: msg.from.toString(), size: msg.data.byteLength, max: this.maxMessageSize, topic: msg.topic },
        'rejected oversized pubsub message',
      );
      return TopicValidatorResult.Reject;
    }
    if (state.validators.size === 0) return TopicValidatorResult.Accept;
    const message = toMessage(msg, relayedBy);
    for (const validate of state.validators) {
      let verdict: ValidationResult;
      try {
        verdict = await validate(message);
      } catch (err) {
        this.#log.warn({ err, topic: msg.topic }, 'pubsub validator threw; message rejected');
        verdict = 'reject';
      }
      if (verdict === 'reject') {
        this.#stats.rejectedByValidator++;
        return TopicValidatorResult.Reject;
      }
      if (verdict === 'ignore') {
        this.#stats.ignoredByValidator++;
        return TopicValidatorResult.Ignore;
      }
    }
    return TopicValidatorResult.Accept;
  }

  #deliver(event: GossipsubMessage): void {
    const { msg } = event;
    if (msg.type !== 'signed') return; // unreachable under StrictSign; never deliver an unverified author
    const state = this.#topics.get(msg.topic);
    if (state === undefined) return;
    this.#stats.received++;
    this.#stats.receivedBytes += msg.data.byteLength;
    const message = toMessage(msg, event.propagationSource.toString());
    for (const handler of [...state.handlers]) {
      try {
        handler(message);
      } catch (err) {
        this.#log.error({ err, topic: msg.topic }, 'pubsub handler threw');
      }
    }
  }
}

function toMessage(msg: SignedMessage, relayedBy: string): PubsubMessage {
  return {
    topic: msg.topic,
    from: msg.from.toString(),
    // A zero-copy plain Uint8Array view (gossipsub hands out Buffer views into the decoded RPC).
    data: new Uint8Array(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength),
    seqno: msg.sequenceNumber,
    relayedBy,
  };
}

function bytesToKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Local de-duplication key of a raw RPC message: author + sequence number (the StrictSign message id). */
function fastMsgId(msg: RPC.Message): string {
  if (msg.from === undefined || msg.seqno === undefined) return '';
  return `${bytesToKey(msg.from)}/${bytesToKey(msg.seqno)}`;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
