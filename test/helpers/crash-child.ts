import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * Runs a crash-test child (`node --import tsx <args>`), waits for its first `ack` line (at most
 * 15 s), lets it run `killAfterMs` more, kills it with SIGKILL and returns the complete lines it
 * printed: a line cut by the kill was never a full acknowledgement. Waits for 'close', not
 * 'exit': only then has every byte the child wrote to stdout been read.
 */
export async function runUntilKilled(args: string[], killAfterMs: number): Promise<string[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  try {
    let out = '';
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d.slice(0, 4000)));
    const firstAck = new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('\nack ')) resolve();
      });
      void exited.then(() => reject(new Error(`child exited before its first ack (code ${child.exitCode}): ${err}`)));
    });
    const noAck = new AbortController();
    try {
      await Promise.race([
        firstAck,
        sleep(15_000, undefined, { signal: noAck.signal }).then(() => {
          throw new Error(`no ack from the child within 15 s: ${err}`);
        }),
      ]);
    } finally {
      noAck.abort();
    }
    await sleep(killAfterMs);
    child.kill('SIGKILL');
    await exited;
    assert.equal(child.signalCode, 'SIGKILL', `child died on its own: ${err}`);
    return out.slice(0, out.lastIndexOf('\n') + 1).split('\n');
  } finally {
    child.kill('SIGKILL');
    const giveUp = new AbortController();
    await Promise.race([exited, sleep(5000, undefined, { signal: giveUp.signal }).catch(() => undefined)]);
    giveUp.abort();
    live.delete(child);
  }
}
