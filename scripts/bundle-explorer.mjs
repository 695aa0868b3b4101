/**
 * Builds the live log explorer's page (web/explorer/) into dist/web/explorer/, which `serve` serves at
 * /explorer: the page's script bundled with the library's browser entry by scripts/bundle-browser.mjs
 * (so that it too fails on any Node built-in) as explorer.js, and the HTML and CSS copied beside it.
 */
import { copyFile, mkdir } from "node:fs/promises";

const outdir = "dist/web/explorer";
await mkdir(outdir, { recursive: true });
process.env.BUNDLE_ENTRY = "web/explorer/main.ts";
process.env.BUNDLE_OUTDIR = outdir;
process.env.BUNDLE_NAME = "explorer";
await import("./bundle-browser.mjs");
for (const file of ["index.html", "explorer.css"]) await copyFile(`web/explorer/${file}`, `${outdir}/${file}`);
