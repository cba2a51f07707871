/** Nodes and membership: this node and every peer it knows, with the failure detector's view. */
import type { NodeStatus, PeerView } from '../../../src/api/schemas.js';
import { ago, html, shortId } from '../html.js';

/** A clock offset as measured by the node (absent on nodes that do not measure it). */
function offset(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '–';
  return `${ms > 0 ? '+' : ms < 0 ? '−' : '±'}${Math.abs(Math.round(ms))} ms`;
}

export function NodesPanel({ status, peers }: { status: NodeStatus | null; peers: PeerView[] }) {
  const now = Date.now();
  return html`
    <section class="panel nodes" aria-labelledby="nodes-h">
      <h2 id="nodes-h">
        Nodes
        ${
          status !== null &&
          html`<span class="sub"
            >${status.peers.alive} alive · ${status.peers.suspect} suspect · ${status.peers.dead} dead ·
            ${status.peers.connected} connected</span
          >`
        }
      </h2>
      <table>
        <thead>
          <tr>
            <th>name</th>
            <th>id</th>
            <th>state</th>
            <th class="num">phi</th>
            <th>link</th>
            <th>heartbeat</th>
            <th class="num" title="the node's clock minus this node's, as last measured">clock</th>
            <th>addresses</th>
          </tr>
        </thead>
        <tbody>
          ${
            status !== null &&
            html`<tr class="self" data-node-id=${status.id}>
              <td>${status.name} <span class="tag">this node</span></td>
              <td title=${status.id}><code>${shortId(status.id)}</code></td>
              <td><span class="state state-alive">alive</span></td>
              <td class="num">–</td>
              <td>–</td>
              <td>up ${ago(status.startedAt, now).replace(' ago', '')}</td>
              <td
                class=${status.clockSkewed === true ? 'num skewed' : 'num'}
                title="this node's clock minus the median of its peers'"
              >
                ${offset(status.clockOffsetMs)}${status.clockSkewed === true && html` <span class="state state-dead">skewed</span>`}
              </td>
              <td class="addrs">${status.listen.map((a) => html`<code>${a}</code>`)}</td>
            </tr>`
          }
          ${peers.map(
            (p) =>
              html`<tr key=${p.id} data-node-id=${p.id}>
                <td>${p.name ?? '–'}</td>
                <td title=${p.id}><code>${shortId(p.id)}</code></td>
                <td><span class=${`state state-${p.state}`}>${p.state}</span></td>
                <td class="num">${p.phi === null ? '–' : p.phi.toFixed(2)}</td>
                <td>
                  ${p.connected ? html`<span class="ok">connected</span>` : html`<span class="muted">not connected</span>`}
                </td>
                <td>${ago(p.lastHeartbeat, now)}</td>
                <td class="num">${offset(p.clockOffsetMs)}</td>
                <td class="addrs">${p.addresses.map((a) => html`<code>${a}</code>`)}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    </section>
  `;
}

/**
 * The mesh as this node sees it: every known node on a circle, this node highlighted, a solid
 * line to each peer it is connected to and a dashed one to each it knows but is not connected to.
 */
export function TopologyPanel({ status, peers }: { status: NodeStatus | null; peers: PeerView[] }) {
  const size = 260;
  const c = size / 2;
  const r = size / 2 - 40;
  const nodes = [
    ...(status === null ? [] : [{ id: status.id, name: status.name, state: 'self', connected: true }]),
    ...peers.map((p) => ({ id: p.id, name: p.name ?? shortId(p.id), state: p.state, connected: p.connected })),
  ];
  const pos = nodes.map((_, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, nodes.length);
    return nodes.length === 1 ? { x: c, y: c } : { x: c + r * Math.cos(a), y: c + r * Math.sin(a) };
  });
  const self = pos[0];
  return html`
    <section class="panel topology" aria-labelledby="topology-h">
      <h2 id="topology-h">Topology</h2>
      <svg viewBox=${`0 0 ${size} ${size}`} role="img" aria-label="peer topology">
        ${
          self !== undefined &&
          nodes.slice(1).map((n, i) => {
            const p = pos[i + 1] as { x: number; y: number };
            return html`<line
              key=${`l-${n.id}`}
              class=${n.connected ? 'edge' : 'edge edge-down'}
              x1=${self.x}
              y1=${self.y}
              x2=${p.x}
              y2=${p.y}
            />`;
          })
        }
        ${nodes.map((n, i) => {
          const p = pos[i] as { x: number; y: number };
          return html`<g key=${n.id} class=${`vertex vertex-${n.state}`}>
            <title>${n.name} (${n.id}): ${n.state === 'self' ? 'this node' : n.state}</title>
            <circle cx=${p.x} cy=${p.y} r="14" />
            <text x=${p.x} y=${p.y + 30} text-anchor="middle">${n.name}</text>
          </g>`;
        })}
      </svg>
    </section>
  `;
}
