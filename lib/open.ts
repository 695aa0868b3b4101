import type { LogRemote } from "../core/log-remote.js";
import { checkClientOptions, httpUrl } from "./open-remote.js";

// Node and browsers alike; openKubo is here, apart, because kubo-rpc-client is Node's and large.
export { openRemote, openGateway, type Endpoints, type OpenGatewayOptions, type OpenRemoteOptions } from "./open-remote.js";

/**
 * `const remote = await openKubo(apiUrl)`
 *
 * The same client port straight on a Kubo node's RPC API (such as http://127.0.0.1:5001), with no
 * remotelog service in between: blocks with `block put`/`block get`, names as IPNS records. IPNS holds
 * signed names only, so updating a free-form name throws PERMISSION_DENIED, and a Kubo node cannot push
 * heads, so a follower polls it. Every update is checked as remotelog's NS checks it before it reaches
 * the node. kubo-rpc-client is loaded on the first call only.
 *
 * Throws INVALID_ARGUMENT for a URL that is not http:// or https://, or a timeoutMs or concurrency
 * that is not a whole number from 1. Idempotent: each call opens a new client; close() releases it
 * and is idempotent.
 */
export async function openKubo(apiUrl: string, options: { timeoutMs?: number; concurrency?: number } = {}): Promise<LogRemote> {
  const kuboApi = httpUrl(apiUrl, "Kubo API");
  checkClientOptions(options);
  // Loaded only when asked for: kubo-rpc-client takes a third of a second to load.
  const { KuboRemote } = await import("../actors/kubo-remote.js");
  return new KuboRemote({ kuboApi, ...options });
}
