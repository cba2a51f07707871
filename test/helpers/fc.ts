/**
 * fast-check settings shared by every property test: a fixed default seed so CI runs are
 * reproducible (override with FC_SEED to explore, FC_RUNS to go deeper); fast-check prints the
 * seed and the shrunk counterexample on failure.
 */
export const fcParams = {
  numRuns: Number(process.env.FC_RUNS ?? 1000),
  seed: Number(process.env.FC_SEED ?? 20261121),
};
