/**
 * Benchmark harness: `npm run bench -- <suite...>` (default: core). Prints a table per suite and
 * writes JSON to bench/results/<suite>.json (the latest run, committed) with machine facts.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Row } from './util.js';

type Suite = () => Promise<Row[]>;

const suites: Record<string, Array<[string, () => Promise<Suite>]>> = {
  core: [
    ['replica', async () => (await import('./replica.js')).benchReplica],
    ['codec', async () => (await import('./codec.js')).benchCodec as Suite],
    ['merkle-bloom', async () => (await import('./merkle-bloom.js')).benchMerkleBloom as Suite],
    ['store', async () => (await import('./store.js')).benchStore as Suite],
  ],
  mesh: [['mesh', async () => (await import('./mesh.js')).benchMesh]],
  net: [['net', async () => (await import('./net-latency.js')).benchNet as Suite]],
  exec: [['exec', async () => (await import('./exec.js')).benchExec]],
  sched: [['sched', async () => (await import('./sched.js')).benchSched]],
  api: [['api', async () => (await import('./api.js')).benchApi]],
};

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const names = args.length > 0 ? args : ['core'];
  const here = dirname(fileURLToPath(import.meta.url));
  mkdirSync(join(here, 'results'), { recursive: true });
  for (const name of names) {
    const parts = suites[name];
    if (parts === undefined) {
      console.error(`unknown suite ${name}; suites: ${Object.keys(suites).join(', ')}`);
      process.exitCode = 2;
      return;
    }
    const result: Record<string, Row[]> = {};
    for (const [part, load] of parts) {
      console.log(`\n## ${name}: ${part}`);
      const rows = await (await load())();
      console.table(rows);
      result[part] = rows;
    }
    const file = join(here, 'results', `${name}.json`);
    const machine = {
      node: process.version,
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model,
      memGiB: Math.round(os.totalmem() / 2 ** 30),
    };
    writeFileSync(
      file,
      `${JSON.stringify({ suite: name, date: new Date().toISOString(), machine, result }, null, 2)}\n`,
    );
    console.log(`\nwrote ${file}`);
  }
}

await main();
