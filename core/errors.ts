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
  /** State that does not fit what the caller expects (a data directory of another key, a target that is not empty). Connect: FailedPrecondition. */
  CONFLICT: "CONFLICT",
  /** A conditional write lost to another writer: read again and retry. Connect: Aborted. */
  ABORTED: "ABORTED",
  /** A position past the end of what exists (a seq the log does not have yet). Connect: OutOfRange. */
  OUT_OF_RANGE: "OUT_OF_RANGE",
  /** Stored or fetched bytes that do not match their hash, or a page chain that is malformed (loops, too long). Connect: DataLoss. */
  DATA_LOSS: "DATA_LOSS",
  /** A service that cannot be reached right now; worth retrying. Connect: Unavailable. */
  UNAVAILABLE: "UNAVAILABLE",
  /** Refused for lack of authority. Connect: PermissionDenied. */
  PERMISSION_DENIED: "PERMISSION_DENIED",
  /** A bug or an unexpected failure of the machine (disk full, I/O error). Connect: Internal. */
  INTERNAL: "INTERNAL",
} as const;

/** One of ErrorCodes. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/**
 * What an error is about, as fields a caller reads instead of parsing the message. Every field is
 * optional; set those that name the object. Paths (`file`) stay on this machine: services never send
 * them to a remote client.
 */
export interface ErrorDetails {
  /** A local file (the local log, a pack, a checkpoint). */
  file?: string;
  /** A byte offset in that file. */
  offset?: number;
  /** A message's seq (local log) or seqid (remote log). */
  seq?: number;
  /** A name in the NS. */
  name?: string;
  /** A block's address, as CID text. */
  address?: string;
  /** A limit that was hit: what it is and its value, for example `{ limit: "block bytes", value: 1048576 }`. */
  limit?: string;
  value?: number;
  /** How many input items (lines, messages) were taken before the failure. */
  taken?: number;
}

/**
 * The one error remotelog throws: `err.code` is one of ErrorCodes, `err.details` holds the fields that
 * name the object (file, offset, seq, name, address, limit, value, taken), and `err.text` is the
 * message without its code. Branch on code and details, never on the text.
 */
export class RemoteLogError extends Error {
  override name = "RemoteLogError";
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super(`${code}: ${message}`, options);
    this.code = code;
    this.details = options?.details ?? {};
  }

  /** The message without its leading code, as a remote client prints it after its own. */
  get text(): string {
    const prefix = `${this.code}: `;
    return this.message.startsWith(prefix) ? this.message.slice(prefix.length) : this.message;
  }

  static notFound(message: string, details?: ErrorDetails) {
    return new RemoteLogError(ErrorCodes.NOT_FOUND, message, { details });
  }
  static invalidArgument(message: string, cause?: unknown, details?: ErrorDetails) {
    return new RemoteLogError(ErrorCodes.INVALID_ARGUMENT, message, { cause, details });
  }
  static tooLarge(message: string, details?: ErrorDetails) {
    return new RemoteLogError(ErrorCodes.TOO_LARGE, message, { details });
  }
  static conflict(message: string, details?: ErrorDetails) {
    return new RemoteLogError(ErrorCodes.CONFLICT, message, { details });
  }
  static aborted(message: string, details?: ErrorDetails) {
    return new RemoteLogError(ErrorCodes.ABORTED, message, { details });
  }
  static outOfRange(message: string, details?: ErrorDetails) {
    return new RemoteLogError(ErrorCodes.OUT_OF_RANGE, message, { details });
  }
  static dataLoss(message: string, cause?: unknown, details?: ErrorDetails) {
    return new RemoteLogError(ErrorCodes.DATA_LOSS, message, { cause, details });
  }
  static permissionDenied(message: string, details?: ErrorDetails) {
    return new RemoteLogError(ErrorCodes.PERMISSION_DENIED, message, { details });
  }
  static unavailable(message: string, cause?: unknown) {
    return new RemoteLogError(ErrorCodes.UNAVAILABLE, message, { cause });
  }
  static internal(message: string, cause?: unknown, details?: ErrorDetails) {
    return new RemoteLogError(ErrorCodes.INTERNAL, message, { cause, details });
  }
}

/** `isRemoteLogError(err, "NOT_FOUND")`: whether err is a RemoteLogError (of that code, when given). Never throws. */
export function isRemoteLogError(err: unknown, code?: ErrorCode): err is RemoteLogError {
  return err instanceof RemoteLogError && (code === undefined || err.code === code);
}
