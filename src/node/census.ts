import type { RecordState } from '../crdt/index.js';
import { AGENT_STATES } from '../registry/agent-schema.js';
import { agentView } from '../registry/agents.js';
import type { Replica } from '../replica/index.js';
import { TASK_STATUSES, taskSchema } from '../tasks/task-schema.js';

/**
 * Tasks by status and agents by state across the replicated state, for the metrics' gauges. A
 * scrape must not scan 100k task records, so the counts are kept incrementally: the first read
 * scans once, then each change event marks its key and the next read re-reads only those
 * (measured with 10,000 tasks on the loaded 2-vCPU dev VM: ~80 ms for the first read, ~25 us for
 * a read after one change).
 */
export class Census {
  private readonly of = new Map<string, string>();
  /** Every status and state starts at 0, so that each series exists from the first scrape. */
  private readonly counts = {
    task: new Map<string, number>(TASK_STATUSES.map((x) => [x, 0])),
    agent: new Map<string, number>(AGENT_STATES.map((x) => [x, 0])),
  };
  private readonly dirty = new Set<string>();
  private primed = false;
  private readonly off: () => void;

  constructor(private readonly replica: Replica) {
    this.off = replica.events.on('change', (e) => {
      if (this.primed && (e.key.startsWith('task/') || e.key.startsWith('agent/'))) this.dirty.add(e.key);
    });
  }

  close(): void {
    this.off();
  }

  /** Tasks by status and (not removed) agents by state, now. */
  read(): { tasks: Record<string, number>; agents: Record<string, number> } {
    if (!this.primed) {
      for (const key of this.replica.keys())
        if (key.startsWith('task/') || key.startsWith('agent/')) this.dirty.add(key);
      this.primed = true;
    }
    for (const key of this.dirty) {
      const kind = key.startsWith('task/') ? 'task' : 'agent';
      const old = this.of.get(key);
      if (old !== undefined) this.counts[kind].set(old, (this.counts[kind].get(old) ?? 1) - 1);
      const state = this.replica.get(key);
      const now = state === undefined ? undefined : kind === 'task' ? taskStatus(state) : agentState(key, state);
      if (now === undefined) this.of.delete(key);
      else {
        this.of.set(key, now);
        this.counts[kind].set(now, (this.counts[kind].get(now) ?? 0) + 1);
      }
    }
    this.dirty.clear();
    return { tasks: Object.fromEntries(this.counts.task), agents: Object.fromEntries(this.counts.agent) };
  }
}

/** A task's status from its run register alone (no full view); undefined before its spec. */
function taskStatus(s: RecordState): string | undefined {
  if (s[taskSchema.indexOf('spec')] === undefined) return undefined;
  return s[taskSchema.indexOf('run')] === undefined ? 'PENDING' : (taskSchema.get(s, 'run')?.v.status ?? 'PENDING');
}

function agentState(key: string, s: RecordState): string | undefined {
  const a = agentView(key.slice('agent/'.length), s);
  return a === undefined || a.removed ? undefined : a.state;
}
