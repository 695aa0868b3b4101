import { RemoteLogError } from "./errors.js";

/**
 * Checks of what an app hands the library. TypeScript refuses most of these mistakes, but plain-JS apps
 * and options read from config or a URL do not pass through it, and deep inside the library such a
 * value failed as a bare TypeError (batchSize 0), or was taken and delivered wrong data (fromSeq -1):
 * each is refused where it comes in, as INVALID_ARGUMENT naming the option and what it takes.
 */

/** Leaves undefined (the option's default) alone; otherwise value must be a whole number from min to max. */
export function checkWholeNumber(option: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (value === undefined) return;
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= min && value <= max) return;
  const range = max === Number.MAX_SAFE_INTEGER ? `${min} or more` : `from ${min} to ${max}`;
  throw RemoteLogError.invalidArgument(`${option} takes a whole number, ${range}, not ${shown(value)}`);
}

/** Leaves undefined alone; otherwise value must be a bigint from min to max. */
export function checkBigInt(option: string, value: unknown, min: bigint, max: bigint): void {
  if (value === undefined) return;
  if (typeof value === "bigint" && value >= min && value <= max) return;
  throw RemoteLogError.invalidArgument(`${option} takes a bigint from ${min} to ${max}, not ${shown(value)}`);
}

/** How a bad value is quoted in a message: a string quoted (so "1" is told from 1), a bigint with its n. */
export function shown(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "number" || typeof value === "boolean" || value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value === "object" ? (value.constructor?.name ?? "object") : typeof value}`;
}

/**
 * Leaves undefined alone; otherwise value must be the path of what (a non-empty string without a NUL
 * byte). An empty data or state failed as INTERNAL "cannot create directory : ENOENT", a NUL byte as
 * INTERNAL too (Node refuses such paths), and a number as a bare TypeError from node:fs.
 */
export function checkPath(option: string, value: unknown, what: string): void {
  if (value === undefined) return;
  if (typeof value === "string" && value.length > 0 && !value.includes("\0")) return;
  throw RemoteLogError.invalidArgument(`${option} takes the path of ${what} (a non-empty string without NUL bytes), not ${shown(value)}`);
}

/** Sender.open and Receiver.open without a remote failed later as a TypeError on undefined. */
export function checkRemote(remote: unknown): void {
  if (remote === null || typeof remote !== "object") throw RemoteLogError.invalidArgument(`remote takes a client from openRemote, openKubo or openGateway, not ${shown(remote)}`);
}

/** Leaves undefined alone; otherwise value must be an AbortSignal (one that is not was a TypeError deep in a loop). */
export function checkSignal(option: string, value: unknown): void {
  if (value === undefined || value instanceof AbortSignal) return;
  throw RemoteLogError.invalidArgument(`${option} takes an AbortSignal (an AbortController's signal), not ${shown(value)}`);
}
