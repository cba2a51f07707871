import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

const USAGE = `mesh ${version}: a peer-to-peer state mesh for agents

usage:
  mesh start [options]            start a node (data in ./.mesh, API on 127.0.0.1:7070)
  mesh join <multiaddr> [options] start a node and join the mesh through that peer
  mesh keygen [file]              write a pre-shared key for a private mesh
  mesh --version`;

/** Entry point of the CLI; returns the process exit code. Filled in by the mesh issue. */
export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--version') || argv.includes('-V')) {
    console.log(version);
    return 0;
  }
  console.log(USAGE);
  return argv.length === 0 || argv.includes('--help') ? 0 : 2;
}
