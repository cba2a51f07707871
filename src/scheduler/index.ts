import { AGENT_HOST_SERVICE, type AgentHost } from '../agents/index.js';
import type { NodeComponents, Service, ServiceFactory } from '../node/service.js';
import { Scheduler, type SchedulerOptions } from './scheduler.js';

export * from './pending-index.js';
export * from './quorum.js';
export * from './rendezvous.js';
export * from './scheduler.js';

export const SCHEDULER_SERVICE = 'scheduler';

/**
 * The scheduler as a node service: claims tasks for the node's agent host (which must start
 * first) and serves its agents' tool calls.
 */
export function scheduler(options: SchedulerOptions = {}): ServiceFactory<Scheduler & Service> {
  return (c: NodeComponents) => {
    const host = c.service<AgentHost>(AGENT_HOST_SERVICE);
    if (host === undefined) throw new Error('the scheduler needs the agent host service');
    const s = new Scheduler(
      {
        nodeId: c.nodeId,
        meshName: c.meshName,
        replica: c.replica,
        tasks: c.tasks,
        agents: c.agents,
        membership: c.membership,
        host: c.host,
        local: host,
        log: c.logger('mesh:scheduler'),
      },
      options,
    );
    s.ownsRunning = (id) => host.runs(id);
    host.attachScheduler({
      mayStart: (t, signal) => s.mayStart(t, signal),
      slotsFreed: () => s.kick(),
      toolCall: (call) => s.toolCall(call),
    });
    return s;
  };
}
