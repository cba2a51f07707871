/** The agent registry: every agent in the mesh, where it runs, how busy and how reliable. */
import type { AgentView, NodeStatus, PeerView } from '../../../src/api/schemas.js';
import { api } from '../api.js';
import { ago, html, shortId } from '../html.js';
import { useAction } from '../hooks.js';

/**
 * Control goes to this node's API whatever node hosts the agent: the node forwards it to the
 * host over libp2p (POST /v1/agents/:id/:action).
 */
function AgentActions({ agent }: { agent: AgentView }) {
  const action = useAction();
  const post = (what: 'restart' | 'pause' | 'resume') => () =>
    action.run(() => api('POST', `/v1/agents/${encodeURIComponent(agent.id)}/${what}`));
  const paused = agent.state === 'PAUSED';
  return html`<td class="actions">
    <button disabled=${action.busy} onClick=${post('restart')}>restart</button>
    ${
      paused
        ? html`<button disabled=${action.busy} onClick=${post('resume')}>resume</button>`
        : html`<button disabled=${action.busy} onClick=${post('pause')}>pause</button>`
    }
    ${action.error !== undefined && html`<div class="error" role="alert">${action.error}</div>`}
  </td>`;
}

export function AgentsPanel({
  agents,
  status,
  peers,
}: {
  agents: AgentView[];
  status: NodeStatus | null;
  peers: PeerView[];
}) {
  const names = new Map(peers.map((p) => [p.id, p.name ?? shortId(p.id)]));
  if (status !== null) names.set(status.id, status.name);
  const dead = new Set(peers.filter((p) => p.state === 'dead').map((p) => p.id));
  const now = Date.now();
  return html`
    <section class="panel agents" aria-labelledby="agents-h">
      <h2 id="agents-h">Agents <span class="sub">${agents.length}</span></h2>
      ${
        agents.length === 0
          ? html`<p class="empty">No agents registered in the mesh.</p>`
          : html`<table>
              <thead>
                <tr>
                  <th>agent</th>
                  <th>state</th>
                  <th>load</th>
                  <th class="num">success</th>
                  <th class="num">runs</th>
                  <th>node</th>
                  <th>capabilities</th>
                  <th>heartbeat</th>
                  <th></th>
                </tr>
              </thead>
              <tbody>
                ${agents.map((a) => {
                  const { executions, successes, failures } = a.stats;
                  const ended = successes + failures;
                  const rate = ended === 0 ? '–' : `${Math.round((100 * successes) / ended)}%`;
                  const unreachable = dead.has(a.owner);
                  return html`<tr key=${a.id} data-agent-id=${a.id}>
                    <td title=${a.type}><strong>${a.name}</strong>${a.name !== a.id && html` <code>${a.id}</code>`}</td>
                    <td>
                      <span class=${`state state-${a.state.toLowerCase()}`}>${a.state}</span>
                      ${a.health !== 'healthy' && html` <span class="muted">${a.health}</span>`}
                    </td>
                    <td>
                      <div class="load" title=${`${a.load} of ${a.capacity} slots busy`}>
                        <div
                          class="bar"
                          role="meter"
                          aria-valuenow=${a.load}
                          aria-valuemin="0"
                          aria-valuemax=${a.capacity}
                        >
                          <div
                            class="fill"
                            style=${{ width: `${a.capacity > 0 ? Math.min(100, (100 * a.load) / a.capacity) : 0}%` }}
                          ></div>
                        </div>
                        <span>${a.load}/${a.capacity}</span>
                      </div>
                    </td>
                    <td class="num" title=${`${successes} succeeded, ${failures} failed`}>${rate}</td>
                    <td class="num">${executions}</td>
                    <td title=${a.owner}>
                      ${names.get(a.owner) ?? shortId(a.owner)}
                      ${unreachable && html` <span class="state state-dead">unreachable</span>`}
                    </td>
                    <td class="caps">${a.capabilities.map((c) => html`<span class="cap">${c}</span>`)}</td>
                    <td>${ago(a.heartbeat, now)}</td>
                    <${AgentActions} agent=${a} />
                  </tr>`;
                })}
              </tbody>
            </table>`
      }
    </section>
  `;
}
