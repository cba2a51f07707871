import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
// Ajv comes with Fastify (a dependency of ours): a JSON Schema 2020-12 validator, the dialect of
// OpenAPI 3.1, to check that every schema in the document compiles and that real answers match.
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApi } from '../../src/api/index.js';
import { isApiRoute, openApiPath } from '../../src/api/routes/openapi.js';
import { FakeFaults, type TestBackend, testBackend } from '../helpers/api-backend.js';

const T = { timeout: 15_000 };
const quiet = pino({ level: 'silent' });
const METHODS = ['get', 'put', 'post', 'patch', 'delete'];

/**
 * Every (method, URL) Fastify registered, read back from its own route tree printout (one node
 * per line, children indented by 4 characters under their parent, methods in parentheses).
 */
function registeredRoutes(app: FastifyInstance): Set<string> {
  const out = new Set<string>();
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)(?:[├└]── )(\S+) \(([^)]*)\)/.exec(line) ?? /^([│ ]*)(?:[├└]── )(\S+)$/.exec(line);
    if (m === null) continue;
    const depth = (m[1] as string).length / 4;
    stack.length = depth;
    stack.push(m[2] as string);
    const url = stack.join('');
    for (const method of (m[3] ?? '').split(',').map((s) => s.trim())) {
      if (method !== '' && method !== 'HEAD') out.add(`${method} ${url}`);
    }
  }
  return out;
}

describe('OpenAPI document', T, () => {
  let backend: TestBackend;
  let app: FastifyInstance;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let doc: any;
  before(async () => {
    backend = testBackend({ faults: new FakeFaults() });
    app = buildApi(backend, { host: '127.0.0.1', port: 0, log: quiet, token: 'sesame' });
    await app.ready();
    const r = await app.inject({ method: 'GET', url: '/v1/openapi.json', headers: { authorization: 'Bearer sesame' } });
    assert.equal(r.statusCode, 200, r.body);
    assert.match(r.headers['content-type'] as string, /^application\/json/);
    doc = r.json();
  });
  after(() => app.close());

  it('is OpenAPI 3.1 with bearer auth, and every route Fastify registered is described', () => {
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(typeof doc.info.title, 'string');
    assert.deepEqual(doc.components.securitySchemes.bearerAuth, {
      type: 'http',
      scheme: 'bearer',
      description: doc.components.securitySchemes.bearerAuth.description,
    });
    assert.deepEqual(doc.security, [{ bearerAuth: [] }]);
    const routes = registeredRoutes(app);
    assert.ok(routes.size >= 19, `the route tree parsed: ${[...routes].join(', ')}`);
    for (const route of routes) {
      const [method, url] = route.split(' ') as [string, string];
      if (!isApiRoute(url)) continue; // the dashboard's page and assets
      const op = doc.paths[openApiPath(url)]?.[method.toLowerCase()];
      assert.ok(op !== undefined, `${route} is in the document`);
      assert.notEqual(op['x-undescribed'], true, `${route} is described`);
    }
    // And nothing else: every operation of the document is a registered route.
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(item)) {
        const url = path.replace(/\{([^}]+)\}/g, ':$1');
        assert.ok(routes.has(`${method.toUpperCase()} ${url}`), `${method} ${path} is a registered route`);
      }
    }
    assert.deepEqual(doc.paths['/v1/health'].get.security, [], 'health needs no token');
  });

  it('has path parameters, query parameters, bodies, responses and the error shape', () => {
    const action = doc.paths['/v1/agents/{id}/{action}'].post;
    assert.deepEqual(
      action.parameters.map((p: { name: string; in: string; required: boolean }) => [p.name, p.in, p.required]),
      [
        ['id', 'path', true],
        ['action', 'path', true],
      ],
    );
    assert.deepEqual(action.parameters[1].schema.enum, ['start', 'stop', 'restart', 'pause', 'resume']);
    for (const status of ['404', '409', '503', '504', '401', '500']) {
      assert.deepEqual(action.responses[status].content['application/json'].schema, {
        $ref: '#/components/schemas/Error',
      });
    }
    const list = doc.paths['/v1/tasks'].get;
    const limit = list.parameters.find((p: { name: string }) => p.name === 'limit');
    assert.equal(limit.in, 'query');
    assert.equal(limit.required, false);
    const create = doc.paths['/v1/tasks'].post;
    assert.equal(create.requestBody.required, true);
    assert.deepEqual(create.requestBody.content['application/json'].schema.required, ['type']);
    assert.deepEqual(create.responses['201'].content['application/json'].schema, { $ref: '#/components/schemas/Task' });
    assert.equal(doc.paths['/v1/tasks/{id}/cancel'].post.requestBody.required, false);
    assert.ok(doc.components.schemas.Error.properties.error.required.includes('code'));
  });

  it('every schema compiles, and real answers match their response schemas', async () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    for (const [name, schema] of Object.entries(doc.components.schemas as Record<string, object>)) {
      ajv.addSchema(schema, `#/components/schemas/${name}`);
    }
    const compile = (schema: object) => ajv.compile(JSON.parse(JSON.stringify(schema)) as object);
    let compiled = 0;
    for (const item of Object.values(doc.paths as Record<string, Record<string, Record<string, unknown>>>)) {
      for (const method of METHODS) {
        const op = item[method] as
          | { parameters?: Array<{ schema: object }>; requestBody?: { content: Record<string, { schema: object }> } }
          | undefined;
        if (op === undefined) continue;
        const body = op.requestBody?.content['application/json']?.schema;
        for (const schema of [...(op.parameters ?? []).map((p) => p.schema), ...(body ? [body] : [])]) {
          assert.equal(typeof compile(schema), 'function');
          compiled++;
        }
      }
    }
    assert.ok(compiled > 20, `compiled ${compiled} parameter and body schemas`);

    const auth = { authorization: 'Bearer sesame' };
    const created = await app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: auth,
      payload: { type: 'x', title: 't', capabilities: ['c'] },
    });
    assert.equal(created.statusCode, 201, created.body);
    const put = await app.inject({
      method: 'PUT',
      url: '/v1/agents/a1',
      headers: auth,
      payload: { name: 'a', type: 't', capabilities: ['c'], meta: { k: 1 } },
    });
    assert.equal(put.statusCode, 200, put.body);
    const checks: Array<[string, string, object]> = [
      ['/v1/tasks', '#/components/schemas/Task', created.json()],
      [
        '/v1/status',
        '#/components/schemas/NodeStatus',
        (await app.inject({ url: '/v1/status', headers: auth })).json(),
      ],
      [
        '/v1/agents/a1',
        '#/components/schemas/Agent',
        (await app.inject({ url: '/v1/agents/a1', headers: auth })).json(),
      ],
      [
        '/v1/tasks/nope',
        '#/components/schemas/Error',
        (await app.inject({ url: '/v1/tasks/nope', headers: auth })).json(),
      ],
    ];
    for (const [url, ref, body] of checks) {
      const validate = ajv.getSchema(ref);
      assert.ok(validate, ref);
      assert.ok(validate(body), `${url} matches ${ref}: ${JSON.stringify(validate.errors)}`);
    }
    const peers = (await app.inject({ url: '/v1/peers', headers: auth })).json();
    const peersSchema = doc.paths['/v1/peers'].get.responses['200'].content['application/json'].schema;
    const validatePeers = compile(peersSchema);
    assert.ok(validatePeers(peers), JSON.stringify(validatePeers.errors));
  });
});
