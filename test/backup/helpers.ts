import { randomBytes } from "node:crypto";
import { encodeMessage, newMessage } from "../../core/hash.js";
import { FileLocalLog } from "../../stores/file/local-log.js";

/** Appends count messages of bodySize random bytes to the local log in dir (created if needed). */
export async function writeLog(dir: string, count: number, options: { bodySize?: number; from?: number } = {}): Promise<Uint8Array[]> {
  const log = await FileLocalLog.open(dir);
  try {
    const group = new TextEncoder().encode("backup-test");
    const messages: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      messages.push(encodeMessage(newMessage(group, BigInt(1_700_000_000 + (options.from ?? 0) + i), randomBytes(options.bodySize ?? 64))));
    }
    for (let i = 0; i < messages.length; i += 10_000) await log.append(messages.slice(i, i + 10_000));
    return messages;
  } finally {
    await log.close();
  }
}

/** Every message of the local log in dir, in order. */
export async function readLog(dir: string): Promise<Uint8Array[]> {
  const log = await FileLocalLog.open(dir);
  try {
    return (await log.read(0, log.length)).map((entry) => entry.data);
  } finally {
    await log.close();
  }
}
