/**
 * Test-only clock skew: with `--faults` and `MESH_TEST_CLOCK_OFFSET_MS=<ms>` in its environment,
 * a node's wall clock (`Date.now`, and so `new Date()`-free readings everywhere: the HLC,
 * heartbeats, membership, clock exchanges, log timestamps) runs that many milliseconds off, as
 * on a machine whose clock is wrong. Monotonic timers (`performance.now`, setTimeout) are
 * untouched, as they are on such a machine. Never set outside tests.
 */
export function applyTestClockOffset(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.MESH_TEST_CLOCK_OFFSET_MS;
  if (raw === undefined || raw === '') return 0;
  const offset = Number(raw);
  if (!Number.isSafeInteger(offset)) throw new RangeError(`MESH_TEST_CLOCK_OFFSET_MS must be an integer, got ${raw}`);
  const real = Date.now.bind(Date);
  Date.now = () => real() + offset;
  return offset;
}
