/** The page: a header with the node and the stream's state, then one panel per concern. */
import { useState } from 'preact/hooks';
import { setToken } from './api.js';
import { ago, html, shortId } from './html.js';
import { useStore } from './hooks.js';
import { AgentsPanel } from './panels/agents.js';
import { FeedPanel } from './panels/feed.js';
import { NodesPanel, TopologyPanel } from './panels/nodes.js';
import { ReplicationPanel } from './panels/replication.js';
import { TasksPanel } from './panels/tasks.js';
import type { Store } from './store.js';

const STREAM_LABEL = { connecting: 'connecting…', open: 'live', retrying: 'reconnecting…', unauthorized: 'locked' };

function TokenForm({ store }: { store: Store }) {
  const [value, setValue] = useState('');
  return html`<form
    class="token"
    aria-label="API token"
    onSubmit=${(e: Event) => {
      e.preventDefault();
      if (value.trim() === '') return;
      setToken(value.trim());
      store.restart();
    }}
  >
    <p>This node's API needs a bearer token (<code>--token</code> or <code>MESH_API_TOKEN</code> of the node).</p>
    ${store.state.tokenRefused && html`<div class="error" role="alert">The node refused that token.</div>`}
    <input
      type="password"
      name="token"
      autocomplete="off"
      placeholder="token"
      value=${value}
      onInput=${(e: Event) => setValue((e.target as HTMLInputElement).value)}
    />
    <button type="submit">Unlock</button>
    <p class="muted">Kept for this tab only (sessionStorage), sent as an Authorization header.</p>
  </form>`;
}

export function App({ store }: { store: Store }) {
  const s = useStore(store);
  const agents = [...s.agents.values()].sort((a, b) => a.id.localeCompare(b.id));
  return html`
    <header class="top">
      <h1>agentmesh</h1>
      ${
        s.status !== null &&
        html`<div class="node">
          <strong>${s.status.name}</strong>
          <code title=${s.status.id}>${shortId(s.status.id)}</code>
          <span class="muted"
            >v${s.status.version} · up ${ago(s.status.startedAt).replace(' ago', '')} · ${s.status.keys} keys · root
            <code>${s.status.merkleRoot.slice(0, 8)}</code></span
          >
        </div>`
      }
      <span class=${`stream stream-${s.stream}`} title=${s.streamDetail ?? ''} data-stream=${s.stream}
        >${STREAM_LABEL[s.stream]}</span
      >
    </header>
    ${s.pollError !== undefined && html`<div class="banner error" role="alert">${s.pollError}</div>`}
    ${
      s.health !== null &&
      !s.health.ok &&
      html`<div class="banner error" role="alert" data-health="down">
        This node refuses writes:
        ${(s.health.problems ?? []).map((p) => html` <strong>${p.code}</strong> ${p.message}`)}
      </div>`
    }
    ${
      s.needToken
        ? html`<main class="locked"><${TokenForm} store=${store} /></main>`
        : html`<main class="grid">
            <${NodesPanel} status=${s.status} peers=${s.peers} />
            <${TopologyPanel} status=${s.status} peers=${s.peers} />
            <${AgentsPanel} agents=${agents} status=${s.status} peers=${s.peers} />
            <${TasksPanel} tasks=${s.tasks} totals=${s.totals} agents=${agents} />
            <${ReplicationPanel} metrics=${s.metrics} />
            <${FeedPanel} feed=${s.feed} self=${s.status?.id} />
          </main>`
    }
  `;
}
