// What stores-child.mjs writes, derived from (round, i), so that the test can rebuild every
// acknowledged message and block without the child printing their bytes.
import { encodeMessage, newMessage } from "../../dist/core/hash.js";

const encoder = new TextEncoder();

/** An encoded vac.mvds.Message, unique per (round, i). */
export function message(round, i) {
  return encodeMessage(newMessage(encoder.encode("crash"), BigInt(i), encoder.encode(`round ${round} message ${i}`)));
}

/** A block unique per (round, i): mostly small, now and then 256 KiB, so that some writes take long enough to be cut. */
export function block(round, i) {
  const size = i % 97 === 0 ? 256 * 1024 : 64 + (i % 500);
  const bytes = new Uint8Array(size);
  const tag = encoder.encode(`round ${round} block ${i} `);
  for (let at = 0; at < size; at += tag.length) bytes.set(tag.subarray(0, Math.min(tag.length, size - at)), at);
  return bytes;
}
