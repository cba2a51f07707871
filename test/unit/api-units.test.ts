import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Writable } from 'node:stream';
import {
  ApiError,
  bearerChecker,
  isLoopbackHost,
  metricName,
  taskInputSchema,
  tokenRequired,
  toErrorResponse,
} from '../../src/api/index.js';
import { SseConnection, sseFrame } from '../../src/api/sse.js';
import { RegistryError } from '../../src/registry/errors.js';
import { PolicyError } from '../../src/replica/index.js';
import { ControlError } from '../../src/control/errors.js';
import { TaskError } from '../../src/tasks/errors.js';
import { HistogramRecorder, MetricSet } from '../../src/util/metrics.js';

describe('API start-up guard: which hosts need a token', () => {
  it('loopback hosts do not', () => {
    for (const host of [
      '127.0.0.1',
      '127.1.2.3',
      '127.255.255.254',
      'localhost',
      'LOCALHOST',
      '::1',
      '[::1]',
      '0:0:0:0:0:0:0:1',
      '::ffff:127.0.0.1',
    ]) {
      assert.equal(isLoopbackHost(host), true, host);
      assert.equal(tokenRequired(host), false, host);
    }
  });

  it('everything else does', () => {
    for (const host of [
      '0.0.0.0',
      '::',
      '[::]',
      '10.0.0.1',
      '192.168.1.10',
      '128.0.0.1',
      '1.127.0.0',
      '::2',
      '::ffff:10.0.0.1',
      'fe80::1%lo',
      'example.com',
      'localhost.example.com',
      '127.0.0.1.example.com',
      '',
    ]) {
      assert.equal(isLoopbackHost(host), false, host);
      assert.equal(tokenRequired(host), true, host);
    }
  });
});

describe('bearer check', () => {
  const ok = bearerChecker('tok-123');
  it('accepts exactly the token, case-insensitive scheme', () => {
    assert.equal(ok('Bearer tok-123'), true);
    assert.equal(ok('bearer tok-123'), true);
  });
  it('refuses everything else', () => {
    for (const h of [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      'Bearer tok-12',
      'Bearer tok-1234',
      'Basic tok-123',
      'tok-123',
    ]) {
      assert.equal(ok(h), false, String(h));
    }
  });
});

describe('metric names', () => {
  it('sanitizes counter names into agentmesh_<snake_case>', () => {
    assert.equal(metricName('sync.deltasApplied'), 'agentmesh_sync_deltas_applied');
    assert.equal(metricName('net/bytes-in'), 'agentmesh_net_bytes_in');
    assert.equal(metricName('replica.rejected.not_owner'), 'agentmesh_replica_rejected_not_owner');
    assert.equal(metricName('  weird!!name__ '), 'agentmesh_weird_name');
    assert.equal(metricName('9lives'), 'agentmesh_9lives');
    assert.equal(metricName('...'), undefined);
  });
});

describe('metric families', () => {
  it('a histogram counts a value in the first bucket at or above it, cumulatively, by labels', () => {
    const h = new HistogramRecorder([0.1, 1], ['kind']);
    h.observe(0.1, { kind: 'a' });
    h.observe(0.5, { kind: 'a' });
    h.observe(7, { kind: 'a' });
    h.observe(Number.NaN, { kind: 'a' });
    h.observe(2, { kind: 'b', other: 'ignored' });
    assert.deepEqual(h.samples(), [
      { labels: { kind: 'a' }, counts: [1, 2], sum: 7.6, count: 3 },
      { labels: { kind: 'b' }, counts: [0, 0], sum: 2, count: 1 },
    ]);
    assert.throws(() => new HistogramRecorder([1, 1]), /ascend/);
  });

  it('values by label become one family with a sample per label value; a name given twice keeps the first', () => {
    const m = new MetricSet()
      .counter('rejected_total', 'refused', { b: 2, a: 1 }, 'reason')
      .gauge('rejected_total', 'again', 5)
      .flat({ 'net.bytesIn': 3, done_total: 4 });
    assert.deepEqual(m.toArray(), [
      {
        name: 'rejected_total',
        type: 'counter',
        help: 'refused',
        labelNames: ['reason'],
        samples: [
          { labels: { reason: 'a' }, value: 1 },
          { labels: { reason: 'b' }, value: 2 },
        ],
      },
      {
        name: 'net_bytes_in',
        type: 'gauge',
        help: 'agentmesh gauge net.bytesIn (unlabelled)',
        labelNames: [],
        samples: [{ labels: {}, value: 3 }],
      },
      {
        name: 'done_total',
        type: 'counter',
        help: 'agentmesh counter done_total (unlabelled)',
        labelNames: [],
        samples: [{ labels: {}, value: 4 }],
      },
    ]);
    assert.throws(() => new MetricSet().gauge('Bad-Name', 'x', 1), /snake_case/);
  });
});

describe('error mapping', () => {
  it('maps agent-control errors to 404, 503, 504 and 502 with their message', () => {
    for (const [code, status] of [
      ['AGENT_NOT_FOUND', 404],
      ['AGENT_NODE_UNREACHABLE', 503],
      ['AGENT_CONTROL_TIMEOUT', 504],
      ['AGENT_CONTROL_FAILED', 502],
    ] as const) {
      const r = toErrorResponse(new ControlError(code, `why ${code}`, { details: { node: 'n1' } }));
      assert.equal(r.status, status, code);
      assert.equal(r.internal, false, 'the client needs to know which node and why');
      assert.deepEqual(r.body, { error: { code, message: `why ${code}`, details: { node: 'n1' } } });
    }
  });

  it('maps typed errors by code and status', () => {
    const nf = toErrorResponse(new TaskError('NOT_FOUND', 'task x not found'));
    assert.equal(nf.status, 404);
    assert.deepEqual(nf.body, { error: { code: 'NOT_FOUND', message: 'task x not found' } });
    const no = toErrorResponse(new RegistryError('NOT_OWNER', 'not yours', { details: { owner: 'b' } }));
    assert.equal(no.status, 409);
    assert.deepEqual(no.body.error.details, { owner: 'b' });
    assert.equal(toErrorResponse(new TaskError('INVALID_TRANSITION', 'no')).status, 409);
    assert.equal(toErrorResponse(new ApiError('UNAUTHORIZED', 'no')).status, 401);
  });

  it('maps policy refusals to 409 with their reason', () => {
    const r = toErrorResponse(new PolicyError('spec_immutable', 'task/x: spec is immutable'));
    assert.equal(r.status, 409);
    assert.equal(r.body.error.code, 'POLICY_REJECTED');
    assert.equal(r.body.error.reason, 'spec_immutable');
  });

  it("maps Fastify's errors by code", () => {
    const fst = (code: string, statusCode: number) => Object.assign(new Error(code), { code, statusCode });
    assert.equal(toErrorResponse(fst('FST_ERR_CTP_INVALID_JSON_BODY', 400)).body.error.code, 'BAD_JSON');
    assert.equal(toErrorResponse(fst('FST_ERR_CTP_EMPTY_JSON_BODY', 400)).body.error.code, 'BAD_JSON');
    const big = toErrorResponse(fst('FST_ERR_CTP_BODY_TOO_LARGE', 413));
    assert.deepEqual([big.status, big.body.error.code], [413, 'PAYLOAD_TOO_LARGE']);
    const media = toErrorResponse(fst('FST_ERR_CTP_INVALID_MEDIA_TYPE', 415));
    assert.deepEqual([media.status, media.body.error.code], [415, 'UNSUPPORTED_MEDIA_TYPE']);
  });

  it('hides everything about unexpected errors', () => {
    for (const err of [
      new Error('db password is hunter2'),
      Object.assign(new Error('x'), { statusCode: 400 }), // not Fastify's: not trusted
      new ApiError('INTERNAL', 'leaky'),
      'a string',
      undefined,
    ]) {
      const r = toErrorResponse(err);
      assert.equal(r.status, 500);
      assert.equal(r.internal, true);
      assert.deepEqual(r.body, { error: { code: 'INTERNAL', message: 'internal error' } });
    }
  });
});

describe('shared schemas', () => {
  it('agree with the task board on limits', () => {
    assert.equal(taskInputSchema.safeParse({ type: 'x', priority: 9 }).success, true);
    assert.equal(taskInputSchema.safeParse({ type: 'x', priority: 10 }).success, false);
    assert.equal(taskInputSchema.safeParse({ type: 'x', id: 'a'.repeat(128) }).success, true);
    assert.equal(taskInputSchema.safeParse({ type: 'x', id: 'a'.repeat(129) }).success, false);
  });
});

/** A sink that accepts writes but never flushes them: a client that stopped reading. */
class StuckSink extends Writable {
  constructor() {
    super({ highWaterMark: 16 });
  }
  override _write(_chunk: unknown, _enc: BufferEncoding, _cb: (err?: Error | null) => void): void {
    // never calls back
  }
}

/** A sink that flushes everything at once, recording it. */
class ReadingSink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.text += chunk.toString();
    cb();
  }
}

describe('SSE connection', () => {
  it('frames events, splitting multi-line data', () => {
    assert.equal(sseFrame('task', '{"a":1}'), 'event: task\ndata: {"a":1}\n\n');
    assert.equal(sseFrame('x', 'a\nb'), 'event: x\ndata: a\ndata: b\n\n');
  });

  it('writes events and comments to a reading client', async () => {
    const sink = new ReadingSink();
    const reasons: string[] = [];
    const conn = new SseConnection(sink, { onClose: (r) => reasons.push(r) });
    assert.equal(conn.send('agent', '{"id":"a"}'), true);
    assert.equal(conn.comment('ping\nnot a field'), true);
    conn.close();
    await new Promise((r) => sink.once('finish', r));
    assert.equal(sink.text, 'event: agent\ndata: {"id":"a"}\n\n: ping not a field\n\n');
    assert.deepEqual(reasons, ['server']);
    assert.equal(conn.send('agent', '{}'), false);
  });

  it('drops a client that stops reading once its buffer passes the bound, with a final error event', async () => {
    const sink = new StuckSink();
    const reasons: string[] = [];
    const conn = new SseConnection(sink, { maxBufferBytes: 4096, closeGraceMs: 20, onClose: (r) => reasons.push(r) });
    const data = JSON.stringify({ pad: 'x'.repeat(500) });
    let accepted = 0;
    for (let i = 0; i < 1000 && conn.send('task', data); i++) accepted++;
    assert.ok(accepted >= 1 && accepted <= 8, `accepted ${accepted}`);
    assert.equal(conn.isClosed, true);
    assert.deepEqual(reasons, ['slow']);
    // Memory stays bounded: the queued bytes are the bound plus one final frame at most.
    assert.ok(sink.writableLength <= 4096 + 200, `queued ${sink.writableLength}`);
    assert.equal(conn.send('task', data), false);
    // The client never reads the final event, so the socket is destroyed after the grace period.
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('not destroyed')), 2_000);
      sink.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
    assert.equal(sink.destroyed, true);
  });

  it('a client that goes away ends the connection once', () => {
    const sink = new ReadingSink();
    const reasons: string[] = [];
    const conn = new SseConnection(sink, { onClose: (r) => reasons.push(r) });
    sink.destroy();
    return new Promise<void>((resolve) => {
      sink.once('close', () => {
        assert.equal(conn.isClosed, true);
        assert.deepEqual(reasons, ['client']);
        assert.equal(conn.send('x', '{}'), false);
        resolve();
      });
    });
  });
});
