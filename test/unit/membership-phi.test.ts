import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PHI_DEFAULTS, PhiAccrualDetector, phiOf } from '../../src/membership/index.js';
import { fcParams } from '../helpers/fc.js';

/** φ = -log10(1 - CDF), so CDF = 1 - 10^-φ. */
const cdf = (phi: number): number => 1 - 10 ** -phi;

describe('phiOf', () => {
  it('approximates the normal CDF (the values of Akka PhiAccrualFailureDetectorSpec)', () => {
    const table: Array<[number, number, number]> = [
      [0, 0.5, 0.001],
      [6, 0.7257, 0.001],
      [15, 0.9332, 0.001],
      [20, 0.97725, 0.001],
      [25, 0.99379, 0.001],
      [35, 0.99977, 0.001],
      [40, 0.99997, 0.0001],
    ];
    for (const [x, expected, tolerance] of table) {
      const got = cdf(phiOf(x, 0, 10));
      assert.ok(Math.abs(got - expected) <= tolerance, `cdf(${x}) = ${got}, expected ${expected}`);
    }
  });

  it('gives the realistic values of Akka PhiAccrualFailureDetectorSpec for mean 1000, sd 100', () => {
    const table: Array<[number, number]> = [
      [0, 0.0],
      [500, 0.1],
      [1000, 0.3],
      [1200, 1.6],
      [1400, 4.7],
      [1600, 10.8],
      [1700, 15.3],
    ];
    for (const [timeDiff, expected] of table) {
      const got = phiOf(timeDiff, 1000, 100);
      assert.ok(Math.abs(got - expected) <= 0.1, `phi(${timeDiff}) = ${got}, expected ${expected}`);
    }
  });

  it('stays finite far past the point where the textbook formula underflows', () => {
    assert.equal(phiOf(10_000_000, 1000, 100) > 1e8, true);
    assert.ok(Number.isFinite(phiOf(1e12, 1000, 100)));
    assert.equal(phiOf(-1e12, 1000, 100), 0);
  });
});

describe('PhiAccrualDetector', () => {
  it('reports 0 before the first heartbeat and bootstraps from the estimate', () => {
    const d = new PhiAccrualDetector({ firstHeartbeatEstimateMs: 1000 });
    assert.equal(d.phi(123_456), 0);
    d.heartbeat(0);
    assert.equal(d.sampleCount, 2);
    assert.equal(d.mean, 1000);
    assert.equal(d.stdDeviation, 250); // Akka: estimate ± estimate/4
    assert.ok(d.phi(1000) < 0.01, 'one interval late is nothing against a 3 s acceptable pause');
  });

  it('keeps a bounded sliding window', () => {
    const d = new PhiAccrualDetector({ maxSampleSize: 10 });
    for (let i = 0; i <= 50; i++) d.heartbeat(i * 500);
    assert.equal(d.sampleCount, 10);
    assert.equal(d.mean, 500, 'the two bootstrap samples have been pushed out');
    assert.equal(d.stdDeviation, 0);
  });

  it('does not learn the gap of an outage', () => {
    const d = new PhiAccrualDetector();
    for (let i = 0; i <= 20; i++) d.heartbeat(i * 1000);
    const before = { n: d.sampleCount, mean: d.mean };
    d.heartbeat(20_000 + 60_000); // φ was far above the threshold when this arrived
    assert.deepEqual({ n: d.sampleCount, mean: d.mean }, before);
    assert.ok(d.phi(81_000) < 0.01, 'but the heartbeat itself restarts the clock');
  });

  it('rises with silence at the configured pace', () => {
    const d = new PhiAccrualDetector();
    for (let i = 0; i <= 100; i++) d.heartbeat(i * 1000);
    // Perfectly regular: sd floored at 100 ms, mean 1000 + 3000 acceptable pause.
    assert.equal(d.mean, 1000);
    const last = 100_000;
    assert.ok(d.phi(last + 4000) < 0.5);
    assert.ok(d.phi(last + 4400) < PHI_DEFAULTS.threshold);
    assert.ok(d.phi(last + 4600) >= PHI_DEFAULTS.threshold);
  });

  it('is monotonically non-decreasing in silence time, whatever the history', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 10_000 }), { maxLength: 150 }),
        fc.record({
          firstHeartbeatEstimateMs: fc.integer({ min: 1, max: 10_000 }),
          maxSampleSize: fc.integer({ min: 2, max: 100 }),
          minStdDeviationMs: fc.double({ min: 0.1, max: 1000, noNaN: true }),
          acceptableHeartbeatPauseMs: fc.integer({ min: 0, max: 10_000 }),
        }),
        fc.double({ min: 0, max: 1e7, noNaN: true }),
        fc.double({ min: 0, max: 1e7, noNaN: true }),
        (intervals, options, a, b) => {
          const d = new PhiAccrualDetector(options);
          let t = 0;
          d.heartbeat(t);
          for (const dt of intervals) d.heartbeat((t += dt));
          const [s1, s2] = a <= b ? [a, b] : [b, a];
          const p1 = d.phi(t + s1);
          const p2 = d.phi(t + s2);
          assert.ok(Number.isFinite(p1) && Number.isFinite(p2) && p1 >= 0);
          assert.ok(p1 <= p2, `phi(${s1}) = ${p1} > phi(${s2}) = ${p2}`);
        },
      ),
      fcParams,
    );
  });
});
