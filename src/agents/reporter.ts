import { type TaskBoard, trimLog } from '../tasks/tasks.js';
import type { Logger } from '../util/log.js';

/** How often a running task's progress and log are written at most (each write replicates). */
const REPORT_INTERVAL_MS = 200;

/**
 * Collects a running task's progress and log lines and writes them to the task record at most
 * every REPORT_INTERVAL_MS, one write at a time, so a chatty agent costs a few replicated writes
 * per second rather than one per line. `close` waits for the last write; the final status write
 * carries the log itself.
 */
export class TaskReporter {
  private lines: string[] = [];
  private progress: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly tasks: TaskBoard,
    private readonly taskId: string,
    private readonly epoch: number,
    private readonly log: Logger,
  ) {}

  get logLines(): string[] {
    return trimLog(this.lines);
  }

  onProgress(pct: number, message?: string): void {
    this.progress = Math.round(pct * 100) / 100;
    if (message !== undefined && message.length > 0) this.push(`[${this.progress}%] ${message}`);
    this.schedule();
  }

  onLog(line: string): void {
    this.push(line);
    this.schedule();
  }

  private push(line: string): void {
    this.lines.push(line);
    // Keep memory bounded for an agent that logs without end; the record keeps less anyway.
    if (this.lines.length > 1000) this.lines = trimLog(this.lines);
  }

  private schedule(): void {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const progress = this.progress;
      const log = this.logLines;
      this.chain = this.chain.then(() =>
        this.tasks.transition(this.taskId, { ...(progress !== undefined ? { progress } : {}), log }).then(
          () => {},
          (err: unknown) => this.log.debug({ err, task: this.taskId }, 'progress write refused'),
        ),
      );
    }, REPORT_INTERVAL_MS);
  }

  /** No more writes; resolves when the one in flight (if any) is done. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.chain;
  }
}
