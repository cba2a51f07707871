#!/usr/bin/env node
// The benchmark's trivial stdio agent: answers every task with its payload at once, no progress,
// no logs, so that what a benchmark measures is the host's and the mesh's cost per task. With
// BENCH_RUN_LOG set it appends each task id it runs to that file (duplicate counting).
import { createWriteStream } from 'node:fs';
import process from 'node:process';
import { createInterface } from 'node:readline';

const runLog = process.env.BENCH_RUN_LOG ? createWriteStream(process.env.BENCH_RUN_LOG, { flags: 'a' }) : undefined;
const out = (m) => process.stdout.write(`${JSON.stringify(m)}\n`);
createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line);
  if (m.type === 'hello') out({ type: 'ready', protocol: 1, capabilities: ['trivial'] });
  else if (m.type === 'task') {
    runLog?.write(`${m.task.id}\n`);
    out({ type: 'result', id: m.task.id, result: { echo: m.task.payload } });
  } else if (m.type === 'ping') out({ type: 'pong', seq: m.seq });
});
process.stdin.on('end', () => runLog?.end());
