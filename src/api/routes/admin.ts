import type { FastifyInstance } from 'fastify';
import type { FaultSwitch } from '../backend.js';
import { type FaultResponse, healSchema, loadSchema, partitionSchema } from '../schemas.js';
import { parseInput, type RouteContext } from './context.js';

/** The test-only fault switch; registered only when the backend has one. */
export function adminRoutes(app: FastifyInstance, ctx: RouteContext, faults: FaultSwitch): void {
  app.post('/v1/admin/partition', async (request): Promise<FaultResponse> => {
    const { peers } = parseInput(partitionSchema, request.body, 'body');
    await faults.partition(peers);
    ctx.log.warn({ peers }, 'fault switch: partitioned');
    return { denied: faults.denied() };
  });

  app.post('/v1/admin/load', async (request) => {
    const { count, agents, concurrency } = parseInput(loadSchema, request.body, 'body');
    return faults.load(count, agents, concurrency);
  });

  app.post('/v1/admin/heal', async (request): Promise<FaultResponse> => {
    parseInput(healSchema, request.body, 'body');
    await faults.heal();
    ctx.log.warn('fault switch: healed');
    return { denied: faults.denied() };
  });
}
