/**
 * Send-to-shown latency of the live log explorer: serve's /explorer open in headless Chromium on one
 * name, while a sender publishes to a real `serve` process one message at a time; the page is woken by
 * the head the NS pushes (Watch), reads and verifies the new view, and draws the message's row. The
 * moment the row appears is taken in the page (a MutationObserver, on the wall clock both sides share).
 * - library: a Sender in this process (JIT-warm), from the start of send() to the row; publish ms is
 *   send() alone. BENCH_EXPLORER_COUNT messages (default 50).
 * - CLI: a whole cold `remotelog send` process, from spawn to the row (the process's own start included).
 *   BENCH_EXPLORER_CLI_COUNT messages (default 10).
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKey, keyName, openRemote, saveKey, Sender } from "../lib/index.js";
import { launchBrowser } from "../test/helpers/browser.js";
import { MAIN, percentile, startServer, table } from "./harness.js";

const COUNT = Number(process.env.BENCH_EXPLORER_COUNT ?? 50);
const CLI_COUNT = Number(process.env.BENCH_EXPLORER_CLI_COUNT ?? 10);
const WAIT_MS = 15_000;

const now = () => performance.timeOrigin + performance.now();

const root = await mkdtemp(join(tmpdir(), "remotelog-explorer-bench-"));
const server = await startServer(root);
const browser = await launchBrowser();
const remote = openRemote(server.url);
const key = await generateKey();
const name = keyName(key);
const keyFile = join(root, "alice.key");
await saveKey(keyFile, key);
const sender = await Sender.open({ remote, key, data: join(root, "alice") });
try {
  await sender.send(["start"]);
  const page = await browser.open(`${server.url}/explorer/?name=${name}`);
  await page.waitForSelector('tr[data-seqid="0"]', { timeout: WAIT_MS });
  // Each seqid's row, the first time it is drawn, with the page's wall-clock time. (Page code as text:
  // the benchmarks compile without the DOM's types.)
  await page.evaluate(`(() => {
    const appeared = (globalThis.appeared = {});
    new MutationObserver(() => {
      const at = performance.timeOrigin + performance.now();
      for (const row of document.querySelectorAll("tr[data-seqid]")) appeared[row.dataset.seqid] ??= at;
    }).observe(document.getElementById("log"), { childList: true, subtree: true });
  })()`);
  // Functions, not text, from here: the page's policy (script-src 'self') refuses eval, which a text predicate needs.
  type Appeared = { appeared: Record<string, number> };
  const shownAt = async (seqid: number): Promise<number> => {
    await page.waitForFunction((seqid) => (globalThis as unknown as Appeared).appeared[seqid] !== undefined, seqid, { timeout: WAIT_MS });
    return page.evaluate((seqid) => (globalThis as unknown as Appeared).appeared[seqid], seqid);
  };

  let seqid = 0;
  const library: number[] = [];
  const publishes: number[] = [];
  for (let i = 0; i < COUNT; i++) {
    seqid++;
    const start = now();
    await sender.send([`library ${i}`]);
    publishes.push(now() - start);
    library.push((await shownAt(seqid)) - start);
  }
  await sender.close();

  const cli: number[] = [];
  for (let i = 0; i < CLI_COUNT; i++) {
    seqid++;
    const start = now();
    const child = spawn(process.execPath, [MAIN, "send", "--key", keyFile, "--data", join(root, "alice"), "--server", server.url], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    child.stdin!.end(`cli ${i}\n`);
    const code = await new Promise<number | null>((ok) => child.once("exit", ok));
    if (code !== 0) throw new Error(`remotelog send exited with ${code}: ${stderr}`);
    cli.push((await shownAt(seqid)) - start);
  }

  for (const list of [library, publishes, cli]) list.sort((a, b) => a - b);
  const row = (what: string, list: number[], publish: string | number) => [what, list.length, publish, percentile(list, 0.5), percentile(list, 0.9), list[list.length - 1]];
  console.log(`\nsend-to-shown latency of serve's /explorer in headless Chromium (pushed heads, the row drawn), one message at a time\n`);
  console.log(table(["sender", "messages", "publish p50 ms", "shown p50 ms", "p90 ms", "max ms"], [row("library Sender", library, percentile(publishes, 0.5)), row("remotelog send process", cli, "-")]));
} finally {
  await browser.close();
  remote.close();
  await server.stop();
  await rm(root, { recursive: true, force: true });
}
