#!/usr/bin/env node
// The `mesh` executable (package.json bin). All behaviour lives in src/cli.
import { main } from './cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  },
);
