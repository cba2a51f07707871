import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHost, type MeshHost } from '../../src/net/host.js';
import { isNetError, type NetError } from '../../src/net/errors.js';
import { encodeFrame, FrameDecoder, type Session } from '../../src/net/stream.js';

const PROTO = '/agentmesh/test-sync/1.0.0';

async function pair(fn: (server: MeshHost, client: MeshHost) => Promise<void>): Promise<void> {
  const hosts: MeshHost[] = [];
  try {
    const server = await createHost({ listen: ['/ip4/127.0.0.1/tcp/0'] });
    hosts.push(server);
    const client = await createHost({ listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: server.multiaddrs() });
    hosts.push(client);
    await fn(server, client);
  } finally {
    await Promise.all(hosts.map((h) => h.stop()));
  }
}

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Settle within the test deadline or fail the test. */
async function within<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      if (signal.aborted) reject(new Error('test deadline'));
      signal.addEventListener('abort', () => reject(new Error('test deadline')), { once: true });
    }),
  ]);
}

const u8 = (...xs: number[]): Uint8Array => Uint8Array.from(xs);
const num = (f: Uint8Array): number => new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(0);
const frameOf = (n: number): Uint8Array => {
  const f = new Uint8Array(4);
  new DataView(f.buffer).setUint32(0, n);
  return f;
};

describe('frame codec', () => {
  test('varint lengths round-trip through the decoder, fed byte by byte', () => {
    const sizes = [1, 127, 128, 300, 16_383, 16_384, 70_000];
    const frames = sizes.map((n) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff));
    const wire = frames.flatMap((f) => [...encodeFrame(f, 1 << 20).subarray()]);
    const dec = new FrameDecoder(1 << 20);
    const out: Uint8Array[] = [];
    for (const byte of wire) {
      out.push(...dec.push(u8(byte)));
      assert.ok(dec.buffered >= 0);
    }
    assert.deepEqual(out, frames);
    assert.equal(dec.buffered, 0);
    assert.deepEqual(encodeFrame(new Uint8Array(300), 1000).subarray(0, 2), u8(0xac, 0x02));
    assert.throws(() => encodeFrame(new Uint8Array(1001), 1000), 'a frame above the limit is not sent');
  });

  test('an oversized frame is rejected from its header alone; an endless varint hits the buffer bound', () => {
    const dec = new FrameDecoder(1000);
    assert.throws(
      () => dec.push(encodeFrame(new Uint8Array(1001), 2000).subarray(0, 2)),
      (e) => isNetError(e, 'FRAME_TOO_LARGE'),
    );
    const endless = new FrameDecoder(1000);
    assert.throws(
      () => {
        for (let i = 0; i < 20; i++) endless.push(new Uint8Array(1 << 20).fill(0xff));
      },
      (e) => isNetError(e, 'FRAME_TOO_LARGE'),
    );
  });
});

describe('framed sessions', () => {
  test('multi-round conversation on one stream, with per-session byte counts', async (t) => {
    const signal = AbortSignal.any([t.signal, AbortSignal.timeout(10_000)]);
    await pair(async (server, client) => {
      const serverSession = deferred<Session>();
      await server.handle(PROTO, async (session, remotePeer) => {
        assert.equal(remotePeer, client.peerId);
        serverSession.resolve(session);
        assert.deepEqual(await session.receive(), new TextEncoder().encode('hello'));
        await session.send(new TextEncoder().encode('hello-ack'));
        for (;;) {
          const req = await session.receive();
          if (num(req) === 0) break; // end of the request rounds
          await session.send(frameOf(num(req) * 2));
        }
        for (let i = 0; i < 3; i++) await session.send(frameOf(1000 + i));
        // returning closes the session gracefully
      });

      const s = await client.openSession(server.peerId, PROTO, { signal });
      assert.equal(s.remotePeer, server.peerId);
      assert.equal(s.direction, 'outbound');
      assert.deepEqual(await s.request(new TextEncoder().encode('hello')), new TextEncoder().encode('hello-ack'));
      for (let round = 1; round <= 5; round++) {
        assert.equal(num(await s.request(frameOf(round))), round * 2);
      }
      // Frames are never empty: the framing library drops them, so sessions refuse to send one.
      await assert.rejects(s.send(new Uint8Array(0)), (e) => isNetError(e, 'PROTOCOL_ERROR'));
      await s.send(frameOf(0));
      const records: number[] = [];
      for (let f = await s.receiveOrEnd(); f !== undefined; f = await s.receiveOrEnd()) records.push(num(f));
      assert.deepEqual(records, [1000, 1001, 1002]);
      await assert.rejects(s.receive(), (e) => isNetError(e, 'STREAM_CLOSED'));
      await s.close();

      // 'hello'(5) + 5 x 4 + the final 0 (4), each with a 1-byte varint header
      assert.equal(s.framesSent, 7);
      assert.equal(s.bytesSent, 5 + 5 * 4 + 4 + 7);
      assert.equal(s.framesReceived, 1 + 5 + 3);
      assert.equal(s.bytesReceived, 9 + 8 * 4 + 9);
      const peer = await within(serverSession.promise, signal);
      assert.equal(peer.bytesReceived, s.bytesSent);
      assert.equal(peer.bytesSent, s.bytesReceived);
      const stats = server.streamStats()[PROTO];
      assert.equal(stats?.sessionsAccepted, 1);
      assert.equal(stats?.bytesReceived, s.bytesSent);
      assert.equal(client.streamStats()[PROTO]?.sessionsOpened, 1);
    });
  });

  test('an oversized frame fails the receiver with FRAME_TOO_LARGE, and the host keeps serving', async (t) => {
    const signal = AbortSignal.any([t.signal, AbortSignal.timeout(10_000)]);
    await pair(async (server, client) => {
      const failures: NetError[] = [];
      const failed = deferred<void>();
      await server.handle(
        PROTO,
        async (session) => {
          try {
            const f = await session.receive();
            await session.send(f);
          } catch (err) {
            failures.push(err as NetError);
            failed.resolve();
            throw err;
          }
        },
        { maxFrameSize: 1024 },
      );

      const big = await client.openSession(server.peerId, PROTO, { signal, maxFrameSize: 1 << 20 });
      // The sender's own limit is checked locally and leaves the session usable.
      await assert.rejects(big.send(new Uint8Array((1 << 20) + 1)), (e) => isNetError(e, 'FRAME_TOO_LARGE'));
      await big.send(new Uint8Array(2000));
      await within(failed.promise, signal);
      assert.equal(failures.length, 1);
      assert.ok(isNetError(failures[0], 'FRAME_TOO_LARGE'));
      assert.deepEqual(failures[0]?.details, { max: 1024 });
      await assert.rejects(big.receive(), (e) => isNetError(e, 'STREAM_CLOSED'));
      assert.equal(server.streamStats()[PROTO]?.errors.FRAME_TOO_LARGE, 1);

      // Same host, same connection: the next session works.
      const ok = await client.openSession(server.peerId, PROTO, { signal });
      assert.deepEqual(await ok.request(u8(1, 2, 3)), u8(1, 2, 3));
      await ok.close();
      assert.ok(client.connectedPeers().includes(server.peerId));
    });
  });

  test('timeouts: a silent peer yields STREAM_TIMEOUT (session signal or per-operation), abort yields ABORTED', async (t) => {
    const signal = AbortSignal.any([t.signal, AbortSignal.timeout(10_000)]);
    await pair(async (server, client) => {
      await server.handle(PROTO, async (session) => {
        await session.receiveOrEnd({ timeoutMs: 5_000 }).catch(() => undefined);
        // never answers
        await sleep(2_000, undefined, { signal: session.signal }).catch(() => undefined);
      });

      const s1 = await client.openSession(server.peerId, PROTO, { signal: AbortSignal.timeout(1_000) });
      await s1.send(u8(1));
      // (Without the session signal this would end with STREAM_CLOSED when the handler returns after 2 s.)
      await assert.rejects(s1.receive(), (e) => isNetError(e, 'STREAM_TIMEOUT'));
      await assert.rejects(s1.send(u8(2)), (e) => isNetError(e, 'STREAM_TIMEOUT'), 'the session is dead');
      assert.ok(s1.signal.aborted);

      const s2 = await client.openSession(server.peerId, PROTO, { signal });
      await s2.send(u8(1));
      await assert.rejects(s2.receive({ timeoutMs: 150 }), (e) => isNetError(e, 'STREAM_TIMEOUT'));

      const ac = new AbortController();
      const s3 = await client.openSession(server.peerId, PROTO, { signal });
      const pending = s3.receive({ signal: ac.signal });
      ac.abort();
      await assert.rejects(pending, (e) => isNetError(e, 'ABORTED'));
    });
  });

  test('typed errors for unsupported protocols, failing handlers and unreachable peers', async (t) => {
    const signal = AbortSignal.any([t.signal, AbortSignal.timeout(10_000)]);
    await pair(async (server, client) => {
      await assert.rejects(client.openSession(server.peerId, '/agentmesh/nope/1.0.0', { signal }), (e) =>
        isNetError(e, 'UNSUPPORTED_PROTOCOL'),
      );
      await server.handle('/agentmesh/throws/1.0.0', async (session) => {
        await session.receive();
        throw new Error('boom');
      });
      const s = await client.openSession(server.peerId, '/agentmesh/throws/1.0.0', { signal });
      await assert.rejects(s.request(u8(1)), (e) => isNetError(e, 'STREAM_CLOSED'));
      assert.equal(server.streamStats()['/agentmesh/throws/1.0.0']?.errors.HANDLER_FAILED, 1);

      const stopped = await createHost({ listen: ['/ip4/127.0.0.1/tcp/0'] });
      const addr = stopped.multiaddrs()[0] ?? '';
      await stopped.stop();
      await assert.rejects(client.openSession(addr, PROTO, { signal }), (e) => isNetError(e, 'DIAL_FAILED'));
    });
  });

  test('maxInboundStreams caps concurrent sessions per connection', async (t) => {
    const signal = AbortSignal.any([t.signal, AbortSignal.timeout(10_000)]);
    await pair(async (server, client) => {
      await server.handle(
        PROTO,
        async (session) => {
          for (let f = await session.receiveOrEnd(); f !== undefined; f = await session.receiveOrEnd()) {
            await session.send(f);
          }
        },
        { maxInboundStreams: 1 },
      );
      const first = await client.openSession(server.peerId, PROTO, { signal });
      assert.deepEqual(await first.request(u8(1)), u8(1));
      const second = await client.openSession(server.peerId, PROTO, { signal });
      await assert.rejects(second.request(u8(2)), (e) => isNetError(e, 'STREAM_CLOSED'));
      assert.deepEqual(await first.request(u8(3)), u8(3), 'the first session is unaffected');
      await first.close();
    });
  });

  test('bulk transfer with a slow reader: back-pressure, in-order delivery, no loss', async (t) => {
    const signal = AbortSignal.any([t.signal, AbortSignal.timeout(15_000)]);
    await pair(async (server, client) => {
      const count = 48;
      const size = 256 * 1024; // 12 MiB in total
      await server.handle(PROTO, async (session) => {
        await sleep(200); // let frames pile up
        let sum = 0;
        for (let i = 0; i < count; i++) {
          const f = await session.receive();
          assert.equal(f.byteLength, size);
          assert.equal(f[0], i & 0xff, 'in order');
          sum += f[size - 1] ?? 0;
        }
        await session.send(frameOf(sum));
      });
      const s = await client.openSession(server.peerId, PROTO, { signal });
      let expected = 0;
      for (let i = 0; i < count; i++) {
        const f = new Uint8Array(size);
        f[0] = i & 0xff;
        f[size - 1] = (i * 3) & 0xff;
        expected += f[size - 1] ?? 0;
        await s.send(f);
      }
      assert.equal(num(await s.receive()), expected);
      await s.close();
    });
  });

  test('stopping the host fails open sessions with a typed error', async (t) => {
    const signal = AbortSignal.any([t.signal, AbortSignal.timeout(10_000)]);
    await pair(async (server, client) => {
      await server.handle(PROTO, async (session) => {
        await session.receiveOrEnd({ timeoutMs: 5_000 }).catch(() => undefined);
      });
      const s = await client.openSession(server.peerId, PROTO, { signal });
      const pending = assert.rejects(
        s.receive(),
        (e) => isNetError(e, 'HOST_STOPPED') || isNetError(e, 'STREAM_CLOSED'),
      );
      await client.stop();
      await pending;
      await assert.rejects(client.openSession(server.peerId, PROTO), (e) => isNetError(e, 'HOST_STOPPED'));
    });
  });
});
