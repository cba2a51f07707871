/** A uPlot time-series chart as a Preact component; rebuilt only when its series change. */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { formatRate, html } from '../html.js';
import type { SeriesSet } from '../metrics.js';

/** Colours that stay apart for the few series a chart has (strategies, phases). */
const PALETTE = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2', '#4b5563'];
/** The replication strategies keep one colour across charts. */
const NAMED: Readonly<Record<string, string>> = {
  push: '#dc2626',
  gossip: '#d97706',
  gaps: '#16a34a',
  merkle: '#9333ea',
  bloom: '#2563eb',
  none: '#6b7280',
};
const colourOf = (name: string, i: number): string => NAMED[name] ?? (PALETTE[i % PALETTE.length] as string);
const HEIGHT = 150;

export function Chart({ title, set, unit }: { title: string; set: SeriesSet; unit: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = set.names.join('|');

  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const u = new uPlot(
      {
        width: Math.max(200, el.clientWidth),
        height: HEIGHT,
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), Math.max(1, max)] } },
        axes: [{}, { size: 64, values: (_u, ticks) => ticks.map((v) => formatRate(v, unit)) }],
        series: [
          {},
          ...set.names.map((name, i) => ({
            label: name,
            stroke: colourOf(name, i),
            width: 1.5,
            value: (_u: uPlot, v: number | null) => (v === null ? '–' : formatRate(v, unit)),
          })),
        ],
      },
      set.data as uPlot.AlignedData,
      el,
    );
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height: HEIGHT }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [key]);

  useEffect(() => {
    plot.current?.setData(set.data as uPlot.AlignedData);
  });

  return html`<figure class="chart">
    <figcaption>${title}</figcaption>
    ${set.names.length === 0 && html`<p class="empty">no data yet</p>`}
    <div ref=${box}></div>
  </figure>`;
}
