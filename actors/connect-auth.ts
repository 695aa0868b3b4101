import type { Interceptor } from "@connectrpc/connect";

/** Sends `Authorization: Bearer token` with every call. */
export function bearer(token: string): Interceptor {
  return (next) => (request) => {
    request.header.set("authorization", bearerValue(token));
    return next(request);
  };
}

/** The Authorization header's value for token, for a call made without interceptors (actors/h2-unary.ts). */
export function bearerValue(token: string): string {
  return `Bearer ${token}`;
}
