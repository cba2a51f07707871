import { MeshError } from '../util/errors.js';

/** Stable codes of the errors the `mesh` command reports (printed as `mesh: <message>`). */
export const CliErrorCode = {
  /** A flag or argument the user gave is malformed (names the flag). */
  BAD_ARGUMENT: 'BAD_ARGUMENT',
  /** The node's API could not be reached at all (refused, unknown host, timed out). */
  API_UNREACHABLE: 'API_UNREACHABLE',
  /** The API answered with an error (`{ error: { code, message } }`). */
  API_ERROR: 'API_ERROR',
  /** Something answered, but not like an agentmesh API. */
  BAD_RESPONSE: 'BAD_RESPONSE',
  /** A wait (`submit --wait`) ran past its timeout. */
  TIMEOUT: 'TIMEOUT',
  /** A backup or restore could not proceed (node running, target not empty, bad file). */
  BACKUP_FAILED: 'BACKUP_FAILED',
} as const;
export type CliErrorCode = (typeof CliErrorCode)[keyof typeof CliErrorCode];

export class CliError extends MeshError<CliErrorCode> {
  /** For API_ERROR: the HTTP status and the API's own error code. */
  get status(): number | undefined {
    return this.details?.status as number | undefined;
  }
  get apiCode(): string | undefined {
    return this.details?.apiCode as string | undefined;
  }
}

export function isCliError(err: unknown, code?: CliErrorCode): err is CliError {
  return err instanceof CliError && (code === undefined || err.code === code);
}
