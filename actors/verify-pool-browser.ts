import type { PairVerifier } from "../core/log-reader.js";

/**
 * The verifier a receiver uses unless told otherwise, in a browser (package.json "imports"
 * #verify-pool, "browser" condition): none, so the page's thread checks every message itself.
 * actors/verify-pool.ts has threads on Node.
 */
export function sharedVerifier(): PairVerifier | undefined {
  return undefined;
}
