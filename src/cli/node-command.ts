/**
 * `mesh start` / `mesh join`: builds and runs a node until a signal. Kept apart from main.ts and
 * imported only by those commands, because it pulls in libp2p, the agent drivers and the HTTP
 * server (about a second of start-up on a small machine) that client commands never need.
 */
import { readFile } from 'node:fs/promises';
import { isAgentError, loadDefinitions } from '../agents/index.js';
import { isApiError } from '../api/errors.js';
import { httpApi } from '../api/service.js';
import { isNetError, validatePsk } from '../net/index.js';
import type { MeshNodeOptions } from '../node/options.js';
import { faultSwitch } from '../testing/fault-switch.js';
import { isStoreError } from '../store/index.js';
import { setLogLevel } from '../util/log.js';
import { catchUp } from './catch-up.js';
import { isInteractive } from './progress.js';

export interface StartFlags {
  data: string;
  listen?: string[];
  api: { host: string; port: number };
  name?: string;
  psk?: string;
  logLevel: string;
  mdns?: boolean;
  mesh: string;
  token?: string;
  faults?: boolean;
  heartbeatMs?: number;
  syncStrategy?: 'merkle' | 'bloom' | 'gaps';
  agents?: string;
  maxAgents?: number;
  agentHeartbeatMs?: number;
  leaseMs?: number;
  claimGraceMs?: number;
  maxInflightWrites?: number;
  maxPendingWrites?: number;
}

export async function runNode(flags: StartFlags, join: string[]): Promise<number> {
  setLogLevel(flags.logLevel as never);
  let agents;
  try {
    agents = flags.agents === undefined ? [] : await loadDefinitions(flags.agents);
  } catch (err) {
    console.error(`mesh: ${(err as Error).message}`);
    return 1;
  }
  if (flags.faults) {
    // Test-only: a wall clock off by MESH_TEST_CLOCK_OFFSET_MS (clock-skew tests).
    const { applyTestClockOffset } = await import('../testing/clock.js');
    applyTestClockOffset();
  }
  const options: MeshNodeOptions = {
    dataDir: flags.data,
    join,
    agents,
    // The fault switch (tests only) before the API, which exposes it when it is there.
    services: [
      ...(flags.faults ? [faultSwitch()] : []),
      httpApi({
        ...flags.api,
        ...(flags.token ? { token: flags.token } : {}),
        ...(flags.maxInflightWrites ? { maxInflightWrites: flags.maxInflightWrites } : {}),
      }),
    ],
    mdns: flags.mdns ?? false,
    meshName: flags.mesh,
    ...(flags.listen ? { listen: flags.listen } : {}),
    ...(flags.name ? { name: flags.name } : {}),
    ...(flags.maxAgents ? { maxAgents: flags.maxAgents } : {}),
    ...(flags.leaseMs ? { leaseMs: flags.leaseMs } : {}),
    ...(flags.claimGraceMs ? { claimGraceMs: flags.claimGraceMs } : {}),
    ...(flags.agentHeartbeatMs ? { agentHeartbeatMs: flags.agentHeartbeatMs } : {}),
    ...(flags.heartbeatMs ? { heartbeatMs: flags.heartbeatMs } : {}),
    ...(flags.syncStrategy ? { syncStrategy: flags.syncStrategy } : {}),
    ...(flags.maxPendingWrites ? { maxPendingWrites: flags.maxPendingWrites } : {}),
  };
  if (flags.psk) options.psk = validatePsk(await readFile(flags.psk));
  const { MeshNode } = await import('../node/mesh-node.js');
  let node: InstanceType<typeof MeshNode>;
  try {
    node = await MeshNode.start(options);
  } catch (err) {
    console.error(`mesh: ${explainStartError(err, flags)}`);
    return 1;
  }
  console.log(`node ${node.id}`);
  for (const a of node.multiaddrs()) console.log(`listen ${a}`);
  console.log(`api ${node.apiUrl}`);
  for (const a of node.agentHost.list()) console.log(`agent ${a.id} ${a.mode} ${a.state}`);
  // On a terminal, show the catch-up with the mesh (our keys against our peers'); never in pipes,
  // where the lines above are what scripts and tests read.
  const catching = isInteractive(process.stderr) ? catchUp(node, flags.token) : undefined;
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) {
        console.error(`mesh: second ${sig}, exiting without a clean shutdown`);
        process.exit(1);
      }
      console.error(`mesh: ${sig}, shutting down`);
      node.stop().then(resolve, (err: unknown) => {
        console.error(`mesh: error during shutdown: ${(err as Error).message}`);
        resolve();
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // Test harnesses and supervisors set this so that a node never outlives the process that
    // started it, however that process dies.
    if (process.env.MESH_EXIT_WITH_STDIN === '1') {
      process.stdin.on('end', () => onSignal('SIGTERM'));
      process.stdin.on('error', () => onSignal('SIGTERM'));
      process.stdin.resume();
    }
  });
  catching?.abort();
  process.stdin.destroy();
  // Everything is stopped and flushed; a handle some library forgot must not keep us alive.
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}

/**
 * Start-up failures in the user's terms: which address or directory, and which flag changes it.
 * libp2p reports a busy listen port as a transport error that names its own internals
 * (`transportManager.faultTolerance`): find the address in it and say that instead.
 */
export function explainStartError(err: unknown, flags: Pick<StartFlags, 'data' | 'api' | 'listen'>): string {
  if (isStoreError(err, 'STORE_LOCKED')) return `data directory ${flags.data} is in use by another mesh node`;
  const code = (err as { code?: string }).code;
  const message = (err as Error).message ?? String(err);
  if (
    code === 'EADDRINUSE' ||
    (isApiError(err) && code === 'LISTEN_FAILED' && /EADDRINUSE|already in use/i.test(message))
  )
    return `API address ${flags.api.host}:${flags.api.port} is already in use; choose another with --api HOST:PORT`;
  if (isNetError(err) && err.code === 'LISTEN_FAILED') {
    const busy = listenAddressInUse(err, flags.listen);
    if (busy !== undefined)
      return `listen address ${busy} is already in use (another mesh node?); choose another with --listen, e.g. --listen /ip4/0.0.0.0/tcp/7072`;
    return `cannot listen on ${(flags.listen ?? ['/ip4/0.0.0.0/tcp/7071']).join(', ')}: ${firstLine(err)}; change it with --listen`;
  }
  if (isAgentError(err)) return err.message;
  return message;
}

/** The listen multiaddr a libp2p listen failure is about, when the cause is a busy port. */
function listenAddressInUse(err: Error, listen: string[] | undefined): string | undefined {
  const text = [err.message, ...causes(err).map((e) => `${(e as { code?: string }).code ?? ''} ${e.message}`)].join(
    ' ',
  );
  if (!/EADDRINUSE|address already in use|faultTolerance/i.test(text)) return undefined;
  const addrs = listen ?? ['/ip4/0.0.0.0/tcp/7071'];
  return addrs.find((a) => text.includes(a)) ?? addrs.join(', ');
}

function causes(err: unknown): Error[] {
  const out: Error[] = [];
  for (
    let e = (err as { cause?: unknown }).cause;
    e instanceof Error && out.length < 8;
    e = (e as { cause?: unknown }).cause
  )
    out.push(e);
  const agg = (err as { errors?: unknown }).errors;
  if (Array.isArray(agg)) for (const e of agg) if (e instanceof Error) out.push(e);
  return out;
}

const firstLine = (err: Error): string => (err.message.split('\n')[0] ?? '').replace(/\s*transportManager\.\S+/g, '');
