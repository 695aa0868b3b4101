import { spawnSync } from "node:child_process";
import { mkdtemp, open, readdir, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { expect, vi } from "vitest";
import { isRemoteLogError, type ErrorCode, type RemoteLogError } from "../../core/errors.js";
import { join } from "node:path";

/**
 * Temporary directories for store tests: each store gets a fresh one, removed with it, so a failing
 * case never leaks state into the next.
 */
export class TempDirs {
  private readonly dirs: string[] = [];

  async make(prefix = "remotelog-store-"): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    this.dirs.push(dir);
    return dir;
  }

  async removeAll(): Promise<void> {
    await Promise.all(this.dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  }
}

/** The pid of a process that has exited: what a crashed writer leaves in its lock and temporary file names. */
export function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", ""]);
  return child.pid!;
}

/** Awaits a promise that must fail with a RemoteLogError of this code, and returns the error. */
export async function failure(promise: Promise<unknown>, code: ErrorCode): Promise<RemoteLogError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isRemoteLogError(err, code), `expected ${code}, got ${String(err)}`).toBe(true);
  return err as RemoteLogError;
}

export const text = (s: string) => new TextEncoder().encode(s);

/** What this process's open descriptors name (/proc/self/fd, Linux): to check a store leaves nothing open. */
export async function openPaths(): Promise<string[]> {
  return Promise.all((await readdir("/proc/self/fd")).map((fd) => readlink(join("/proc/self/fd", fd)).catch(() => "")));
}

/**
 * Counts the calls made to Node's FileHandle methods while during runs, each still doing its real
 * work (a spy, not a stand-in): how a store's I/O scales with a batch, which a timing cannot say.
 */
export async function fileCalls<T>(methods: readonly ("read" | "write" | "writev" | "sync" | "datasync" | "close")[], during: () => Promise<T>): Promise<{ result: T; calls: Record<string, number> }> {
  const probe = await open("/dev/null");
  const prototype = Object.getPrototypeOf(probe) as Record<string, (...args: unknown[]) => unknown>;
  await probe.close();
  const spies = methods.map((method) => [method, vi.spyOn(prototype, method)] as const);
  try {
    const result = await during();
    return { result, calls: Object.fromEntries(spies.map(([method, spy]) => [method, spy.mock.calls.length])) };
  } finally {
    for (const [, spy] of spies) spy.mockRestore();
  }
}
