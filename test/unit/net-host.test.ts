import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { multiaddr } from '@multiformats/multiaddr';
import { createHost, type HostOptions, type MeshHost, shareableAddrs } from '../../src/net/host.js';
import { explainDialError } from '../../src/net/peers.js';
import { isNetError, NetError } from '../../src/net/errors.js';
import { generateIdentity, generatePsk, loadIdentity, peerIdOf, validatePsk } from '../../src/net/keys.js';
import type { PubsubMessage } from '../../src/net/pubsub.js';

const LOOPBACK = ['/ip4/127.0.0.1/tcp/0'];

/** Start hosts on loopback and always stop them, whatever the test body does. */
async function withHosts(fn: (start: (o?: HostOptions) => Promise<MeshHost>) => Promise<void>): Promise<void> {
  const hosts: MeshHost[] = [];
  try {
    await fn(async (o = {}) => {
      const h = await createHost({ listen: LOOPBACK, ...o });
      hosts.push(h);
      return h;
    });
  } finally {
    await Promise.all(hosts.map((h) => h.stop()));
  }
}

function deadline(parent: AbortSignal, ms: number): AbortSignal {
  return AbortSignal.any([parent, AbortSignal.timeout(ms)]);
}

async function waitFor(cond: () => boolean, signal: AbortSignal, what: string): Promise<void> {
  while (!cond()) {
    if (signal.aborted) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function tcpPort(host: MeshHost): number {
  const addr = multiaddr(host.multiaddrs()[0] ?? '');
  const tcp = addr.getComponents().find((c) => c.name === 'tcp');
  assert.ok(tcp?.value !== undefined, 'host listens on tcp');
  return Number(tcp.value);
}

describe('net host', () => {
  test('three hosts form a gossip mesh through a bootstrap peer; C publishes, A and B receive it signed by C', async (t) => {
    const signal = deadline(t.signal, 10_000);
    await withHosts(async (start) => {
      const a = await start();
      assert.ok(a.multiaddrs().every((ma) => ma.startsWith('/ip4/127.0.0.1/tcp/') && ma.endsWith(`/p2p/${a.peerId}`)));
      const b = await start({ bootstrap: a.multiaddrs() });
      const c = await start({ bootstrap: a.multiaddrs() });
      const topic = 'mesh/test';
      const receivedA: PubsubMessage[] = [];
      const receivedB: PubsubMessage[] = [];
      const receivedC: PubsubMessage[] = [];
      a.pubsub.subscribe(topic, (m) => receivedA.push(m));
      b.pubsub.subscribe(topic, (m) => receivedB.push(m));
      c.pubsub.subscribe(topic, (m) => receivedC.push(m));

      await waitFor(
        () =>
          a.pubsub.meshPeers(topic).length === 2 &&
          b.pubsub.meshPeers(topic).includes(a.peerId) &&
          c.pubsub.meshPeers(topic).includes(a.peerId),
        signal,
        'gossip mesh',
      );
      assert.deepEqual(new Set(a.pubsub.meshPeers(topic)), new Set([b.peerId, c.peerId]));
      assert.deepEqual(new Set(a.connectedPeers()), new Set([b.peerId, c.peerId]));

      const payload = new TextEncoder().encode('hello from C');
      await c.pubsub.publish(topic, payload);
      await waitFor(() => receivedA.length > 0 && receivedB.length > 0, signal, 'delivery to A and B');

      for (const m of [receivedA[0], receivedB[0]]) {
        assert.ok(m !== undefined);
        assert.equal(m.from, c.peerId);
        assert.equal(m.topic, topic);
        assert.deepEqual(m.data, payload);
      }
      // B is not connected to C: the message reached it through A, still attributed to its signer C.
      assert.equal(receivedB[0]?.relayedBy, a.peerId);
      await sleep(100);
      assert.equal(receivedC.length, 0, 'no self-delivery (emitSelf false)');
      assert.equal(receivedA.length, 1, 'delivered once');
      assert.equal(receivedB.length, 1, 'delivered once');
    });
  });

  test('pubsub rejects oversized and validator-rejected messages, and keeps delivering afterwards', async (t) => {
    const signal = deadline(t.signal, 10_000);
    await withHosts(async (start) => {
      const small = await start({ pubsub: { maxMessageSize: 64 } });
      const big = await start({ bootstrap: small.multiaddrs(), pubsub: { maxMessageSize: 4096 } });
      const topic = 'limits';
      const got: PubsubMessage[] = [];
      small.pubsub.subscribe(topic, (m) => got.push(m), {
        validate: (m) => (m.data[0] === 0xff ? 'reject' : 'accept'),
      });
      big.pubsub.subscribe(topic, () => {});
      await waitFor(() => big.pubsub.subscribers(topic).includes(small.peerId), signal, 'subscription');

      await assert.rejects(small.pubsub.publish(topic, new Uint8Array(65)), (e) => isNetError(e, 'MESSAGE_TOO_LARGE'));
      const r = await big.pubsub.publish(topic, new Uint8Array(1000));
      assert.equal(r.recipients, 1, 'sent to the small host');
      await waitFor(() => small.pubsub.stats().rejectedTooLarge === 1, signal, 'oversized message rejected');
      await big.pubsub.publish(topic, new Uint8Array([0xff, 1]));
      await waitFor(() => small.pubsub.stats().rejectedByValidator === 1, signal, 'validator rejection');
      await big.pubsub.publish(topic, new Uint8Array([7]));
      await waitFor(() => got.length === 1, signal, 'small message delivered');
      assert.deepEqual(got[0]?.data, new Uint8Array([7]));
      assert.equal(got.length, 1, 'neither the oversized nor the rejected message was delivered');
    });
  });

  test('identity persistence: the same key bytes give the same peer id', async () => {
    const bytes = await generateIdentity();
    assert.ok(bytes instanceof Uint8Array && bytes.byteLength > 32);
    const expected = peerIdOf(bytes);
    assert.equal(peerIdOf(loadIdentity(bytes)), expected);
    const other = await generateIdentity();
    assert.notEqual(peerIdOf(other), expected);
    await withHosts(async (start) => {
      const first = await start({ privateKey: bytes });
      const second = await start({ privateKey: Uint8Array.from(bytes) });
      assert.equal(first.peerId, expected);
      assert.equal(second.peerId, expected);
    });
    assert.throws(
      () => loadIdentity(new Uint8Array([1, 2, 3])),
      (e) => isNetError(e, 'INVALID_IDENTITY'),
    );
  });

  test('pnet: only hosts holding the same pre-shared key can connect', async (t) => {
    const x = generatePsk();
    const y = generatePsk();
    assert.match(new TextDecoder().decode(x), /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/);
    assert.notDeepEqual(x, y);
    assert.throws(
      () => validatePsk(new TextEncoder().encode('not a key')),
      (e) => isNetError(e, 'INVALID_PSK'),
    );
    await assert.rejects(createHost({ psk: new Uint8Array(95) }), (e) => isNetError(e, 'INVALID_PSK'));

    await withHosts(async (start) => {
      const x1 = await start({ psk: x });
      const x2 = await start({ psk: Uint8Array.from(x) });
      const yHost = await start({ psk: y });
      const open = await start();
      const target = x1.multiaddrs()[0] ?? '';

      // A wrong key turns the noise handshake into garbage: the dial fails (or stalls until its deadline).
      await Promise.all([
        assert.rejects(yHost.dial(target, { signal: deadline(t.signal, 1_500) }), (e) => e instanceof NetError),
        assert.rejects(open.dial(target, { signal: deadline(t.signal, 1_500) }), (e) => e instanceof NetError),
      ]);
      // ... nor the other way round: a psk host cannot reach an open host.
      await assert.rejects(x1.dial(open.multiaddrs()[0] ?? '', { signal: deadline(t.signal, 5_000) }));
      assert.deepEqual(x1.connectedPeers(), []);

      assert.equal(await x2.dial(target, { signal: deadline(t.signal, 5_000) }), x1.peerId);
      await waitFor(() => x1.connectedPeers().includes(x2.peerId), deadline(t.signal, 5_000), 'x1 sees x2');
      assert.ok((await x2.ping(x1.peerId)) >= 0);
    });
  });

  test('gater: denied peers can neither dial nor be dialled; refreshGater cuts and heals live connections', async (t) => {
    const signal = deadline(t.signal, 15_000);
    await withHosts(async (start) => {
      const denied = new Set<string>();
      const a = await start({ gater: { denyPeer: (id) => denied.has(id) } });
      const b = await start();
      denied.add(b.peerId);
      const seenByA: string[] = [];
      a.on('peer:connect', (id) => seenByA.push(id));

      // Outbound: refused before any socket is opened.
      await assert.rejects(a.dial(b.multiaddrs()[0] ?? '', { signal: deadline(signal, 5_000) }), (e) =>
        isNetError(e, 'DENIED'),
      );
      // Inbound: A drops the connection right after the noise handshake reveals B's peer id. Noise
      // negotiates the muxer inside its handshake, so B's dial may resolve before A hangs up; A itself
      // never reports B as connected.
      await b.dial(a.multiaddrs()[0] ?? '', { signal: deadline(signal, 5_000) }).catch(() => undefined);
      await waitFor(() => !b.connectedPeers().includes(a.peerId), signal, 'B dropped by A');
      assert.ok(!a.connectedPeers().includes(b.peerId));
      assert.deepEqual(seenByA, []);

      // A peer connected while allowed is cut off by refreshGater, stays out while denied, and comes back
      // (C keeps redialling its bootstrap peer A) once allowed again.
      const c = await start({ bootstrap: a.multiaddrs(), peers: { minBackoffMs: 50, maxBackoffMs: 200 } });
      await waitFor(() => a.connectedPeers().includes(c.peerId), signal, 'C connects to A');
      let drops = 0;
      c.on('peer:disconnect', (id) => {
        if (id === a.peerId) drops++;
      });
      denied.add(c.peerId);
      await a.refreshGater();
      await waitFor(() => drops === 1 && !a.connectedPeers().includes(c.peerId), signal, 'C disconnected');
      await sleep(500); // several of C's redial attempts happen here and are refused
      assert.ok(!a.connectedPeers().includes(c.peerId), 'denied peer stays disconnected');

      denied.delete(c.peerId);
      await waitFor(() => a.connectedPeers().includes(c.peerId), signal, 'C reconnects after heal');
    });
  });

  test('reconnects to a bootstrap peer that restarts on the same port with the same identity', async (t) => {
    const signal = deadline(t.signal, 15_000);
    const key = await generateIdentity();
    await withHosts(async (start) => {
      let a = await start({ privateKey: key });
      const addr = a.multiaddrs()[0] ?? '';
      const port = tcpPort(a);
      const b = await start({ bootstrap: [addr], peers: { minBackoffMs: 100, maxBackoffMs: 1_000 } });
      await waitFor(() => b.connectedPeers().includes(a.peerId), signal, 'initial connection');

      let connects = 0;
      b.on('peer:connect', (id) => {
        if (id === a.peerId) connects++;
      });
      await a.stop();
      await waitFor(() => !b.connectedPeers().includes(a.peerId), signal, 'B notices A is gone');
      await sleep(300); // B's first redials fail (connection refused) and back off

      a = await start({ privateKey: key, listen: [`/ip4/127.0.0.1/tcp/${port}`] });
      assert.equal(a.multiaddrs()[0], addr, 'same address and peer id');
      await waitFor(() => b.connectedPeers().includes(a.peerId) && connects === 1, signal, 'B reconnects to A');
      await waitFor(() => a.connectedPeers().includes(b.peerId), signal, 'restarted A sees B');
    });
  });

  test('bad listen and bootstrap addresses fail with typed errors', async () => {
    await withHosts(async (start) => {
      const a = await start();
      await assert.rejects(start({ listen: [`/ip4/127.0.0.1/tcp/${tcpPort(a)}`] }), (e) =>
        isNetError(e, 'LISTEN_FAILED'),
      );
      await assert.rejects(start({ bootstrap: ['not a multiaddr'] }), (e) => isNetError(e, 'INVALID_ADDRESS'));
    });
  });

  test('addKnownAddresses connects to a learned peer and stops cleanly', async (t) => {
    const signal = deadline(t.signal, 10_000);
    await withHosts(async (start) => {
      const a = await start();
      const b = await start();
      assert.equal(await b.addKnownAddresses(a.peerId, a.multiaddrs()), true);
      assert.ok(b.knownPeers().includes(a.peerId));
      await waitFor(() => b.connectedPeers().includes(a.peerId), signal, 'connection to learned peer');
      await assert.rejects(b.addKnownAddresses('not-a-peer-id', []), (e) => isNetError(e, 'INVALID_ADDRESS'));
      await b.stop();
      assert.equal(b.running, false);
      await assert.rejects(b.dial(a.multiaddrs()[0] ?? ''), (e) => isNetError(e, 'HOST_STOPPED'));
    });
  });
});

describe('what the host tells others and the operator', () => {
  test('addresses given to other machines: non-loopback first and only, loopback only for a single-machine mesh', () => {
    const loop = multiaddr('/ip4/127.0.0.1/tcp/7071');
    const loop6 = multiaddr('/ip6/::1/tcp/7071');
    const lan = multiaddr('/ip4/192.168.1.10/tcp/7071');
    const lan6 = multiaddr('/ip6/fd00::1/tcp/7071');
    assert.deepEqual(shareableAddrs([loop, lan, loop6, lan6]).map(String), [lan, lan6].map(String));
    assert.deepEqual(shareableAddrs([loop, loop6]).map(String), [loop, loop6].map(String));
    assert.deepEqual(shareableAddrs([]), []);
  });

  test('dial failures are explained in words an operator can act on', () => {
    const cases: Array<[unknown, RegExp, boolean]> = [
      [
        Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4001'), { code: 'ECONNREFUSED' }),
        /connection refused/,
        false,
      ],
      [
        Object.assign(new Error('The operation was aborted due to timeout'), { name: 'EncryptionFailedError' }),
        /pre-shared key mismatch/,
        true,
      ],
      [
        new AggregateError([new Error('EncryptionFailedError: timeout')], 'All multiaddr dials failed'),
        /pre-shared key/,
        true,
      ],
      [Object.assign(new Error('timed out'), { name: 'TimeoutError' }), /no answer in time/, false],
      [Object.assign(new Error('Expected peer X, got Y'), { name: 'UnexpectedPeerError' }), /different node/, false],
    ];
    for (const [err, reason, psk] of cases) {
      const got = explainDialError(err);
      assert.match(got.reason, reason, String(err));
      assert.equal(got.pskMismatch, psk, String(err));
    }
  });
});
