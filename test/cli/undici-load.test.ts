import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, lines, runCli, startServer, tempDir } from "../helpers/processes.js";

afterEach(cleanup);

/*
 * Node loads its bundled undici (all of fetch) the first time anything touches Headers, fetch,
 * Request or Response: 15-40 ms of a short process. connect's ConnectError makes a Headers in its
 * constructor, and closing a Remote made one (actors/transport-node.ts close) at the end of every verb,
 * as did the NOT_FOUND answer to the first Fetch of a new name (actors/h2-unary.ts plainErrorAnswer).
 */
describe("cli - a verb that reads a name loads none of Node's bundled fetch", () => {
  it("send to a new name, receive and backup --from-name end without touching Headers, fetch, Request or Response", async () => {
    const dir = await tempDir();
    const touched = join(dir, "touched.txt");
    const hook = join(dir, "hook.mjs");
    // Records the first use of each global that loads undici, then lets it load as usual.
    await writeFile(
      hook,
      `import { appendFileSync } from "node:fs";\n` +
        `for (const name of ["Headers", "fetch", "Request", "Response"]) {\n` +
        `  const d = Object.getOwnPropertyDescriptor(globalThis, name);\n` +
        `  if (!d || !d.get) continue;\n` +
        `  Object.defineProperty(globalThis, name, { configurable: true, enumerable: d.enumerable, set: d.set, get() {\n` +
        `    appendFileSync(${JSON.stringify(touched)}, name + "\\n");\n` +
        `    Object.defineProperty(globalThis, name, d);\n` +
        `    return d.get.call(this);\n` +
        `  } });\n` +
        `}\n`,
    );
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    await writeFile(touched, "");
    const env = { NODE_OPTIONS: `--import ${hook}` };
    // The name is new: the NS answers send's first Fetch with NOT_FOUND, an error answer.
    const send = await runCli(["send", "--unsigned", "--name", "quiet", "--server", server.url, "--data", join(dir, "alice")], { stdin: lines(300), env });
    expect(send.code, send.stderr).toBe(0);
    expect(send.stderr).toContain("300 of 300 published");
    const receive = await runCli(["receive", "--unsigned", "--name", "quiet", "--server", server.url], { env });
    expect(receive.code, receive.stderr).toBe(0);
    expect(receive.stdout.trim().split("\n")).toHaveLength(300);
    const backup = await runCli(["backup", "--from-name", "quiet", "--unsigned", "--server", server.url, "--to", join(dir, "packs")], { env });
    expect(backup.code, backup.stderr).toBe(0);
    expect(await readFile(touched, "utf8")).toBe("");
  });
});
