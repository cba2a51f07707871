import type { FastifyInstance } from 'fastify';
import { ApiError, ApiErrorCode, toErrorResponse } from '../errors.js';
import {
  BATCH_BODY_LIMIT,
  type BatchOp,
  type BatchResponse,
  type BatchResult,
  batchOpSchema,
  batchSchema,
} from '../schemas.js';
import { parseInput, type RouteContext } from './context.js';

/**
 * `POST /v1/batch`: many writes in one request, for clients that want throughput. Every op is
 * started in order within one turn of the event loop, so they share one durable group commit and
 * one replication frame instead of paying a request, an fsync wait and a frame each; the response
 * comes once all of them are durable (or refused). Ops are independent: a bad or refused op gets
 * its own error in `results` and the others still apply. Status 200 whenever the envelope is
 * valid; `failed` says how many ops did not apply.
 */
export function batchRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { backend, log } = ctx;

  const run = (op: BatchOp): Promise<unknown> => {
    switch (op.op) {
      case 'agent.put':
        return backend.agents.upsert(op.id, op.agent);
      case 'agent.heartbeat':
        return backend.agents.heartbeat(op.id, op.heartbeat ?? {});
      case 'agent.remove':
        return backend.agents.remove(op.id);
      case 'task.create':
        return backend.tasks.create(op.task);
      case 'task.patch':
        return backend.tasks.transition(op.id, op.patch);
      case 'task.cancel':
        return backend.tasks.cancel(op.id);
    }
  };

  const failure = (err: unknown, index: number): BatchResult => {
    const r = toErrorResponse(err);
    if (r.internal) log.error({ err, op: index }, 'batch op failed');
    return { ok: false, error: r.body.error };
  };

  app.post('/v1/batch', { bodyLimit: BATCH_BODY_LIMIT }, async (request): Promise<BatchResponse> => {
    const { ops } = parseInput(batchSchema, request.body, 'body');
    // Start every op before awaiting any: the mutations land in memory in order, then one
    // durable write acknowledges them together.
    const pending = ops.map((raw, i): Promise<BatchResult> => {
      const parsed = batchOpSchema.safeParse(raw);
      if (!parsed.success) {
        const message = parsed.error.issues
          .map((issue) => `ops.${i}${issue.path.length > 0 ? `.${issue.path.join('.')}` : ''}: ${issue.message}`)
          .join('; ');
        return Promise.resolve(failure(new ApiError(ApiErrorCode.INVALID_INPUT, message), i));
      }
      try {
        return run(parsed.data).then(
          (value): BatchResult => ({ ok: true, value }),
          (err: unknown) => failure(err, i),
        );
      } catch (err) {
        return Promise.resolve(failure(err, i));
      }
    });
    const results = await Promise.all(pending);
    const ok = results.filter((r) => r.ok).length;
    return { ok, failed: results.length - ok, results };
  });
}
