/**
 * The operator's surface of the `mesh` command, run for real: `node dist/mesh.js` against real
 * node processes on 127.0.0.1, stdout piped (so no colours and no bars: the plain forms).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { MeshProcess, until } from '../helpers/mesh-process.js';

const MESH_JS = resolve(import.meta.dirname, '../../dist/mesh.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `mesh ...` to completion (bounded) and returns its exit code and output. */
function mesh(args: string[], timeoutMs = 20_000, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [MESH_JS, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '', ...env },
    });
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

/** A port that was free a moment ago (for an API that must keep its port across a restart). */
function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

const hostPort = (api: string): string => new URL(api).host;

describe('mesh CLI: the operator surface', { timeout: 360_000 }, () => {
  const nodes: MeshProcess[] = [];
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'mesh-op-'));
    dirs.push(d);
    return d;
  };
  after(async () => {
    await Promise.all(nodes.map((n) => n.dispose()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('prints tables by default and the JSON with --json; --api takes HOST:PORT and URLs alike', async () => {
    const a = await new MeshProcess({ name: 'op-a' }).start();
    nodes.push(a);
    const reg = await mesh(['agent', 'register', 'ext-1', '--type', 'worker', '--capability', 'sum', '--api', a.api]);
    assert.equal(reg.code, 0, reg.stderr);
    assert.match(reg.stdout, new RegExp(`registered agent ext-1 on node ${a.id}`));

    const table = await mesh(['agents', '--api', hostPort(a.api)]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^ID\s+NAME\s+TYPE\s+STATE\s+HEALTH\s+LOAD\s+NODE\s+CAPABILITIES\s+HEARTBEAT$/);
    assert.match(
      lines[1] ?? '',
      /^ext-1\s+ext-1\s+worker\s+INITIALIZING\s+\S+\s+0\/\d+\s+12D3KooW\S+\s+sum\s+\d+s ago$/,
    );
    assert.ok(!table.stdout.includes('\u001b['), 'no colour codes in a pipe');

    const json = await mesh(['agents', '--json', '--api', a.api]);
    const list = JSON.parse(json.stdout) as Array<{ id: string; owner: string; capabilities: string[] }>;
    assert.deepEqual(
      list.map((x) => [x.id, x.owner, x.capabilities]),
      [['ext-1', a.id, ['sum']]],
    );

    const iso = await mesh(['agents', '--time', 'iso', '--api', a.api]);
    assert.match(iso.stdout, /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/);

    const status = await mesh(['status', '--api', a.api]);
    assert.match(status.stdout, new RegExp(`^node\\s+${a.id}$`, 'm'));
    assert.match(status.stdout, /^uptime\s+\d+/m);
    assert.equal((JSON.parse((await mesh(['status', '--json', '--api', a.api])).stdout) as { id: string }).id, a.id);

    // update changes only what is given; remove takes it out of the list.
    const upd = await mesh(['agent', 'update', 'ext-1', '--name', 'External', '--meta', '{"k":1}', '--api', a.api]);
    assert.equal(upd.code, 0, upd.stderr);
    const shown = await a.get<{ name: string; type: string; capabilities: string[]; meta: unknown }>(
      '/v1/agents/ext-1',
    );
    assert.deepEqual(
      [shown.name, shown.type, shown.capabilities, shown.meta],
      ['External', 'worker', ['sum'], { k: 1 }],
    );
    const rm = await mesh(['agent', 'remove', 'ext-1', '--api', a.api]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await mesh(['agents', '--api', a.api])).stdout.trim(), 'no agents');
  });

  it('shows one task in words, retries a FAILED one and cancels another', async () => {
    const a = nodes[0] as MeshProcess;
    assert.equal(
      (await a.call('POST', '/v1/tasks', { id: 'op-t1', type: 'build', title: 'one', maxRetries: 0 })).status,
      201,
    );
    // An external worker's run: with a lease, or the node's expiry check would fail it first.
    const leased = { status: 'IN_PROGRESS', leaseUntil: Date.now() + 60_000 };
    assert.equal((await a.call('PATCH', '/v1/tasks/op-t1', leased)).status, 200);
    const failed = await a.call('PATCH', '/v1/tasks/op-t1', {
      status: 'FAILED',
      error: { code: 'BROKEN', message: 'it broke' },
    });
    assert.equal(failed.status, 200, JSON.stringify(failed.body));

    const show = await mesh(['task', 'op-t1', '--api', a.api]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /^status\s+FAILED$/m);
    assert.match(show.stdout, /^attempt\s+1 of 1 \(epoch 0\)$/m);
    assert.match(show.stdout, /^error\s+.*BROKEN/m);

    const retry = await mesh(['task', 'retry', 'op-t1', '--api', a.api]);
    assert.equal(retry.code, 0, retry.stderr);
    assert.equal(retry.stdout.trim(), 'task op-t1: PENDING (attempt 2)');
    const after = await mesh(['task', 'op-t1', '--api', a.api]);
    assert.match(after.stdout, /^ATTEMPT\s+STATUS/m, 'the failed attempt is listed');
    assert.match(after.stdout, /^1\s+FAILED\s/m);

    const again = await mesh(['task', 'retry', 'op-t1', '--api', a.api]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /mesh: task op-t1 is PENDING: cannot retry.*\[409 INVALID_TRANSITION\]/);

    const cancel = await mesh(['task', 'cancel', 'op-t1', '--api', a.api]);
    assert.equal(cancel.stdout.trim(), 'task op-t1: CANCELLED');
    assert.equal((await a.get<{ status: string }>('/v1/tasks/op-t1')).status, 'CANCELLED');

    const tasks = await mesh(['tasks', '--status', 'CANCELLED', '--api', a.api]);
    assert.match(tasks.stdout, /^op-t1\s+build\s+one\s+CANCELLED\s+2\s/m);
  });

  it('explains its errors: unreachable API, bad flags, the API refusing a filter, a listen port in use', async () => {
    const a = nodes[0] as MeshProcess;
    const port = await freePort();
    const down = await mesh(['status', '--api', `127.0.0.1:${port}`]);
    assert.equal(down.code, 1);
    assert.match(
      down.stderr,
      new RegExp(`cannot reach the node's API at http://127\\.0\\.0\\.1:${port} \\(connection refused\\)`),
    );
    assert.match(down.stderr, /mesh start/);

    const badUrl = await mesh(['status', '--api', 'nonsense']);
    assert.notEqual(badUrl.code, 0);
    assert.match(badUrl.stderr, /HOST:PORT .* or an http:\/\/ URL/);
    assert.doesNotMatch(badUrl.stderr, /Invalid URL/);

    const payload = await mesh(['submit', '--type', 't', '--payload', '{bad', '--api', a.api]);
    assert.notEqual(payload.code, 0);
    assert.match(payload.stderr, /--payload is not valid JSON/);

    const kind = await mesh(['watch', '--kind', 'bogus', '--api', a.api]);
    assert.equal(kind.code, 1);
    assert.match(kind.stderr, /query\.kind.*expected one of "agent"\|"task"\|"node".*\[400 INVALID_INPUT\]/);

    const busyListen = a.listen[0]?.replace(/\/p2p\/.*$/, '') as string;
    const busy = await mesh(['start', '--data', tmp(), '--listen', busyListen, '--api', '127.0.0.1:0']);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, new RegExp(`listen address ${busyListen} is already in use.*--listen`));
    assert.doesNotMatch(busy.stderr, /transportManager|faultTolerance/);

    // `start` takes a URL for --api as well as HOST:PORT.
    const busyApi = await mesh(['start', '--data', tmp(), '--listen', '/ip4/127.0.0.1/tcp/0', '--api', a.api]);
    assert.match(
      busyApi.stderr,
      new RegExp(`API address ${hostPort(a.api)} is already in use; choose another with --api`),
    );
  });

  it('--log-level reaches the loggers components create at import time (mesh:store)', async () => {
    const debug = await new MeshProcess({ name: 'op-log', extraArgs: ['--log-level', 'debug'] }).start();
    nodes.push(debug);
    await until(
      () => debug.stderr.some((l) => l.includes('"c":"mesh:store"')),
      Boolean,
      5000,
      'a mesh:store debug line',
    );
    const quiet = await new MeshProcess({ name: 'op-quiet', extraArgs: ['--log-level', 'error'] }).start();
    nodes.push(quiet);
    await quiet.call('PUT', '/v1/agents/q1', { name: 'q', type: 't' });
    await debug.stop();
    await quiet.stop();
    assert.ok(!quiet.stderr.some((l) => l.includes('"c":"mesh:store"')), quiet.stderr.join('\n'));
  });

  it('forgets a dead peer, never a live one', async () => {
    const fast = ['--heartbeat-ms', '200'];
    const a = await new MeshProcess({ name: 'op-f1', extraArgs: fast }).start();
    const b = await new MeshProcess({ name: 'op-f2', join: [a.addr], extraArgs: fast }).start();
    nodes.push(a, b);
    const peerState = async (): Promise<string | undefined> =>
      (await a.get<Array<{ id: string; state: string }>>('/v1/peers')).find((p) => p.id === b.id)?.state;
    await until(peerState, (s) => s === 'alive', 15_000, 'b alive on a');
    // b joined with its output in pipes: no catch-up bar there (see the terminal test below).
    assert.ok(!b.stderr.some((l) => l.includes('catching up')), b.stderr.join('\n'));

    const live = await mesh(['peer', 'forget', b.id, '--api', a.api]);
    assert.equal(live.code, 1);
    assert.match(live.stderr, /is (connected|alive): only a dead peer can be forgotten \[409 PEER_ALIVE\]/);

    await b.kill('SIGKILL');
    await until(peerState, (s) => s === 'dead', 20_000, 'b dead on a');
    // A prefix of the id is enough when it is unambiguous.
    const forget = await mesh(['peer', 'forget', b.id.slice(0, 20), '--api', a.api]);
    assert.equal(forget.code, 0, forget.stderr);
    assert.equal(forget.stdout.trim(), `forgot peer ${b.id} (op-f2)`);
    const peers = JSON.parse((await mesh(['peers', '--json', '--api', a.api])).stdout) as Array<{ id: string }>;
    assert.deepEqual(peers, [], 'b is no longer listed');
    assert.equal((await a.get<{ peers: { known: number } }>('/v1/status')).peers.known, 0);
    const unknown = await mesh(['peer', 'forget', '12D3KooWNotAPeer', '--api', a.api]);
    assert.match(unknown.stderr, /peer 12D3KooWNotAPeer not found \[404 NOT_FOUND\]/);
    // Restarted, a still lists no b (the mark is persisted) and does not dial it.
    await a.stop();
    const again = await new MeshProcess({ dataDir: a.dataDir, extraArgs: fast }).start();
    nodes.push(again);
    assert.deepEqual(await again.get('/v1/peers'), []);
  });

  it('backs up a stopped node and restores it into a fresh directory: same id, same records', async () => {
    const src = await new MeshProcess({ name: 'op-b' }).start();
    nodes.push(src);
    for (let i = 0; i < 25; i++) {
      assert.equal((await src.call('POST', '/v1/tasks', { id: `bk-${i}`, type: 'b', title: `t${i}` })).status, 201);
    }
    await src.call('PUT', '/v1/agents/bk-agent', { name: 'kept', type: 't', capabilities: ['x'] });
    await src.call('POST', '/v1/tasks/bk-3/cancel');
    const before = {
      tasks: await src.get<Array<{ id: string; status: string }>>('/v1/tasks'),
      agents: await src.get<Array<{ id: string; capabilities: string[] }>>('/v1/agents'),
    };
    const dir = tmp();
    const file = join(dir, 'node.snap');

    const running = await mesh(['backup', file, '--data', src.dataDir]);
    assert.equal(running.code, 1);
    assert.match(running.stderr, /is in use by a running mesh node; stop it first/);
    assert.equal(existsSync(file), false);

    await src.stop();
    const backup = await mesh(['backup', file, '--data', src.dataDir]);
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(backup.stdout, /^backup .*node\.snap: \d+ records, \d+ meta entries, \d+ bytes$/m);
    assert.match(backup.stderr, /backup: verified/, 'plain progress lines off a terminal');
    assert.equal((await mesh(['backup', file, '--data', src.dataDir])).code, 1, 'never overwrites a backup');

    const target = join(dir, 'restored');
    const restore = await mesh(['restore', file, '--data', target]);
    assert.equal(restore.code, 0, restore.stderr);
    assert.match(restore.stdout, new RegExp(`restored \\d+ records into ${target}`));
    const twice = await mesh(['restore', file, '--data', target]);
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /already holds a node's data; restore into an empty/);

    const restored = await new MeshProcess({ dataDir: target }).start();
    nodes.push(restored);
    assert.equal(restored.id, src.id, 'the restored node is the same node');
    assert.deepEqual(
      (await restored.get<Array<{ id: string; status: string }>>('/v1/tasks')).map((t) => [t.id, t.status]),
      before.tasks.map((t) => [t.id, t.status]),
    );
    assert.deepEqual(
      (await restored.get<Array<{ id: string; capabilities: string[] }>>('/v1/agents')).map((a) => [
        a.id,
        a.capabilities,
      ]),
      before.agents.map((a) => [a.id, a.capabilities]),
    );

    // --new-identity: same records under a new peer id.
    const fresh = join(dir, 'fresh');
    assert.equal((await mesh(['restore', file, '--data', fresh, '--new-identity'])).code, 0);
    const other = await new MeshProcess({ dataDir: fresh }).start();
    nodes.push(other);
    assert.notEqual(other.id, src.id);
    assert.equal((await other.get<unknown[]>('/v1/tasks')).length, before.tasks.length);

    // A damaged file is refused before anything is written.
    const bad = join(dir, 'bad.snap');
    const { readFileSync, writeFileSync } = await import('node:fs');
    const bytes = readFileSync(file);
    bytes.writeUInt8((bytes.at(-5) ?? 0) ^ 0xff, bytes.length - 5);
    writeFileSync(bad, bytes);
    const refused = await mesh(['restore', bad, '--data', join(dir, 'never')]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is not a usable backup: .*checksum/);
    assert.equal(existsSync(join(dir, 'never')), false);
  });

  it('submit --wait shows the progress as lines off a terminal and exits 1 unless COMPLETED', async () => {
    const a = nodes[0] as MeshProcess;
    const agents = join(resolve(import.meta.dirname, '../../examples'), 'agents.json');
    const n = await new MeshProcess({ name: 'op-w', extraArgs: ['--agents', agents] }).start();
    nodes.push(n);
    void a;
    const r = await mesh(['submit', '--type', 'greet', '--title', 'hi', '--agent', 'hello', '--wait', '--api', n.api]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^task \S+: COMPLETED on hello 100%$/m);
    assert.match(r.stdout, /^status\s+COMPLETED$/m);
    assert.match(r.stdout, /^result\s+\{"greeting":"hello from /m);
    const json = await mesh(['submit', '--type', 'greet', '--agent', 'hello', '--wait', '--json', '--api', n.api]);
    assert.equal((JSON.parse(json.stdout) as { status: string }).status, 'COMPLETED');
    await n.stop();
  });

  it('shows a catch-up bar when join runs on a terminal (and none in a pipe)', async (t) => {
    if (spawnSync('script', ['--version']).status !== 0) return t.skip('no script(1) to give the node a terminal');
    const a = await new MeshProcess({ name: 'op-cu' }).start();
    nodes.push(a);
    await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        a.call('POST', '/v1/tasks', { id: `cu-${i}`, type: 'c', capabilities: ['none'] }),
      ),
    );
    const dir = tmp();
    // script(1) runs the node on a pseudo-terminal; `timeout` bounds it whatever happens here.
    const cmd = [
      'timeout',
      '60',
      process.execPath,
      MESH_JS,
      'join',
      a.addr,
      '--data',
      dir,
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--api',
      '127.0.0.1:0',
      '--log-level',
      'warn',
    ]
      .map((x) => `'${x}'`)
      .join(' ');
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      await until(
        () => screen,
        (s) => /catching up .*caught up/s.test(s),
        45_000,
        'the bar to say caught up',
      );
      assert.match(screen, /catching up \[[^\]]+\] \d+\/\d+ keys/);
      assert.match(screen, /^api http:\/\/127\.0\.0\.1:\d+/m, 'the usual lines are still printed');
    } finally {
      // Closing the terminal hangs the node up (SIGHUP), as closing a terminal window would.
      child.kill('SIGHUP');
      await exited;
    }
  });

  it('watch reconnects by itself when its node restarts, and goes on printing', async () => {
    const port = await freePort();
    const dataDir = tmp();
    const opts = { dataDir, extraArgs: ['--api', `127.0.0.1:${port}`] };
    // MeshProcess passes --api 127.0.0.1:0 first; the later flag wins.
    let node = await new MeshProcess(opts).start();
    nodes.push(node);
    const child = spawn(
      process.execPath,
      [MESH_JS, 'watch', '--json', '--kind', 'task', '--api', `127.0.0.1:${port}`],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const outLines: string[] = [];
    const errLines: string[] = [];
    createInterface({ input: child.stdout }).on('line', (l) => outLines.push(l));
    createInterface({ input: child.stderr }).on('line', (l) => errLines.push(l));
    try {
      const seen = (id: string): boolean => outLines.some((l) => (JSON.parse(l) as { id: string }).id === id);
      // The watch is subscribed once a task created now shows up.
      await until(
        async () => {
          await node.call('POST', '/v1/tasks', { type: 'w', title: 'probe' });
          return outLines.length;
        },
        (n) => n > 0,
        10_000,
        'watch to print a first event',
        300,
      );
      await node.stop();
      node = await new MeshProcess(opts).start();
      nodes.push(node);
      await until(() => errLines.some((l) => l.includes('reconnected')), Boolean, 15_000, 'watch to reconnect');
      assert.equal((await node.call('POST', '/v1/tasks', { id: 'after-restart', type: 'w' })).status, 201);
      await until(() => seen('after-restart'), Boolean, 10_000, 'the event after the restart');
      assert.ok(
        errLines.some((l) => /mesh: (stream ended|node unreachable)/.test(l)),
        errLines.join('\n'),
      );
    } finally {
      child.kill('SIGTERM');
    }
    const code = await new Promise<number | null>((res) =>
      child.exitCode !== null ? res(child.exitCode) : child.once('exit', (c) => res(c)),
    );
    assert.equal(code, 0, 'watch ends cleanly on SIGTERM');
  });
});
