/** What long backup operations report as they go; the CLI draws it, tests and pipes ignore it. */
export interface Progress {
  /** A new phase ("packs", "messages") with this many units to do. */
  start(label: string, total: number): void;
  advance(units: number): void;
  stop(): void;
}

export const silentProgress: Progress = { start() {}, advance() {}, stop() {} };
