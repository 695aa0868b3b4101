/**
 * A `.cpuprofile`'s busy samples on the machine's monotonic clock, and what they were in a span: the
 * one reading of a profile that bench/timeline.ts and bench/follow-trace.ts lay side by side.
 */

export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A sample that was not idle: when it was taken (µs, monotonic, as V8 stamps it), how long it stands for, and its frame. */
export interface BusySample {
  at: number;
  us: number;
  frame: string;
}

export function busySamples(profile: CpuProfile): BusySample[] {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
  const out: BusySample[] = [];
  let clock = profile.startTime;
  profile.samples.forEach((id, i) => {
    clock += profile.timeDeltas[i] ?? 0;
    const frame = nodes.get(id)!;
    if (frame.functionName === "(idle)") return;
    const file = frame.url.split("/").pop() ?? "";
    out.push({ at: clock, us: profile.timeDeltas[i + 1] ?? 0, frame: `${frame.functionName || "(anon)"} ${file}:${frame.lineNumber + 1}` });
  });
  return out;
}

/** The busy µs of samples in [lo, hi) and the frame with the most self time there. */
export function busyIn(samples: BusySample[], lo: number, hi: number): { busy: number; top: string } {
  const self = new Map<string, number>();
  let busy = 0;
  for (const sample of samples) {
    if (sample.at < lo || sample.at >= hi) continue;
    busy += sample.us;
    self.set(sample.frame, (self.get(sample.frame) ?? 0) + sample.us);
  }
  const top = [...self].sort((a, b) => b[1] - a[1])[0];
  return { busy, top: top?.[0] ?? "" };
}
