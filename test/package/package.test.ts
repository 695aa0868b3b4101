import { execFile } from "node:child_process";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, expect, test } from "vitest";
import { cleanup, collect, startServer, tempDir } from "../helpers/processes.js";
import { spawn } from "node:child_process";

const run = promisify(execFile);

/** A program of the app: everything through the package's name, nothing by path. */
const APP = `
import { generateKey, keyName, mvdsId, openRemote, Receiver, Sender, toHex, verifyLog } from "remotelog";

const remote = openRemote(process.argv[2]);
const key = await generateKey();
const sender = await Sender.open({ remote, key });
await sender.send(["one", "two"]);
const receiver = await Receiver.open({ remote, name: keyName(key) });
const { messages } = await receiver.sync();
await sender.send(["three"]);
const stop = new AbortController();
const followed = [];
for await (const delivery of receiver.follow({ signal: stop.signal })) {
  followed.push(new TextDecoder().decode(delivery.message.body));
  stop.abort();
}
const report = await verifyLog(remote, keyName(key), { readData: true });
remote.close();
console.log(JSON.stringify({
  bodies: [...messages.map((d) => new TextDecoder().decode(d.message.body)), ...followed],
  idsMatch: messages.every((d) => toHex(mvdsId(d.message)) === toHex(d.id)),
  verified: report.ok,
}));
`;

/** The same calls, typed: the package's declarations must be found through its exports and be strict-clean. */
const TYPED = `
import { openRemote, Receiver, Sender, generateKey, keyName, type Delivery, type SendResult } from "remotelog";
import { openRemote as openRemoteInPage, type LogRemote } from "remotelog/browser";
const inPage: LogRemote = openRemoteInPage("http://127.0.0.1:1");
inPage.close();
const remote = openRemote("http://127.0.0.1:1");
const sender = await Sender.open({ remote, key: await generateKey() });
const sent: SendResult = await sender.send(["hi"]);
const receiver = await Receiver.open({ remote, name: keyName(await generateKey()) });
const first: Delivery | undefined = (await receiver.sync()).messages[0];
console.log(sent.published, first?.seq);
`;

/** A page's module, for a bundler: remotelog/browser through the package's exports, "browser" condition. */
const WEB = `
import { mvdsId, toHex } from "remotelog/browser";
const utf8 = (text) => new TextEncoder().encode(text);
console.log(toHex(mvdsId({ groupId: utf8("group"), timestamp: 1700000000n, body: utf8("hello") })));
`;

afterAll(cleanup);

test("package - npm pack, installed into a new project and imported by name, works against a real server", async () => {
  const dir = await tempDir();
  await run("npm", ["pack", "--pack-destination", dir, "--silent"], { cwd: resolve(".") });
  const tarball = (await readdir(dir)).find((file) => file.endsWith(".tgz"))!;
  const app = join(dir, "app");
  await mkdir(app);
  await writeFile(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  await writeFile(join(app, "app.mjs"), APP);
  await writeFile(join(app, "typed.ts"), TYPED);
  await writeFile(join(app, "web.mjs"), WEB);
  // From npm's cache where it can (npm ci filled it); the registry only for what is missing.
  await run("npm", ["install", join(dir, tarball), "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], { cwd: app, timeout: 90_000 });

  const tsc = [resolve("node_modules/typescript/bin/tsc"), "--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--skipLibCheck", "typed.ts"];
  const typecheck = await run(process.execPath, tsc, { cwd: app }).then(
    () => ({ code: 0, stdout: "" }),
    (err: { code?: unknown; stdout?: string }) => ({ code: err.code, stdout: err.stdout }),
  );
  expect(typecheck).toEqual({ code: 0, stdout: "" });

  // A bundler gets the prebuilt browser bundle, with nothing of Node in it (platform browser fails on any).
  await run(resolve("node_modules/.bin/esbuild"), ["web.mjs", "--bundle", "--platform=browser", "--format=esm", "--outfile=web.js", "--log-level=error"], { cwd: app });
  const web = await run(process.execPath, ["web.js"], { cwd: app });
  expect(web.stdout.trim()).toBe("1747c770d69647a18734abc6f05677cce231dd8c4d09b780a1afbe5d60a6220d");

  const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
  const child = spawn(process.execPath, ["app.mjs", server.url], { cwd: app, stdio: ["pipe", "pipe", "pipe"] });
  const result = await collect(child);
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  expect(JSON.parse(result.stdout)).toEqual({ bodies: ["one", "two", "three"], idsMatch: true, verified: true });
}, 120_000);
