import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Command, InvalidArgumentError, Option } from 'commander';
import { isAgentError, loadDefinitions } from '../agents/index.js';
import { isApiError } from '../api/errors.js';
import { httpApi } from '../api/service.js';
import { generatePsk, isNetError, validatePsk } from '../net/index.js';
import { DEFAULT_API, DEFAULT_DATA_DIR, type MeshNodeOptions } from '../node/options.js';
import { faultSwitch } from '../testing/fault-switch.js';
import { isStoreError } from '../store/index.js';
import { setLogLevel } from '../util/log.js';
import { parseListenAddress } from './address.js';
import { backupCommands } from './backup.js';
import { catchUp } from './catch-up.js';
import { clientCommands } from './client.js';
import { isCliError } from './errors.js';
import { isInteractive } from './progress.js';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

interface StartFlags {
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
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];
const positiveInt = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
};

function nodeOptions(cmd: Command): Command {
  return cmd
    .option('--data <dir>', 'data directory', DEFAULT_DATA_DIR)
    .option('--listen <multiaddr>', 'libp2p listen address (repeatable; default /ip4/0.0.0.0/tcp/7071)', collect)
    .addOption(
      new Option('--api <host:port>', 'HTTP API address (HOST:PORT or http:// URL)')
        .argParser(parseListenAddress)
        .default(DEFAULT_API, `${DEFAULT_API.host}:${DEFAULT_API.port}`),
    )
    .option('--name <name>', 'node name (default: host name)')
    .option('--psk <file>', 'pre-shared key file for a private mesh (see mesh keygen)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent', 'info')
    .option('--mdns', 'discover peers on the LAN with mDNS')
    .option('--mesh <name>', 'mesh name: nodes replicate only within the same mesh', 'default')
    .option('--token <token>', 'bearer token for the HTTP API (required off loopback)', process.env.MESH_API_TOKEN)
    .option('--agents <file>', 'agents this node runs (JSON or YAML: { "agents": [ ... ] })')
    .option('--max-agents <n>', 'most agents this node hosts', positiveInt)
    .option('--lease-ms <ms>', "a claim's lease: a dead holder's tasks run elsewhere after it", positiveInt)
    .addOption(
      new Option('--claim-grace-ms <ms>', 'wait per place in the rendezvous order').argParser(positiveInt).hideHelp(),
    )
    .addOption(new Option('--agent-heartbeat-ms <ms>', 'agent liveness interval').argParser(positiveInt).hideHelp())
    .addOption(new Option('--faults', 'enable the test-only fault switch').hideHelp())
    .addOption(new Option('--heartbeat-ms <ms>', 'node heartbeat interval').argParser(positiveInt).hideHelp())
    .addOption(
      new Option('--sync-strategy <s>', 'force a sync strategy').choices(['merkle', 'bloom', 'gaps']).hideHelp(),
    );
}

async function runNode(flags: StartFlags, join: string[]): Promise<number> {
  setLogLevel(flags.logLevel as never);
  let agents;
  try {
    agents = flags.agents === undefined ? [] : await loadDefinitions(flags.agents);
  } catch (err) {
    console.error(`mesh: ${(err as Error).message}`);
    return 1;
  }
  const options: MeshNodeOptions = {
    dataDir: flags.data,
    join,
    agents,
    // The fault switch (tests only) before the API, which exposes it when it is there.
    services: [
      ...(flags.faults ? [faultSwitch()] : []),
      httpApi({ ...flags.api, ...(flags.token ? { token: flags.token } : {}) }),
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

export function buildProgram(): Command {
  const program = new Command('mesh')
    .version(version)
    .description('A peer-to-peer state mesh for agents')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  nodeOptions(program.command('start').description('start a node')).action(async (flags: StartFlags) => {
    process.exitCode = await runNode(flags, []);
  });
  nodeOptions(
    program.command('join').description('start a node and join the mesh through a peer').argument('<multiaddr...>'),
  ).action(async (addrs: string[], flags: StartFlags) => {
    process.exitCode = await runNode(flags, addrs);
  });
  program
    .command('keygen')
    .description('write a pre-shared key for a private mesh')
    .argument('[file]', 'where to write it', 'mesh.psk')
    .action(async (file: string) => {
      await writeFile(file, generatePsk(), { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') throw new Error(`${file} exists; refusing to overwrite a key`);
        throw err;
      });
      console.log(file);
    });
  clientCommands(program);
  backupCommands(program);
  return program;
}

/** Entry point of the CLI; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    const code = (err as { code?: string; exitCode?: number }).code;
    if (code?.startsWith('commander.')) return (err as { exitCode: number }).exitCode;
    // Typed CLI errors carry their own advice; anything else is shown as it is.
    console.error(`mesh: ${isCliError(err) ? err.message : ((err as Error).message ?? String(err))}`);
    return 1;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}
