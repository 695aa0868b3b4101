/**
 * The Connect transport of a Remote in a browser (package.json "imports" #transport, "browser"
 * condition): connect-web over the page's fetch, binary Connect protocol. Same interface as
 * actors/transport-node.ts. The server must allow the page's origin (serve --cors-origin).
 */
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { RemoteLogError } from "../core/errors.js";
import { bearer } from "./connect-auth.js";

export interface TransportOptions {
  /** A bearer token sent with every call (serve --write-token-file, --admin-token-file). */
  token?: string;
  /** Not in a browser: it trusts the certificates its user's system trusts. */
  ca?: unknown;
}

/** A transport, and how to release what it holds (nothing: fetch keeps no connection of ours). */
export interface OpenTransport {
  transport: Transport;
  close(): void;
}

export function openTransport(baseUrl: string, options: TransportOptions): OpenTransport {
  if (options.ca !== undefined) throw RemoteLogError.invalidArgument("a browser trusts its own certificate authorities: ca is for Node only");
  const transport = createConnectTransport({
    baseUrl,
    useBinaryFormat: true,
    fetch: fetchOrUnavailable,
    interceptors: options.token === undefined ? [] : [bearer(options.token)],
  });
  return { transport, close: () => {} };
}

/**
 * fetch, with a request that got no answer (server down, connection refused, or refused by CORS, which
 * a page cannot tell apart) failing as Unavailable, which callers retry, as connect-node reports a
 * refused connection; the page's fetch says only TypeError, which Connect would call Unknown.
 */
async function fetchOrUnavailable(input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> {
  try {
    return await globalThis.fetch(input, init);
  } catch (err) {
    if (init?.signal?.aborted || !(err instanceof TypeError)) throw err;
    throw new ConnectError(`${String(input)}: ${err.message}`, Code.Unavailable, undefined, undefined, err);
  }
}
