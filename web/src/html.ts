/** htm bound to Preact: JSX-like templates without a JSX compile step. */
import htm from 'htm';
import { h } from 'preact';

export const html = htm.bind(h);

/** A peer id is long (`12D3KooW...`); its tail is enough to tell nodes apart on screen. */
export const shortId = (id: string): string => (id.length > 14 ? `…${id.slice(-8)}` : id);

/** "3.2 s ago", "1 min ago": how old a wall-clock time is. */
export function ago(ms: number | null | undefined, now = Date.now()): string {
  if (ms === null || ms === undefined) return '–';
  const d = Math.max(0, now - ms);
  if (d < 1000) return 'now';
  if (d < 60_000) return `${(d / 1000).toFixed(d < 10_000 ? 1 : 0)} s ago`;
  if (d < 3_600_000) return `${Math.floor(d / 60_000)} min ago`;
  return `${Math.floor(d / 3_600_000)} h ago`;
}

/** A number for an axis or a legend: 3 significant digits, thousands as k and millions as M. */
export function formatRate(v: number, unit = '/s'): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M${unit}`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k${unit}`;
  return `${+v.toPrecision(3)}${unit}`;
}
