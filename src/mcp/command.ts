import type { Command } from 'commander';

/**
 * `mesh mcp --api URL [--token T]`: registered by the CLI with one call. The server module is
 * loaded only when the command runs, so other commands do not pay for the MCP SDK.
 */
export function mcpCommand(program: Command): void {
  program
    .command('mcp')
    .description("serve the mesh to an LLM client as Model Context Protocol tools on stdio, through a node's API")
    .option('--api <url>', 'node API URL', process.env.MESH_API ?? 'http://127.0.0.1:7070')
    .option('--token <token>', 'bearer token for the API', process.env.MESH_API_TOKEN)
    .action(async (flags: { api: string; token?: string }) => {
      const { runMcpServer } = await import('./server.js');
      await runMcpServer({ api: flags.api, token: flags.token });
    });
}
