/**
 * `npm run demo` (scripts/demo.ts), run as users run it: it must start its mesh, complete tasks,
 * and stop every node it started, by itself after --duration and on Ctrl-C (SIGINT).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { until } from '../helpers/mesh-process.js';

const DEMO = resolve(import.meta.dirname, '../../scripts/demo.ts');

interface Summary {
  demo: string;
  nodes: number;
  submitted: number;
  completed: number;
  cleanExit: boolean;
}

function startDemo(args: string[]): { child: ChildProcess; lines: string[]; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', DEMO, ...args], {
    cwd: resolve(import.meta.dirname, '../..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (l) => lines.push(l));
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => lines.push(`stderr: ${l}`));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  // Never outlive the test, whatever happens to it.
  const kill = (): boolean => child.kill('SIGKILL');
  process.once('exit', kill);
  void exited.then(() => process.off('exit', kill));
  return { child, lines, exited };
}

async function exitWithin(p: Promise<number | null>, ms: number, child: ChildProcess): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)));
  const r = await Promise.race([p, timeout]);
  clearTimeout(timer);
  if (r === 'timeout') {
    child.kill('SIGKILL');
    throw new Error(`the demo did not exit within ${ms / 1000} s`);
  }
  return r;
}

/** The API URLs the demo printed (`dashboard http://...`). */
const dashboards = (lines: string[]): string[] =>
  lines.flatMap((l) => /dashboard (http:\/\/127\.0\.0\.1:\d+)\/$/.exec(l)?.slice(1) ?? []);

async function answers(api: string): Promise<boolean> {
  try {
    await fetch(`${api}/v1/health`, { signal: AbortSignal.timeout(1000) });
    return true;
  } catch {
    return false;
  }
}

describe('npm run demo', { timeout: 240_000 }, () => {
  it('starts three nodes, completes tasks, and stops everything by itself after --duration', async () => {
    const demo = startDemo(['--duration', '12', '--rate', '3']);
    const code = await exitWithin(demo.exited, 150_000, demo.child);
    const out = demo.lines.join('\n');
    assert.equal(code, 0, out);
    const apis = dashboards(demo.lines);
    assert.equal(apis.length, 3, out);
    assert.match(out, /npx mesh tasks --api http:\/\/127\.0\.0\.1:\d+/);
    const summary = JSON.parse(demo.lines.at(-1) ?? '') as Summary;
    assert.equal(summary.demo, 'done');
    assert.equal(summary.nodes, 3);
    assert.ok(summary.submitted > 0, out);
    assert.ok(summary.completed > 0, `tasks completed: ${out}`);
    assert.equal(summary.cleanExit, true, out);
    for (const api of apis) assert.equal(await answers(api), false, `${api} still answers after the demo`);
  });

  it('stops its nodes and exits on Ctrl-C (SIGINT)', async () => {
    const demo = startDemo(['--nodes', '1', '--rate', '5']);
    await until(
      () => demo.lines.some((l) => /^demo: \d+ submitted \|.*COMPLETED [1-9]/.test(l)),
      Boolean,
      90_000,
      `a report with completed tasks; output so far:\n${demo.lines.join('\n')}`,
      200,
    );
    demo.child.kill('SIGINT');
    const code = await exitWithin(demo.exited, 30_000, demo.child);
    assert.equal(code, 0, demo.lines.join('\n'));
    const summary = JSON.parse(demo.lines.at(-1) ?? '') as Summary;
    assert.ok(summary.completed > 0);
    assert.equal(summary.cleanExit, true);
    const [api] = dashboards(demo.lines);
    assert.equal(await answers(api as string), false, 'the node is gone');
  });
});
