import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { parseApiUrl, parseListenAddress } from '../../src/cli/address.js';
import { ApiClient } from '../../src/cli/api-client.js';
import { isCliError } from '../../src/cli/errors.js';
import { age, colorsFor } from '../../src/cli/format.js';
import { sseFrames, watchEvents } from '../../src/cli/watch.js';

describe('--api spellings', () => {
  it('clients take HOST:PORT and URLs alike', () => {
    for (const [given, want] of [
      ['127.0.0.1:7070', 'http://127.0.0.1:7070'],
      ['localhost:8080', 'http://localhost:8080'],
      ['[::1]:7070', 'http://[::1]:7070'],
      ['http://127.0.0.1:7070', 'http://127.0.0.1:7070'],
      ['http://127.0.0.1:7070/v1/status', 'http://127.0.0.1:7070'],
      ['https://mesh.example:443', 'https://mesh.example'],
    ] as const) {
      assert.equal(parseApiUrl(given).origin, want, given);
    }
    for (const bad of ['nonsense', '7070', 'host:', 'host:99999', '::1:7070', 'ftp://x:1', 'http://']) {
      assert.throws(() => parseApiUrl(bad), /expected HOST:PORT .*http:\/\/ URL/, bad);
    }
  });

  it('start takes them too, as a host and port to listen on', () => {
    assert.deepEqual(parseListenAddress('0.0.0.0:7070'), { host: '0.0.0.0', port: 7070 });
    assert.deepEqual(parseListenAddress('http://127.0.0.1:7171'), { host: '127.0.0.1', port: 7171 });
    assert.deepEqual(parseListenAddress('http://[::1]:7171'), { host: '::1', port: 7171 });
    assert.throws(() => parseListenAddress('https://127.0.0.1:7171'), /plain http/);
  });
});

describe('human output', () => {
  it('ages', () => {
    const now = 1_000_000_000;
    assert.equal(age(now - 3_000, now), '3s ago');
    assert.equal(age(now - 5 * 60_000, now), '5m ago');
    assert.equal(age(now - 2 * 3_600_000, now), '2h ago');
    assert.equal(age(now - 4 * 86_400_000, now), '4d ago');
    assert.equal(age(now + 3_000, now), 'in 3s');
    assert.equal(age(null, now), '-');
  });

  it('colours only on a terminal, never with NO_COLOR, even where picocolors would (CI)', () => {
    const saved = { ...process.env };
    try {
      delete process.env.FORCE_COLOR;
      process.env.CI = '1';
      const pipe = { isTTY: false } as NodeJS.WriteStream;
      const tty = { isTTY: true } as NodeJS.WriteStream;
      delete process.env.NO_COLOR;
      process.env.TERM = 'xterm';
      assert.equal(colorsFor(pipe).red('x'), 'x');
      assert.notEqual(colorsFor(tty).red('x'), 'x');
      process.env.NO_COLOR = '1';
      assert.equal(colorsFor(tty).red('x'), 'x');
    } finally {
      process.env = saved;
    }
  });
});

describe('event stream client', () => {
  it('parses frames: ids, event names, multi-line data, comments, CRLF', async () => {
    const text = ': connected\n\nid: 1\nevent: task\ndata: {"a":1}\n\nid: 2\r\ndata: x\r\ndata: y\r\n\r\n';
    const body = (async function* () {
      // Split mid-line, as a network would.
      yield new TextEncoder().encode(text.slice(0, 25));
      yield new TextEncoder().encode(text.slice(25));
    })();
    const frames = [];
    for await (const f of sseFrames(body)) frames.push(f);
    assert.deepEqual(frames, [
      { id: '1', event: 'task', data: '{"a":1}' },
      { id: '2', data: 'x\ny' },
    ]);
  });

  it('reconnects after the stream ends, sends Last-Event-ID, prints the gap message, stops on abort', async () => {
    const requests: Array<string | undefined> = [];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      requests.push(req.headers['last-event-id'] as string | undefined);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (requests.length === 1) {
        // First connection: two events, then the server drops it (a node stopping).
        res.end('id: 7\nevent: task\ndata: {"n":1}\n\nid: 8\nevent: task\ndata: {"n":2}\n\n');
      } else {
        res.write('event: gap\ndata: {"message":"events after 8 are no longer held; 3 missed"}\n\n');
        res.write('id: 12\nevent: task\ndata: {"n":3}\n\n');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const abort = new AbortController();
    const events: string[] = [];
    const notices: string[] = [];
    try {
      await watchEvents(new ApiClient(new URL(`http://127.0.0.1:${port}`)), {
        signal: abort.signal,
        minBackoffMs: 10,
        maxBackoffMs: 20,
        onEvent: (f) => {
          events.push(f.data);
          if (events.length === 3) abort.abort();
        },
        onNotice: (m) => notices.push(m),
      });
    } finally {
      server.closeAllConnections();
      server.close();
    }
    assert.deepEqual(events, ['{"n":1}', '{"n":2}', '{"n":3}']);
    assert.deepEqual(requests, [undefined, '8'], 'the reconnect resumes after the last id seen');
    assert.ok(notices.includes('events after 8 are no longer held; 3 missed'), notices.join(' | '));
    assert.ok(
      notices.some((n) => n.startsWith('reconnected (resuming after event 8)')),
      notices.join(' | '),
    );
  });

  it("fails at once with the API's explanation when the first request is refused", async () => {
    const server = createServer((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'INVALID_INPUT', message: 'invalid query: query.kind.0: bad kind' } }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      await assert.rejects(
        watchEvents(new ApiClient(new URL(`http://127.0.0.1:${port}`)), {
          kind: 'bogus',
          onEvent: () => {},
          onNotice: () => {},
        }),
        (err: unknown) => isCliError(err, 'API_ERROR') && /bad kind \[400 INVALID_INPUT\]/.test(err.message),
      );
    } finally {
      server.close();
    }
  });
});
