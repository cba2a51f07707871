import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { ApiError, ApiErrorCode } from '../errors.js';
import type { RouteContext } from './context.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A route the bearer token does not guard (server.ts `isPublic`). */
    public?: boolean;
  }
}

/** Where the dashboard's assets are served from: `/ui/dashboard.js`, `/ui/dashboard.css`, ... */
export const DASHBOARD_ASSETS_PREFIX = '/ui/';

/**
 * The browser may load nothing but this node's own assets and talk to nothing but its API: no
 * CDN, no external fonts or images (nodes may be offline, and a dashboard of an authenticated API
 * should not leak its page to third parties). uPlot and Preact set styles through the CSSOM,
 * which `style-src 'self'` allows.
 */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

/**
 * The built dashboard (scripts/build-dashboard.mjs writes dist/dashboard/). From dist/api/routes/
 * that is ../../dashboard; when the API runs from the sources (tsx), ../../../dist/dashboard.
 */
export function dashboardDir(): string | undefined {
  const candidates = [
    resolve(import.meta.dirname, '../../dashboard'),
    resolve(import.meta.dirname, '../../../dist/dashboard'),
  ];
  return candidates.find((dir) => existsSync(resolve(dir, 'index.html')));
}

/**
 * `GET /`: the dashboard. Its shell (HTML, script, styles) is public, because a browser cannot
 * send a bearer token with a navigation; it holds no data. Everything the page shows comes from
 * the API, which keeps its auth: the page asks for the token once and sends it as a header.
 */
export function dashboardRoutes(app: FastifyInstance, _ctx: RouteContext, root = dashboardDir()): void {
  void app.register(async (scope) => {
    scope.addHook('onRoute', (route) => {
      route.config = { ...route.config, public: true };
    });
    scope.addHook('onSend', async (_request, reply, payload) => {
      void reply.headers(SECURITY_HEADERS);
      return payload;
    });
    if (root === undefined) {
      scope.get('/', async () => {
        throw new ApiError(ApiErrorCode.NOT_FOUND, 'the dashboard is not built: run npm run build');
      });
      return;
    }
    await scope.register(fastifyStatic, {
      root,
      prefix: DASHBOARD_ASSETS_PREFIX,
      // index.html is served at `/` only, with no-cache (it names the assets); the assets are
      // revalidated by ETag, so a rebuilt node never serves a stale bundle.
      index: false,
      cacheControl: true,
      maxAge: 0,
    });
    scope.get('/', async (_request, reply) =>
      reply.header('cache-control', 'no-cache').sendFile('index.html', { cacheControl: false }),
    );
  });
}
