import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { bootstrap } from '@libp2p/bootstrap';
import { identify } from '@libp2p/identify';
import type { Identify } from '@libp2p/identify';
import { isPeerId } from '@libp2p/interface';
import type { Connection, Libp2p, PeerId, PeerInfo, PrivateKey } from '@libp2p/interface';
import { mdns } from '@libp2p/mdns';
import { peerIdFromString } from '@libp2p/peer-id';
import { ping } from '@libp2p/ping';
import type { Ping } from '@libp2p/ping';
import { preSharedKey } from '@libp2p/pnet';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import type { Multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import type { Libp2pOptions } from 'libp2p';
import { logger as rootLogger, type Logger } from '../util/log.js';
import { Emitter } from '../util/emitter.js';
import { NetError, toNetError } from './errors.js';
import { loadIdentity, validatePsk } from './keys.js';
import { PeerMaintainer, peerIdOfAddr, type MaintainerOptions } from './peers.js';
import { MeshPubsub, pubsubService, type PubsubOptions, type PubsubService } from './pubsub.js';
import {
  SessionRegistry,
  type HandleOptions,
  type OpenSessionOptions,
  type ProtocolStats,
  type Session,
  type SessionHandler,
} from './stream.js';

export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0'];

/** Test-only partitions and operator deny lists: consulted for every dial and every inbound connection. */
export interface PeerGater {
  /** Return true to refuse any connection (either direction) with this peer. */
  denyPeer?(peerId: string): boolean;
}

export interface HostOptions {
  /** Node identity: a private key or its protobuf bytes (see generateIdentity). Ephemeral if absent. */
  privateKey?: PrivateKey | Uint8Array;
  /** Listen multiaddrs. Default `/ip4/127.0.0.1/tcp/0`. */
  listen?: string[];
  /** Addresses to announce instead of the listen addresses (e.g. a public address behind NAT). */
  announce?: string[];
  /**
   * Peers to join through and keep connected: join addresses and remembered peers. With `/p2p/<id>` the
   * peer is redialled forever (with backoff); without, the address is dialled until it answers.
   */
  bootstrap?: string[];
  /** Discover peers on the LAN with mDNS. Default false. */
  mdns?: boolean;
  /** Pre-shared key (libp2p pnet key-file bytes, see generatePsk): only holders of it can connect. */
  psk?: Uint8Array;
  gater?: PeerGater;
  /** libp2p connection manager cap; beyond it, lowest-value connections are pruned. Default 64. */
  maxConnections?: number;
  /** Dial deadline (ms), per peer. Default 5000. */
  dialTimeoutMs?: number;
  /** New inbound connections per second accepted from one IP. Default 100 (many nodes share a host). */
  inboundConnectionThreshold?: number;
  /** Known-peer maintenance (redial with exponential backoff, bounded peer set). */
  peers?: Omit<MaintainerOptions, 'dialTimeoutMs'>;
  pubsub?: PubsubOptions;
  log?: Logger;
}

export interface HostEvents {
  'peer:connect': string;
  'peer:disconnect': string;
  [key: string]: unknown;
}

export interface HostStats {
  /** Dials not made, dials refused and connections (either direction) refused by the gater: a partition at work. */
  gaterRefused: number;
  /** Peers connected (libp2p peer:connect events), since start. */
  peerConnects: number;
}

export interface ConnectionInfo {
  peerId: string;
  remoteAddr: string;
  direction: 'inbound' | 'outbound';
  openedAt: number;
  streams: number;
}

export interface MeshHost {
  readonly peerId: string;
  readonly pubsub: MeshPubsub;
  /** The underlying libp2p node (escape hatch; prefer the methods below). */
  readonly libp2p: Libp2p;
  readonly running: boolean;
  /** Listen addresses, each ending in `/p2p/<peerId>`. */
  multiaddrs(): string[];
  /** Connect to a peer (multiaddr string/object, or peer id string of a peer whose addresses are known). */
  dial(target: string | Multiaddr, options?: { signal?: AbortSignal; keep?: boolean }): Promise<string>;
  hangUp(peerId: string): Promise<void>;
  connectedPeers(): string[];
  connections(): ConnectionInfo[];
  /** Remember addresses for a peer (e.g. from its node record) and keep a connection to it, bounded. */
  addKnownAddresses(peerId: string, multiaddrs: string[]): Promise<boolean>;
  knownPeers(): string[];
  /** Stop keeping a connection to this peer (an open connection is left alone). */
  forgetPeer(peerId: string): void;
  /** Round-trip time to a connected peer in ms (libp2p ping: integer ms, Date.now() resolution). */
  ping(peerId: string, options?: { signal?: AbortSignal }): Promise<number>;
  handle(protocol: string, handler: SessionHandler, options?: HandleOptions): Promise<void>;
  unhandle(protocol: string): Promise<void>;
  openSession(peer: string | Multiaddr, protocol: string, options?: OpenSessionOptions): Promise<Session>;
  streamStats(): Record<string, ProtocolStats>;
  /** Counters: connections refused by the gater (dials and inbound), peer connections opened. */
  stats(): HostStats;
  /** Re-apply the gater: close connections to now-denied peers, redial now-allowed known peers at once. */
  refreshGater(): Promise<void>;
  on<K extends keyof HostEvents>(event: K, listener: (payload: HostEvents[K]) => void): () => void;
  off<K extends keyof HostEvents>(event: K, listener: (payload: HostEvents[K]) => void): void;
  stop(): Promise<void>;
}

interface Services extends Record<string, unknown> {
  identify: Identify;
  ping: Ping;
  pubsub: PubsubService;
}

function parseAddrs(addrs: string[], what: string): Multiaddr[] {
  return addrs.map((a) => {
    try {
      return multiaddr(a);
    } catch (err) {
      throw new NetError('INVALID_ADDRESS', `invalid ${what} multiaddr: ${a}`, { cause: err });
    }
  });
}

function parsePeerId(id: string): PeerId {
  try {
    return peerIdFromString(id);
  } catch (err) {
    throw new NetError('INVALID_ADDRESS', `invalid peer id: ${id}`, { cause: err });
  }
}

/** A multiaddr (string starting with '/', or object) or a peer id string. */
function parseTarget(target: string | Multiaddr, what: string): PeerId | Multiaddr {
  if (typeof target !== 'string') return target;
  return target.startsWith('/') ? (parseAddrs([target], what)[0] as Multiaddr) : parsePeerId(target);
}

/** Build and start a libp2p 3 host for the mesh. */
export async function createHost(options: HostOptions = {}): Promise<MeshHost> {
  const log = options.log ?? rootLogger('mesh:net');
  const privateKey = options.privateKey instanceof Uint8Array ? loadIdentity(options.privateKey) : options.privateKey;
  const listen = options.listen ?? DEFAULT_LISTEN;
  parseAddrs(listen, 'listen');
  if (options.announce !== undefined) parseAddrs(options.announce, 'announce');
  const bootstrapAddrs = parseAddrs(options.bootstrap ?? [], 'bootstrap');
  const psk = options.psk === undefined ? undefined : validatePsk(options.psk);
  const dialTimeoutMs = options.dialTimeoutMs ?? 5_000;

  const gater = options.gater;
  const denied = (peerId: string): boolean => {
    if (gater?.denyPeer === undefined) return false;
    try {
      return gater.denyPeer(peerId);
    } catch (err) {
      log.error({ err, peer: peerId }, 'gater threw; allowing peer');
      return false;
    }
  };
  // Every refusal is counted, whoever asks: libp2p's gater hooks, and the peer maintainer, which
  // does not even dial a denied peer.
  const stats: HostStats = { gaterRefused: 0, peerConnects: 0 };
  const deniedCounted = (peerId: string): boolean => {
    const refuse = denied(peerId);
    if (refuse) stats.gaterRefused++;
    return refuse;
  };
  const denyPeer = (peerId: PeerId): boolean => deniedCounted(peerId.toString());

  const peerDiscovery: NonNullable<Libp2pOptions['peerDiscovery']> = [];
  const withPeerIds = bootstrapAddrs.filter((a) => peerIdOfAddr(a) !== undefined);
  if (withPeerIds.length > 0) {
    // Initial discovery + dial of the listed peers right after start; PeerMaintainer keeps them connected.
    peerDiscovery.push(bootstrap({ list: withPeerIds.map((a) => a.toString()), timeout: 0 }));
  }
  if (options.mdns === true) peerDiscovery.push(mdns({ serviceTag: '_agentmesh._udp.local', interval: 10_000 }));

  let libp2p: Libp2p<Services>;
  try {
    libp2p = await createLibp2p<Services>({
      ...(privateKey === undefined ? {} : { privateKey }),
      addresses: {
        listen,
        ...(options.announce === undefined ? {} : { announce: options.announce }),
        // What identify, node records and the start-up lines show: addresses other machines can
        // dial. Loopback only when the node listens on nothing else (a single-machine mesh).
        announceFilter: shareableAddrs,
      },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      ...(psk === undefined ? {} : { connectionProtector: preSharedKey({ psk }) }),
      connectionGater: {
        denyDialPeer: denyPeer,
        denyInboundEncryptedConnection: denyPeer,
        denyOutboundEncryptedConnection: denyPeer,
      },
      connectionManager: {
        maxConnections: options.maxConnections ?? 64,
        dialTimeout: dialTimeoutMs,
        addressDialTimeout: Math.min(dialTimeoutMs, 3_000),
        // A peer with the wrong pre-shared key produces noise garbage that stalls the handshake until
        // this fires; keep such half-open inbound upgrades short.
        inboundUpgradeTimeout: dialTimeoutMs,
        inboundConnectionThreshold: options.inboundConnectionThreshold ?? 100,
        // PeerMaintainer owns redialling (libp2p's keep-alive reconnect queue gives up after 5 tries).
        reconnectRetries: 0,
      },
      peerDiscovery,
      services: {
        identify: identify(),
        ping: ping(),
        pubsub: pubsubService(options.pubsub),
      },
    });
  } catch (err) {
    if (err instanceof NetError) throw err;
    const name = err instanceof Error ? err.name : '';
    const message = (err instanceof Error ? err.message : String(err))
      .split('\n')
      .filter((line) => !/^\s+at /.test(line) && line.trim() !== '')
      .join(' ');
    const code = /Listen/.test(name) ? 'LISTEN_FAILED' : 'INVALID_ADDRESS';
    throw new NetError(code, `could not start libp2p: ${message}`, { cause: err });
  }
  return new Host(libp2p, log, deniedCounted, bootstrapAddrs, options, dialTimeoutMs, stats).init();
}

class Host implements MeshHost {
  readonly peerId: string;
  readonly pubsub: MeshPubsub;
  readonly libp2p: Libp2p<Services>;
  readonly #log: Logger;
  readonly #events: Emitter<HostEvents>;
  readonly #sessions: SessionRegistry;
  readonly #maintainer: PeerMaintainer;
  readonly #denied: (peerId: string) => boolean;
  readonly #bootstrap: Multiaddr[];
  readonly #mdns: boolean;
  #running = true;
  #stopping: Promise<void> | undefined;

  readonly #onConnect = (evt: CustomEvent<PeerId>): void => {
    this.counters.peerConnects++;
    this.#events.emit('peer:connect', evt.detail.toString());
  };
  readonly #onDisconnect = (evt: CustomEvent<PeerId>): void =>
    this.#events.emit('peer:disconnect', evt.detail.toString());
  readonly #onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    if (!this.#mdns) return; // bootstrap discoveries are already known peers
    this.#maintainer
      .add(evt.detail.id, evt.detail.multiaddrs, 'discovered')
      .catch((err: unknown) => this.#log.debug({ err }, 'could not record discovered peer'));
  };

  constructor(
    libp2p: Libp2p<Services>,
    log: Logger,
    denied: (peerId: string) => boolean,
    bootstrapAddrs: Multiaddr[],
    options: HostOptions,
    dialTimeoutMs: number,
    private readonly counters: HostStats = { gaterRefused: 0, peerConnects: 0 },
  ) {
    this.libp2p = libp2p;
    this.peerId = libp2p.peerId.toString();
    this.#log = log.child({ self: this.peerId.slice(-8) });
    this.#events = new Emitter<HostEvents>((err) => this.#log.error({ err }, 'event listener threw'));
    this.#denied = denied;
    this.#bootstrap = bootstrapAddrs;
    this.#mdns = options.mdns === true;
    this.pubsub = new MeshPubsub(libp2p.services.pubsub, this.#log, options.pubsub);
    this.#sessions = new SessionRegistry(libp2p, this.#log);
    this.#maintainer = new PeerMaintainer(libp2p, this.#log, denied, { ...options.peers, dialTimeoutMs });
  }

  async init(): Promise<this> {
    this.libp2p.addEventListener('peer:connect', this.#onConnect);
    this.libp2p.addEventListener('peer:disconnect', this.#onDisconnect);
    this.libp2p.addEventListener('peer:discovery', this.#onDiscovery);
    this.#maintainer.start();
    try {
      await this.#maintainer.addBootstrap(this.#bootstrap);
    } catch (err) {
      await this.stop();
      throw toNetError(err, 'bootstrap');
    }
    return this;
  }

  get running(): boolean {
    return this.#running;
  }

  multiaddrs(): string[] {
    return this.libp2p.getMultiaddrs().map((ma) => {
      const s = ma.toString();
      return peerIdOfAddr(ma) === undefined ? `${s}/p2p/${this.peerId}` : s;
    });
  }

  async dial(target: string | Multiaddr, options: { signal?: AbortSignal; keep?: boolean } = {}): Promise<string> {
    this.#assertRunning();
    const dialTarget = parseTarget(target, 'dial');
    const signal = options.signal;
    let conn: Connection;
    try {
      conn = await this.libp2p.dial(dialTarget, signal === undefined ? {} : { signal });
    } catch (err) {
      throw toNetError(err, `dial ${target.toString()}`, signal);
    }
    if (options.keep === true) {
      const addrs = isPeerId(dialTarget) ? [] : [stripP2p(dialTarget)];
      await this.#maintainer.add(conn.remotePeer, addrs, 'learned');
    }
    return conn.remotePeer.toString();
  }

  async hangUp(peerId: string): Promise<void> {
    await this.libp2p.hangUp(parsePeerId(peerId));
  }

  connectedPeers(): string[] {
    return this.libp2p.getPeers().map((p) => p.toString());
  }

  connections(): ConnectionInfo[] {
    return this.libp2p.getConnections().map((c) => ({
      peerId: c.remotePeer.toString(),
      remoteAddr: c.remoteAddr.toString(),
      direction: c.direction,
      openedAt: c.timeline.open,
      streams: c.streams.length,
    }));
  }

  async addKnownAddresses(peerId: string, multiaddrs: string[]): Promise<boolean> {
    this.#assertRunning();
    const id = parsePeerId(peerId);
    const addrs = parseAddrs(multiaddrs, 'peer').map((ma) => (peerIdOfAddr(ma) === undefined ? ma : stripP2p(ma)));
    return this.#maintainer.add(id, addrs, 'learned');
  }

  knownPeers(): string[] {
    return this.#maintainer.known();
  }

  forgetPeer(peerId: string): void {
    this.#maintainer.remove(peerId);
  }

  async ping(peerId: string, options: { signal?: AbortSignal } = {}): Promise<number> {
    this.#assertRunning();
    const signal = options.signal ?? AbortSignal.timeout(5_000);
    try {
      return await this.libp2p.services.ping.ping(parsePeerId(peerId), { signal });
    } catch (err) {
      throw toNetError(err, `ping ${peerId}`, signal);
    }
  }

  async handle(protocol: string, handler: SessionHandler, options?: HandleOptions): Promise<void> {
    this.#assertRunning();
    await this.#sessions.handle(protocol, handler, options);
  }

  async unhandle(protocol: string): Promise<void> {
    await this.#sessions.unhandle(protocol);
  }

  async openSession(peer: string | Multiaddr, protocol: string, options?: OpenSessionOptions): Promise<Session> {
    this.#assertRunning();
    return this.#sessions.open(parseTarget(peer, 'session'), protocol, options);
  }

  streamStats(): Record<string, ProtocolStats> {
    return this.#sessions.allStats();
  }

  stats(): HostStats {
    return { ...this.counters };
  }

  async refreshGater(): Promise<void> {
    const closing: Array<Promise<void>> = [];
    for (const conn of this.libp2p.getConnections()) {
      const id = conn.remotePeer.toString();
      if (this.#denied(id)) {
        closing.push(
          conn.close({ signal: AbortSignal.timeout(1_000) }).catch((err: unknown) => {
            conn.abort(err instanceof Error ? err : new Error(String(err)));
          }),
        );
      }
    }
    await Promise.all(closing);
    this.#maintainer.redialNow();
  }

  on<K extends keyof HostEvents>(event: K, listener: (payload: HostEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  off<K extends keyof HostEvents>(event: K, listener: (payload: HostEvents[K]) => void): void {
    this.#events.off(event, listener);
  }

  async stop(): Promise<void> {
    this.#stopping ??= this.#doStop();
    return this.#stopping;
  }

  async #doStop(): Promise<void> {
    this.#running = false;
    this.#maintainer.stop();
    this.#sessions.abortAll(new NetError('HOST_STOPPED', 'host is stopping'));
    this.pubsub.close();
    this.libp2p.removeEventListener('peer:discovery', this.#onDiscovery);
    try {
      await this.libp2p.stop();
    } finally {
      this.libp2p.removeEventListener('peer:connect', this.#onConnect);
      this.libp2p.removeEventListener('peer:disconnect', this.#onDisconnect);
      this.#events.clear();
    }
  }

  #assertRunning(): void {
    if (!this.#running) throw new NetError('HOST_STOPPED', 'host is stopped');
  }
}

/** Whether a multiaddr's host is a loopback address (127.0.0.0/8, ::1). */
export function isLoopbackAddr(ma: Multiaddr): boolean {
  const host = ma.getComponents().find((c) => c.name === 'ip4' || c.name === 'ip6');
  if (host === undefined) return false;
  return host.name === 'ip4' ? (host.value ?? '').startsWith('127.') : host.value === '::1';
}

/**
 * The addresses worth giving to other machines: the non-loopback ones, if there are any, else all
 * of them (a node that listens only on loopback is a single-machine mesh, and loopback is right).
 */
export function shareableAddrs(addrs: Multiaddr[]): Multiaddr[] {
  const remote = addrs.filter((a) => !isLoopbackAddr(a));
  return remote.length > 0 ? remote : addrs;
}

function stripP2p(ma: Multiaddr): Multiaddr {
  const components = ma.getComponents();
  const i = components.findLastIndex((c) => c.name === 'p2p');
  return i < 0 ? ma : multiaddr(components.slice(0, i));
}
