import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  group,
  histogramBuckets,
  histogramQuantile,
  localWrites,
  parsePrometheus,
  rates,
  remoteApplies,
  replicationBytes,
  syncSessions,
} from '../../web/src/prom.js';
import { type SseMessage, SseParser } from '../../web/src/sse-parser.js';

/** The dashboard's pure parts: the event-stream parser and the Prometheus text reader. */
describe('dashboard: event-stream parser', () => {
  const parse = (chunks: string[]): { messages: SseMessage[]; parser: SseParser } => {
    const messages: SseMessage[] = [];
    const parser = new SseParser((m) => messages.push(m));
    for (const c of chunks) parser.push(c);
    return { messages, parser };
  };

  // A CR at the very end of what has arrived may be half of a CRLF: the parser waits for the next
  // character, so the text ends with CR CR LF (a line, then an empty line).
  it('reads events split anywhere across chunks, with any line ending', () => {
    const text = 'event: task\ndata: {"a":1}\n\n: ping\n\nevent: agent\r\ndata: x\r\ndata: y\r\n\r\ndata:z\r\r\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const { messages } = parse([text.slice(0, cut), text.slice(cut)]);
      assert.deepEqual(
        messages,
        [
          { event: 'task', data: '{"a":1}', id: undefined },
          { event: 'agent', data: 'x\ny', id: undefined },
          { event: 'message', data: 'z', id: undefined },
        ],
        `cut at ${cut}`,
      );
    }
  });

  it('keeps the last event id across events and takes retry', () => {
    const { messages, parser } = parse(['id: 7\nevent: task\ndata: a\n\ndata: b\n\nid: 9\n\nretry: 2500\n\n']);
    assert.deepEqual(
      messages.map((m) => [m.data, m.id]),
      [
        ['a', '7'],
        ['b', '7'],
      ],
    );
    assert.equal(parser.lastEventId, '9', 'an id-only block still moves the last event id');
    assert.equal(parser.retryMs, 2500);
  });

  it('ignores comments, unknown fields and a block without data', () => {
    const { messages } = parse([': hello\nfoo: bar\nevent: task\n\n']);
    assert.deepEqual(messages, []);
  });
});

describe('dashboard: Prometheus text', () => {
  const text = [
    '# HELP agentmesh_sync_sessions_merkle_total agentmesh node counter',
    '# TYPE agentmesh_sync_sessions_merkle_total counter',
    'agentmesh_sync_sessions_merkle_total 4',
    'agentmesh_sync_sessions_bloom_total 1',
    'agentmesh_sync_sessions_total{strategy="gaps",node="a b \\"c\\""} 3',
    'agentmesh_sync_merkle_bytes_sent_total 100',
    'agentmesh_sync_merkle_bytes_received_total 50',
    'agentmesh_sync_bytes_total{phase="bloom",direction="sent"} 7 1700000000000',
    'agentmesh_push_sent_bytes_total 20',
    'agentmesh_sync_sent_bytes_total{phase="gaps"} 9',
    'agentmesh_sync_received_bytes_total{phase="gaps"} 1',
    'agentmesh_push_bytes_sent_total 10',
    'agentmesh_push_bytes_received_total 12',
    'agentmesh_gossip_bytes_published_total 5',
    'agentmesh_replica_local_mutations_total 10',
    'agentmesh_replica_deltas_applied_total 5',
    'agentmesh_replica_records_merged_total 2',
    'process_cpu_seconds_total NaN',
    'not a sample line',
    'agentmesh_api_http_request_duration_seconds_bucket{le="+Inf",route="/v1/status"} 12',
  ].join('\n');

  it('parses samples with labels (escapes included) and skips comments and junk', () => {
    const samples = parsePrometheus(text);
    const labelled = samples.find((s) => s.name === 'agentmesh_sync_sessions_total');
    assert.deepEqual(labelled?.labels, { strategy: 'gaps', node: 'a b "c"' });
    assert.equal(labelled?.value, 3);
    assert.equal(
      samples.some((s) => s.name === 'process_cpu_seconds_total'),
      false,
      'a NaN sample is left out',
    );
    assert.equal(samples.find((s) => s.name.endsWith('_bucket'))?.labels.le, '+Inf');
  });

  it('groups flat and labelled series alike', () => {
    const samples = parsePrometheus(text);
    assert.deepEqual(Object.fromEntries(group(samples, syncSessions)), { merkle: 4, bloom: 1, gaps: 3 });
    assert.deepEqual(Object.fromEntries(group(samples, replicationBytes)), {
      merkle: 150,
      bloom: 7,
      push: 42,
      gossip: 5,
      gaps: 10,
    });
    assert.deepEqual(Object.fromEntries(group(samples, localWrites)), { writes: 10 });
    assert.deepEqual(Object.fromEntries(group(samples, remoteApplies)), { deltas: 5, records: 2 });
    assert.deepEqual(Object.fromEntries(group(parsePrometheus(''), syncSessions)), {}, 'absent series: nothing');
  });

  it('reads a histogram summed over its labels, and its quantiles between two readings', () => {
    const reading = (task: number[], agent: number[]) =>
      histogramBuckets(
        parsePrometheus(
          ['0.01', '0.1', '1', '+Inf']
            .flatMap((le, i) => [
              `agentmesh_replica_apply_lag_seconds_bucket{kind="task",le="${le}"} ${task[i]}`,
              `agentmesh_replica_apply_lag_seconds_bucket{kind="agent",le="${le}"} ${agent[i]}`,
            ])
            .join('\n'),
        ),
        'replica_apply_lag_seconds',
      );
    const prev = reading([5, 5, 5, 5], [0, 0, 0, 0]);
    assert.deepEqual(
      [...prev],
      [
        [0.01, 5],
        [0.1, 5],
        [1, 5],
        [Infinity, 5],
      ],
    );
    // Between the readings: 10 observations, 4 up to 10 ms, 4 more up to 100 ms, 2 up to 1 s.
    const next = reading([7, 9, 10, 10], [2, 4, 5, 5]);
    assert.equal(histogramQuantile(0.4, prev, next), 0.01);
    assert.ok(Math.abs((histogramQuantile(0.5, prev, next) as number) - 0.0325) < 1e-9, 'interpolated in its bucket');
    assert.equal(histogramQuantile(1, prev, next), 1);
    assert.equal(histogramQuantile(0.5, next, next), null, 'nothing observed: no quantile');
    assert.equal(histogramBuckets(parsePrometheus(''), 'replica_apply_lag_seconds').size, 0);
  });

  it('derives rates, treating a counter that went down as reset', () => {
    const prev = new Map([
      ['a', 10],
      ['b', 50],
    ]);
    const next = new Map([
      ['a', 30],
      ['b', 4],
      ['c', 1],
    ]);
    assert.deepEqual(Object.fromEntries(rates(prev, next, 2)), { a: 10, b: 2 });
    assert.equal(rates(prev, next, 0).size, 0);
  });
});
