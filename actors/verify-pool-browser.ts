import type { BlockAddresser, PairVerifier } from "../core/log-reader.js";

/**
 * The verifier a receiver uses unless told otherwise, in a browser (package.json "imports"
 * #verify-pool, "browser" condition): none, so the page's thread checks every message itself.
 * actors/verify-pool.ts has threads on Node.
 */
export function sharedVerifier(): PairVerifier | undefined {
  return undefined;
}

/** The addresser a sender uses unless told otherwise, in a browser: none, so the page's thread addresses every block itself. */
export function sharedAddresser(): BlockAddresser | undefined {
  return undefined;
}
