import type cliProgress from "cli-progress";
import type { Writable } from "node:stream";
import { silentProgress, type Progress } from "../backup/progress.js";

// The terminal's side of backup's Progress, apart from backup/ so that the library carries no cli-progress.
/**
 * A cli-progress bar on stream when it is a terminal, nothing otherwise: a pipe or a file gets only
 * the final summary, never bar redraws. cli-progress (with string-width) is loaded only for a terminal:
 * ~9 ms of start-up that a verb piped or run with --json does not need.
 */
export async function progressFor(stream: Writable, enabled = true): Promise<Progress> {
  if (!enabled || !(stream as Writable & { isTTY?: boolean }).isTTY) return silentProgress;
  const { default: bars } = await import("cli-progress");
  let bar: cliProgress.SingleBar | undefined;
  return {
    start(label, total) {
      bar?.stop();
      bar = new bars.SingleBar(
        { stream: stream as NodeJS.WritableStream, format: `${label.padEnd(9)} [{bar}] {percentage}% {value}/{total} {duration_formatted}`, hideCursor: true, clearOnComplete: false },
        bars.Presets.shades_classic,
      );
      bar.start(total, 0);
    },
    advance(units) {
      bar?.increment(units);
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}
