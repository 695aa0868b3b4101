import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";

/**
 * Integration, crash and CLI tests run the real `remotelog` binary (dist/cli/main.js), so it is
 * compiled once before any test starts, from the sources under test, and bundled as `make build` does
 * (the browser tests load dist/browser/remotelog.js, and serve's /explorer dist/web/explorer/).
 */
export default function setup(): void {
  // For a quick run of tests that start no process: REMOTELOG_SKIP_BUILD=1 npx vitest run test/core
  if (process.env.REMOTELOG_SKIP_BUILD) return;
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
  execFileSync(process.execPath, ["scripts/bundle-cli.mjs"], { stdio: "inherit" });
  execFileSync(process.execPath, ["scripts/bundle-browser.mjs"], { stdio: "inherit" });
  execFileSync(process.execPath, ["scripts/bundle-explorer.mjs"], { stdio: "inherit" });
  // The stamp `make build` goes by: the README test runs `make build`, which must then have nothing to do
  // (rebuilding dist/ under tests that are running it would be a race).
  writeFileSync("dist/.built", "");
}
