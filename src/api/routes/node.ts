import type { FastifyInstance } from 'fastify';
import type { HealthResponse } from '../schemas.js';
import type { RouteContext } from './context.js';

/** Health (no auth), node status, peers and Prometheus metrics. */
export function nodeRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { backend, metrics } = ctx;

  app.get('/v1/health', async (): Promise<HealthResponse> => ({ ok: true }));

  app.get('/v1/status', async () => backend.status());

  app.get('/v1/peers', async () => backend.peers());

  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.render();
    return reply.type(metrics.contentType).send(text);
  });
}
