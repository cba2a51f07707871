/** Replication health: sync sessions and bytes by strategy, convergence lag, write and apply rates. */
import { html } from '../html.js';
import type { MetricsHistory } from '../metrics.js';
import { Chart } from './chart.js';

export function ReplicationPanel({ metrics }: { metrics: MetricsHistory }) {
  return html`
    <section class="panel replication" aria-labelledby="replication-h">
      <h2 id="replication-h">Replication <span class="sub">this node, last 5 minutes</span></h2>
      <div class="charts">
        <${Chart}
          title="Writes and applies per second"
          unit="/s"
          set=${metrics.series((p) => [p.writes, p.applies], ['local writes', 'remote applies'])}
        />
        <${Chart}
          title="Convergence lag of remote changes (ms)"
          unit=" ms"
          set=${
            metrics.hasApplyLag
              ? metrics.series(
                  (p) => [p.applyP50, p.applyP99, p.lagMax],
                  ['applied here, p50', 'applied here, p99', 'on this page, max'],
                )
              : metrics.series((p) => [p.lagP50, p.lagMax], ['on this page, median', 'on this page, max'])
          }
        />
        <${Chart} title="Sync sessions per second, by strategy" unit="/s" set=${metrics.keyed((p) => p.sessions)} />
        <${Chart}
          title="Replication bytes per second (sent + received), by strategy"
          unit=" B/s"
          set=${metrics.keyed((p) => p.bytes)}
        />
      </div>
      ${
        !metrics.hasSyncSeries &&
        metrics.points.length > 0 &&
        html`<p class="muted">This node's /metrics has no replication series (yet).</p>`
      }
    </section>
  `;
}
