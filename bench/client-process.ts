/** Runs the benchmark client (bench/exec-client.ts) as its own process, outside any node. */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { round } from './util.js';

const CLIENT = resolve(import.meta.dirname, 'exec-client.ts');

export interface ClientResult {
  latencies: number[];
  wallMs: number;
}

/** One client process with `cfg` (see exec-client.ts); resolves with what it measured. */
export function runClient(cfg: Record<string, unknown>, timeoutMs = 600_000): Promise<ClientResult> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLIENT, JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return rej(new Error(`bench client ${String(cfg.mode)} exited with ${code ?? signal}`));
      res(JSON.parse(out.trim().split('\n').pop() as string) as ClientResult);
    });
  });
}

/** The spread of repeated runs as `min-max`, rounded. */
export const spreadOf = (xs: number[]): string => `${round(Math.min(...xs), 0)}-${round(Math.max(...xs), 0)}`;
