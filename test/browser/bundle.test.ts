import { execFile } from "node:child_process";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cleanup, runCli, tempDir } from "../helpers/processes.js";

afterAll(cleanup);

/** scripts/bundle-browser.mjs of entry into a scratch directory: its exit code and what it said. */
function bundle(entry: string, outdir: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["scripts/bundle-browser.mjs"], { env: { ...process.env, BUNDLE_ENTRY: entry, BUNDLE_OUTDIR: outdir }, timeout: 60_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
}

// That the bundle itself loads, whole, in a page is test/browser/harness.test.ts.
describe("the browser bundle", () => {
  it("fails to build from anything that needs a Node built-in, naming the import", async () => {
    // The Node library keeps logs and keys in files: bundled for a browser, it must fail, not ship a stub.
    const failed = await bundle("lib/index.ts", join(await tempDir(), "out"));
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/stores\/file\/[\w-]+\.ts:\d+: Could not resolve "node:fs/);
    expect(failed.stderr).toContain("the browser bundle must not need Node");
  });
});

describe("serve --cors-origin", () => {
  it("is a usage error for anything that is not an origin", async () => {
    const refused = await runCli(["serve", "--memory", "--listen", "127.0.0.1:0", "--cors-origin", "https://app.example/path"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('"https://app.example/path" is not an origin');
    expect(refused.stderr).toContain("the origin is https://app.example");
  });
});
