import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { MembershipView, type MembershipEvents, type MembershipOptions } from '../../src/membership/index.js';

type Transition = MembershipEvents['state'] & { at: number };

const SEED = Number(process.env.FC_SEED ?? 20261121);

/** mulberry32: a tiny seeded PRNG, so the jitter scenarios replay exactly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A view on a fake clock, with every state event recorded together with the time it fired. */
function harness(options: Partial<MembershipOptions> = {}) {
  const clock = { t: 0 };
  const view = new MembershipView({ selfId: 'self', now: () => clock.t, ...options });
  const log: Transition[] = [];
  view.events.on('state', (e) => log.push({ ...e, at: clock.t }));
  /** Advances the clock to `until` in `step` ms increments, ticking at every step. */
  const advance = (until: number, step = 100): void => {
    while (clock.t + step <= until) {
      clock.t += step;
      view.tick();
    }
  };
  /** The peer beats every `every` ms (its own heartbeat value = its clock) until `until`. */
  const beat = (peer: string, until: number, every = 1000): void => {
    while (clock.t < until) {
      advance(clock.t + every);
      view.observe(peer, clock.t);
    }
  };
  return { clock, view, log, advance, beat };
}

const path = (log: Transition[]) => log.map((e) => `${e.from}->${e.to}`);

describe('MembershipView', () => {
  it('keeps a regularly beating peer alive with a low phi', () => {
    const { view, log, clock, advance } = harness();
    let maxPhi = 0;
    for (let i = 1; i <= 120; i++) {
      view.observe('a', i * 1000);
      // Tick through the whole interval and record the worst phi just before the next beat.
      advance(clock.t + 1000);
      maxPhi = Math.max(maxPhi, view.peers()[0]?.phi ?? 0);
    }
    assert.deepEqual(path(log), ['unknown->alive']);
    assert.equal(log[0]?.at, 1000, 'the first value is a baseline; the second is the first evidence');
    assert.equal(view.state('a'), 'alive');
    assert.ok(maxPhi < 0.01, `max phi ${maxPhi}`);
  });

  it('goes alive -> suspect -> dead at the expected times after heartbeats stop', () => {
    const { view, log, beat, advance } = harness();
    beat('a', 30_000);
    const stoppedAt = 30_000;
    advance(stoppedAt + 60_000);
    assert.deepEqual(path(log), ['unknown->alive', 'alive->suspect', 'suspect->dead']);
    const [, suspect, dead] = log;
    // Regular beats: mean 1000 + 3000 acceptable pause, sd at its 100 ms floor; phi = 8 at about
    // 5.2 sd past that, i.e. ~4.52 s of silence, seen at the next 100 ms tick.
    assert.equal(suspect?.at, stoppedAt + 4600);
    // deadAfterMs = 10 x heartbeatIntervalMs.
    assert.equal(dead?.at, stoppedAt + 10_000);
    assert.equal(view.isReachable('a'), false);
    const [info] = view.peers();
    assert.deepEqual(
      { state: info?.state, lastHeartbeatMs: info?.lastHeartbeatMs, lastSeenAt: info?.lastSeenAt },
      { state: 'dead', lastHeartbeatMs: stoppedAt, lastSeenAt: stoppedAt },
    );
  });

  it('scales the timeline with the configured interval and thresholds', () => {
    const { log, beat, advance } = harness({ heartbeatIntervalMs: 200, deadAfterMs: 5000 });
    beat('a', 10_000, 200);
    advance(30_000, 10);
    assert.deepEqual(path(log), ['unknown->alive', 'alive->suspect', 'suspect->dead']);
    // mean 200 + 600 pause, sd floor 100 ms: phi = 8 at ~800 + 522 ms.
    assert.ok(Math.abs((log[1]?.at ?? 0) - 10_000 - 1322) <= 10, `suspect at ${log[1]?.at}`);
    assert.equal(log[2]?.at, 15_000);
  });

  it('returns to alive on a fresh heartbeat, from suspect and from dead', () => {
    const { view, log, clock, beat, advance } = harness();
    beat('a', 10_000);
    advance(15_000);
    assert.equal(view.state('a'), 'suspect');
    assert.equal(view.observe('a', clock.t), true);
    assert.equal(view.state('a'), 'alive', 'immediately, without waiting for a tick');
    advance(40_000);
    assert.equal(view.state('a'), 'dead');
    view.observe('a', clock.t);
    assert.equal(view.state('a'), 'alive');
    assert.equal(view.isReachable('a'), true);
    assert.deepEqual(path(log), [
      'unknown->alive',
      'alive->suspect',
      'suspect->alive',
      'alive->suspect',
      'suspect->dead',
      'dead->alive',
    ]);
    // The 25 s outage was not learnt, so the detector is as sharp as before.
    advance(clock.t + 4000);
    assert.equal(view.state('a'), 'alive');
    advance(clock.t + 1000);
    assert.equal(view.state('a'), 'suspect');
  });

  it('does not let replayed old heartbeats revive a dead peer', () => {
    const { view, log, beat, advance } = harness();
    beat('a', 20_000);
    advance(40_000);
    assert.equal(view.state('a'), 'dead');
    const transitions = log.length;
    // Anti-entropy replays the record: the same value, then older ones, over and over.
    for (let i = 0; i < 50; i++) {
      assert.equal(view.observe('a', 20_000 - (i % 5) * 1000), false, `replay ${i} counted`);
      advance(40_000 + (i + 1) * 100);
    }
    assert.equal(view.state('a'), 'dead');
    assert.equal(log.length, transitions);
  });

  it('treats the first heartbeat value seen as a baseline, not as liveness', () => {
    // A restarting node loads a long-dead peer's record from disk and sync replays it.
    const { view, log, advance } = harness();
    assert.equal(view.observe('gone', 5_000), false);
    assert.equal(view.state('gone'), 'unknown');
    assert.equal(view.isReachable('gone'), false);
    view.observe('gone', 5_000);
    advance(20_000);
    assert.deepEqual(
      log.map((e) => [e.from, e.to, e.at]),
      [['unknown', 'dead', 10_000]],
      'watched for deadAfterMs without a single fresh beat',
    );
  });

  it('does not suspect a peer under normal jitter and occasional lost heartbeats (seeded)', () => {
    for (const seed of [SEED, SEED + 1, SEED + 2]) {
      const random = prng(seed);
      const { view, log, clock, advance } = harness();
      // The peer writes its heartbeat every 1000 ms of its own clock; each write reaches us after
      // 0-400 ms of gossip and batching delay, and 2% of them are lost (the next one gets through).
      const arrivals: Array<[number, number]> = [];
      for (let sent = 1000; sent <= 3_600_000; sent += 1000) {
        if (random() < 0.02) continue;
        arrivals.push([sent + random() * 400, sent]);
      }
      arrivals.sort((x, y) => x[0] - y[0]);
      let maxPhi = 0;
      for (const [at, value] of arrivals) {
        advance(at - (at % 100));
        maxPhi = Math.max(maxPhi, view.peers()[0]?.phi ?? 0);
        clock.t = at;
        view.observe('a', value);
      }
      assert.deepEqual(path(log), ['unknown->alive'], `seed ${seed}`);
      assert.ok(maxPhi < 1, `seed ${seed}: max phi ${maxPhi}`);
    }
  });

  it('fires exactly one event per transition, however often it ticks', () => {
    const { view, log, clock, beat, advance } = harness();
    let calls = 0;
    view.events.on('state', () => calls++);
    beat('a', 10_000);
    advance(60_000, 1);
    for (let i = 0; i < 100; i++) view.tick();
    view.observe('a', clock.t);
    view.observe('a', clock.t); // same value: not fresh
    advance(clock.t + 2000, 1);
    assert.deepEqual(path(log), ['unknown->alive', 'alive->suspect', 'suspect->dead', 'dead->alive']);
    assert.equal(calls, 4);
  });

  it('sends an unticked peer straight to its current state in one event', () => {
    const { view, log, clock, beat } = harness();
    beat('a', 5000);
    clock.t = 30_000;
    view.tick();
    assert.deepEqual(path(log), ['unknown->alive', 'alive->dead']);
  });

  it('keeps a connected peer reachable: suspect at worst, dead once disconnected', () => {
    const { view, log, beat, advance } = harness();
    view.connected('a', true);
    beat('a', 10_000);
    advance(60_000);
    assert.equal(view.state('a'), 'suspect');
    assert.equal(view.isReachable('a'), true);
    view.connected('a', false);
    assert.equal(view.state('a'), 'dead');
    assert.deepEqual(path(log), ['unknown->alive', 'alive->suspect', 'suspect->dead']);
  });

  it('counts a connection without any record as alive, and forgets it on disconnect', () => {
    const { view, log } = harness();
    view.connected('b', false); // nothing to forget
    view.connected('b', true);
    assert.equal(view.state('b'), 'alive');
    assert.equal(view.peers()[0]?.connected, true);
    view.connected('b', false);
    assert.equal(view.state('b'), 'unknown');
    assert.deepEqual(view.peers(), []);
    assert.deepEqual(path(log), ['unknown->alive', 'alive->unknown']);
  });

  it('forgets a peer dead for forgetAfterMs, still refusing its replays afterwards', () => {
    const { view, log, clock, beat } = harness({ forgetAfterMs: 60_000 });
    beat('a', 10_000);
    beat('b', 80_000);
    assert.deepEqual(
      log.filter((e) => e.peerId === 'a').map((e) => [e.from, e.to, e.at]),
      [
        ['unknown', 'alive', 2000],
        ['alive', 'suspect', 14_600],
        ['suspect', 'dead', 20_000],
        ['dead', 'unknown', 80_000],
      ],
    );
    assert.deepEqual(
      view.peers().map((p) => p.id),
      ['b'],
    );
    assert.equal(view.observe('a', 10_000), false, 'a replay of its last record');
    assert.equal(view.state('a'), 'unknown');
    assert.equal(view.observe('a', clock.t), true, 'it came back');
    assert.equal(view.state('a'), 'alive');
  });

  it('forgets on request', () => {
    const { view, log, beat } = harness();
    beat('a', 3000);
    view.forget('a');
    view.forget('a');
    assert.equal(view.state('a'), 'unknown');
    assert.deepEqual(path(log), ['unknown->alive', 'alive->unknown']);
  });

  it('always considers self alive and reachable, and leaves it out of the peer list', () => {
    const { view, beat, advance } = harness();
    assert.equal(view.observe('self', 1), false);
    view.connected('self', true);
    beat('a', 3000);
    advance(60_000);
    assert.equal(view.state('self'), 'alive');
    assert.equal(view.isReachable('self'), true);
    assert.deepEqual(
      view.peers().map((p) => p.id),
      ['a'],
    );
    assert.equal(view.isReachable('nobody'), false);
  });

  it('ticks on its own between start() and stop()', () => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      const { view, log, clock, beat } = harness();
      beat('a', 3000);
      view.start();
      view.start(); // idempotent
      clock.t = 60_000;
      mock.timers.tick(1000);
      assert.equal(view.state('a'), 'dead');
      view.stop();
      view.observe('a', clock.t);
      clock.t = 120_000;
      mock.timers.tick(10_000);
      assert.equal(view.state('a'), 'alive', 'no tick after stop()');
      assert.deepEqual(path(log), ['unknown->alive', 'alive->dead', 'dead->alive']);
    } finally {
      mock.timers.reset();
    }
  });

  it('rejects nonsensical options', () => {
    assert.throws(() => new MembershipView({ selfId: 's', heartbeatIntervalMs: 0 }), RangeError);
    assert.throws(() => new MembershipView({ selfId: 's', minStdDeviationMs: 0 }), RangeError);
    assert.throws(() => new MembershipView({ selfId: 's', maxSampleSize: 1 }), RangeError);
  });
});
