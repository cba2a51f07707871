import type { z } from 'zod';
import type { Logger } from '../../util/log.js';
import type { ApiBackend } from '../backend.js';
import { ApiError, ApiErrorCode } from '../errors.js';
import type { ApiMetrics } from '../metrics.js';
import type { EventLogOptions } from '../event-log.js';
import type { SseOptions } from '../sse.js';

/** What every route module gets from the server. */
export interface RouteContext {
  backend: ApiBackend;
  metrics: ApiMetrics;
  log: Logger;
  sse: Required<Pick<SseOptions, 'maxBufferBytes' | 'heartbeatMs'>>;
  /** The event stream's shared window (defaults: 10,000 events, 8 MiB, kept 10 min after the last client). */
  eventLog?: Pick<EventLogOptions, 'maxEvents' | 'maxBytes' | 'retainIdleMs'>;
}

/** Parses a body, query or path parameters, or throws INVALID_INPUT listing every issue. */
export function parseInput<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: 'body' | 'query' | 'params',
): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => ({ path: [where, ...i.path.map(String)].join('.'), message: i.message }));
  throw new ApiError(
    ApiErrorCode.INVALID_INPUT,
    `invalid ${where}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
    { details: { issues } },
  );
}
