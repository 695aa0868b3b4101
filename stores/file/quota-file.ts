import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { RemoteLogError } from "../../core/errors.js";
import type { QuotaLedger, QuotaUsage } from "../../core/quota-ledger.js";
import { ensureDir, ioError, removeLeftoverTmp, writeFileAtomic } from "./atomic.js";

/**
 * The quotas' counts in one JSON file (serve keeps DIR/quotas.json), replaced atomically at each save
 * (temp file, fsync, rename), so that a crash leaves the counts of the last save whole.
 *
 * `{"version":1,"bytes":{"key k51…":123},"names":{"token 3fa1…":2}}`
 */
export async function openQuotaFile(path: string): Promise<QuotaLedger> {
  await ensureDir(dirname(path));
  await removeLeftoverTmp(dirname(path));
  let text: string | undefined;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(`cannot read ${path}`, err, path);
  }
  const saved = text === undefined ? { bytes: {}, names: {} } : parseQuotaFile(path, text);
  return {
    saved,
    save: (usage: QuotaUsage) => writeFileAtomic(path, new TextEncoder().encode(`${JSON.stringify({ version: 1, ...usage })}\n`)),
  };
}

/** DATA_LOSS naming the file when it is not a ledger this version wrote; the file stays as it is. */
function parseQuotaFile(path: string, text: string): QuotaUsage {
  const damaged = (why: string) => RemoteLogError.dataLoss(`${path} is not a quota ledger (${why}); the quotas' counts are in it: fix or remove it by hand`, undefined, { file: path });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw damaged((err as Error).message);
  }
  const { version, bytes, names } = (parsed ?? {}) as { version?: unknown; bytes?: unknown; names?: unknown };
  if (version !== 1) throw damaged(`version ${JSON.stringify(version)}, not 1`);
  const counts = (value: unknown, field: string): Record<string, number> => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw damaged(`${field} is not an object`);
    for (const [writer, count] of Object.entries(value)) {
      if (!Number.isSafeInteger(count) || (count as number) < 0) throw damaged(`${field} of ${writer} is ${JSON.stringify(count)}`);
    }
    return value as Record<string, number>;
  };
  return { bytes: counts(bytes, "bytes"), names: counts(names, "names") };
}
