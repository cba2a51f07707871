#!/usr/bin/env node
// The `mesh` executable (package.json bin). All behaviour lives in src/cli; this file only makes
// sure it runs on a Node that can run it, before anything touches the disk.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const MIN_NODE_MAJOR = 22;
const major = Number(process.versions.node.split('.')[0]);

if (major < MIN_NODE_MAJOR) {
  // The repo pins a Node 24 runtime as a dev dependency (the npm `node` package): use it if it is there.
  const pinned = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (existsSync(pinned) && process.env.AGENTMESH_REEXEC !== '1') {
    const r = spawnSync(pinned, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, AGENTMESH_REEXEC: '1' },
    });
    process.exit(r.status ?? 1);
  }
  console.error(
    `mesh: agentmesh needs Node >= ${MIN_NODE_MAJOR} (libp2p 3 does); this is Node ${process.versions.node}. ` +
      'Install Node 22 or newer, or run `npm ci` in the agentmesh clone and use `npx mesh` there (it runs on the pinned Node 24).',
  );
  process.exit(1);
} else {
  const { main } = await import('./cli/main.js');
  main(process.argv.slice(2)).then(
    (code) => {
      if (typeof code === 'number') process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : String(err));
      process.exitCode = 1;
    },
  );
}
