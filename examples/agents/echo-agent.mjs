#!/usr/bin/env node
// An example stdio agent written with the agentmesh agent SDK (docs/agent-protocol.md): it answers
// every task with `{ echo: payload }` after one progress report. Build first (`npm run build`);
// an installed package would import from 'agentmesh/agent' instead.
import { runAgent } from '../../dist/agent-sdk/index.js';

runAgent({
  capabilities: ['echo'],
  handle(ctx) {
    ctx.progress(50, 'echoing');
    return { echo: ctx.task.payload };
  },
});
