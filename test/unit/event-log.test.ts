/**
 * The event stream's shared window: each event serialized once whatever the number of clients,
 * bounded by count and by bytes, ids that carry the run, and resume points (replay, gap on
 * eviction, gap for another run, refusal of ids never issued).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MeshEvent } from '../../src/api/backend.js';
import { EventLog, type LoggedEvent } from '../../src/api/event-log.js';

function source(): {
  emit: (e: MeshEvent) => void;
  listeners: () => number;
  src: ConstructorParameters<typeof EventLog>[0];
} {
  const set = new Set<(e: MeshEvent) => void>();
  return {
    emit: (e) => {
      for (const fn of set) fn(e);
    },
    listeners: () => set.size,
    src: (fn) => {
      set.add(fn);
      return () => set.delete(fn);
    },
  };
}

const ev = (id: string, pad = ''): MeshEvent => ({
  kind: 'task',
  id,
  value: { pad },
  origin: null,
  local: true,
  at: 1,
});

describe('event log', () => {
  test('one serialization per event, shared by every subscriber', () => {
    const s = source();
    const log = new EventLog(s.src, { runId: 'run1' });
    const got: LoggedEvent[][] = [[], [], [], [], []];
    const offs = got.map((g) => log.subscribe((e) => g.push(e)));
    assert.equal(s.listeners(), 1, 'one listener on the node whatever the number of clients');
    const stringify = JSON.stringify;
    let calls = 0;
    JSON.stringify = ((...args: Parameters<typeof stringify>) => {
      calls++;
      return stringify(...args);
    }) as typeof JSON.stringify;
    try {
      for (let i = 0; i < 10; i++) s.emit(ev(`t${i}`));
    } finally {
      JSON.stringify = stringify;
    }
    assert.equal(calls, 10, 'each event stringified once for five clients');
    for (const g of got)
      assert.deepEqual(
        g.map((e) => e.seq),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      );
    assert.equal(got[0]?.[0]?.frame, got[4]?.[0]?.frame);
    assert.match(got[0]?.[0]?.frame ?? '', /^id: run1-1\nevent: task\ndata: \{/);
    for (const off of offs) off();
    log.close();
  });

  test('the window is bounded by count and by bytes; eviction is a gap on resume', () => {
    const s = source();
    const byCount = new EventLog(s.src, { runId: 'c', maxEvents: 3 });
    const off1 = byCount.subscribe(() => {});
    for (let i = 0; i < 10; i++) s.emit(ev(`t${i}`));
    assert.equal(byCount.size, 3);
    assert.equal(byCount.firstSeq, 8);
    assert.deepEqual(byCount.resume('c-7'), { after: 7 });
    const evicted = byCount.resume('c-5');
    assert.equal(evicted?.gap?.reason, 'evicted');
    assert.equal(evicted?.after, 7);
    assert.equal(evicted?.gap?.firstAvailable, 'c-8');
    off1();
    byCount.close();

    const t = source();
    const byBytes = new EventLog(t.src, { runId: 'b', maxBytes: 5_000 });
    const off2 = byBytes.subscribe(() => {});
    for (let i = 0; i < 20; i++) t.emit(ev(`t${i}`, 'x'.repeat(1_000)));
    assert.ok(byBytes.bytes <= 5_000, `held ${byBytes.bytes} bytes`);
    assert.ok(byBytes.size >= 1 && byBytes.size < 5, `held ${byBytes.size}`);
    assert.equal(byBytes.lastSeq, 20);
    off2();
    byBytes.close();
  });

  test('ids from another run are a restart gap; ids never issued or malformed are refused', () => {
    const s = source();
    const log = new EventLog(s.src, { runId: 'now' });
    const off = log.subscribe(() => {});
    s.emit(ev('a'));
    assert.equal(log.resume('before-12')?.gap?.reason, 'restart');
    assert.equal(log.resume('before-12')?.after, 0, 'replays all this run holds');
    assert.deepEqual(log.resume('now-1'), { after: 1 });
    assert.deepEqual(log.resume('now-0'), { after: 0 });
    assert.equal(log.resume('now-2'), undefined, 'not issued yet');
    for (const bad of ['', 'now', 'now-', 'NOW-1', 'now-1-2', 'now-x', `now-${'9'.repeat(16)}`]) {
      assert.equal(log.resume(bad), undefined, bad);
    }
    off();
    log.close();
  });

  test('an idle log stops listening after the retention, and a resume across that stretch is a gap', async () => {
    const s = source();
    const log = new EventLog(s.src, { runId: 'i', retainIdleMs: 20 });
    const off = log.subscribe(() => {});
    s.emit(ev('a'));
    off();
    assert.equal(s.listeners(), 1, 'kept during the retention');
    const deadline = Date.now() + 2_000;
    while (s.listeners() > 0) {
      assert.ok(Date.now() < deadline, 'stops listening after the retention');
      await new Promise((r) => setTimeout(r, 5));
    }
    s.emit(ev('missed')); // not recorded: nobody listens
    const off2 = log.subscribe(() => {});
    assert.equal(log.resume('i-1')?.gap?.reason, 'evicted', 'the unrecorded stretch is a gap, not a silent hole');
    off2();
    log.close();
  });
});
