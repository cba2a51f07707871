import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Command, InvalidArgumentError, Option } from 'commander';
import { isAgentError, loadDefinitions } from '../agents/index.js';
import { httpApi } from '../api/service.js';
import { generatePsk, isNetError, validatePsk } from '../net/index.js';
import { DEFAULT_API, DEFAULT_DATA_DIR, type MeshNodeOptions } from '../node/options.js';
import { faultSwitch } from '../testing/fault-switch.js';
import { isStoreError } from '../store/index.js';
import { setLogLevel } from '../util/log.js';
import { mcpCommand } from '../mcp/command.js';
import { clientCommands } from './client.js';

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
  maxInflightWrites?: number;
  maxPendingWrites?: number;
}

function parseHostPort(v: string): { host: string; port: number } {
  const i = v.lastIndexOf(':');
  const host = i > 0 ? v.slice(0, i).replace(/^\[|\]$/g, '') : '';
  const port = Number(v.slice(i + 1));
  if (!host || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new InvalidArgumentError('expected HOST:PORT');
  return { host, port };
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
      new Option('--api <host:port>', 'HTTP API address')
        .argParser(parseHostPort)
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
    .option('--max-inflight-writes <n>', 'API writes in progress before new ones get 429', positiveInt)
    .addOption(
      new Option('--max-pending-writes <n>', 'records behind the store before writes get 429')
        .argParser(positiveInt)
        .hideHelp(),
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
  process.stdin.destroy();
  // Everything is stopped and flushed; a handle some library forgot must not keep us alive.
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}

function explainStartError(err: unknown, flags: StartFlags): string {
  if (isStoreError(err, 'STORE_LOCKED')) return `data directory ${flags.data} is in use by another mesh node`;
  const code = (err as { code?: string }).code;
  if (code === 'EADDRINUSE') return `API address ${flags.api.host}:${flags.api.port} is already in use`;
  if (isNetError(err) && err.code === 'LISTEN_FAILED') return `cannot listen: ${err.message} (is the port taken?)`;
  if (isAgentError(err)) return err.message;
  return (err as Error).message ?? String(err);
}

export function buildProgram(): Command {
  const program = new Command('mesh')
    .version(version)
    .description('A peer-to-peer state mesh for agents')
    .showHelpAfterError()
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
  mcpCommand(program);
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
    console.error(`mesh: ${(err as Error).message}`);
    return 1;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}
