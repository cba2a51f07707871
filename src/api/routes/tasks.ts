import type { FastifyInstance } from 'fastify';
import { ApiError, ApiErrorCode } from '../errors.js';
import {
  DEFAULT_TASK_LIMIT,
  taskCancelSchema,
  taskInputSchema,
  taskRetrySchema,
  taskListQuerySchema,
  taskParamsSchema,
  taskPatchSchema,
} from '../schemas.js';
import { parseInput, type RouteContext } from './context.js';

/** The task board: submit, list with filters, get, validated transitions, cancel, retry. */
export function taskRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { backend, metrics } = ctx;

  app.post('/v1/tasks', async (request, reply) => {
    const input = parseInput(taskInputSchema, request.body, 'body');
    const task = await metrics.timeWrite('task_create', () => backend.tasks.create(input));
    return reply
      .code(201)
      .header('location', `/v1/tasks/${encodeURIComponent(task.id)}`)
      .send(task);
  });

  app.get('/v1/tasks', async (request, reply) => {
    const { limit, ...filter } = parseInput(taskListQuerySchema, request.query, 'query');
    const all = backend.tasks.list(filter);
    // The total before the limit, so a client can tell it saw only part of the list.
    return reply.header('x-total-count', String(all.length)).send(all.slice(0, limit ?? DEFAULT_TASK_LIMIT));
  });

  app.get('/v1/tasks/:id', async (request) => {
    const { id } = parseInput(taskParamsSchema, request.params, 'params');
    const task = backend.tasks.get(id);
    if (task === undefined) throw new ApiError(ApiErrorCode.NOT_FOUND, `task ${id} not found`);
    return task;
  });

  app.patch('/v1/tasks/:id', async (request) => {
    const { id } = parseInput(taskParamsSchema, request.params, 'params');
    const patch = parseInput(taskPatchSchema, request.body, 'body');
    return metrics.timeWrite('task_patch', () => backend.tasks.transition(id, patch));
  });

  app.post('/v1/tasks/:id/cancel', async (request) => {
    const { id } = parseInput(taskParamsSchema, request.params, 'params');
    parseInput(taskCancelSchema, request.body, 'body');
    return metrics.timeWrite('task_cancel', () => backend.tasks.cancel(id));
  });

  // A FAILED task back to PENDING as a new attempt; 409 INVALID_TRANSITION for any other status.
  app.post('/v1/tasks/:id/retry', async (request) => {
    const { id } = parseInput(taskParamsSchema, request.params, 'params');
    parseInput(taskRetrySchema, request.body, 'body');
    return backend.tasks.retry(id);
  });
}
