export * from './backend.js';
export * from './errors.js';
export * from './schemas.js';
export { metricName } from './metrics.js';
export {
  type ApiServer,
  type ApiServerOptions,
  bearerChecker,
  buildApi,
  createApiServer,
  DEFAULT_BODY_LIMIT,
  isLoopbackHost,
  tokenRequired,
} from './server.js';
export * from './service.js';
