import { Code } from "@connectrpc/connect";
import { ErrorCodes, type ErrorCode } from "./errors.js";

/**
 * Our error codes and Connect's, in one table for both sides: services/connect-errors.ts turns what
 * a handler throws into a Connect code, and actors/remote.ts turns a Connect code back into ours.
 */
export const connectCodeOf: Record<ErrorCode, Code> = {
  [ErrorCodes.NOT_FOUND]: Code.NotFound,
  [ErrorCodes.INVALID_ARGUMENT]: Code.InvalidArgument,
  [ErrorCodes.TOO_LARGE]: Code.ResourceExhausted,
  [ErrorCodes.CONFLICT]: Code.FailedPrecondition,
  [ErrorCodes.ABORTED]: Code.Aborted,
  [ErrorCodes.OUT_OF_RANGE]: Code.OutOfRange,
  [ErrorCodes.DATA_LOSS]: Code.DataLoss,
  [ErrorCodes.UNAVAILABLE]: Code.Unavailable,
  [ErrorCodes.PERMISSION_DENIED]: Code.PermissionDenied,
  [ErrorCodes.INTERNAL]: Code.Internal,
};

/** The reverse, plus the codes a client sees when a call timed out or was cut: worth retrying. */
export const errorCodeOf: Partial<Record<Code, ErrorCode>> = {
  ...Object.fromEntries(Object.entries(connectCodeOf).map(([ours, theirs]) => [theirs, ours])),
  [Code.DeadlineExceeded]: ErrorCodes.UNAVAILABLE,
};
