import { MeshError } from '../util/errors.js';

/** Why a call to the node's API failed. */
export const ApiCallErrorCode = {
  /** The node answered with an error body (its own code is in `details.code`, its status in `details.status`). */
  API_ERROR: 'API_ERROR',
  /** No answer: connection refused, DNS, timeout. */
  API_UNREACHABLE: 'API_UNREACHABLE',
} as const;
export type ApiCallErrorCode = (typeof ApiCallErrorCode)[keyof typeof ApiCallErrorCode];

export class ApiCallError extends MeshError<ApiCallErrorCode> {
  /** The API's own error code (NOT_FOUND, INVALID_INPUT, ...) when it answered. */
  get apiCode(): string | undefined {
    return this.details?.code as string | undefined;
  }
}

export interface ApiClientOptions {
  /** Base URL, e.g. `http://127.0.0.1:7070`. */
  api: string;
  token?: string | undefined;
  /** Per request (default 10 s). */
  timeoutMs?: number;
}

/**
 * A small client of a node's HTTP API for the MCP server: JSON in and out, the API's error body
 * turned into an ApiCallError carrying its code and message.
 */
export class ApiClient {
  readonly base: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;

  constructor(options: ApiClientOptions) {
    this.base = options.api.replace(/\/+$/, '');
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  headers(json: boolean): Record<string, string> {
    return {
      ...(json ? { 'content-type': 'application/json' } : {}),
      ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
    };
  }

  async call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: this.headers(body !== undefined),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      throw new ApiCallError(
        ApiCallErrorCode.API_UNREACHABLE,
        `cannot reach the node API at ${this.base}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const e = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      const code = typeof e?.code === 'string' ? e.code : `HTTP_${res.status}`;
      const message = typeof e?.message === 'string' ? e.message : res.statusText;
      throw new ApiCallError(ApiCallErrorCode.API_ERROR, `${code}: ${message}`, {
        details: { code, status: res.status },
      });
    }
    return json as T;
  }
}

/** `{ a: 'x', b: undefined }` -> `?a=x`. */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
