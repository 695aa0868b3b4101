import type { Interceptor } from "@connectrpc/connect";

/** Sends `Authorization: Bearer token` with every call. */
export function bearer(token: string): Interceptor {
  return (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
}
