import type { FastifyInstance } from 'fastify';
import type { HealthResponse } from '../schemas.js';
import type { RouteContext } from './context.js';

/** Health (no auth), node status, peers and Prometheus metrics. */
export function nodeRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { backend, metrics } = ctx;

  // 503 when the node cannot accept writes (full disk, I/O errors, clock skew), with the reasons:
  // a load balancer or supervisor then stops sending it writes.
  app.get('/v1/health', async (_request, reply): Promise<HealthResponse> => {
    const h = backend.health?.();
    if (h === undefined || h.ok) return { ok: true };
    void reply.code(503);
    return { ok: false, problems: h.problems };
  });

  app.get('/v1/status', async () => backend.status());

  app.get('/v1/peers', async () => backend.peers());

  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.render();
    return reply.type(metrics.contentType).send(text);
  });
}
