import { afterAll, beforeAll, describe as group, expect, it } from "vitest";
import { describe, launchBrowser, serveSite, type Site, type TestBrowser } from "../helpers/browser.js";

let browser: TestBrowser;
let site: Site;

beforeAll(async () => {
  [browser, site] = await Promise.all([launchBrowser(), serveSite()]);
});
afterAll(async () => {
  await browser?.close();
  await site?.close();
});

group("the browser harness", () => {
  it("loads the browser bundle into a page of a loopback origin, and computes an MVDS id there as Node does", async () => {
    const page = await browser.open(site.url);
    // The reference vector of test/core/hash.test.ts (Python's hashlib over the reference layout).
    const id = await page.evaluate(() => {
      const { mvdsId, toHex } = (globalThis as unknown as { remotelog: typeof import("../../lib/browser.js") }).remotelog;
      const utf8 = (text: string) => new TextEncoder().encode(text);
      return toHex(mvdsId({ groupId: utf8("group"), timestamp: 1700000000n, body: utf8("hello") }));
    });
    expect(id, describe(page)).toBe("1747c770d69647a18734abc6f05677cce231dd8c4d09b780a1afbe5d60a6220d");
    expect(await page.evaluate(() => (globalThis as unknown as { location: { origin: string } }).location.origin)).toBe(site.origin);
    // No Node in the page: the bundle ran without process or Buffer.
    expect(await page.evaluate(() => typeof (globalThis as { Buffer?: unknown }).Buffer)).toBe("undefined");
  });
});
