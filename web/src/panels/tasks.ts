/** The task board: a column per status, live progress, and the detail of one task. */
import { useEffect, useRef, useState } from 'preact/hooks';
import type { AgentView, TaskView } from '../../../src/api/schemas.js';
import { api } from '../api.js';
import { ago, html, shortId } from '../html.js';
import { useAction } from '../hooks.js';
import { TASK_STATUSES, type TaskStatus } from '../store.js';

/** Cards shown per column; the column header has the node's full count. */
const CARDS_PER_COLUMN = 50;
const FINAL: ReadonlySet<string> = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

function Progress({ value, status }: { value: number; status: string }) {
  const pct = Math.max(0, Math.min(100, Math.round(value)));
  return html`<div
    class=${`bar progress progress-${status.toLowerCase()}`}
    role="progressbar"
    aria-valuenow=${pct}
    aria-valuemin="0"
    aria-valuemax="100"
    title=${`${pct}%`}
  >
    <div class="fill" style=${{ width: `${pct}%` }}></div>
  </div>`;
}

function lease(t: TaskView, now: number): string | null {
  if (t.leaseUntil === null || FINAL.has(t.status)) return null;
  const left = t.leaseUntil - now;
  return left > 0 ? `lease ${(left / 1000).toFixed(1)} s` : 'lease expired';
}

function TaskCard({ task, selected, onSelect }: { task: TaskView; selected: boolean; onSelect: (id: string) => void }) {
  const now = Date.now();
  const l = lease(task, now);
  const code = (task.error as { code?: unknown } | null)?.code;
  return html`<li
    class=${`card${selected ? ' selected' : ''}`}
    data-task-id=${task.id}
    data-status=${task.status}
    tabindex="0"
    onClick=${() => onSelect(task.id)}
    onKeyDown=${(e: KeyboardEvent) => (e.key === 'Enter' || e.key === ' ') && onSelect(task.id)}
  >
    <div class="card-title">${task.title || task.type}</div>
    <div class="card-meta">
      <code title=${task.id}>${task.id}</code>
      ${task.assignee !== null && html` · ${task.assignee}`}
    </div>
    ${
      (task.status === 'IN_PROGRESS' || task.status === 'ASSIGNED' || task.progress > 0) &&
      html`<${Progress} value=${task.progress} status=${task.status} />`
    }
    <div class="card-meta">
      attempt ${task.attempt}/${task.maxRetries + 1}${l !== null && html` · ${l}`}
      ${typeof code === 'string' && html` · <span class="error-code">${code}</span>`}
    </div>
  </li>`;
}

function json(v: unknown): string {
  return JSON.stringify(v, null, 2) ?? 'undefined';
}

/**
 * Retry is for FAILED tasks only: the node refuses it for any other status (a cancel is final: it
 * outranks every later attempt), and the button says so by being disabled.
 */
function TaskDetail({ task, onClose }: { task: TaskView; onClose: () => void }) {
  const cancel = useAction();
  const retry = useAction();
  const final = FINAL.has(task.status);
  const now = Date.now();
  // The log's newest lines matter most: keep it scrolled to its end as it grows.
  const log = useRef<HTMLPreElement>(null);
  useEffect(() => {
    if (log.current !== null) log.current.scrollTop = log.current.scrollHeight;
  }, [task.id, task.log.length]);
  return html`<aside class="detail" aria-label="task detail" data-detail-id=${task.id}>
    <header>
      <h3>${task.title || task.type}</h3>
      <button class="close" onClick=${onClose} aria-label="close">×</button>
    </header>
    <dl>
      <dt>id</dt>
      <dd><code>${task.id}</code></dd>
      <dt>status</dt>
      <dd><span class=${`status status-${task.status.toLowerCase()}`}>${task.status}</span></dd>
      <dt>type</dt>
      <dd>${task.type}</dd>
      <dt>needs</dt>
      <dd>${task.capabilities.length === 0 ? '–' : task.capabilities.join(', ')}</dd>
      <dt>priority</dt>
      <dd>${task.priority}</dd>
      <dt>holder</dt>
      <dd>
        ${task.assignee ?? '–'}${task.node !== null && html` on <code title=${task.node}>${shortId(task.node)}</code>`}
      </dd>
      <dt>attempt</dt>
      <dd>${task.attempt} of ${task.maxRetries + 1} · epoch ${task.epoch}</dd>
      <dt>lease</dt>
      <dd>${lease(task, now) ?? '–'}</dd>
      <dt>created</dt>
      <dd>${ago(task.createdAt, now)} by <code title=${task.creator}>${shortId(task.creator)}</code></dd>
      <dt>progress</dt>
      <dd><${Progress} value=${task.progress} status=${task.status} /> ${Math.round(task.progress)}%</dd>
    </dl>
    <div class="actions">
      <button
        disabled=${final || cancel.busy}
        onClick=${() => cancel.run(() => api('POST', `/v1/tasks/${encodeURIComponent(task.id)}/cancel`))}
      >
        Cancel task
      </button>
      <button
        disabled=${task.status !== 'FAILED' || retry.busy}
        onClick=${() => retry.run(() => api('POST', `/v1/tasks/${encodeURIComponent(task.id)}/retry`))}
      >
        Retry task
      </button>
    </div>
    ${cancel.error !== undefined && html`<div class="error" role="alert">${cancel.error}</div>`}
    ${retry.error !== undefined && html`<div class="error" role="alert">${retry.error}</div>`}
    ${
      task.status === 'COMPLETED' &&
      html`<h4>Result</h4>
        <pre class="result">${json(task.result)}</pre>`
    }
    ${
      task.error !== null &&
      task.error !== undefined &&
      html`<h4>Error</h4>
        <pre class="error-body">${json(task.error)}</pre>`
    }
    <h4>Payload</h4>
    <pre>${json(task.payload)}</pre>
    <h4>Log <span class="sub">${task.log.length} lines</span></h4>
    <pre class="log" ref=${log}>${task.log.length === 0 ? '(empty)' : task.log.join('\n')}</pre>
    ${
      task.attempts.length > 0 &&
      html`<h4>Earlier attempts</h4>
        <table>
          <thead>
            <tr>
              <th>#</th>
              <th>status</th>
              <th>agent</th>
              <th>error</th>
              <th>ended</th>
            </tr>
          </thead>
          <tbody>
            ${task.attempts.map(
              (a) =>
                html`<tr key=${a.attempt}>
                  <td>${a.attempt}</td>
                  <td>${a.status}</td>
                  <td>${a.agent ?? '–'}</td>
                  <td>${String((a.error as { code?: unknown } | null)?.code ?? '–')}</td>
                  <td>${ago(a.endedAt, now)}</td>
                </tr>`,
            )}
          </tbody>
        </table>`
    }
  </aside>`;
}

type Target = 'capability' | 'agent';

/** Submit: a type, a title, what it needs (capabilities, or one agent by hand), a JSON payload. */
function SubmitForm({ agents, onCreated }: { agents: AgentView[]; onCreated: (id: string) => void }) {
  const [type, setType] = useState('');
  const [title, setTitle] = useState('');
  const [target, setTarget] = useState<Target>('capability');
  const [capabilities, setCapabilities] = useState('');
  const [agent, setAgent] = useState('');
  const [payload, setPayload] = useState('{}');
  const [formError, setFormError] = useState<string | undefined>(undefined);
  const action = useAction();

  const submit = (e: Event) => {
    e.preventDefault();
    setFormError(undefined);
    let body: unknown;
    try {
      body = payload.trim() === '' ? undefined : JSON.parse(payload);
    } catch (err) {
      setFormError(`The payload is not valid JSON: ${(err as Error).message}`);
      return;
    }
    const caps = capabilities
      .split(',')
      .map((c) => c.trim())
      .filter((c) => c.length > 0);
    if (target === 'agent' && agent === '') {
      setFormError('Choose the agent to run it.');
      return;
    }
    const input = {
      type: type.trim() || 'task',
      ...(title.trim() ? { title: title.trim() } : {}),
      ...(body === undefined ? {} : { payload: body }),
      ...(target === 'capability' ? { capabilities: caps } : { assignee: agent }),
    };
    action.run(async () => {
      const task = await api<TaskView>('POST', '/v1/tasks', input);
      onCreated(task.id);
    });
  };

  return html`<form class="submit" onSubmit=${submit} aria-label="submit a task">
    <label
      >type
      <input
        name="type"
        value=${type}
        placeholder="task"
        onInput=${(e: Event) => setType((e.target as HTMLInputElement).value)}
    /></label>
    <label
      >title <input name="title" value=${title} onInput=${(e: Event) => setTitle((e.target as HTMLInputElement).value)}
    /></label>
    <fieldset>
      <label
        ><input
          type="radio"
          name="target"
          checked=${target === 'capability'}
          onChange=${() => setTarget('capability')}
        />
        capabilities</label
      >
      <label
        ><input type="radio" name="target" checked=${target === 'agent'} onChange=${() => setTarget('agent')} />
        agent</label
      >
    </fieldset>
    ${
      target === 'capability'
        ? html`<label
            >capabilities
            <input
              name="capabilities"
              value=${capabilities}
              placeholder="summarize, pdf"
              onInput=${(e: Event) => setCapabilities((e.target as HTMLInputElement).value)}
          /></label>`
        : html`<label
            >agent
            <select
              name="agent"
              value=${agent}
              onChange=${(e: Event) => setAgent((e.target as HTMLSelectElement).value)}
            >
              <option value="">choose…</option>
              ${agents.map((a) => html`<option key=${a.id} value=${a.id}>${a.id}</option>`)}
            </select></label
          >`
    }
    <label class="payload"
      >payload (JSON)
      <textarea
        name="payload"
        rows="3"
        spellcheck="false"
        value=${payload}
        onInput=${(e: Event) => setPayload((e.target as HTMLTextAreaElement).value)}
      ></textarea>
    </label>
    <button type="submit" disabled=${action.busy}>Submit task</button>
    ${(formError ?? action.error) !== undefined && html`<div class="error" role="alert">${formError ?? action.error}</div>`}
  </form>`;
}

export function TasksPanel({
  tasks,
  totals,
  agents,
}: {
  tasks: Map<string, TaskView>;
  totals: Partial<Record<TaskStatus, number>>;
  agents: AgentView[];
}) {
  const [selected, setSelected] = useState<string | null>(null);
  // A task chosen before it reached this node's board (just submitted elsewhere): fetch it.
  const [fetched, setFetched] = useState<TaskView | null>(null);
  useEffect(() => {
    if (selected === null || tasks.has(selected)) return;
    api<TaskView>('GET', `/v1/tasks/${encodeURIComponent(selected)}`).then(setFetched, () => setFetched(null));
  }, [selected]);

  const columns = new Map<string, TaskView[]>(TASK_STATUSES.map((s) => [s, []]));
  for (const t of tasks.values()) columns.get(t.status)?.push(t);
  const detail = selected === null ? null : (tasks.get(selected) ?? (fetched?.id === selected ? fetched : null));

  return html`
    <section class="panel tasks" aria-labelledby="tasks-h">
      <h2 id="tasks-h">Tasks</h2>
      <${SubmitForm} agents=${agents} onCreated=${setSelected} />
      <div class="board-wrap">
        <div class="board">
          ${TASK_STATUSES.map((s) => {
            const list = columns.get(s) ?? [];
            // Live work first by age; finished work newest first.
            list.sort(FINAL.has(s) ? (a, b) => b.updatedAt - a.updatedAt : (a, b) => a.createdAt - b.createdAt);
            const total = Math.max(totals[s] ?? 0, list.length);
            return html`<div class=${`column column-${s.toLowerCase()}`} data-column=${s} key=${s}>
              <h3>
                <span class=${`status status-${s.toLowerCase()}`}>${s.replace('_', ' ')}</span>
                <span class="count">${total}</span>
              </h3>
              <ul>
                ${list
                  .slice(0, CARDS_PER_COLUMN)
                  .map(
                    (t) =>
                      html`<${TaskCard} key=${t.id} task=${t} selected=${t.id === selected} onSelect=${setSelected} />`,
                  )}
              </ul>
              ${list.length > CARDS_PER_COLUMN && html`<p class="more">${list.length - CARDS_PER_COLUMN} more not shown</p>`}
            </div>`;
          })}
        </div>
        ${detail !== null && html`<${TaskDetail} task=${detail} onClose=${() => setSelected(null)} />`}
      </div>
    </section>
  `;
}
