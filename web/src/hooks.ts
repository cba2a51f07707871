import { useEffect, useState } from 'preact/hooks';
import { ApiRequestError } from './api.js';
import type { Store } from './store.js';

/** Re-renders the component whenever the store changes (at most once a frame). */
export function useStore(store: Store): Store['state'] {
  const [, setTick] = useState(0);
  useEffect(() => store.subscribe(() => setTick((n) => n + 1)), [store]);
  return store.state;
}

export interface Action {
  busy: boolean;
  error: string | undefined;
  run(fn: () => Promise<unknown>): void;
}

/** A button's request: busy while it runs, the API's error message when it fails. */
export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  return {
    busy,
    error,
    run(fn) {
      setBusy(true);
      setError(undefined);
      fn().then(
        () => setBusy(false),
        (err: unknown) => {
          setBusy(false);
          setError(err instanceof ApiRequestError ? `${err.code}: ${err.message}` : (err as Error).message);
        },
      );
    },
  };
}
