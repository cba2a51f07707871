/**
 * The network says what happens, in one info line each (pino JSON on a node's stderr): a join
 * target that cannot be reached (and when it is reached after all), and a pre-shared-key
 * mismatch named as the likely cause instead of a debug-level handshake timeout.
 */
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generatePsk } from '../../src/net/keys.js';
import { MeshProcess, shutdownNodes } from '../helpers/mesh-process.js';

const INFO = ['--log-level', 'info'];

/** A loopback port nobody listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('network log lines', { timeout: 90_000 }, () => {
  const nodes: MeshProcess[] = [];
  const keyDir = mkdtempSync(join(tmpdir(), 'mesh-psk-'));
  after(async () => {
    await shutdownNodes(nodes);
    rmSync(keyDir, { recursive: true, force: true });
  });

  it('a join target that cannot be reached is logged with the reason, and so is reaching it later', async () => {
    const port = await freePort();
    const target = `/ip4/127.0.0.1/tcp/${port}`;
    const joiner = await new MeshProcess({ name: 'joiner', join: [target], extraArgs: INFO }).start();
    nodes.push(joiner);
    const line = await joiner.waitForLog(
      (e) => e.addr === target && /cannot reach join target/.test(String(e.msg)),
      15_000,
      'the unreachable join target',
    );
    assert.equal(line.level, 30, 'info');
    assert.match(String(line.reason), /connection refused/);

    // The target comes up on that port: the joiner's retries reach it, and it says so once.
    const late = await new MeshProcess({ name: 'late', extraArgs: ['--listen', target] }).start();
    nodes.push(late);
    await joiner.waitForLog(
      (e) => e.addr === target && /reached join target/.test(String(e.msg)),
      40_000,
      'the join target reached',
    );
    const failures = joiner.stderr.filter((l) => l.includes('cannot reach join target'));
    assert.equal(failures.length, 1, `one line for the whole streak of failures:\n${failures.join('\n')}`);
  });

  it('a pre-shared-key mismatch is named as the likely cause', async () => {
    const keyA = join(keyDir, 'a.key');
    const keyB = join(keyDir, 'b.key');
    writeFileSync(keyA, generatePsk());
    writeFileSync(keyB, generatePsk());
    const a = await new MeshProcess({ name: 'psk-a', extraArgs: [...INFO, '--psk', keyA] }).start();
    nodes.push(a);
    const b = await new MeshProcess({ name: 'psk-b', join: [a.addr], extraArgs: [...INFO, '--psk', keyB] }).start();
    nodes.push(b);
    const line = await b.waitForLog(
      (e) => e.peer === a.id && /cannot reach join target/.test(String(e.msg)),
      20_000,
      'the failed join',
    );
    assert.equal(line.level, 30, 'info');
    assert.match(String(line.reason), /pre-shared key mismatch/);
    const status = await a.get<{ peers: { connected: number } }>('/v1/status');
    assert.equal(status.peers.connected, 0, 'no connection across different keys');
  });
});
