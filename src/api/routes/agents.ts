import type { FastifyInstance } from 'fastify';
import type { AgentView } from '../../registry/agents.js';
import { ApiError, ApiErrorCode } from '../errors.js';
import {
  type AgentResponse,
  agentActionParamsSchema,
  agentHeartbeatSchema,
  agentInputSchema,
  agentListQuerySchema,
  agentParamsSchema,
} from '../schemas.js';
import { parseInput, type RouteContext } from './context.js';

/** The agent registry: list with filters, get, register or update (this node's agents), remove. */
export function agentRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { backend, metrics } = ctx;
  const withReach = (a: AgentView): AgentResponse => ({ ...a, reachable: backend.isReachable(a.owner) });

  app.get('/v1/agents', async (request) => {
    const q = parseInput(agentListQuerySchema, request.query, 'query');
    return backend.agents.list(q).map(withReach);
  });

  app.get('/v1/agents/:id', async (request) => {
    const { id } = parseInput(agentParamsSchema, request.params, 'params');
    const agent = backend.agents.get(id);
    if (agent === undefined) throw new ApiError(ApiErrorCode.NOT_FOUND, `agent ${id} not found`);
    return withReach(agent);
  });

  // 200 whether this registers the agent or updates it: PUT is an idempotent upsert.
  app.put('/v1/agents/:id', async (request) => {
    const { id } = parseInput(agentParamsSchema, request.params, 'params');
    const input = parseInput(agentInputSchema, request.body, 'body');
    return withReach(await metrics.timeWrite('agent_put', () => backend.agents.upsert(id, input)));
  });

  // The owner's liveness report: writes only the small liveness register, never the profile, so
  // a registry of many agents heartbeating costs a few dozen bytes per beat on every node.
  app.post('/v1/agents/:id/heartbeat', async (request) => {
    const { id } = parseInput(agentParamsSchema, request.params, 'params');
    const input = parseInput(agentHeartbeatSchema, request.body, 'body');
    return withReach(await backend.agents.heartbeat(id, input ?? {}));
  });

  // The agents this node runs (processes it supervises), with what only their host knows.
  app.get('/v1/host/agents', async () => backend.agentControl?.list() ?? []);

  app.post('/v1/agents/:id/:action', async (request) => {
    const { id, action } = parseInput(agentActionParamsSchema, request.params, 'params');
    if (backend.agentControl === undefined)
      throw new ApiError(ApiErrorCode.NOT_FOUND, `agent ${id} is not run by this node`);
    return backend.agentControl.control(id, action);
  });

  app.delete('/v1/agents/:id', async (request) => {
    const { id } = parseInput(agentParamsSchema, request.params, 'params');
    return withReach(await metrics.timeWrite('agent_delete', () => backend.agents.remove(id)));
  });
}
