/**
 * Human output: tables (cli-table3), times as ages or ISO strings, colours only on a terminal.
 * `--json` bypasses all of this and prints the API's JSON unchanged.
 */
import Table from 'cli-table3';
import pc from 'picocolors';

export type TimeStyle = 'age' | 'iso';

export interface OutputOptions {
  json: boolean;
  time: TimeStyle;
}

/**
 * Colours for a stream: only when it is a terminal and NO_COLOR is unset (FORCE_COLOR wins).
 * picocolors alone also colours when CI is set or on Windows, terminal or not, which would put
 * escape codes into files and pipes.
 */
export function colorsFor(stream: NodeJS.WriteStream): ReturnType<typeof pc.createColors> {
  const env = process.env;
  const force = env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0';
  const enabled = force || (stream.isTTY === true && !env.NO_COLOR && env.TERM !== 'dumb');
  return pc.createColors(enabled);
}

export const c = colorsFor(process.stdout);

/** `3s ago`, `5m ago`, `2h ago`, `4d ago` (or `in 3s` for the future). */
export function age(ms: number | null | undefined, now = Date.now()): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms <= 0) return '-';
  const d = now - ms;
  const s = Math.round(Math.abs(d) / 1000);
  const text =
    s < 60
      ? `${s}s`
      : s < 3600
        ? `${Math.floor(s / 60)}m`
        : s < 86400
          ? `${Math.floor(s / 3600)}h`
          : `${Math.floor(s / 86400)}d`;
  return d >= 0 ? `${text} ago` : `in ${text}`;
}

export function time(ms: number | null | undefined, style: TimeStyle): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms <= 0) return '-';
  return style === 'iso' ? new Date(ms).toISOString() : age(ms);
}

/** A duration: `850ms`, `12s`, `3m 4s`, `2h 5m`, `3d 4h`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** Status words coloured by meaning (a no-op without colours). */
export function status(s: string): string {
  switch (s) {
    case 'COMPLETED':
    case 'RUNNING':
    case 'alive':
    case 'healthy':
      return c.green(s);
    case 'FAILED':
    case 'ERROR':
    case 'dead':
    case 'unhealthy':
      return c.red(s);
    case 'CANCELLED':
    case 'TERMINATED':
    case 'unknown':
      return c.dim(s);
    case 'IN_PROGRESS':
    case 'ASSIGNED':
    case 'suspect':
    case 'PAUSED':
    case 'RESTARTING':
    case 'degraded':
      return c.yellow(s);
    default:
      return s;
  }
}

/** A borderless table with a bold header row: easy to read, and to `grep`/`awk` without colours. */
export function table(head: string[], rows: Array<Array<string | number>>): string {
  const t = new Table({
    head: head.map((h) => c.bold(h)),
    chars: {
      top: '',
      'top-mid': '',
      'top-left': '',
      'top-right': '',
      bottom: '',
      'bottom-mid': '',
      'bottom-left': '',
      'bottom-right': '',
      left: '',
      'left-mid': '',
      mid: '',
      'mid-mid': '',
      right: '',
      'right-mid': '',
      middle: '  ',
    },
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
  });
  for (const r of rows) t.push(r.map(String));
  // cli-table3 pads the last column too: trailing blanks only get in the way of copy and grep.
  return t
    .toString()
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n');
}

/** A two-column key/value table (for one record). */
export function fields(rows: Array<[string, string | number]>): string {
  return table(
    ['FIELD', 'VALUE'],
    rows.map(([k, v]) => [c.dim(k), String(v)]),
  )
    .split('\n')
    .slice(1)
    .join('\n');
}

/** Shortens a long id for a table cell (peer ids are 52 characters); `--json` has the full one. */
export function short(id: string | null | undefined, keep = 12): string {
  if (id === null || id === undefined) return '-';
  return id.length > keep + 2 ? `${id.slice(0, keep)}…` : id;
}

export function printJson(v: unknown): void {
  console.log(JSON.stringify(v, null, 2));
}

/** A compact one-line JSON for table cells, cut to `max` characters. */
export function inline(v: unknown, max = 60): string {
  if (v === null || v === undefined) return '-';
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
