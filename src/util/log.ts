import { pino, type Logger, type LevelWithSilent } from 'pino';

/**
 * One root logger per process; components take a child named like `mesh:sync`. Logs go to
 * stderr so that a node's stdout stays reserved for the lines users and tests read
 * (listen addresses, API URL).
 */
let root: Logger = pino(
  { level: process.env.MESH_LOG_LEVEL ?? 'warn', base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
  pino.destination({ fd: 2, sync: false }),
);

export type { Logger };

export function setLogLevel(level: LevelWithSilent): void {
  root.level = level;
}

export function setRootLogger(logger: Logger): void {
  root = logger;
}

export function logger(component: string): Logger {
  return root.child({ c: component });
}
