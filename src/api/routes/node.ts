import type { FastifyInstance } from 'fastify';
import { ApiError, ApiErrorCode } from '../errors.js';
import { type HealthResponse, peerParamsSchema } from '../schemas.js';
import { parseInput, type RouteContext } from './context.js';

/** Health (no auth), node status, peers (list, forget a dead one) and Prometheus metrics. */
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

  // Forget a dead peer: 409 PEER_ALIVE for a live (or connected) one, 404 for an unknown one.
  app.delete('/v1/peers/:id', async (request) => {
    const { id } = parseInput(peerParamsSchema, request.params, 'params');
    if (backend.forgetPeer === undefined) throw new ApiError(ApiErrorCode.NOT_FOUND, 'this node cannot forget peers');
    return backend.forgetPeer(id);
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.render();
    return reply.type(metrics.contentType).send(text);
  });
}
