import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * Damages a block where a stopped `remotelog serve --data dataDir` keeps it: finds its bytes in the fs
 * CAS's pack files and flips one bit in their middle, the pack's index left as it is. Returns how many
 * copies were damaged (a block stored twice is in two packs).
 */
export async function damageStoredBlock(dataDir: string, block: Uint8Array): Promise<number> {
  const packsDir = join(dataDir, "cas", "packs");
  let damaged = 0;
  for (const name of await readdir(packsDir)) {
    const bytes = await readFile(join(packsDir, name));
    const at = bytes.indexOf(Buffer.from(block.buffer, block.byteOffset, block.length));
    if (at === -1) continue;
    bytes[at + (block.length >> 1)] ^= 0x01;
    await writeFile(join(packsDir, name), bytes);
    damaged++;
  }
  return damaged;
}
