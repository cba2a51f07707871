/**
 * Keeps this node connected to a bounded set of known peers, redialling with exponential backoff.
 *
 * What libp2p 3 does by itself, and why this exists:
 *  - `@libp2p/bootstrap` dials each listed peer ONCE, shortly after start, and never again.
 *  - The connection manager's reconnect queue only redials peers tagged `keep-alive`, gives up after
 *    `reconnectRetries` (default 5, ~31 s of backoff) and then drops the tag for good.
 *  - There is no auto-dialler any more: discovered peers (mDNS, bootstrap) are only added to the peer
 *    store.
 * A mesh must heal after arbitrarily long outages and partitions, and must connect to peers it learns
 * from replicated node records, so this maintainer owns (re)dialling: every known peer that is not
 * connected is dialled when its backoff expires, while fewer than `targetPeers` peers are connected.
 */
import type { Libp2p, PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Logger } from '../util/log.js';

/** Where a known peer came from; earlier entries have priority and `bootstrap` is never evicted. */
export type PeerSource = 'bootstrap' | 'learned' | 'discovered' | 'connected';

const PRIORITY: Record<PeerSource, number> = { bootstrap: 0, learned: 1, discovered: 2, connected: 3 };

export const KNOWN_PEER_TAG = 'agentmesh-known';

export interface MaintainerOptions {
  /** Stop dialling known peers once this many peers are connected. Default 16. */
  targetPeers?: number;
  /** Bound on the known-peer table (bootstrap peers excepted). Default 256. */
  maxKnownPeers?: number;
  /** First retry delay after a dial failure or a disconnect. Default 200 ms. */
  minBackoffMs?: number;
  /** Retry delay cap. Default 30 s. */
  maxBackoffMs?: number;
  /** Per-dial deadline. Default 5 s. */
  dialTimeoutMs?: number;
  /**
   * Forget a peer known only from a past connection or from mDNS after this many consecutive failed
   * dials (bootstrap and learned peers are kept until removed). Default 20 (~8 min at the 30 s cap).
   */
  forgetAfterFailures?: number;
}

interface KnownPeer {
  id: PeerId;
  key: string;
  source: PeerSource;
  attempts: number;
  nextAt: number;
  dialing: boolean;
  lastConnectedAt: number;
}

interface PendingAddr {
  addr: Multiaddr;
  attempts: number;
  nextAt: number;
  dialing: boolean;
}

export class PeerMaintainer {
  readonly #libp2p: Libp2p;
  readonly #log: Logger;
  readonly #denied: (peerId: string) => boolean;
  readonly #known = new Map<string, KnownPeer>();
  readonly #pending: PendingAddr[] = [];
  readonly #target: number;
  readonly #maxKnown: number;
  readonly #minBackoff: number;
  readonly #maxBackoff: number;
  readonly #dialTimeout: number;
  readonly #forgetAfter: number;
  readonly #stop = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #inflight = 0;
  #running = false;

  readonly #onConnect = (evt: CustomEvent<PeerId>): void => {
    const key = evt.detail.toString();
    const entry = this.#known.get(key);
    if (entry === undefined) {
      this.#add(evt.detail, 'connected');
    } else {
      entry.attempts = 0;
      entry.lastConnectedAt = Date.now();
    }
  };

  readonly #onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const entry = this.#known.get(evt.detail.toString());
    if (entry === undefined || !this.#running) return;
    entry.nextAt = Date.now() + this.#jitter(this.#minBackoff);
    this.#schedule(entry.nextAt);
  };

  constructor(libp2p: Libp2p, log: Logger, denied: (peerId: string) => boolean, options: MaintainerOptions = {}) {
    this.#libp2p = libp2p;
    this.#log = log;
    this.#denied = denied;
    this.#target = options.targetPeers ?? 16;
    this.#maxKnown = options.maxKnownPeers ?? 256;
    this.#minBackoff = options.minBackoffMs ?? 200;
    this.#maxBackoff = options.maxBackoffMs ?? 30_000;
    this.#dialTimeout = options.dialTimeoutMs ?? 5_000;
    this.#forgetAfter = options.forgetAfterFailures ?? 20;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#libp2p.addEventListener('peer:connect', this.#onConnect);
    this.#libp2p.addEventListener('peer:disconnect', this.#onDisconnect);
    for (const peer of this.#libp2p.getPeers()) this.#add(peer, 'connected');
    this.#schedule(Date.now());
  }

  stop(): void {
    this.#running = false;
    this.#libp2p.removeEventListener('peer:connect', this.#onConnect);
    this.#libp2p.removeEventListener('peer:disconnect', this.#onDisconnect);
    this.#stop.abort();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Remember bootstrap addresses. Addresses with `/p2p/<id>` make that peer a permanent known peer;
   * addresses without one are dialled (with backoff) until a connection reveals the peer behind them.
   */
  async addBootstrap(addrs: Multiaddr[]): Promise<void> {
    for (const addr of addrs) {
      const id = peerIdOfAddr(addr);
      if (id === undefined) {
        this.#pending.push({ addr, attempts: 0, nextAt: 0, dialing: false });
      } else if (id.toString() !== this.#libp2p.peerId.toString()) {
        await this.#libp2p.peerStore.merge(id, { multiaddrs: [addr] });
        this.#add(id, 'bootstrap');
      }
    }
    this.#schedule(Date.now());
  }

  /** Remember addresses for a peer (e.g. from a replicated node record) and try to connect to it. */
  async add(peerId: PeerId, addrs: Multiaddr[], source: PeerSource = 'learned'): Promise<boolean> {
    if (peerId.toString() === this.#libp2p.peerId.toString()) return false;
    if (addrs.length > 0) await this.#libp2p.peerStore.merge(peerId, { multiaddrs: addrs });
    const added = this.#add(peerId, source);
    if (added) this.#schedule(Date.now());
    return added;
  }

  /** Forget a peer (it will not be redialled; an existing connection is left alone). */
  remove(peerId: string): void {
    this.#known.delete(peerId);
  }

  known(): string[] {
    return [...this.#known.keys()];
  }

  /** Reset every backoff and dial now (e.g. after a gater change healed a partition). */
  redialNow(): void {
    for (const entry of this.#known.values()) {
      entry.attempts = 0;
      entry.nextAt = 0;
    }
    for (const p of this.#pending) p.nextAt = 0;
    this.#schedule(Date.now());
  }

  #add(peerId: PeerId, source: PeerSource): boolean {
    const key = peerId.toString();
    const existing = this.#known.get(key);
    if (existing !== undefined) {
      if (PRIORITY[source] < PRIORITY[existing.source]) existing.source = source;
      return true;
    }
    if (source !== 'bootstrap' && this.#countEvictable() >= this.#maxKnown && !this.#evictOne(source)) {
      this.#log.debug({ peer: key }, 'known-peer table full; not remembering peer');
      return false;
    }
    this.#known.set(key, {
      id: peerId,
      key,
      source,
      attempts: 0,
      nextAt: 0,
      dialing: false,
      lastConnectedAt: 0,
    });
    // Protect remembered peers from the connection pruner (which closes lowest-tag-value connections).
    this.#libp2p.peerStore
      .merge(peerId, { tags: { [KNOWN_PEER_TAG]: { value: source === 'bootstrap' ? 60 : 40 } } })
      .catch((err: unknown) => this.#log.debug({ err, peer: key }, 'could not tag peer'));
    return true;
  }

  #countEvictable(): number {
    let n = 0;
    for (const e of this.#known.values()) if (e.source !== 'bootstrap') n++;
    return n;
  }

  /** Evict the least valuable unconnected non-bootstrap entry no better than `incoming`. */
  #evictOne(incoming: PeerSource): boolean {
    const connected = new Set(this.#libp2p.getPeers().map((p) => p.toString()));
    let victim: KnownPeer | undefined;
    for (const e of this.#known.values()) {
      if (e.source === 'bootstrap' || connected.has(e.key) || e.dialing) continue;
      if (PRIORITY[e.source] < PRIORITY[incoming]) continue;
      if (
        victim === undefined ||
        PRIORITY[e.source] > PRIORITY[victim.source] ||
        (PRIORITY[e.source] === PRIORITY[victim.source] && e.lastConnectedAt < victim.lastConnectedAt)
      ) {
        victim = e;
      }
    }
    if (victim === undefined) return false;
    this.#known.delete(victim.key);
    return true;
  }

  #jitter(ms: number): number {
    return Math.round(ms * (0.8 + Math.random() * 0.4));
  }

  #backoff(attempts: number): number {
    return this.#jitter(Math.min(this.#maxBackoff, this.#minBackoff * 2 ** Math.max(0, attempts - 1)));
  }

  #schedule(at: number): void {
    if (!this.#running) return;
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#timerAt = Infinity;
        this.#tick();
      },
      Math.max(0, at - Date.now()),
    );
    this.#timer.unref();
  }

  #tick(): void {
    if (!this.#running) return;
    const now = Date.now();
    const connected = new Set(this.#libp2p.getPeers().map((p) => p.toString()));
    let budget = this.#target - connected.size - this.#inflight;
    let nextAt = Infinity;

    for (const p of this.#pending) {
      if (p.dialing) continue;
      if (p.nextAt > now) {
        nextAt = Math.min(nextAt, p.nextAt);
        continue;
      }
      this.#dialAddr(p);
    }

    const due = [...this.#known.values()]
      .filter((e) => !connected.has(e.key) && !e.dialing)
      .sort((a, b) => PRIORITY[a.source] - PRIORITY[b.source] || a.attempts - b.attempts);
    for (const entry of due) {
      if (entry.nextAt > now) {
        nextAt = Math.min(nextAt, entry.nextAt);
        continue;
      }
      if (budget <= 0) {
        // Re-check later: a connection may drop and free budget (disconnects also reschedule).
        nextAt = Math.min(nextAt, now + this.#maxBackoff);
        break;
      }
      if (this.#denied(entry.key)) {
        // Partitioned by the gater: poll cheaply without growing the backoff, so a heal is noticed fast.
        entry.nextAt = now + this.#minBackoff;
        nextAt = Math.min(nextAt, entry.nextAt);
        continue;
      }
      budget--;
      this.#dialPeer(entry);
    }
    if (nextAt !== Infinity) this.#schedule(nextAt);
  }

  #dialSignal(): AbortSignal {
    return AbortSignal.any([this.#stop.signal, AbortSignal.timeout(this.#dialTimeout)]);
  }

  #dialPeer(entry: KnownPeer): void {
    entry.dialing = true;
    this.#inflight++;
    this.#libp2p
      .dial(entry.id, { signal: this.#dialSignal() })
      .then(
        () => {
          if (entry.attempts > 0 && entry.source === 'bootstrap') {
            this.#log.info({ peer: entry.key, failedAttempts: entry.attempts }, 'reached join target');
          }
          entry.attempts = 0;
          entry.lastConnectedAt = Date.now();
        },
        (err: unknown) => {
          entry.attempts++;
          // One line per streak of failures, at its start: an operator must know that a join
          // target or a peer cannot be reached, and why; the retries stay at debug.
          const cause = explainDialError(err);
          if (entry.attempts === 1 && (entry.source === 'bootstrap' || cause.pskMismatch)) {
            this.#log.info(
              { peer: entry.key, reason: cause.reason, err: errMsg(err) },
              entry.source === 'bootstrap'
                ? `cannot reach join target: ${cause.reason}; retrying with backoff`
                : `cannot connect to peer: ${cause.reason}`,
            );
          }
          entry.nextAt = Date.now() + this.#backoff(entry.attempts);
          if (
            (entry.source === 'connected' || entry.source === 'discovered') &&
            entry.attempts >= this.#forgetAfter &&
            this.#known.get(entry.key) === entry
          ) {
            this.#known.delete(entry.key);
            this.#log.debug({ peer: entry.key, attempts: entry.attempts }, 'forgetting unreachable peer');
          }
          this.#log.debug(
            { peer: entry.key, attempts: entry.attempts, retryInMs: entry.nextAt - Date.now(), err: errMsg(err) },
            'dial to known peer failed',
          );
        },
      )
      .finally(() => {
        entry.dialing = false;
        this.#inflight--;
        this.#schedule(entry.nextAt > Date.now() ? entry.nextAt : Date.now() + this.#minBackoff);
      });
  }

  #dialAddr(p: PendingAddr): void {
    p.dialing = true;
    this.#libp2p
      .dial(p.addr, { signal: this.#dialSignal() })
      .then(
        (conn) => {
          if (p.attempts > 0) {
            this.#log.info({ addr: p.addr.toString(), failedAttempts: p.attempts }, 'reached join target');
          }
          // The address now has a face: keep that peer as a bootstrap peer and stop dialling the address.
          const i = this.#pending.indexOf(p);
          if (i >= 0) this.#pending.splice(i, 1);
          return this.#libp2p.peerStore
            .merge(conn.remotePeer, { multiaddrs: [p.addr] })
            .then(() => this.#add(conn.remotePeer, 'bootstrap'));
        },
        (err: unknown) => {
          p.attempts++;
          p.nextAt = Date.now() + this.#backoff(p.attempts);
          if (p.attempts === 1) {
            const cause = explainDialError(err);
            this.#log.info(
              { addr: p.addr.toString(), reason: cause.reason, err: errMsg(err) },
              `cannot reach join target: ${cause.reason}; retrying with backoff`,
            );
          }
          this.#log.debug({ addr: p.addr.toString(), attempts: p.attempts, err: errMsg(err) }, 'bootstrap dial failed');
        },
      )
      .catch((err: unknown) => this.#log.debug({ err: errMsg(err) }, 'could not record bootstrap peer'))
      .finally(() => {
        p.dialing = false;
        if (this.#pending.includes(p)) this.#schedule(p.nextAt);
      });
  }
}

export function peerIdOfAddr(addr: Multiaddr): PeerId | undefined {
  const value = addr.getComponents().findLast((c) => c.name === 'p2p')?.value;
  return value === undefined ? undefined : peerIdFromString(value);
}

/**
 * Why a dial failed, in words an operator can act on. A pre-shared-key mismatch has no error of
 * its own: the private-network protector makes the other side read noise garbage, so the noise
 * handshake fails (EncryptionFailedError, often after a timeout).
 */
export function explainDialError(err: unknown): { reason: string; pskMismatch: boolean } {
  const text = errMsg(err);
  const nested = err instanceof AggregateError ? err.errors.map(errMsg).join('; ') : '';
  const all = `${text}; ${nested}`;
  if (/EncryptionFailed|decrypt|handshake|Invalid MAC|noise/i.test(all)) {
    return {
      reason:
        'the encryption handshake failed: most likely a pre-shared key mismatch (--psk differs, or one side has none)',
      pskMismatch: true,
    };
  }
  if (/ECONNREFUSED|connection refused/i.test(all)) {
    return {
      reason: 'connection refused: no node listens there (is it running? is the port right?)',
      pskMismatch: false,
    };
  }
  if (/UnexpectedPeer|unexpected peer|peer id/i.test(all)) {
    return {
      reason: 'a different node answers at that address (use the address, with /p2p/<id>, that the node prints now)',
      pskMismatch: false,
    };
  }
  if (/EHOSTUNREACH|ENETUNREACH|no route/i.test(all)) {
    return { reason: 'no route to the host (network down or wrong address)', pskMismatch: false };
  }
  if (/timeout|timed out|aborted/i.test(all)) {
    return { reason: 'no answer in time (host down, firewall, or wrong address)', pskMismatch: false };
  }
  if (/NoValidAddresses|no valid addresses/i.test(all)) {
    return { reason: 'no address to dial is known for it', pskMismatch: false };
  }
  return { reason: text, pskMismatch: false };
}

function errMsg(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
