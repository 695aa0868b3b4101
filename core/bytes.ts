/**
 * chunks as one plain Uint8Array of its own (not a Buffer, and not a view of any chunk: a chunk may be
 * a slice of a whole connection's read, which a view would keep alive). Not Buffer.concat: this runs
 * in browsers too. length, when the caller counted it, saves summing the chunks again.
 */
export function concatBytes(chunks: readonly Uint8Array[], length = chunks.reduce((sum, chunk) => sum + chunk.length, 0)): Uint8Array {
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}
