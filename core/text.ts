// ignoreBOM keeps a leading U+FEFF in the text, so that text → UTF-8 gives back every byte.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The bytes as text when they are valid UTF-8, else undefined: the one rule for whether a body or group
 * id is shown as text (the CLI's JSONL lines, the explorer), so that both call the same bytes text.
 */
export function utf8OrUndefined(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}
