import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { MeshProcess } from '../helpers/mesh-process.js';

const MESH_JS = resolve(import.meta.dirname, '../../dist/mesh.js');

/** Runs `mesh ...` to completion (bounded) and returns its exit code and output. */
function run(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [MESH_JS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

describe('mesh CLI', { timeout: 90_000 }, () => {
  const nodes: MeshProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(nodes.map((n) => n.dispose()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('prints its id, listen multiaddrs with /p2p/<peerId> and API URL, one per line', async () => {
    const a = await new MeshProcess({ name: 'cli-a' }).start();
    nodes.push(a);
    assert.match(a.id, /^12D3KooW/);
    assert.ok(a.listen.length > 0);
    for (const l of a.listen) assert.match(l, new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${a.id}$`));
    assert.match(a.api, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(a.lines.slice(0, 3), [`node ${a.id}`, `listen ${a.listen[0]}`, `api ${a.api}`]);
  });

  it('says clearly when the data directory is in use or the API port is taken', async () => {
    const a = nodes[0] as MeshProcess;
    const sameDir = await run([
      'start',
      '--data',
      a.dataDir,
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--api',
      '127.0.0.1:0',
    ]);
    assert.equal(sameDir.code, 1);
    assert.match(sameDir.stderr, /data directory .* is in use by another mesh node/);
    const port = new URL(a.api).port;
    const dir = mkdtempSync(join(tmpdir(), 'mesh-cli-'));
    dirs.push(dir);
    const samePort = await run([
      'start',
      '--data',
      dir,
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--api',
      `127.0.0.1:${port}`,
    ]);
    assert.equal(samePort.code, 1);
    assert.match(samePort.stderr, new RegExp(`127\\.0\\.0\\.1:${port}.*already in use`));
    const badArg = await run(['start', '--api', 'nonsense']);
    assert.notEqual(badArg.code, 0);
    assert.match(badArg.stderr, /HOST:PORT/);
  });

  it('shuts down cleanly on SIGTERM and restarts on the same data directory with the same id', async () => {
    const a = nodes[0] as MeshProcess;
    assert.equal((await a.call('PUT', '/v1/agents/kept', { name: 'kept', type: 't' })).status, 200);
    assert.equal(await a.kill('SIGTERM'), 0, 'exit code 0 after a clean shutdown');
    const again = await new MeshProcess({ dataDir: a.dataDir }).start();
    nodes.push(again);
    assert.equal(again.id, a.id);
    assert.equal((await again.call('GET', '/v1/agents/kept')).status, 200);
  });

  it('keygen writes a pre-shared key file and refuses to overwrite it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mesh-cli-'));
    dirs.push(dir);
    const file = join(dir, 'mesh.psk');
    const first = await run(['keygen', file]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(readFileSync(file, 'utf8'), /^\/key\/swarm\/psk\/1\.0\.0\//);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const second = await run(['keygen', file]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /refusing to overwrite/);
  });
});
