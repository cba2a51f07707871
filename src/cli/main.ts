import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_API, DEFAULT_DATA_DIR } from '../node/options.js';
import { parseListenAddress } from './address.js';
import { backupCommands } from './backup.js';
import { mcpCommand } from '../mcp/command.js';
import { clientCommands } from './client.js';
import { isCliError } from './errors.js';
import type * as NodeCommand from './node-command.js';
import type { StartFlags } from './node-command.js';

/** The node commands' module, loaded only when one runs (see node-command.ts). */
const nodeCommand = (): Promise<typeof NodeCommand> => import('./node-command.js');

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

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

export function buildProgram(): Command {
  const program = new Command('mesh')
    .version(version)
    .description('A peer-to-peer state mesh for agents')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  nodeOptions(program.command('start').description('start a node')).action(async (flags: StartFlags) => {
    process.exitCode = await (await nodeCommand()).runNode(flags, []);
  });
  nodeOptions(
    program.command('join').description('start a node and join the mesh through a peer').argument('<multiaddr...>'),
  ).action(async (addrs: string[], flags: StartFlags) => {
    process.exitCode = await (await nodeCommand()).runNode(flags, addrs);
  });
  program
    .command('keygen')
    .description('write a pre-shared key for a private mesh')
    .argument('[file]', 'where to write it', 'mesh.psk')
    .action(async (file: string) => {
      const { generatePsk } = await import('../net/index.js');
      await writeFile(file, generatePsk(), { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') throw new Error(`${file} exists; refusing to overwrite a key`);
        throw err;
      });
      console.log(file);
    });
  clientCommands(program);
  mcpCommand(program);
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
