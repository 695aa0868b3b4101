import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import "../../services/native-base64.js";

// The reference: the standard's three forms, from the browser-compatible btoa.
function reference(bytes: Uint8Array, alphabet: "base64" | "base64url", omitPadding: boolean): string {
  let text = btoa(String.fromCharCode(...bytes));
  if (alphabet === "base64url") text = text.replaceAll("+", "-").replaceAll("/", "_");
  return omitPadding ? text.replace(/=+$/, "") : text;
}

describe("Uint8Array.prototype.toBase64 on Node 20 (services/native-base64.ts)", () => {
  it("writes what the standard says, in both alphabets, padded or not, for every length mod 3 and for views into larger buffers", () => {
    for (let length = 0; length < 70; length++) {
      const backing = randomBytes(length + 9);
      const bytes = new Uint8Array(backing.buffer, backing.byteOffset + 5, length);
      for (const alphabet of ["base64", "base64url"] as const) {
        for (const omitPadding of [false, true]) {
          expect(bytes.toBase64!({ alphabet, omitPadding }), `${length} ${alphabet} ${omitPadding}`).toBe(reference(bytes, alphabet, omitPadding));
        }
      }
      expect(bytes.toBase64!()).toBe(reference(bytes, "base64", false));
    }
    expect(() => new Uint8Array(3).toBase64!({ alphabet: "base32" as "base64" })).toThrow(TypeError);
  });
});
