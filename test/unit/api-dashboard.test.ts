import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/index.js';
import { dashboardDir } from '../../src/api/routes/dashboard.js';
import { testBackend } from '../helpers/api-backend.js';

/**
 * The dashboard's routes on an API with a token: the shell and its assets are public, under a
 * strict content security policy; the API keeps its auth. Needs the build (`npm run build`, which
 * `npm test` runs first).
 */
describe('HTTP API: dashboard routes', () => {
  const token = 'dashboard-unit-token';
  let app: FastifyInstance;

  before(async () => {
    assert.ok(dashboardDir() !== undefined, 'dist/dashboard is built (npm run build)');
    app = buildApi(testBackend(), { host: '127.0.0.1', port: 0, token });
    await app.ready();
  });
  after(() => app.close());

  it('serves the page and its assets without the token, with a CSP that allows only the node', async () => {
    const page = await app.inject({ method: 'GET', url: '/' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(page.body, /<script type="module" src="\/ui\/dashboard\.js">/);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /connect-src 'self'/);
    assert.equal(page.headers['cache-control'], 'no-cache');
    for (const asset of ['/ui/dashboard.js', '/ui/dashboard-style.css', '/ui/favicon.svg']) {
      const r = await app.inject({ method: 'GET', url: asset });
      assert.equal(r.statusCode, 200, asset);
      assert.ok(r.body.length > 0, asset);
    }
  });

  it('keeps the API behind the token, and serves nothing outside the dashboard folder', async () => {
    for (const url of ['/v1/status', '/v1/tasks', '/metrics']) {
      assert.equal((await app.inject({ method: 'GET', url })).statusCode, 401, url);
    }
    for (const url of ['/ui/../package.json', '/ui/%2e%2e/package.json', '/ui/nope.js']) {
      const r = await app.inject({ method: 'GET', url });
      assert.ok(r.statusCode === 403 || r.statusCode === 404 || r.statusCode === 401, `${url}: ${r.statusCode}`);
      assert.ok(!r.body.includes('"agentmesh"'), `${url} does not leak package.json`);
    }
  });
});
