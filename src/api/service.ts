import type { AgentControl, AgentHost } from '../agents/index.js';
import { AGENT_HOST_SERVICE } from '../agents/index.js';
import { AGENT_CONTROL_SERVICE } from '../control/index.js';
import type { NodeComponents, Service, ServiceFactory } from '../node/service.js';
import type { ApiBackend, FaultSwitch } from './backend.js';
import { type ApiServer, type ApiServerOptions, createApiServer } from './server.js';

export const API_SERVICE = 'api';
/** The fault switch a test node registers as a service (see `src/testing/fault-switch.ts`). */
export const FAULTS_SERVICE = 'faults';

export interface ApiService extends Service {
  /** The API's base URL once started. */
  readonly url: string;
}

/**
 * The HTTP API as a node service: `MeshNode.start({ services: [httpApi({ host, port })] })`.
 * It serves the node's registry, task board and read side, controls the node's agent host, and
 * registers the admin routes only when the node runs the test fault switch.
 */
export function httpApi(options: ApiServerOptions): ServiceFactory<ApiService> {
  return (c: NodeComponents) => {
    let server: ApiServer | undefined;
    // Mesh-wide control when the node runs it (it forwards to other nodes), else the local host.
    const host =
      c.service<AgentControl & Service>(AGENT_CONTROL_SERVICE) ?? c.service<AgentHost & Service>(AGENT_HOST_SERVICE);
    const faults = c.service<FaultSwitch & Service>(FAULTS_SERVICE);
    const backend: ApiBackend = {
      agents: c.agents,
      tasks: c.tasks,
      agentControl: host,
      faults,
      status: () => c.info.status(),
      peers: () => c.info.peers(),
      isReachable: (id) => c.info.isReachable(id),
      onEvent: (listener) => c.info.onEvent(listener),
      metrics: () => c.info.metrics(),
      health: () => c.info.health?.() ?? { ok: true, problems: [] },
      ...(c.info.forgetPeer
        ? { forgetPeer: (id: string) => (c.info.forgetPeer as NonNullable<typeof c.info.forgetPeer>).call(c.info, id) }
        : {}),
    };
    return {
      name: API_SERVICE,
      get url() {
        return server?.url ?? '';
      },
      async start() {
        server = await createApiServer(backend, { log: c.logger('mesh:api'), ...options });
        c.announceApi(server.url);
      },
      async stop() {
        await server?.close();
      },
    };
  };
}
