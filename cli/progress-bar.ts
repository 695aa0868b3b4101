import cliProgress from "cli-progress";
import type { Writable } from "node:stream";
import { silentProgress, type Progress } from "../backup/progress.js";

// The terminal's side of backup's Progress, apart from backup/ so that the library carries no cli-progress.
/**
 * A cli-progress bar on stream when it is a terminal, nothing otherwise: a pipe or a file gets only
 * the final summary, never bar redraws.
 */
export function progressFor(stream: Writable, enabled = true): Progress {
  if (!enabled || !(stream as Writable & { isTTY?: boolean }).isTTY) return silentProgress;
  let bar: cliProgress.SingleBar | undefined;
  return {
    start(label, total) {
      bar?.stop();
      bar = new cliProgress.SingleBar(
        { stream: stream as NodeJS.WritableStream, format: `${label.padEnd(9)} [{bar}] {percentage}% {value}/{total} {duration_formatted}`, hideCursor: true, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
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
