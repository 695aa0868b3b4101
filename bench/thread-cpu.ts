/**
 * A preload that prints, when the process exits, its CPU time split into the main thread and every
 * other thread (worker threads, libuv's pool, V8's helpers), from /proc (Linux; 10 ms ticks):
 * `node --import ./dist/bench/thread-cpu.js dist/cli/main.js restore …`. On a loaded machine wall time
 * says little; the main thread's CPU is the floor of a process's wall time when other threads take the
 * rest on other cores (bench/README.md, "Session 5").
 */
import { readFileSync } from "node:fs";

/** utime + stime of a /proc stat file, in ms. */
function cpuMs(path: string): number {
  const fields = readFileSync(path, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

process.on("exit", () => {
  try {
    const total = cpuMs("/proc/self/stat");
    const main = cpuMs(`/proc/self/task/${process.pid}/stat`);
    process.stderr.write(`cpu: main thread ${main} ms, other threads ${total - main} ms, total ${total} ms\n`);
  } catch {
    // not Linux: nothing to say
  }
});
