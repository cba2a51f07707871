/**
 * Progress of long work (a task under `submit --wait`, a join's catch-up, backup and restore):
 * a cli-progress bar on stderr when stderr is a terminal, otherwise plain lines, one per change
 * of what is shown, so logs and pipes get a readable record instead of carriage returns.
 */
import { Presets, SingleBar } from 'cli-progress';

export interface Progress {
  /** `value` out of the total; `label` says what is happening. */
  update(value: number, label: string): void;
  /** Changes the total (a catch-up learns how much there is as it goes). */
  setTotal(total: number): void;
  stop(): void;
}

export interface ProgressOptions {
  title: string;
  total: number;
  /** Unit shown after the values on the bar (`%`, `keys`, `records`). */
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Plain mode: print a line only when the value moved by at least this much (default: any change). */
  step?: number;
}

export function isInteractive(stream: NodeJS.WriteStream = process.stderr): boolean {
  return stream.isTTY === true && process.env.TERM !== 'dumb';
}

export function progress(o: ProgressOptions): Progress {
  const stream = o.stream ?? process.stderr;
  if (isInteractive(stream)) {
    const bar = new SingleBar(
      {
        stream,
        format: `${o.title} [{bar}] ${o.unit === '%' ? '{percentage}%' : `{value}/{total}${o.unit ? ` ${o.unit}` : ''}`} | {label}`,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
      },
      Presets.shades_classic,
    );
    bar.start(o.total, 0, { label: '' });
    return {
      update: (value, label) => bar.update(Math.min(value, bar.getTotal()), { label }),
      setTotal: (total) => bar.setTotal(total),
      stop: () => bar.stop(),
    };
  }
  let shownLabel: string | undefined;
  let shownValue = -Infinity;
  let total = o.total;
  return {
    update(value, label) {
      const moved = Math.abs(value - shownValue) >= (o.step ?? Number.MIN_VALUE);
      if (label === shownLabel && !moved) return;
      shownLabel = label;
      shownValue = value;
      const unit = o.unit === '%' ? '%' : o.unit ? `/${total} ${o.unit}` : `/${total}`;
      stream.write(`${o.title}: ${label}${label ? ' ' : ''}${Math.round(value)}${unit}\n`);
    },
    setTotal(t) {
      total = t;
    },
    stop() {},
  };
}
