/**
 * The dashboard's client for its node's HTTP API: same origin, JSON, and the bearer token when
 * the node has one.
 *
 * Why the token lives in sessionStorage and travels as a header: a browser cannot add a header to
 * a navigation, so the page shell (HTML, JS, CSS: no data) is served without auth, and every data
 * request (including the event stream, read with fetch rather than EventSource, which cannot set
 * headers) carries `Authorization: Bearer`. The token is asked for once, on the first 401, and
 * kept in sessionStorage: it survives a reload but not the tab, and never appears in a URL (where
 * it would end up in history, logs and Referer headers).
 */
import type { ErrorBody, HealthResponse } from '../../src/api/schemas.js';

const TOKEN_KEY = 'agentmesh.token';

/** An API call that failed: the API's own error code and message, or a network failure. */
export class ApiRequestError extends Error {
  override readonly name = 'ApiRequestError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: the user types the token again after a reload
  }
}

export function setToken(token: string | null): void {
  try {
    if (token === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // storage disabled: see getToken
  }
  memoryToken = token;
}

let memoryToken: string | null = getToken();

export function authHeaders(): Record<string, string> {
  return memoryToken === null ? {} : { authorization: `Bearer ${memoryToken}` };
}

/** Listeners told when a request was refused for want of a (valid) token. */
const unauthorized = new Set<() => void>();
export function onUnauthorized(fn: () => void): () => void {
  unauthorized.add(fn);
  return () => unauthorized.delete(fn);
}

async function errorOf(res: Response): Promise<ApiRequestError> {
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const e = (body as ErrorBody | undefined)?.error;
  if (e !== undefined && typeof e.code === 'string') return new ApiRequestError(res.status, e.code, e.message);
  return new ApiRequestError(res.status, `HTTP_${res.status}`, `${res.status} ${res.statusText}`);
}

/** One JSON request with its response headers; throws ApiRequestError on any failure. */
export async function apiResponse<T>(
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 10_000,
): Promise<{ body: T; headers: Headers }> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: { ...authHeaders(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new ApiRequestError(0, 'NETWORK', `cannot reach the node: ${(err as Error).message}`);
  }
  if (res.status === 401) for (const fn of unauthorized) fn();
  if (!res.ok) throw await errorOf(res);
  return { body: (await res.json()) as T, headers: res.headers };
}

/** One JSON request; throws ApiRequestError with the API's code and message on any failure. */
export async function api<T>(method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<T> {
  return (await apiResponse<T>(method, path, body, timeoutMs)).body;
}

/** GET of a text resource (the Prometheus exposition at /metrics). */
export async function apiText(path: string, timeoutMs = 10_000): Promise<string> {
  let res: Response;
  try {
    res = await fetch(path, { headers: authHeaders(), signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new ApiRequestError(0, 'NETWORK', `cannot reach the node: ${(err as Error).message}`);
  }
  if (res.status === 401) for (const fn of unauthorized) fn();
  if (!res.ok) throw await errorOf(res);
  return res.text();
}

/** GET /v1/health: 200 when the node accepts writes, 503 with its problems when it cannot. */
export async function apiHealth(timeoutMs = 10_000): Promise<HealthResponse> {
  let res: Response;
  try {
    res = await fetch('/v1/health', { headers: authHeaders(), signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new ApiRequestError(0, 'NETWORK', `cannot reach the node: ${(err as Error).message}`);
  }
  if (res.status === 200 || res.status === 503) return (await res.json()) as HealthResponse;
  throw await errorOf(res);
}
