/**
 * One error type for the whole project, with a closed set of codes. Stores, actors and services throw
 * it; services turn it into a Connect code in one place (services/connect-errors.ts), and the CLI
 * prints its message. The message always starts with the code, so logs can be grepped by it.
 */
export const ErrorCodes = {
  /** A block, name or file that does not exist. Connect: NotFound. */
  NOT_FOUND: "NOT_FOUND",
  /** Malformed input: an address that is not a CIDv1 raw sha2-256, a page that does not decode, a bad flag. Connect: InvalidArgument. */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** Over a configured size limit. Connect: ResourceExhausted. */
  TOO_LARGE: "TOO_LARGE",
  /** A conditional write lost to another writer, or state that does not fit what the caller expects. Connect: FailedPrecondition. */
  CONFLICT: "CONFLICT",
  /** Stored or fetched bytes that do not match their hash, or a page chain that is malformed (loops, too long). Connect: DataLoss. */
  DATA_LOSS: "DATA_LOSS",
  /** A service that cannot be reached right now; worth retrying. Connect: Unavailable. */
  UNAVAILABLE: "UNAVAILABLE",
  /** Refused for lack of authority. Connect: PermissionDenied. */
  PERMISSION_DENIED: "PERMISSION_DENIED",
  /** A bug or an unexpected failure of the machine (disk full, I/O error). Connect: Internal. */
  INTERNAL: "INTERNAL",
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class RemoteLogError extends Error {
  override name = "RemoteLogError";
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.code = code;
  }

  static notFound(message: string) {
    return new RemoteLogError(ErrorCodes.NOT_FOUND, message);
  }
  static invalidArgument(message: string, cause?: unknown) {
    return new RemoteLogError(ErrorCodes.INVALID_ARGUMENT, message, { cause });
  }
  static tooLarge(message: string) {
    return new RemoteLogError(ErrorCodes.TOO_LARGE, message);
  }
  static conflict(message: string) {
    return new RemoteLogError(ErrorCodes.CONFLICT, message);
  }
  static dataLoss(message: string, cause?: unknown) {
    return new RemoteLogError(ErrorCodes.DATA_LOSS, message, { cause });
  }
  static permissionDenied(message: string) {
    return new RemoteLogError(ErrorCodes.PERMISSION_DENIED, message);
  }
  static unavailable(message: string, cause?: unknown) {
    return new RemoteLogError(ErrorCodes.UNAVAILABLE, message, { cause });
  }
  static internal(message: string, cause?: unknown) {
    return new RemoteLogError(ErrorCodes.INTERNAL, message, { cause });
  }
}

export function isRemoteLogError(err: unknown, code?: ErrorCode): err is RemoteLogError {
  return err instanceof RemoteLogError && (code === undefined || err.code === code);
}
