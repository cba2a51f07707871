import type { FaultSwitch } from '../api/backend.js';
import { FAULTS_SERVICE } from '../api/service.js';
import type { NodeComponents, Service, ServiceFactory } from '../node/service.js';

/**
 * The test-only fault switch (`mesh start --faults`): partitions the node from named peers
 * through its peer gate, and generates benchmark load of owner updates. Never part of a
 * production node; the CLI adds it only when asked, and the HTTP API exposes it under
 * `/v1/admin/*` only when it is there.
 */
export function faultSwitch(): ServiceFactory<FaultSwitch & Service> {
  return (c: NodeComponents) => ({
    name: FAULTS_SERVICE,
    partition: (peers) => c.peerGate.deny(peers),
    heal: () => c.peerGate.allowAll(),
    denied: () => c.peerGate.denied(),
    load: (count, agents, concurrency) => generateLoad(c, count, agents, concurrency),
  });
}

/** Benchmark load: heartbeats of `agents` agents hosted here, `count` updates in all. */
async function generateLoad(
  c: NodeComponents,
  count: number,
  agents: number,
  concurrency: number,
): Promise<{ count: number; ms: number }> {
  const started = performance.now();
  const ids = Array.from({ length: agents }, (_, i) => `load-${c.nodeId.slice(-8)}-${i}`);
  for (const id of ids) {
    if (c.agents.get(id) === undefined) await c.agents.upsert(id, { name: id, type: 'load', capabilities: ['load'] });
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      await c.agents.heartbeat(ids[i % agents] as string, { load: i % 100 });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { count, ms: performance.now() - started };
}
