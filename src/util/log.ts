import { pino, type Logger, type LevelWithSilent } from 'pino';

/**
 * One root logger per process; components take a child named like `mesh:sync`. Logs go to
 * stderr so that a node's stdout stays reserved for the lines users and tests read
 * (listen addresses, API URL).
 *
 * A pino child copies its parent's level when it is created and never looks at the parent again,
 * and most components create theirs at import time (`const log = logger('mesh:store')`), long
 * before the CLI has parsed `--log-level`. So every logger descended from the root is remembered
 * (weakly: a dropped child is not kept alive) and `setLogLevel` sets the level on all of them.
 */
const descendants = new Set<WeakRef<Logger>>();
const remember = (child: Logger): void => {
  descendants.add(new WeakRef(child));
};

function createRoot(level: string): Logger {
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      // Inherited by every child and grandchild (pino passes its onChild down), so loggers that
      // components derive from their own (`log.child({ peer })`) are remembered too.
      onChild: remember,
    },
    pino.destination({ fd: 2, sync: false }),
  );
}

let root: Logger = createRoot(process.env.MESH_LOG_LEVEL ?? 'warn');

export type { Logger };

/** Sets the level of the root and of every logger created from it so far, or later. */
export function setLogLevel(level: LevelWithSilent): void {
  root.level = level;
  for (const ref of descendants) {
    const l = ref.deref();
    if (l === undefined) descendants.delete(ref);
    else l.level = level;
  }
}

export function setRootLogger(logger: Logger): void {
  root = logger;
}

export function logger(component: string): Logger {
  return root.child({ c: component });
}
