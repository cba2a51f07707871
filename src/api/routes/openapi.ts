import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { VERSION } from '../../util/version.js';
import {
  agentResponseSchema,
  batchResponseSchema,
  errorBodySchema,
  faultResponseSchema,
  healthResponseSchema,
  loadResponseSchema,
  localAgentSchema,
  nodeStatusSchema,
  peerSchema,
  taskResponseSchema,
} from '../responses.js';
import {
  agentActionParamsSchema,
  agentHeartbeatSchema,
  agentInputSchema,
  agentListQuerySchema,
  agentParamsSchema,
  batchSchema,
  eventsQuerySchema,
  healSchema,
  loadSchema,
  partitionSchema,
  peerParamsSchema,
  taskCancelSchema,
  taskInputSchema,
  taskListQuerySchema,
  taskParamsSchema,
  taskPatchSchema,
  taskRetrySchema,
} from '../schemas.js';
import type { RouteContext } from './context.js';

/**
 * `GET /v1/openapi.json`: an OpenAPI 3.1 description of this server's routes, generated from the
 * same zod schemas that validate requests (zod 4's `z.toJSONSchema`, JSON Schema 2020-12, which
 * OpenAPI 3.1 uses as is) and from the response schemas in `responses.ts`.
 *
 * The document lists the routes Fastify actually registered (an `onRoute` hook records them), so
 * it never names a route this instance lacks (the admin routes exist only with the test fault
 * switch) and never misses one: a route without an entry below still appears, marked
 * `x-undescribed`, and the tests fail on it.
 */

type Schema = z.ZodType;
interface Reply {
  status: number;
  description: string;
  schema?: Schema;
  /** An array of `schema`. */
  list?: boolean;
  contentType?: string;
}
interface RouteDoc {
  summary: string;
  tag: 'node' | 'agents' | 'tasks' | 'events' | 'admin' | 'meta';
  params?: Schema;
  query?: Schema;
  body?: Schema;
  /** A body schema that accepts `undefined` (no body) is optional. */
  bodyOptional?: boolean;
  ok: Reply;
  /** Error statuses beyond the ones every route may answer (400 for inputs, 401, 500). */
  errors?: number[];
  public?: boolean;
  headers?: Record<string, string>;
}

const ROUTES: Readonly<Record<string, RouteDoc>> = {
  'GET /v1/health': {
    summary: 'Liveness of the API (no token needed)',
    tag: 'node',
    public: true,
    ok: { status: 200, description: 'the API answers', schema: healthResponseSchema },
  },
  'GET /v1/status': {
    summary: "The node's status: id, mesh, peers, keys, Merkle root, state digest",
    tag: 'node',
    ok: { status: 200, description: 'status', schema: nodeStatusSchema },
  },
  'GET /v1/peers': {
    summary: 'Peers with their failure-detector state',
    tag: 'node',
    ok: { status: 200, description: 'peers', schema: peerSchema, list: true },
  },
  'DELETE /v1/peers/:id': {
    summary: "Forget a dead peer: its node record gets a replicated 'forgotten' mark",
    tag: 'node',
    params: peerParamsSchema,
    ok: { status: 200, description: 'the forgotten peer', schema: peerSchema },
    errors: [404, 409],
  },
  'GET /metrics': {
    summary: 'Prometheus metrics (text exposition format)',
    tag: 'node',
    ok: { status: 200, description: 'metrics', contentType: 'text/plain; version=0.0.4' },
  },
  'GET /v1/openapi.json': {
    summary: 'This document',
    tag: 'meta',
    ok: { status: 200, description: 'the OpenAPI 3.1 document', contentType: 'application/json' },
  },
  'GET /v1/agents': {
    summary: 'Agents in the registry; every given filter must match',
    tag: 'agents',
    query: agentListQuerySchema,
    ok: { status: 200, description: 'agents', schema: agentResponseSchema, list: true },
  },
  'GET /v1/agents/:id': {
    summary: 'One agent',
    tag: 'agents',
    params: agentParamsSchema,
    ok: { status: 200, description: 'the agent', schema: agentResponseSchema },
    errors: [404],
  },
  'PUT /v1/agents/:id': {
    summary: 'Register or update an agent this node owns (idempotent upsert)',
    tag: 'agents',
    params: agentParamsSchema,
    body: agentInputSchema,
    ok: { status: 200, description: 'the agent as stored', schema: agentResponseSchema },
    errors: [409, 413, 415],
  },
  'DELETE /v1/agents/:id': {
    summary: 'Remove an agent this node owns (the removal replicates)',
    tag: 'agents',
    params: agentParamsSchema,
    ok: { status: 200, description: 'the removed agent', schema: agentResponseSchema },
    errors: [404, 409],
  },
  'POST /v1/agents/:id/heartbeat': {
    summary: "The owner's liveness report (load, capacity, health, state): only that small register replicates",
    tag: 'agents',
    params: agentParamsSchema,
    body: agentHeartbeatSchema,
    bodyOptional: true,
    ok: { status: 200, description: 'the agent after the report', schema: agentResponseSchema },
    errors: [404, 409, 415],
  },
  'GET /v1/host/agents': {
    summary: 'The agents this node runs, with their processes',
    tag: 'agents',
    ok: { status: 200, description: 'hosted agents', schema: localAgentSchema, list: true },
  },
  'POST /v1/agents/:id/:action': {
    summary: 'Start, stop, restart, pause or resume an agent, on whichever node hosts it (forwarded over the mesh)',
    tag: 'agents',
    params: agentActionParamsSchema,
    ok: { status: 200, description: "the agent as its hosting node's host sees it", schema: localAgentSchema },
    errors: [404, 409, 502, 503, 504],
  },
  'POST /v1/tasks': {
    summary: 'Submit a task',
    tag: 'tasks',
    body: taskInputSchema,
    ok: { status: 201, description: 'the task created', schema: taskResponseSchema },
    headers: { location: 'the URL of the task' },
    errors: [409, 413, 415],
  },
  'GET /v1/tasks': {
    summary: 'Tasks, oldest first; every given filter must match',
    tag: 'tasks',
    query: taskListQuerySchema,
    ok: { status: 200, description: 'tasks (at most `limit`)', schema: taskResponseSchema, list: true },
    headers: { 'x-total-count': 'how many matched before the limit' },
  },
  'GET /v1/tasks/:id': {
    summary: 'One task',
    tag: 'tasks',
    params: taskParamsSchema,
    ok: { status: 200, description: 'the task', schema: taskResponseSchema },
    errors: [404],
  },
  'PATCH /v1/tasks/:id': {
    summary: 'A validated status transition and/or field updates',
    tag: 'tasks',
    params: taskParamsSchema,
    body: taskPatchSchema,
    ok: { status: 200, description: 'the task after the change', schema: taskResponseSchema },
    errors: [404, 409, 413, 415],
  },
  'POST /v1/tasks/:id/cancel': {
    summary: 'Cancel a task (reaches its executing node through replication)',
    tag: 'tasks',
    params: taskParamsSchema,
    body: taskCancelSchema,
    bodyOptional: true,
    ok: { status: 200, description: 'the cancelled task', schema: taskResponseSchema },
    errors: [404, 409],
  },
  'POST /v1/batch': {
    summary:
      'Up to 1,000 writes in one request (agent.put, agent.heartbeat, agent.remove, task.create, task.patch, task.cancel), one durable write for all; each op fails alone',
    tag: 'meta',
    body: batchSchema,
    ok: { status: 200, description: 'one result per op, in order', schema: batchResponseSchema },
    errors: [413, 415],
  },
  'POST /v1/tasks/:id/retry': {
    summary: 'Put a FAILED task back to PENDING as a new attempt',
    tag: 'tasks',
    params: taskParamsSchema,
    body: taskRetrySchema,
    bodyOptional: true,
    ok: { status: 200, description: 'the task, PENDING again', schema: taskResponseSchema },
    errors: [404, 409],
  },
  'GET /v1/events': {
    summary: 'Server-sent events: one per change applied to a record (event name = kind, data = JSON)',
    tag: 'events',
    query: eventsQuerySchema,
    ok: { status: 200, description: 'an endless event stream', contentType: 'text/event-stream' },
  },
  'POST /v1/admin/partition': {
    summary: 'Test fault switch: refuse these peers',
    tag: 'admin',
    body: partitionSchema,
    ok: { status: 200, description: 'peers refused', schema: faultResponseSchema },
  },
  'POST /v1/admin/heal': {
    summary: 'Test fault switch: refuse no peer',
    tag: 'admin',
    body: healSchema,
    bodyOptional: true,
    ok: { status: 200, description: 'peers refused', schema: faultResponseSchema },
  },
  'POST /v1/admin/load': {
    summary: 'Benchmark load: owner updates as fast as durability allows',
    tag: 'admin',
    body: loadSchema,
    ok: { status: 200, description: 'updates made and time taken', schema: loadResponseSchema },
  },
};

/** Response schemas shared by reference (components.schemas), by name. */
const COMPONENTS: ReadonlyArray<[string, Schema]> = [
  ['Error', errorBodySchema],
  ['Agent', agentResponseSchema],
  ['Task', taskResponseSchema],
  ['NodeStatus', nodeStatusSchema],
  ['Peer', peerSchema],
  ['HostedAgent', localAgentSchema],
];

const ERROR_TEXT: Readonly<Record<number, string>> = {
  400: 'malformed request (BAD_JSON, INVALID_INPUT)',
  401: 'missing or invalid bearer token',
  404: 'no such agent, task or route',
  409: 'refused: invalid transition, stale epoch, policy (not the owner, ...), or the state forbids the action',
  413: 'body too large',
  415: 'body is not JSON',
  429: 'too many writes in progress, or the store too far behind (OVERLOADED): retry after Retry-After seconds',
  500: 'internal error',
  502: "the hosting node's answer was invalid, or the agent could not be spawned",
  503: "the agent's hosting node is unreachable (AGENT_NODE_UNREACHABLE); for writes: STORE_IO or CLOCK_SKEW",
  507: 'the disk is full (STORE_FULL): the write was not acknowledged',
  504: "the agent's hosting node did not answer in time (AGENT_CONTROL_TIMEOUT)",
};

type JsonSchema = Record<string, unknown>;

function jsonSchema(schema: Schema, io: 'input' | 'output'): JsonSchema {
  // Transforms and preprocessors (query strings to numbers) are described by their input side.
  const out = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as JsonSchema;
  delete out.$schema;
  return out;
}

function ref(schema: Schema, refs: ReadonlyMap<Schema, string>, io: 'input' | 'output'): JsonSchema {
  const name = refs.get(schema);
  return name === undefined ? jsonSchema(schema, io) : { $ref: `#/components/schemas/${name}` };
}

/** One OpenAPI parameter per property of an object schema (path or query). */
function parameters(schema: Schema | undefined, where: 'path' | 'query'): JsonSchema[] {
  if (schema === undefined) return [];
  const s = jsonSchema(schema, 'input');
  const props = (s.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((s.required ?? []) as string[]);
  return Object.entries(props).map(([name, p]) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    schema: p,
  }));
}

function operation(method: string, route: RouteDoc, auth: boolean, refs: ReadonlyMap<Schema, string>): JsonSchema {
  const ok = route.ok;
  const okContent =
    ok.schema === undefined
      ? { [ok.contentType ?? 'application/json']: {} }
      : {
          'application/json': {
            schema: ok.list ? { type: 'array', items: ref(ok.schema, refs, 'output') } : ref(ok.schema, refs, 'output'),
          },
        };
  const responses: Record<string, unknown> = {
    [String(ok.status)]: {
      description: ok.description,
      content: okContent,
      ...(route.headers
        ? {
            headers: Object.fromEntries(
              Object.entries(route.headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }]),
            ),
          }
        : {}),
    },
  };
  const statuses = new Set(route.errors ?? []);
  if (route.params || route.query || route.body) statuses.add(400);
  if (auth && route.public !== true) statuses.add(401);
  // Every write may be refused by back-pressure, a failing store or a skewed clock.
  if (method !== 'GET') for (const status of [429, 503, 507]) statuses.add(status);
  statuses.add(500);
  for (const status of [...statuses].sort()) {
    responses[String(status)] = {
      description: ERROR_TEXT[status] ?? 'error',
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    };
  }
  const params = [...parameters(route.params, 'path'), ...parameters(route.query, 'query')];
  return {
    summary: route.summary,
    tags: [route.tag],
    ...(params.length > 0 ? { parameters: params } : {}),
    ...(route.body
      ? {
          requestBody: {
            required: route.bodyOptional !== true,
            content: { 'application/json': { schema: ref(route.body, refs, 'input') } },
          },
        }
      : {}),
    responses,
    ...(route.public === true ? { security: [] } : {}),
  };
}

/** `/v1/tasks/:id` -> `/v1/tasks/{id}`. */
export const openApiPath = (url: string): string => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

/** The OpenAPI 3.1 document of the given routes (method and Fastify URL). */
export function openApiDocument(
  routes: ReadonlyArray<{ method: string; url: string }>,
  options: { auth: boolean },
): JsonSchema {
  const refs = new Map(COMPONENTS.map(([name, schema]) => [schema, name]));
  const paths: Record<string, Record<string, unknown>> = {};
  for (const { method, url } of routes) {
    if (method === 'HEAD' || method === 'OPTIONS') continue;
    const doc = ROUTES[`${method} ${url}`];
    const op = doc
      ? operation(method, doc, options.auth, refs)
      : {
          summary: `${method} ${url}`,
          'x-undescribed': true,
          responses: { default: { description: 'not described yet' } },
        };
    (paths[openApiPath(url)] ??= {})[method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'agentmesh node API',
      version: VERSION,
      description:
        'The HTTP API of one agentmesh node (JSON under /v1). Reads show the replicated state as this ' +
        'node holds it; writes are acknowledged once durable on this node and replicate to the mesh. ' +
        'Errors are { "error": { "code", "message" } }.',
    },
    servers: [{ url: '/' }],
    ...(options.auth ? { security: [{ bearerAuth: [] }] } : {}),
    tags: [
      { name: 'node', description: 'the node and its peers' },
      { name: 'agents', description: 'the agent registry and agent control' },
      { name: 'tasks', description: 'the task board' },
      { name: 'events', description: 'live changes' },
      { name: 'admin', description: 'test-only fault switch' },
      { name: 'meta', description: 'this description' },
    ],
    paths,
    components: {
      schemas: Object.fromEntries(COMPONENTS.map(([name, schema]) => [name, jsonSchema(schema, 'output')])),
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description: 'required on every route but /v1/health when the node was given a token (--token)',
        },
      },
    },
  };
}

/**
 * Registers the route recorder; call before any other route is registered. Returns the function
 * that registers `GET /v1/openapi.json` itself, to call after the others.
 */
/** Whether a route belongs to the JSON API the document describes (not the dashboard's files). */
export const isApiRoute = (url: string): boolean => url.startsWith('/v1/') || url === '/metrics';

export function openApiRoutes(app: FastifyInstance, _ctx: RouteContext, options: { auth: boolean }): () => void {
  const seen: Array<{ method: string; url: string }> = [];
  app.addHook('onRoute', (route) => {
    // The JSON API only: the dashboard's page and assets (`/`, `/ui/...`) are not part of it.
    if (!isApiRoute(route.url)) return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) seen.push({ method: String(method).toUpperCase(), url: route.url });
  });
  return () => {
    let document: JsonSchema | undefined;
    app.get('/v1/openapi.json', async () => (document ??= openApiDocument(seen, options)));
  };
}
