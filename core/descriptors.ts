import { readFileSync } from "node:fs";

/**
 * This process's limit on open file descriptors: the soft `ulimit -n`, which node raises to the hard
 * one as it starts; Infinity when unlimited, undefined where /proc/self/limits cannot be read (not Linux).
 * The budgets that hold descriptors (connections, idle packs) are sized from it, so that no one of
 * them can take the last descriptor another needs.
 */
export function openFilesLimit(): number | undefined {
  let limits: string;
  try {
    limits = readFileSync("/proc/self/limits", "latin1");
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(limits)?.[1];
  if (soft === undefined) return undefined;
  return soft === "unlimited" ? Infinity : Number(soft);
}
