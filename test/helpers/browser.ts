/**
 * Real Chromium for tests of browser code: Debian's /usr/bin/chromium (`apt-get install chromium`,
 * done by .ci/run), driven by playwright-core. Pages come from a real origin on loopback, a small
 * static server, so that the page's requests to a `remotelog serve` are cross-origin as in real use.
 *
 *   const browser = await launchBrowser();               // once per file (beforeAll), ~0.5 s
 *   const site = await serveSite();                       // http://127.0.0.1:PORT: the bundle and a test page
 *   const page = await browser.open(site.url);            // remotelog's browser bundle is at globalThis.remotelog
 *   const text = await page.evaluate(() => document.title);
 *   await browser.close(); await site.close();            // afterAll; idempotent, and bounded in time
 *
 * A page that is not remotelog's (serve's /explorer) is opened the same way: browser.open(url).
 * Every wait is bounded (BROWSER_TIMEOUT_MS); the page's errors and console are kept in page.logs,
 * and describe(page) puts them into an assertion's message.
 */
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";

/** Where Debian's chromium package puts the browser. */
export const CHROMIUM = process.env.REMOTELOG_CHROMIUM ?? "/usr/bin/chromium";
/** The longest any one browser step (launch, navigation, evaluate, wait) may take. */
export const BROWSER_TIMEOUT_MS = 30_000;
/** The browser bundle that `make build` and test/global-setup.ts write. */
export const BUNDLE = resolve("dist/browser/remotelog.js");

/** A page, with everything it said: uncaught errors and console output, oldest first. */
export type TestPage = Page & { logs: string[] };

export interface TestBrowser {
  browser: Browser;
  /** A new page (its own context: no cookies or cache shared) at url, loaded, and for a site of serveSite(), with the bundle ready. */
  open(url: string): Promise<TestPage>;
  /** Closes every page and the browser, waiting 10 s at most. Idempotent. */
  close(): Promise<void>;
}

/** Starts headless Chromium. */
export async function launchBrowser(): Promise<TestBrowser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: BROWSER_TIMEOUT_MS,
    // As root (CI containers) Chromium runs only without its sandbox.
    chromiumSandbox: false,
    args: ["--disable-gpu", "--disable-dev-shm-usage"],
  });
  let closing: Promise<void> | undefined;
  return {
    browser,
    async open(url) {
      const context = await browser.newContext();
      context.setDefaultTimeout(BROWSER_TIMEOUT_MS);
      const page = (await context.newPage()) as TestPage;
      page.logs = [];
      page.on("pageerror", (err) => page.logs.push(`pageerror: ${err.stack ?? err.message}`));
      page.on("console", (message) => page.logs.push(`console.${message.type()}: ${message.text()}`));
      await page.goto(url, { timeout: BROWSER_TIMEOUT_MS });
      // A page of serveSite() sets remotelogReady once the bundle is imported (or failed to import).
      const ours = await page.evaluate(() => "remotelogReady" in globalThis);
      if (ours) {
        await page.waitForFunction(() => (globalThis as { remotelogReady?: boolean }).remotelogReady === true, undefined, { timeout: BROWSER_TIMEOUT_MS });
        const failed = await page.evaluate(() => (globalThis as { remotelogError?: string }).remotelogError);
        if (failed) throw new Error(`the bundle did not load: ${failed}\n${page.logs.join("\n")}`);
      }
      return page;
    },
    close() {
      // Bounded: a browser that does not close in time is killed by playwright when the test process exits.
      closing ??= Promise.race([browser.close().catch(() => {}), new Promise<void>((done) => setTimeout(done, 10_000).unref())]);
      return closing;
    },
  };
}

export interface Site {
  /** http://127.0.0.1:PORT, the pages' origin. */
  origin: string;
  /** The test page: it imports the bundle and sets globalThis.remotelog. */
  url: string;
  close(): Promise<void>;
}

/** The test page: imports the bundle as a module and says when it is ready (or why not). */
const TEST_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>remotelog test page</title>
<script>globalThis.remotelogReady = false;</script>
<script type="module">
  try {
    globalThis.remotelog = await import("/remotelog.js");
  } catch (err) {
    globalThis.remotelogError = String(err && err.stack || err);
  }
  globalThis.remotelogReady = true;
</script></head><body></body></html>`;

/**
 * A static site on 127.0.0.1 (its own port, so its own origin): / is the test page, /remotelog.js the
 * browser bundle, and files adds or replaces paths. Anything else is 404. host "localhost" gives
 * another origin on the same machine.
 */
export async function serveSite(options: { files?: Record<string, string | Uint8Array>; host?: "127.0.0.1" | "localhost" } = {}): Promise<Site> {
  const files = new Map<string, { body: string | Uint8Array; type: string }>([
    ["/", { body: TEST_PAGE, type: "text/html; charset=utf-8" }],
    ["/remotelog.js", { body: await readFile(BUNDLE), type: "text/javascript; charset=utf-8" }],
  ]);
  for (const [path, body] of Object.entries(options.files ?? {})) files.set(path, { body, type: typeOf(path) });
  const server: HttpServer = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://site").pathname;
    // Asked for by every page; a 404 would be an error in page.logs.
    if (path === "/favicon.ico" && !files.has(path)) {
      res.writeHead(204).end();
      return;
    }
    const file = files.get(path);
    if (!file || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": file.type, "cache-control": "no-store" }).end(req.method === "HEAD" ? undefined : file.body);
  });
  await new Promise<void>((done, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", done);
  });
  const origin = `http://${options.host ?? "127.0.0.1"}:${(server.address() as AddressInfo).port}`;
  let closing: Promise<void> | undefined;
  return {
    origin,
    url: `${origin}/`,
    close() {
      closing ??= new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function typeOf(path: string): string {
  if (path.endsWith(".html") || path.endsWith("/")) return "text/html; charset=utf-8";
  if (path.endsWith(".js") || path.endsWith(".mjs")) return "text/javascript; charset=utf-8";
  if (path.endsWith(".json")) return "application/json";
  if (path.endsWith(".css")) return "text/css";
  return "application/octet-stream";
}

/** The page's errors and console, for an assertion's message. */
export function describe(page: TestPage): string {
  return page.logs.length === 0 ? "(the page logged nothing)" : page.logs.join("\n");
}
