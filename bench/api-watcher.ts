/**
 * The API benchmark's watcher, run as its own process: follows one mesh node's `GET /v1/events`
 * (server-sent events) or one `kv.watch()` of the NATS baseline's bucket, and records when each
 * key reaches each version (see api-workload.ts). A stream the node drops for being too slow
 * (`event: error` with SLOW_CONSUMER) is counted and reopened, as a real client would; what it
 * missed meanwhile shows up as missing events. Usage: api-watcher.ts '<json config>'.
 *
 * Prints `ready` once subscribed. On a stdin line `settle <expect.json> <timeoutMs>` (key ->
 * last acknowledged version) it waits until every key reached its version or the timeout passed,
 * writes its arrivals to `cfg.out`, prints one JSON summary line (WatcherSummary) and exits.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { get, type IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import { type Arrivals, type Kind, keyOf, now, versionOf, type WatcherSummary } from './api-workload.js';

interface WatcherConfig {
  target: 'mesh' | 'nats';
  api?: string;
  natsPort?: number;
  bucket?: string;
  out: string;
}

const MAX_RECONNECTS = 50;

const cfg = JSON.parse(process.argv[2] as string) as WatcherConfig;
const arrivals: Arrivals = {};
const last = new Map<string, number>();
const errors: string[] = [];
let events = 0;
let dropped = 0;
let reconnects = 0;
let stopping = false;

function seen(kind: Kind, id: string, value: unknown, at: number): void {
  events++;
  const key = keyOf(kind, id);
  const v = versionOf(kind, value);
  if (v <= (last.get(key) ?? 0)) return;
  last.set(key, v);
  (arrivals[key] ??= []).push([v, at]);
}

/** Follows the node's event stream; resolves once subscribed (headers in), reopens it when it ends. */
function followMesh(): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = get(`${cfg.api as string}/v1/events?kind=agent,task`, (res: IncomingMessage) => {
      if (res.statusCode !== 200) {
        reject(new Error(`GET /v1/events: ${res.statusCode}`));
        res.resume();
        return;
      }
      resolve();
      res.setEncoding('utf8');
      let buf = '';
      let event = '';
      res.on('data', (chunk: string) => {
        const at = now();
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) {
            if (event === 'error') {
              if (line.includes('SLOW_CONSUMER')) dropped++;
              else if (errors.length < 10) errors.push(line.slice(6, 300));
              continue;
            }
            const e = JSON.parse(line.slice(6)) as { kind: string; id: string; value: unknown };
            if (e.kind === 'agent' || e.kind === 'task') seen(e.kind, e.id, e.value, at);
          }
        }
      });
      res.on('close', () => {
        if (stopping) return;
        if (reconnects >= MAX_RECONNECTS) {
          if (errors.length < 10) errors.push(`gave up after ${MAX_RECONNECTS} reconnects`);
          return;
        }
        reconnects++;
        setTimeout(() => {
          followMesh().catch((err: unknown) => errors.length < 10 && errors.push((err as Error).message));
        }, 100);
      });
    });
    req.on('error', (err) => {
      if (!stopping) reject(err);
    });
  });
}

async function followNats(): Promise<() => Promise<void>> {
  const { connect } = await import('@nats-io/transport-node');
  const { Kvm } = await import('@nats-io/kv');
  const nc = await connect({ servers: `127.0.0.1:${cfg.natsPort}` });
  const kv = await new Kvm(nc).open(cfg.bucket as string);
  const iter = await kv.watch({ key: '>', include: 'updates' });
  void (async () => {
    for await (const e of iter) {
      if (e.operation !== 'PUT') continue;
      const at = now();
      const dot = e.key.indexOf('.');
      const kind = e.key.slice(0, dot) === 'agents' ? 'agent' : 'task';
      seen(kind, e.key.slice(dot + 1), e.json(), at);
    }
  })().catch((err: unknown) => errors.length < 10 && errors.push((err as Error).message));
  return async () => {
    iter.stop();
    await nc.close();
  };
}

async function settle(file: string, timeoutMs: number): Promise<boolean> {
  const expect = Object.entries(JSON.parse(readFileSync(file, 'utf8')) as Record<string, number>);
  const deadline = Date.now() + timeoutMs;
  let open = expect;
  while (Date.now() < deadline) {
    open = open.filter(([k, v]) => (last.get(k) ?? 0) < v);
    if (open.length === 0) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

async function main(): Promise<void> {
  let close = async (): Promise<void> => {};
  if (cfg.target === 'nats') close = await followNats();
  else await followMesh();
  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin });
  lines.on('close', () => process.exit(0));
  const [cmd, file, timeout] = await new Promise<string[]>((resolve) =>
    lines.once('line', (l) => resolve(l.split(' '))),
  );
  const caughtUp = cmd === 'settle' ? await settle(file as string, Number(timeout)) : false;
  stopping = true;
  await close();
  writeFileSync(cfg.out, JSON.stringify(arrivals));
  const summary: WatcherSummary = { events, dropped, reconnects, caughtUp, errors };
  process.stdout.write(`${JSON.stringify(summary)}\n`, () => process.exit(0));
}

await main();
