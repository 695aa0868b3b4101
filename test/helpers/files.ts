import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";

/**
 * Every entry under dir with its bytes' hash and its mtime in ns, for "this verb wrote nothing" checks;
 * directories (their mtimes) too unless files only: a writer's lock file comes and goes, even when the
 * writer refuses, which changes its directory's mtime.
 */
export async function snapshot(dir: string, options: { filesOnly?: boolean } = {}): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (at: string, rel: string) => {
    const info = await stat(at, { bigint: true });
    // A FIFO (a test's stand-in for a file that is not one) is never read: that would wait for a writer.
    if (info.isFIFO()) {
      out[rel] = `fifo mtime ${info.mtimeNs}`;
      return;
    }
    if (!info.isDirectory()) {
      out[rel] = `${createHash("sha256").update(await readFile(at)).digest("hex")} mtime ${info.mtimeNs}`;
      return;
    }
    if (!options.filesOnly) out[`${rel}/`] = `dir mtime ${info.mtimeNs}`;
    for (const name of (await readdir(at)).sort()) await walk(join(at, name), `${rel}/${name}`);
  };
  await walk(dir, "");
  return out;
}

/** Offset of the record of seq in a local log's log.bin (records: u32 length, 32-byte id, u32 crc, data). */
export async function recordOffset(path: string, seq: number): Promise<number> {
  const bytes = await readFile(path);
  let at = 0;
  for (let i = 0; i < seq; i++) at += 40 + bytes.readUInt32LE(at);
  return at;
}
