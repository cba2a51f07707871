/**
 * The CLI's client of a node's HTTP API, typed with the server's own request schemas and response
 * types (src/api/schemas.ts): request bodies are checked with the same zod schemas the server
 * applies before anything is sent (so a bad flag is named here, not as a bare 400), and every
 * response is returned as the type the server declares, after a shape check that catches
 * pointing `--api` at something that is not a mesh node.
 */
import type { z } from 'zod';
import type {
  AgentInputBody,
  AgentListQuery,
  AgentResponse,
  ErrorBody,
  LocalAgentStatus,
  NodeStatus,
  PeerView,
  TaskInputBody,
  TaskListQuery,
  TaskView,
} from '../api/schemas.js';
import type * as Schemas from '../api/schemas.js';
import type { AgentAction } from '../agents/host.js';
import { CliError, CliErrorCode } from './errors.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:7070';
const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * The server's request schemas, loaded when a command sends a body: the module brings the
 * registry, the task board and the agent host with it (most of a second on a small machine),
 * which reads (`status`, `tasks`, `watch`) do not need.
 */
const schemas = (): Promise<typeof Schemas> => import('../api/schemas.js');

/** Which flag each request field comes from, so schema issues can name the flag. */
export type FlagNames = Partial<Record<string, string>>;

/** Checks `value` with a server schema; BAD_ARGUMENT naming the flags of the failing fields. */
export function checkInput<S extends z.ZodType>(schema: S, value: unknown, flags: FlagNames = {}): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => {
    const field = i.path.map(String).join('.');
    const flag = flags[String(i.path[0] ?? '')] ?? (field ? field : 'input');
    return `${flag}: ${i.message}`;
  });
  throw new CliError(CliErrorCode.BAD_ARGUMENT, issues.join('; '), { details: { issues } });
}

/** Why a fetch failed, in words, from Node's error causes. */
function unreachableReason(err: unknown): string {
  if (err instanceof DOMException && err.name === 'TimeoutError') return 'no answer in time';
  // undici wraps the socket error (or, for a name with several addresses, an AggregateError of them).
  const cause = (err as { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } }).cause;
  const code = cause?.code ?? cause?.errors?.[0]?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unknown host';
    case 'ECONNRESET':
      return 'connection reset';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    default:
      return code ?? cause?.message ?? (err as Error).message;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export class ApiClient {
  constructor(
    readonly base: URL,
    private readonly token?: string,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {}

  /** The URL of `path` on this node. */
  url(path: string): URL {
    return new URL(path, this.base);
  }

  private headers(json: boolean, extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...(json ? { 'content-type': 'application/json' } : {}),
      ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      ...extra,
    };
  }

  /** Sends a request; API_UNREACHABLE when nothing answers. Returns the raw response. */
  async fetch(
    method: string,
    path: string,
    init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal; timeout?: boolean } = {},
  ): Promise<Response> {
    const signals = [
      ...(init.signal ? [init.signal] : []),
      ...(init.timeout === false ? [] : [AbortSignal.timeout(this.timeoutMs)]),
    ];
    try {
      return await fetch(this.url(path), {
        method,
        headers: this.headers(init.body !== undefined, init.headers),
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
        ...(signals.length > 0 ? { signal: AbortSignal.any(signals) } : {}),
      });
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new CliError(
        CliErrorCode.API_UNREACHABLE,
        `cannot reach the node's API at ${this.base.origin} (${unreachableReason(err)}). ` +
          'Is a node running there? Start one with `mesh start`, or point --api (or MESH_API) at a running node.',
        { cause: err, details: { url: this.base.origin } },
      );
    }
  }

  /** Turns an error response into API_ERROR with the API's code and explanation. */
  async failure(res: Response): Promise<CliError> {
    const text = await res.text().catch(() => '');
    let body: Partial<ErrorBody> = {};
    try {
      body = JSON.parse(text) as Partial<ErrorBody>;
    } catch {
      /* not JSON: say what we got */
    }
    const e = body.error;
    if (!isObject(e) || typeof e.message !== 'string') {
      return new CliError(
        CliErrorCode.BAD_RESPONSE,
        `${res.status} ${res.statusText} from ${this.base.origin}${text ? `: ${text.slice(0, 200)}` : ''} (is it a mesh node's API?)`,
        { details: { status: res.status } },
      );
    }
    const hint = res.status === 401 ? ' (give the token with --token or MESH_API_TOKEN)' : '';
    return new CliError(CliErrorCode.API_ERROR, `${e.message}${hint} [${res.status} ${e.code}]`, {
      details: { status: res.status, apiCode: e.code, ...(e.details ? { api: e.details } : {}) },
    });
  }

  /** A JSON request; the body parsed, its shape checked by `expect`. */
  async json<T>(method: string, path: string, expect: (v: unknown) => boolean, body?: unknown): Promise<T> {
    const res = await this.fetch(method, path, { body });
    if (!res.ok) throw await this.failure(res);
    let value: unknown;
    try {
      value = await res.json();
    } catch (err) {
      throw new CliError(CliErrorCode.BAD_RESPONSE, `${this.base.origin}${path} did not answer JSON`, { cause: err });
    }
    if (!expect(value)) {
      throw new CliError(
        CliErrorCode.BAD_RESPONSE,
        `${this.base.origin}${path} answered something that is not a mesh node's ${path.split('?')[0]}`,
      );
    }
    return value as T;
  }

  status(): Promise<NodeStatus> {
    return this.json('GET', '/v1/status', (v) => isObject(v) && typeof v.id === 'string' && isObject(v.peers));
  }

  peers(): Promise<PeerView[]> {
    return this.json('GET', '/v1/peers', isListOf('id'));
  }

  forgetPeer(id: string): Promise<PeerView> {
    return this.json('DELETE', `/v1/peers/${encodeURIComponent(id)}`, hasId);
  }

  agents(q: Partial<AgentListQuery> = {}): Promise<AgentResponse[]> {
    return this.json('GET', `/v1/agents${query(q)}`, isListOf('owner'));
  }

  agent(id: string): Promise<AgentResponse> {
    return this.json('GET', `/v1/agents/${encodeURIComponent(id)}`, hasId);
  }

  async putAgent(id: string, input: AgentInputBody, flags: FlagNames = {}): Promise<AgentResponse> {
    const body = checkInput((await schemas()).agentInputSchema, input, flags);
    return this.json('PUT', `/v1/agents/${encodeURIComponent(id)}`, hasId, body);
  }

  removeAgent(id: string): Promise<AgentResponse> {
    return this.json('DELETE', `/v1/agents/${encodeURIComponent(id)}`, hasId);
  }

  hostAgents(): Promise<LocalAgentStatus[]> {
    return this.json('GET', '/v1/host/agents', isListOf('mode'));
  }

  agentAction(id: string, action: AgentAction): Promise<LocalAgentStatus> {
    return this.json('POST', `/v1/agents/${encodeURIComponent(id)}/${action}`, hasId);
  }

  /** Tasks matching the filter, and how many matched before the limit (`x-total-count`). */
  async tasks(q: Partial<Record<keyof TaskListQuery, string>> = {}): Promise<{ tasks: TaskView[]; total: number }> {
    const path = `/v1/tasks${query(q)}`;
    const res = await this.fetch('GET', path);
    if (!res.ok) throw await this.failure(res);
    const tasks = (await res.json().catch(() => undefined)) as unknown;
    if (!isListOf('status')(tasks)) throw new CliError(CliErrorCode.BAD_RESPONSE, `${path}: not a list of tasks`);
    const total = Number(res.headers.get('x-total-count') ?? (tasks as unknown[]).length);
    return { tasks: tasks as TaskView[], total };
  }

  task(id: string): Promise<TaskView> {
    return this.json('GET', `/v1/tasks/${encodeURIComponent(id)}`, isTask);
  }

  async submit(input: TaskInputBody, flags: FlagNames = {}): Promise<TaskView> {
    const body = checkInput((await schemas()).taskInputSchema, input, flags);
    return this.json('POST', '/v1/tasks', isTask, body);
  }

  cancel(id: string): Promise<TaskView> {
    return this.json('POST', `/v1/tasks/${encodeURIComponent(id)}/cancel`, isTask);
  }

  retry(id: string): Promise<TaskView> {
    return this.json('POST', `/v1/tasks/${encodeURIComponent(id)}/retry`, isTask);
  }
}

const hasId = (v: unknown): boolean => isObject(v) && typeof v.id === 'string';
const isTask = (v: unknown): boolean => hasId(v) && typeof (v as { status?: unknown }).status === 'string';
const isListOf =
  (field: string) =>
  (v: unknown): boolean =>
    Array.isArray(v) && v.every((x) => hasId(x) && field in (x as object));

/** A query string from the given (defined, non-empty) parameters. */
export function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}
