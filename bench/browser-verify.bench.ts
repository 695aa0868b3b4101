/**
 * The receiver in a browser: a page in Debian's headless Chromium (test/helpers/browser.ts, the bundle
 * dist/browser/remotelog.js) reads a signed log of N messages from a real `serve` process over
 * connect-web, checking the head's record, every page, and every message's H2 and H1 on the page's
 * thread (SHA-256 from @noble/hashes). Beside it, the same library reading the same log in this Node
 * process (node:crypto, the verify threads). Every message is in the CAS (--embed none), 256-byte
 * bodies. BENCH_BROWSER_SIZES sets N (default 1000,10000,100000).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { generateKey, keyName, openRemote, Receiver, Sender } from "../lib/index.js";
import { BUNDLE, launchBrowser, serveSite } from "../test/helpers/browser.js";
import { bodies, ms, startServer, table } from "./harness.js";

const SIZES = (process.env.BENCH_BROWSER_SIZES ?? "1000,10000,100000").split(",").map(Number);

type PageGlobals = { remotelog: typeof import("../lib/browser.js") };

const browser = await launchBrowser();
const version = browser.browser.version();
const site = await serveSite();
const rows: (string | number)[][] = [];
try {
  for (const count of SIZES) {
    const root = await mkdtemp(join(tmpdir(), "remotelog-browser-bench-"));
    const server = await startServer(root, ["--cors-origin", site.origin]);
    const remote = openRemote(server.url);
    try {
      const key = await generateKey();
      const name = keyName(key);
      const sender = await Sender.open({ remote, key, embed: "none" });
      await sender.send(bodies(count));
      await sender.close();

      const page = await browser.open(site.url);
      const inPage = await page.evaluate(
        async ({ url, name }) => {
          const { openRemote, Receiver, verifyLog } = (globalThis as unknown as PageGlobals).remotelog;
          const remote = openRemote(url);
          const started = performance.now();
          const receiver = await Receiver.open({ remote, name });
          let delivered = 0;
          await receiver.sync(async (batch) => void (delivered += batch.length));
          const catchUpMs = performance.now() - started;
          const verifyStarted = performance.now();
          const report = await verifyLog(remote, name, { readData: true });
          return { delivered, catchUpMs, verifyMs: performance.now() - verifyStarted, ok: report.ok, checked: report.messages };
        },
        { url: server.url, name },
      );
      if (inPage.delivered !== count || !inPage.ok || inPage.checked !== count) throw new Error(`the page read ${inPage.delivered} and checked ${inPage.checked} of ${count} (ok: ${inPage.ok})`);
      await page.context().close();

      const start = process.hrtime.bigint();
      const receiver = await Receiver.open({ remote, name });
      let delivered = 0;
      await receiver.sync(async (batch) => void (delivered += batch.length));
      const nodeMs = ms(start);
      if (delivered !== count) throw new Error(`Node read ${delivered} of ${count}`);

      rows.push([count, inPage.catchUpMs, Math.round(count / (inPage.catchUpMs / 1000)), inPage.verifyMs, nodeMs, Math.round(count / (nodeMs / 1000))]);
    } finally {
      remote.close();
      await server.stop();
      await rm(root, { recursive: true, force: true });
    }
  }
} finally {
  await browser.close();
  await site.close();
}

const bundle = await readFile(BUNDLE);
console.log(`\nbrowser bundle ${BUNDLE}: ${bundle.length} bytes, ${gzipSync(bundle, { level: 9 }).length} gzipped (level 9)`);
console.log(`\na signed log read and verified in headless Chromium (${version}) and in Node ${process.version}, every message in the CAS\n`);
console.log(table(["messages", "page catch-up ms", "page msgs/s", "page verifyLog --read-data ms", "Node catch-up ms", "Node msgs/s"], rows));
