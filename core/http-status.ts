import { ErrorCodes, type ErrorCode } from "./errors.js";

/**
 * Our error codes as plain HTTP statuses, for IPFS's own HTTP protocols (the Trustless Gateway and
 * the Delegated Routing V1 API, services/gateway.ts), and back for their clients (actors/gateway-remote.ts).
 * Connect's own mapping stays in core/connect-codes.ts.
 */
export const httpStatusOf: Record<ErrorCode, number> = {
  [ErrorCodes.NOT_FOUND]: 404,
  [ErrorCodes.INVALID_ARGUMENT]: 400,
  [ErrorCodes.TOO_LARGE]: 413,
  // The routing spec answers a record it will not take with 400, whatever the reason.
  [ErrorCodes.CONFLICT]: 400,
  [ErrorCodes.ABORTED]: 409,
  [ErrorCodes.OUT_OF_RANGE]: 400,
  [ErrorCodes.DATA_LOSS]: 500,
  [ErrorCodes.UNAVAILABLE]: 503,
  [ErrorCodes.PERMISSION_DENIED]: 403,
  [ErrorCodes.INTERNAL]: 500,
};

/** What a client makes of a status that is not 2xx: worth retrying (UNAVAILABLE) or not. */
export function errorCodeOfStatus(status: number): ErrorCode {
  if (status === 404 || status === 410) return ErrorCodes.NOT_FOUND;
  if (status === 401 || status === 403) return ErrorCodes.PERMISSION_DENIED;
  if (status === 413) return ErrorCodes.TOO_LARGE;
  if (status === 409) return ErrorCodes.ABORTED;
  // A gateway's own failure may pass: the reader's retry loop backs off on UNAVAILABLE.
  if (status === 408 || status === 429 || status >= 500) return ErrorCodes.UNAVAILABLE;
  return ErrorCodes.INVALID_ARGUMENT;
}
