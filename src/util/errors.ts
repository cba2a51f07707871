/**
 * Base of every typed error in agentmesh. Errors carry a stable `code` so that they can cross a
 * process or HTTP boundary as plain objects (see js-libp2p `interface/src/errors.ts`), and each
 * module keeps its own subclasses and code enum in its `errors.ts`.
 */
export class MeshError<C extends string = string> extends Error {
  readonly code: C;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: C, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details;
  }

  toJSON(): { code: C; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isMeshError(err: unknown): err is MeshError {
  return err instanceof MeshError;
}
