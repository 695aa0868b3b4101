/**
 * The table of issue 13, one row per goal, from the figures the benches of this run wrote to
 * RESULTS_DIR (bench/harness.ts writeBenchResult): remotelog's figure, the anchor measured in the same
 * run (hypercore, restic or a bare `node -e 0`), their ratio, the goal and whether it was met. `make
 * bench` clears RESULTS_DIR first and runs this last, so a bench that did not run (or failed) shows
 * "not run", never an older figure. `node dist/bench/summary.js` after any single bench shows its rows.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_EMBED } from "../core/page.js";
import { RESULTS_DIR, table, type BenchTable } from "./harness.js";

interface BenchResult {
  bench: string;
  finishedAt: string;
  loadAverage: number;
  context: Record<string, string | number>;
  tables: Record<string, BenchTable>;
}

function load(bench: string): BenchResult | undefined {
  try {
    return JSON.parse(readFileSync(join(RESULTS_DIR, `${bench}.json`), "utf8")) as BenchResult;
  } catch {
    return undefined;
  }
}

/** The rows of a bench's table as objects by header. */
function rowsOf(result: BenchResult | undefined, name: string): Record<string, string | number>[] {
  const found = result?.tables[name];
  if (!found) return [];
  return found.rows.map((row) => Object.fromEntries(found.headers.map((header, i) => [header, row[i]])));
}

/** The one row whose cells equal match (compared as text), if any. */
function find(rows: Record<string, string | number>[], match: Record<string, string | number>): Record<string, string | number> | undefined {
  return rows.find((row) => Object.entries(match).every(([header, value]) => String(row[header]) === String(value)));
}

/** A number, or undefined for a cell that says something else ("-", "not installed"). */
const numberIn = (cell: string | number | undefined) => (typeof cell === "number" ? cell : undefined);

interface Figure {
  /** What ran, where it matters: the size, the bodies, the path. */
  ran: string;
  value?: number;
  anchor?: number;
  anchorName: string;
}

interface Goal {
  measure: string;
  bench: string;
  unit: string;
  goal: string;
  /** Whether value (and anchor) meet it. */
  met: (value: number, anchor?: number) => boolean;
  /**
   * The same goal as a ratio to the anchor measured in this run, where the issue gives the goal in ms
   * beside the anchor's figure on its own machine: issue 13 asks for every goal "as a ratio to
   * hypercore or to a bare `node -e 0` measured in the same run". Machines differ in both: a bare
   * node took ~180 ms where the issue was written, 35-95 ms here (bench/README.md, session 22).
   */
  asRatio?: { limit: number; goal: string };
  figure: (result: BenchResult) => Figure | undefined;
}

/** A goal of `ms` at the issue's `anchorMs` for the anchor, as the largest ratio to the anchor that meets it. */
function ratioOf(ms: number, anchorMs: number, anchorName: string, issueAnchor: string): { limit: number; goal: string } {
  const limit = ms / anchorMs;
  return { limit, goal: `≤ ${limit < 0.1 ? limit.toFixed(3) : limit.toFixed(1)}× ${anchorName} (${ms.toLocaleString("en")} ms at the issue's ${issueAnchor})` };
}

const ratioAtMost = (limit: number) => (value: number, anchor?: number) => anchor !== undefined && value / anchor <= limit;
const atMost = (limit: number) => (value: number) => value <= limit;

/** A row of bench/peers/hypercore.bench.ts: remotelog beside hypercore, and a bare `node -e 0`. */
function peers(messages: number, rtt: string, measure: string, anchor: "hypercore" | "node"): (result: BenchResult) => Figure | undefined {
  return (result) => {
    const rows = rowsOf(result, "peers");
    const row = find(rows, { messages, "RTT ms": rtt, measure });
    if (!row) return undefined;
    const node = find(rows, { measure: "bare `node -e 0` (best of 3)" });
    return anchor === "hypercore"
      ? { ran: `${messages.toLocaleString("en")} msgs, RTT ${rtt} ms`, value: numberIn(row["remotelog ms"]), anchor: numberIn(row["hypercore ms"]), anchorName: "hypercore" }
      : { ran: `${messages.toLocaleString("en")} msgs`, value: numberIn(row["remotelog ms"]), anchor: numberIn(node?.["remotelog ms"]), anchorName: "node -e 0" };
  };
}

/** The largest log bench/million.bench.ts ran (BENCH_MILLION_SIZES), and one of its columns. */
function million(column: string): (result: BenchResult) => Figure | undefined {
  return (result) => {
    const rows = rowsOf(result, "million");
    const row = rows.reduce<Record<string, string | number> | undefined>((largest, r) => (!largest || Number(r.messages) > Number(largest.messages) ? r : largest), undefined);
    return row && { ran: `${Number(row.messages).toLocaleString("en")} msgs`, value: numberIn(row[column]), anchorName: "-" };
  };
}

/** A row of bench/backup.bench.ts, beside restic's figure for the same bodies. */
function backup(column: string, resticColumn: string, bodies = "base64"): (result: BenchResult) => Figure | undefined {
  return (result) => {
    const rows = rowsOf(result, "backup");
    const ours = find(rows, { tool: "remotelog backup", bodies });
    const restic = find(rows, { tool: "restic", bodies });
    return ours && { ran: `${Number(result.context.messages).toLocaleString("en")} msgs, ${bodies}`, value: numberIn(ours[column]), anchor: numberIn(restic?.[resticColumn]), anchorName: "restic" };
  };
}

/** The largest run of the Kubo bench through `serve --cas kubo --ns ipns`. */
function kubo(column: string): (result: BenchResult) => Figure | undefined {
  return (result) => {
    const rows = rowsOf(result, "kubo").filter((row) => row.path === "serve --cas kubo --ns ipns");
    const row = rows.reduce<Record<string, string | number> | undefined>((largest, r) => (!largest || Number(r.messages) > Number(largest.messages) ? r : largest), undefined);
    return row && { ran: `${Number(row.messages).toLocaleString("en")} msgs, ${result.context.node}`, value: numberIn(row[column]), anchorName: "-" };
  };
}

// The goals as issue 13 states them. The Kubo goal, "≥ 10× today", has no anchor in the run: today
// was 120-530 msgs/s, read here as at least 1,200.
const GOALS: Goal[] = [
  { measure: "fresh catch-up, in-process", bench: "peers", unit: "ms", goal: "≤ 0.05× hypercore", met: ratioAtMost(0.05), figure: peers(10_000, "0", "fresh catch-up, in-process", "hypercore") },
  { measure: "append + publish, in-process", bench: "peers", unit: "ms", goal: "≤ 0.5× hypercore", met: ratioAtMost(0.5), figure: peers(10_000, "0", "append+publish, in-process", "hypercore") },
  { measure: "`send` process, 10k from stdin", bench: "peers", unit: "ms", goal: "≤ 600 ms", met: atMost(600), asRatio: ratioOf(600, 180, "node -e 0", "~180 ms"), figure: peers(10_000, "0", "send process, from stdin", "node") },
  { measure: "`receive` process, 10k to a pipe", bench: "peers", unit: "ms", goal: "≤ 700 ms", met: atMost(700), asRatio: ratioOf(700, 180, "node -e 0", "~180 ms"), figure: peers(10_000, "0", "receive process, to a pipe", "node") },
  { measure: "100k catch-up at 20 ms RTT, in-process", bench: "peers", unit: "ms", goal: "≤ 1,000 ms", met: atMost(1000), asRatio: ratioOf(1000, 50_500, "hypercore", "47-54 s"), figure: peers(100_000, "20", "fresh catch-up, in-process", "hypercore") },
  { measure: "100k catch-up at 20 ms RTT, process", bench: "peers", unit: "ms", goal: "≤ 1,300 ms", met: atMost(1300), asRatio: ratioOf(1300, 50_500, "hypercore", "47-54 s"), figure: peers(100_000, "20", "receive process, to a pipe", "hypercore") },
  {
    measure: "append → printed by a follower, p50",
    bench: "follow",
    unit: "ms",
    goal: "≤ 5 ms",
    met: atMost(5),
    figure: (result) => {
      const row = find(rowsOf(result, "follow"), { embed: String(DEFAULT_EMBED) });
      return row && { ran: `${row.messages} msgs, default flags (embed ${DEFAULT_EMBED})`, value: numberIn(row["delivered p50 ms"]), anchorName: "-" };
    },
  },
  {
    measure: "idle CPU of one receiver following many names",
    bench: "many-names",
    unit: "% of a core",
    goal: "≤ 2%",
    met: atMost(2),
    figure: (result) => {
      const row = rowsOf(result, "many-names")[0];
      const window = row && Object.keys(row).find((key) => key.startsWith("RSS after "))?.replace(/^RSS after (\d+) s MB$/, "$1 s");
      return row && { ran: `${row.names} names, concurrency ${row.concurrency}, over ${window} idle`, value: numberIn(row["receiver CPU %"]), anchorName: "-" };
    },
  },
  { measure: "1M messages: `send` (append+publish)", bench: "million", unit: "ms", goal: "≤ 10,000 ms", met: atMost(10_000), figure: million("send ms") },
  { measure: "1M messages: `receive` (catch-up)", bench: "million", unit: "ms", goal: "≤ 10,000 ms", met: atMost(10_000), figure: million("receive ms") },
  { measure: "1M messages: receiver peak RSS", bench: "million", unit: "MB", goal: "≤ 300 MB", met: atMost(300), figure: million("receive peak RSS MB") },
  { measure: "Kubo backend, append+publish", bench: "kubo", unit: "msgs/s", goal: "≥ 1,200 msgs/s (10× today)", met: (value) => value >= 1200, figure: kubo("append+publish msgs/s") },
  { measure: "Kubo backend, catch-up", bench: "kubo", unit: "msgs/s", goal: "≥ 1,200 msgs/s (10× today)", met: (value) => value >= 1200, figure: kubo("catch-up msgs/s") },
  { measure: "`restore` of 100k from a directory backup, process", bench: "backup", unit: "s", goal: "≤ 0.5× restic", met: ratioAtMost(0.5), figure: backup("restore s", "restore s") },
  { measure: "`backup` of 100k by name through the server, process", bench: "backup", unit: "s", goal: "≤ 1.0× restic", met: ratioAtMost(1.0), figure: backup("backup by name s", "backup s") },
];

function shown(value: number | undefined, unit: string): string {
  if (value === undefined) return "-";
  const digits = value < 10 ? 2 : value < 100 ? 1 : 0;
  return `${value.toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits })} ${unit}`;
}

function main(): void {
  const results = new Map(GOALS.map((goal) => [goal.bench, load(goal.bench)]));
  const verdicts = { written: 0, ratio: 0 };
  const rows = GOALS.map((goal) => {
    const result = results.get(goal.bench);
    const figure = result && goal.figure(result);
    const ratioGoal = goal.asRatio?.goal ?? "the same";
    if (!result) return [goal.measure, "not run", "-", "-", "-", "-", goal.goal, "not run", ratioGoal, "not run"];
    // The bench ran but printed no such row (or no figure in it): its table changed, or a size was left out.
    if (!figure || figure.value === undefined) return [goal.measure, "no such row", "-", "-", "-", "-", goal.goal, "not measured", ratioGoal, "not measured"];
    const ratio = figure.anchor !== undefined ? figure.value / figure.anchor : undefined;
    const met = goal.met(figure.value, figure.anchor);
    // A goal the issue gives as a ratio already (or with no anchor) reads the same both ways.
    const metAsRatio = goal.asRatio ? ratio !== undefined && ratio <= goal.asRatio.limit : met;
    verdicts.written += met ? 1 : 0;
    verdicts.ratio += metAsRatio ? 1 : 0;
    const ratioText = ratio === undefined ? "-" : `${ratio < 0.1 ? ratio.toFixed(3) : ratio.toFixed(2)}×`;
    return [goal.measure, figure.ran, shown(figure.value, goal.unit), figure.anchorName, shown(figure.anchor, goal.unit), ratioText, goal.goal, met ? "met" : "missed", ratioGoal, metAsRatio ? "met" : "missed"];
  });
  console.log(`\nIssue 13, every row from this run's benches (${RESULTS_DIR})\n`);
  console.log(table(["measure", "ran", "remotelog", "anchor", "anchor figure", "ratio", "goal", "verdict", "goal as a ratio", "verdict as a ratio"], rows));
  console.log(`\nmet: ${verdicts.written} of ${GOALS.length} as written; ${verdicts.ratio} of ${GOALS.length} with the goals given in ms read as ratios to their anchors in this run\n`);
  for (const [bench, result] of results) {
    console.log(result ? `${bench}: finished ${result.finishedAt}, load average ${result.loadAverage.toFixed(1)}` : `${bench}: not run`);
  }
}

main();
