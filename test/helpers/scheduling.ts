import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_FIXTURES, type MeshProcess, until } from './mesh-process.js';

/** The stdio agent of the scheduling tests (see its header for what a payload makes it do). */
export const SCHED_AGENT = join(AGENT_FIXTURES, 'sched-agent.py');

/** A task as `GET /v1/tasks/:id` shows it (the fields these tests read). */
export interface TaskJson {
  id: string;
  status: string;
  epoch: number;
  attempt: number;
  assignee: string | null;
  node: string | null;
  claimRank: number;
  leaseUntil: number | null;
  notBefore: number | null;
  priority: number;
  parent: string | null;
  dependencies: string[];
  capabilities: string[];
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  result: { agent?: string; node?: string; attempt?: number; [k: string]: unknown } | null;
  error: { code?: string; message?: string; [k: string]: unknown } | null;
  attempts: Array<{
    attempt: number;
    epoch: number;
    node: string | null;
    agent: string | null;
    status: string;
    error: { code?: string } | null;
    startedAt: number | null;
    endedAt: number;
  }>;
}

export const TERMINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

/** The definition of a sched-agent that records the tasks it starts in `runLog`. */
export function schedAgent(
  id: string,
  capabilities: string[],
  runLog: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { id, mode: 'stdio', command: SCHED_AGENT, capabilities, env: { RUN_LOG: runLog }, ...extra };
}

/** One start of a task by an agent, as the agents' run logs record it. */
export interface RunRecord {
  task: string;
  attempt: number;
  agent: string;
  /** Wall-clock ms when the agent started it. */
  at: number;
}

/** Every task start recorded in `files` (missing files count as empty), in file order. */
export function readRuns(files: string[]): RunRecord[] {
  const out: RunRecord[] = [];
  for (const f of files) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      if (line === '') continue;
      const [task, attempt, agent, at] = line.split(' ');
      out.push({ task: task as string, attempt: Number(attempt), agent: agent as string, at: Number(at) });
    }
  }
  return out;
}

/** How many times each task was started, from run records. */
export function startCounts(runs: RunRecord[]): Map<string, number> {
  const n = new Map<string, number>();
  for (const r of runs) n.set(r.task, (n.get(r.task) ?? 0) + 1);
  return n;
}

/** Every task a node knows (up to the API's maximum page of 10,000). */
export function listTasks(node: MeshProcess, query = ''): Promise<TaskJson[]> {
  return node.get<TaskJson[]>(`/v1/tasks?limit=10000${query ? `&${query}` : ''}`);
}

export function getTask(node: MeshProcess, id: string): Promise<TaskJson> {
  return node.get<TaskJson>(`/v1/tasks/${encodeURIComponent(id)}`);
}

/** Creates a task through `node`'s API; asserts 201. */
export async function submit(node: MeshProcess, input: Record<string, unknown>): Promise<TaskJson> {
  const r = await node.call<TaskJson>('POST', '/v1/tasks', input);
  if (r.status !== 201)
    throw new Error(`POST /v1/tasks ${JSON.stringify(input).slice(0, 200)}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/**
 * Submits `inputs` through the nodes' APIs round-robin (input i on node i mod n), at most
 * `concurrency` requests in flight (fetch keeps the connections alive). Resolves when all are
 * created; rejects on the first refusal.
 */
export async function submitRoundRobin(
  nodes: MeshProcess[],
  inputs: Array<Record<string, unknown>>,
  concurrency: number,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < inputs.length) {
      const i = next++;
      await submit(nodes[i % nodes.length] as MeshProcess, inputs[i] as Record<string, unknown>);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Waits until task `id` is final on `node`; returns it. */
export function settled(node: MeshProcess, id: string, timeoutMs = 20_000): Promise<TaskJson> {
  return until(
    () => getTask(node, id),
    (t) => TERMINAL.has(t.status),
    timeoutMs,
    `task ${id} to settle on ${node.options.name}`,
  );
}

/** The part of a task that every replica must agree on once it is final. */
export function finalState(t: TaskJson): Record<string, unknown> {
  return {
    status: t.status,
    epoch: t.epoch,
    attempt: t.attempt,
    node: t.node,
    assignee: t.assignee,
    result: t.result,
    error: t.error,
    updatedAt: t.updatedAt,
  };
}

/** Percentile (0-100) of a non-empty list of numbers, nearest rank. */
export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}
