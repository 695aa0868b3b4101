import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { CID } from "multiformats/cid";
import { afterAll, beforeAll, describe as group, expect, it } from "vitest";
import { openRemote } from "../../lib/index.js";
import { describe, launchBrowser, type TestBrowser, type TestPage } from "../helpers/browser.js";
import { damageStoredBlock } from "../helpers/damage.js";
import { cleanup, lines, runCli, startServer, stop, tempDir, type Server } from "../helpers/processes.js";

// serve's /explorer in Debian's headless Chromium, against real `remotelog serve` processes: the page
// comes from the server itself (same origin), lists its names, shows a log verified in the page, follows
// it through Watch, points at another server through CORS, and marks a tampered page as failed.

/** A generous bound for anything the page does: a wait, never an assertion of speed (bench/explorer-latency.bench.ts measures). */
const WAIT_MS = 15_000;
/** The test's artifact: what the explorer looked like. */
const SCREENSHOT = resolve(".tmp/explorer.png");

let browser: TestBrowser;
let dir: string;
let data: string;
let server: Server;
let keyFile: string;
let name: string;

async function send(bodies: string, url = server.url, extra: string[] = []): Promise<void> {
  const sent = await runCli(["send", "--key", keyFile, "--data", join(dir, "alice"), "--server", url, "--page-size", "8", "--embed", "none", ...extra], { stdin: bodies });
  expect(sent.code, sent.stderr).toBe(0);
}

/** Text of what matches selector, once it is there. */
async function textOf(page: TestPage, selector: string): Promise<string> {
  const element = await page.waitForSelector(selector, { timeout: WAIT_MS }).catch((err: Error) => {
    throw new Error(`${selector} did not appear: ${err.message}\n${describe(page)}`);
  });
  return (await element.textContent()) ?? "";
}

beforeAll(async () => {
  [browser, dir] = await Promise.all([launchBrowser(), tempDir("remotelog-explorer-browser-")]);
  data = join(dir, "server");
  keyFile = join(dir, "alice.key");
  server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);
  const gen = await runCli(["key", "gen", "--out", keyFile]);
  expect(gen.code, gen.stderr).toBe(0);
  name = gen.stdout.trim();
  // Three pages of 8: 20 messages, the text of each its own.
  await send(lines(20, "hello from the CLI"));
});

afterAll(async () => {
  await browser?.close();
  await cleanup();
});

group("explorer - the page in Chromium", () => {
  it("lists the server's names, shows a name's record, chain and messages verified, and a message sent with the CLI appears", async () => {
    const page = await browser.open(`${server.url}/explorer`);
    // The list holds the name; opening it shows its log.
    await page.click(`#names button[data-name="${name}"]`, { timeout: WAIT_MS });
    expect(await textOf(page, '#summary[data-status="ok"]'), describe(page)).toContain(name);
    const record = await textOf(page, '#record[data-status="ok"]');
    expect(record).toContain("signature verified");
    expect(record).toMatch(/sequence\s*\d+/);
    expect(record).toContain("Ed25519");
    expect(await page.locator('.card.page[data-status="ok"]').count()).toBe(3);
    expect(await textOf(page, '.card.page .skips')).toContain("page 1 (seqid 8)");
    expect(await textOf(page, 'tr[data-seqid="7"] td.body')).toBe("hello from the CLI 7");
    expect(await page.locator('tr.message[data-status="ok"]').count()).toBe(20);
    expect(page.url()).toContain(`name=${name}`);

    await send("sent while the page watches\n");
    expect(await textOf(page, 'tr[data-seqid="20"] td.body'), describe(page)).toBe("sent while the page watches");
    expect(await textOf(page, '#live[data-state="live"]')).toContain("live");
    await mkdir(resolve(".tmp"), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(page.logs.filter((line) => line.startsWith("pageerror")), describe(page)).toEqual([]);
  });

  it("points the same page at another server, which allows it through CORS", async () => {
    const other = await startServer(["--listen", "127.0.0.1:0", "--memory", "--cors-origin", server.url]);
    try {
      const sent = await runCli(["send", "--unsigned", "--name", "elsewhere", "--data", join(dir, "elsewhere"), "--server", other.url], { stdin: "on the other server\n" });
      expect(sent.code, sent.stderr).toBe(0);
      const page = await browser.open(`${server.url}/explorer`);
      await page.fill("#server", other.url);
      await page.click("#server-form button");
      await page.click('#names button[data-name="elsewhere"]', { timeout: WAIT_MS });
      expect(await textOf(page, '#summary[data-status="ok"]'), describe(page)).toContain(other.url);
      expect(await textOf(page, "#record")).toContain("free-form name");
      expect(await textOf(page, 'tr[data-seqid="0"] td.body')).toBe("on the other server");
    } finally {
      await stop(other.process);
    }
  });

  it("shows a tampered page as FAILED, and the pages and messages before it as verified", async () => {
    const remote = openRemote(server.url);
    let middle: Uint8Array;
    try {
      const chain = await runCli(["inspect", "chain", "--name", name, "--server", server.url]);
      expect(chain.code, chain.stderr).toBe(0);
      const address = (JSON.parse(chain.stdout) as { pages: { address: string }[] }).pages[1].address;
      middle = await remote.getBlock(CID.parse(address).bytes);
    } finally {
      remote.close();
    }
    await stop(server.process);
    expect(await damageStoredBlock(data, middle)).toBeGreaterThan(0);
    server = await startServer(["--listen", "127.0.0.1:0", "--data", data]);

    const page = await browser.open(`${server.url}/explorer/?name=${name}`);
    expect(await textOf(page, '#summary[data-status="failed"]'), describe(page)).toContain("FAILED");
    const failed = await textOf(page, '.card.page[data-status="failed"]');
    expect(failed).toContain("FAILED");
    expect(failed).toContain("DATA_LOSS");
    // The head page and its messages are still shown, verified; the signature too.
    expect(await page.locator('.card.page[data-status="ok"]').count()).toBe(1);
    expect(await textOf(page, '#record[data-status="ok"]')).toContain("signature verified");
    expect(await textOf(page, 'tr[data-seqid="20"] td.body')).toBe("sent while the page watches");
  });

  it("fetches a view's newest 16 MiB of messages and marks the older ones on its pages as not fetched, where it fetched them all", async () => {
    // 24 messages of 900 KiB (21 MiB) on 3 pages of 8: more than a view's default budget.
    const bigKey = join(dir, "big.key");
    const gen = await runCli(["key", "gen", "--out", bigKey]);
    expect(gen.code, gen.stderr).toBe(0);
    const bigName = gen.stdout.trim();
    const bodies = Array.from({ length: 24 }, (_, i) => `${i} ${"x".repeat(900 << 10)}\n`).join("");
    const sent = await runCli(["send", "--key", bigKey, "--data", join(dir, "big"), "--server", server.url, "--page-size", "8", "--embed", "none"], { stdin: bodies });
    expect(sent.code, sent.stderr).toBe(0);

    const page = await browser.open(`${server.url}/explorer/?name=${bigName}`);
    const summary = await textOf(page, '#summary[data-status="ok"]');
    expect(summary, describe(page)).toMatch(/not fetched\s*\d+ older messages on the pages shown: a view fetches 16 MiB of messages at most/);
    const verified = await page.locator('tr.message[data-status="ok"]').count();
    const unfetched = await page.locator('tr.message[data-status="unfetched"]').count();
    // The newest up to the one that crosses 16 MiB (of ~900 KiB each); the rest are there, not fetched.
    expect([verified, unfetched]).toEqual([19, 5]);
    expect(await textOf(page, 'tr[data-seqid="23"] td.body')).toMatch(/^23 x+ … \(921603 bytes\)$/);
    expect(await textOf(page, 'tr[data-seqid="0"]')).toContain("not fetched");
    expect(await page.locator('.card.page[data-status="ok"]').count()).toBe(3);
    expect(page.logs.filter((line) => line.startsWith("pageerror")), describe(page)).toEqual([]);
  });

  it("lists 256 messages a page asked for at most, newest first, where it drew a row for every pair of pages of thousands", async () => {
    // One page of 3,000 small messages: the 8 pages asked for list 2,048 of them.
    const wideKey = join(dir, "wide.key");
    const gen = await runCli(["key", "gen", "--out", wideKey]);
    expect(gen.code, gen.stderr).toBe(0);
    const wideName = gen.stdout.trim();
    const sent = await runCli(["send", "--key", wideKey, "--data", join(dir, "wide"), "--server", server.url, "--page-size", "3000"], { stdin: lines(3000, "wide") });
    expect(sent.code, sent.stderr).toBe(0);

    const page = await browser.open(`${server.url}/explorer/?name=${wideName}`);
    const summary = await textOf(page, '#summary[data-status="ok"]');
    expect(summary, describe(page)).toMatch(/not listed\s*952 older messages on the pages shown: a view of 8 pages lists 2048 at most/);
    expect(await page.locator("tr.message").count()).toBe(2048);
    expect(await textOf(page, ".card.page .head")).toContain("3000 pairs, 2048 listed");
    expect(await textOf(page, 'tr[data-seqid="2999"] td.body')).toBe("wide 2999");
    expect(await page.locator('tr[data-seqid="951"]').count()).toBe(0);
  });

  it("walks 16 MiB of pages at most: where older pages were asked for past that, it says so in place of the button", async () => {
    // 230,000 pairs on 29 pages of 8,192 (~600 KB each, ~17 MiB): the head and 15 older pages are 16 pages
    // within the budget, and asking for 32 stops at the page that crosses 16 MiB.
    const longKey = join(dir, "long.key");
    const gen = await runCli(["key", "gen", "--out", longKey]);
    expect(gen.code, gen.stderr).toBe(0);
    const longName = gen.stdout.trim();
    const sent = await runCli(["send", "--key", longKey, "--data", join(dir, "long"), "--server", server.url, "--page-size", "8192", "--embed", "none"], { stdin: lines(230_000, "long") });
    expect(sent.code, sent.stderr).toBe(0);

    const page = await browser.open(`${server.url}/explorer/?name=${longName}`);
    await textOf(page, '#summary[data-status="ok"]');
    expect(await page.locator(".card.page").count()).toBe(8);
    await page.click("button#older", { timeout: WAIT_MS });
    // Thousands of rows a view: bounds of a minute, never of speed.
    await page.locator(".card.page").nth(15).waitFor({ timeout: 60_000 });
    expect(await page.locator(".card.page").count()).toBe(16);
    await page.click("button#older", { timeout: 60_000 });
    const note = await (await page.waitForSelector("p#older", { timeout: 60_000 })).textContent();
    expect(note, describe(page)).toBe("Older pages are not shown: a view reads 16 MiB of pages at most, and those newer took it.");
    const shown = await page.locator(".card.page").count();
    expect(shown).toBeGreaterThan(16);
    expect(shown).toBeLessThan(29);
    expect(await page.locator("button#older").count()).toBe(0);
  }, 240_000);

  it("goes on showing and following names as a visitor switches between them, where the seventh switch waited for good over http://", async () => {
    const names = ["explorer-left", "explorer-right"];
    const sendTo = async (to: string, body: string) => {
      const sent = await runCli(["send", "--unsigned", "--name", to, "--data", join(dir, to), "--server", server.url], { stdin: `${body}\n` });
      expect(sent.code, sent.stderr).toBe(0);
    };
    for (const each of names) await sendTo(each, `first of ${each}`);
    const page = await browser.open(`${server.url}/explorer`);
    // Each switch stops the follow (and its Watch stream) of the name shown before.
    for (let turn = 0; turn < 8; turn++) {
      const shown = names[turn % 2];
      await page.click(`#names button[data-name="${shown}"]`, { timeout: WAIT_MS });
      await page
        .waitForFunction(
          (shown) => {
            const { document } = globalThis as unknown as { document: { querySelector(selector: string): { textContent: string | null } | null } };
            return document.querySelector('#summary[data-status="ok"] h2')?.textContent?.includes(shown) === true;
          },
          shown,
          { timeout: WAIT_MS },
        )
        .catch((err: Error) => {
          throw new Error(`switch ${turn + 1}, to ${shown}: ${err.message}\n${describe(page)}`);
        });
    }
    // The one shown last is still followed: a message sent to it now appears.
    await sendTo(names[1], "sent after eight switches");
    expect(await textOf(page, 'tr[data-seqid="1"] td.body'), describe(page)).toBe("sent after eight switches");
  });

  it("--no-explorer: no page at /explorer (404)", async () => {
    const off = await startServer(["--listen", "127.0.0.1:0", "--memory", "--no-explorer"]);
    try {
      // Chromium shows its own error page for an empty 404: the browser asks from a page of that server instead.
      const page = await browser.open(`${off.url}/metrics`);
      const statuses = await page.evaluate(async () => Promise.all(["/explorer", "/explorer/", "/explorer/explorer.js"].map(async (path) => (await fetch(path)).status)));
      expect(statuses).toEqual([404, 404, 404]);
    } finally {
      await stop(off.process);
    }
  });
});
