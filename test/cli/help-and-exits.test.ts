import { execFile } from "node:child_process";
import { chmod, mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verbs } from "../../cli/verbs.js";
import { snapshot } from "../helpers/files.js";
import { cleanup, parseJsonl, runCli, startServer, stop, tempDir, type Server } from "../helpers/processes.js";

const exec = promisify(execFile);

afterAll(cleanup);

describe("cli - help text (issue 12 §6)", () => {
  it("shows durations as 90d, 1m and 1h, and redact's whole output", async () => {
    const send = await runCli(["send", "--help"], { env: { COLUMNS: "300" } });
    expect(send.stdout).toContain("(default: 90d)");
    expect(send.stdout).toContain("(default: 1m)");
    expect(send.stdout).not.toContain("7776000000");
    expect((await runCli(["gc", "--help"], { env: { COLUMNS: "300" } })).stdout).toContain("(default: 1h)");
    expect((await runCli(["redact", "--help"])).stdout).toContain('"redactions":R');
  });

  it("breaks no description mid-sentence: wide enough, every paragraph is one line", async () => {
    const helps: string[][] = [...Object.keys(verbs).map((verb) => [verb, "--help"]), ["key", "gen", "--help"], ["key", "name", "--help"], ["inspect", "chain", "--help"]];
    for (const args of helps) {
      const help = await runCli(args, { env: { COLUMNS: "2000" } });
      expect(help.code, args.join(" ")).toBe(0);
      const description = help.stdout.split("\n").slice(1);
      const end = description.findIndex((line) => /^(Options|Arguments|Commands):/.test(line));
      const paragraphs = description.slice(0, end).filter((line) => line.trim().length > 0 && !line.startsWith("  "));
      // A line of a paragraph that goes on on the next line is a hard-coded break.
      for (const line of paragraphs.slice(0, -1)) expect(line, `${args.join(" ")}: "${line}"`).toMatch(/[.:)}]$/);
    }
  });

  it("lists every verb once, with the summary the verb itself exports, and the environment variables", async () => {
    const help = await runCli(["--help"]);
    expect(help.code).toBe(0);
    for (const [verb, load] of Object.entries(verbs)) expect(help.stdout).toMatch(new RegExp(`^  ${verb} +${(await load()).summary.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "m"));
    const listed = help.stdout.slice(help.stdout.indexOf("Verbs:"), help.stdout.indexOf("Environment")).split("\n").filter((line) => line.startsWith("  "));
    expect(listed.length).toBe(Object.keys(verbs).length);
    for (const variable of ["REMOTELOG_SERVER", "REMOTELOG_KEY", "REMOTELOG_DATA", "REMOTELOG_STATE"]) expect(help.stdout).toContain(variable);
    expect((await runCli(["send", "--help"])).stdout).toContain("env: REMOTELOG_KEY");
  });

  it("--help lists every REMOTELOG_ variable the CLI's code reads, each once, with the flag it stands for, and no other", async () => {
    // Every name in the sources the CLI is built from (tests and scripts set theirs; they are not read here).
    const read = new Set<string>();
    for (const top of ["cli", "lib", "core", "stores", "services", "actors", "backup"]) {
      for (const file of await readdir(top, { recursive: true })) {
        if (!file.endsWith(".ts") || file.endsWith(".test.ts")) continue;
        for (const match of (await readFile(join(top, file), "utf8")).matchAll(/REMOTELOG_[A-Z0-9_]+/g)) read.add(match[0]);
      }
    }
    expect(read.size).toBeGreaterThan(5);
    const help = await runCli(["--help"]);
    expect(help.code).toBe(0);
    const section = help.stdout.slice(help.stdout.indexOf("Environment"), help.stdout.indexOf("Exit codes"));
    const listed = [...section.matchAll(/^ {2}(REMOTELOG_[A-Z0-9_]+) /gm)].map((match) => match[1]);
    // It listed five, leaving out REMOTELOG_CA, REMOTELOG_TOKEN_FILE, REMOTELOG_ADMIN_TOKEN_FILE and REMOTELOG_WRITE_CODE_CACHE.
    expect([...read].filter((variable) => !listed.includes(variable))).toEqual([]);
    expect(listed.filter((variable) => !read.has(variable))).toEqual([]);
    expect(new Set(listed).size).toBe(listed.length);
    expect(section).toMatch(/^ {2}REMOTELOG_CA +--ca <file> of .*\bsend\b/m);
    expect(section).toMatch(/^ {2}REMOTELOG_ADMIN_TOKEN_FILE +--admin-token-file <file> of gc$/m);
  });

  it("has --version", async () => {
    const { version } = JSON.parse(await readFile("package.json", "utf8")) as { version: string };
    expect(await runCli(["--version"])).toMatchObject({ code: 0, stdout: `remotelog ${version}\n` });
  });
});

describe("cli - exit codes and messages (issue 12 §7)", () => {
  let server: Server;
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
    server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
  });

  it("serve: a bad --admin-listen names --admin-listen, and a token with a space in it (never a bearer token) is refused at start", async () => {
    const admin = await runCli(["serve", "--memory", "--listen", "127.0.0.1:0", "--admin-listen", "admin.sock"]);
    expect(admin.code).toBe(2);
    // The old message named --listen.
    expect(admin.stderr).toContain('--admin-listen takes HOST:PORT (such as 127.0.0.1:7420) or a Unix socket\'s path (with a /, such as ./admin.sock), not "admin.sock"');
    const tokens = join(dir, "write.tokens");
    await writeFile(tokens, "my secret token\n", { mode: 0o600 });
    // The old server took it, then refused every write that carried it.
    const spaced = await runCli(["serve", "--memory", "--listen", "127.0.0.1:0", "--write-token-file", tokens]);
    expect(spaced.code).toBe(2);
    expect(spaced.stderr).toContain(`--write-token-file ${tokens}: token 1 holds whitespace`);
  });

  it("token files open to group or others are refused, as key files are, by serve and by the clients that send them", async () => {
    const tokens = join(dir, "open.tokens");
    await writeFile(tokens, "writer-token\n", { mode: 0o644 });
    await chmod(tokens, 0o644);
    // The old server took world-readable write and admin tokens without a word, and so did gc and send.
    for (const flag of ["--write-token-file", "--admin-token-file"]) {
      const served = await runCli(["serve", "--memory", "--listen", "127.0.0.1:0", flag, tokens]);
      expect(served.code, flag).toBe(1);
      expect(served.stderr).toContain(`PERMISSION_DENIED: token file ${tokens} is open to group or others (mode 0644); run: chmod 600 ${tokens}`);
    }
    const gc = await runCli(["gc", "--server", server.url, "--admin-token-file", tokens]);
    expect(gc.code).toBe(1);
    expect(gc.stderr).toContain(`PERMISSION_DENIED: token file ${tokens} is open to group or others`);
    const sent = await runCli(["send", "--unsigned", "--name", "t", "--server", server.url, "--data", join(dir, "t"), "--token-file", tokens], { stdin: "hi\n" });
    expect(sent.code).toBe(1);
    expect(sent.stderr).toContain(`PERMISSION_DENIED: token file ${tokens} is open to group or others`);
    await chmod(tokens, 0o600);
    const served = await startServer(["--memory", "--listen", "127.0.0.1:0", "--write-token-file", tokens]);
    const closed = await runCli(["send", "--unsigned", "--name", "t", "--server", served.url, "--data", join(dir, "t"), "--token-file", tokens], { stdin: "hi\n" });
    expect(closed.code, closed.stderr).toBe(0);
    await stop(served.process);
  });

  it("serve and send refuse each other's data directory; a data directory serve may not write is PERMISSION_DENIED; an admin socket's missing directory is NOT_FOUND", async () => {
    // The old code took either and added its own files beside the other's.
    const alice = join(dir, "mixed-alice");
    expect((await runCli(["send", "--unsigned", "--name", "mixed", "--server", server.url, "--data", alice], { stdin: "hi\n" })).code).toBe(0);
    const served = await runCli(["serve", "--listen", "127.0.0.1:0", "--data", alice]);
    expect(served.code).toBe(2);
    expect(served.stderr).toContain(`--data ${alice} holds a sender's local log (log.bin); serve keeps blocks and names in a --data directory of its own`);
    expect((await readdir(alice)).sort()).toEqual(["log.bin", "owner.json", "published"]);
    const serverData = join(dir, "server");
    const sent = await runCli(["send", "--unsigned", "--name", "mixed", "--server", server.url, "--data", serverData], { stdin: "hi\n" });
    expect(sent.code).toBe(1);
    expect(sent.stderr).toContain(`INVALID_ARGUMENT: ${serverData} is the data directory of a \`remotelog serve\``);
    expect(await readdir(serverData)).not.toContain("log.bin");

    // A directory this process may not write: as root, the CLI runs as nobody; otherwise the directory is read-only.
    const locked = join(dir, "locked");
    await mkdir(locked, { mode: 0o755 });
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    if (process.getuid?.() === 0) await chmod(dir, 0o755);
    else await chmod(locked, 0o555);
    const denied = await runCli(["serve", "--listen", "127.0.0.1:0", "--data", join(locked, "data")], asNobody);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/PERMISSION_DENIED: cannot create directory .*locked\/data.*: EACCES/);
    await chmod(locked, 0o755);

    const socket = await runCli(["serve", "--listen", "127.0.0.1:0", "--memory", "--admin-listen", join(dir, "no-such-dir", "admin.sock")]);
    expect(socket.code).toBe(1);
    expect(socket.stderr).toContain(`NOT_FOUND: cannot write the --admin-listen socket ${join(dir, "no-such-dir", "admin.sock")}: its directory ${join(dir, "no-such-dir")} does not exist`);
  });

  it("a server that is not HTTP/2 (an HTTP/1.1 one on a mistyped port) is UNAVAILABLE saying so, on every retry, never a crash", async () => {
    const http1 = createServer((_request, response) => response.end("hello"));
    await new Promise<void>((resolve) => http1.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(http1.address() as AddressInfo).port}`;
    try {
      // The old client's second call on the connection died of an unhandled 'error' event, stack and all.
      for (const args of [
        ["receive", "--follow", "--unsigned", "--name", "x", "--server", url],
        ["cat", "x", "--unsigned", "--server", url],
      ]) {
        const run = await runCli(args);
        expect(run.code, args[0]).toBe(1);
        expect(run.stderr).toContain("the answer is not HTTP/2 (is this a remotelog server, or a proxy without h2c?)");
        expect(run.stderr).not.toContain("Unhandled 'error' event");
        expect(run.stderr).not.toMatch(/^\s+at /m);
      }
    } finally {
      http1.closeAllConnections();
      await new Promise((resolve) => http1.close(resolve));
    }
  });

  it("a server URL with a wrong path (no remotelog service there: HTTP 404) is INVALID_ARGUMENT saying so, not INTERNAL", async () => {
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    try {
      const url = `${server.url}/some/prefix`;
      for (const args of [
        ["receive", "--unsigned", "--name", "x", "--server", url],
        ["send", "--unsigned", "--name", "x", "--server", url, "--data", join(await tempDir(), "alice")],
      ]) {
        const run = await runCli(args, { stdin: "hello\n" });
        expect(run.code, args[0]).toBe(1);
        // It was "INTERNAL: … HTTP 404", which the README calls a bug.
        expect(run.stderr, args[0]).toMatch(/INVALID_ARGUMENT: .*\/some\/prefix.*: no such service at this URL \(HTTP 404\): is it a remotelog server's URL, with the right path\?/);
        expect(run.stderr).not.toContain("INTERNAL");
      }
    } finally {
      await stop(server.process);
    }
  });

  it("inspect and key with no subcommand exit 2; commander's errors carry USAGE:; a bad --server names --server", async () => {
    for (const verb of ["inspect", "key"]) {
      const bare = await runCli([verb]);
      expect(bare.code, verb).toBe(2);
      expect(bare.stderr).toContain("Commands:");
    }
    const typo = await runCli(["send", "--data", join(dir, "x"), "--nmae", "chat"]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/^remotelog send: USAGE: unknown option '--nmae'/);
    const noScheme = await runCli(["receive", "--unsigned", "--name", "chat", "--server", "127.0.0.1:7420"]);
    expect(noScheme.code).toBe(2);
    expect(noScheme.stderr).toContain('--server takes an http:// or https:// URL, not "127.0.0.1:7420" (try http://127.0.0.1:7420)');
  });

  it("gc --server notaurl is the usage error receive --server notaurl is, naming --server; a unix: socket still goes through", async () => {
    const receive = await runCli(["receive", "--unsigned", "--name", "chat", "--server", "notaurl"]);
    expect(receive.code).toBe(2);
    expect(receive.stderr).toBe('remotelog: INVALID_ARGUMENT: --server takes an http:// or https:// URL, not "notaurl"\n');
    // gc said "INTERNAL: GcService notaurl Collect: Invalid URL", exit 1, and for ftp://x 'Protocol "ftp:" not supported'.
    for (const [url, hint] of [["notaurl", ""], ["ftp://x", ""], ["unix:", ""], ["127.0.0.1:7421", " (try http://127.0.0.1:7421)"]]) {
      for (const args of [["gc", "--server", url], ["gc", "--dry-run"]]) {
        const gc = await runCli(args, { env: args.length === 2 ? { REMOTELOG_SERVER: url } : {} });
        expect(gc.stderr, args.join(" ")).toBe(`remotelog: INVALID_ARGUMENT: --server takes an http:// or https:// URL, or unix:PATH (an admin socket), not ${JSON.stringify(url)}${hint}\n`);
        expect(gc.code, args.join(" ")).toBe(2);
      }
    }
    // A unix: path is an admin socket's: checked past the URL, it fails as the connection does (no socket there).
    const socket = await runCli(["gc", "--server", `unix:${join(dir, "no-admin.sock")}`]);
    expect(socket.code).toBe(1);
    expect(socket.stderr).not.toContain("--server takes");
  });

  it("inspect chain gives the head page's address; receive of a backup head says so and suggests restore", async () => {
    const data = join(dir, "alice");
    expect((await runCli(["send", "--unsigned", "--name", "alice", "--server", server.url, "--data", data], { stdin: "one\ntwo\n" })).code).toBe(0);
    const chain = JSON.parse((await runCli(["inspect", "chain", "--name", "alice", "--server", server.url])).stdout);
    const status = JSON.parse((await runCli(["status", "--data", data, "--name", "alice", "--server", server.url, "--json"])).stdout);
    expect(chain.pages[0].address).toBe(status.head.address);
    expect(status).toMatchObject({ name: "alice", messages: 2, published: 2, pending: 0, head: { version: 1, messages: 2 } });
    const backup = await runCli(["backup", "--from-dir", data, "--to", server.url, "--head-name", "alice-backup"]);
    expect(backup.code, backup.stderr).toBe(0);
    const received = await runCli(["receive", "--unsigned", "--name", "alice-backup", "--server", server.url]);
    expect(received.code).toBe(1);
    expect(received.stderr).toContain('name "alice-backup" holds a backup head, not a log');
    expect(received.stderr).toContain("remotelog restore");
    // mirror copies logs: the old one said DATA_LOSS (the head "is not a vac.cas.RemoteLog page"), though nothing was damaged.
    const other = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const mirrored = await runCli(["mirror", "--unsigned", "--name", "alice-backup", "--server", server.url, "--to", other.url]);
    expect(mirrored.code).toBe(1);
    expect(mirrored.stderr).toContain('INVALID_ARGUMENT: name "alice-backup" holds a backup head, not a log');
  });

  it("gc: --grace 0s, REMOTELOG_SERVER, --dry-run counts the bytes a run removes, and a server without NS is said", async () => {
    // Blocks no name reaches: a backup's packs, loaded from a CAR with no head name.
    expect((await runCli(["send", "--unsigned", "--name", "g", "--server", server.url, "--data", join(dir, "g")], { stdin: "first\nsecond\n" })).code).toBe(0);
    expect((await runCli(["backup", "--from-dir", join(dir, "g"), "--to", join(dir, "g-backup")])).code).toBe(0);
    expect((await runCli(["export", "--car", join(dir, "g.car"), "--from", join(dir, "g-backup")])).code).toBe(0);
    expect((await runCli(["import", "--car", join(dir, "g.car"), "--to", server.url, "--unnamed"])).code).toBe(0);
    // gc is for the operator: on the admin listener, which a server of its own on the same data cannot
    // share with the running one, so this one is stopped and served again with it (issue 11).
    await stop(server.process);
    server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server"), "--admin-listen", "127.0.0.1:0", "--gc-grace", "0s"]);
    const env = { REMOTELOG_SERVER: server.admin! };
    const dry = await runCli(["gc", "--grace", "0s", "--dry-run", "--json"], { env });
    expect(dry.code, dry.stderr).toBe(0);
    const wouldRemove = JSON.parse(dry.stdout);
    expect(wouldRemove.removedBlocks).toBeGreaterThan(0);
    const run = await runCli(["gc", "--grace", "0s", "--json"], { env });
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ removedBlocks: wouldRemove.removedBlocks, freedBytes: wouldRemove.freedBytes });
    expect(wouldRemove.freedBytes).toBeGreaterThan(0);
    const casOnly = await startServer(["--listen", "127.0.0.1:0", "--only", "cas", "--memory"]);
    const refused = await runCli(["gc", "--server", casOnly.url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("has no NS");
    await stop(casOnly.process);
  });

  it("mirror reports only the messages it copied", async () => {
    const target = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const data = join(dir, "m");
    const send = (text: string) => runCli(["send", "--unsigned", "--name", "m", "--server", server.url, "--data", data, "--page-size", "4"], { stdin: text });
    expect((await send("a\nb\n")).code).toBe(0);
    const mirror = () => runCli(["mirror", "--unsigned", "--name", "m", "--server", server.url, "--to", target.url]);
    expect(parseJsonl((await mirror()).stdout)).toEqual([expect.objectContaining({ messages: 2 })]);
    expect((await send("c\n")).code).toBe(0);
    // The head page holds a, b and c now; the copy had a and b.
    expect(parseJsonl((await mirror()).stdout)).toEqual([expect.objectContaining({ messages: 1 })]);
    await stop(target.process);
  });
});

describe("cli - backup --from-dir and --from-name (issue 12 §8)", () => {
  it("says which it guessed when --from could be either, and takes the explicit spellings as given", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    expect((await runCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", join(dir, "chat")], { stdin: "hi\n" })).code).toBe(0);
    const cwd = process.cwd();
    // `chat` is both a directory here and a name on the server.
    const guessed = await exec(process.execPath, [join(cwd, "dist/cli/main.js"), "backup", "--from", "chat", "--to", join(dir, "b1"), "--json"], { cwd: dir });
    expect(guessed.stderr).toContain("--from chat is taken as the directory ./chat, not the name \"chat\"; say --from-dir or --from-name");
    const byName = await exec(process.execPath, [join(cwd, "dist/cli/main.js"), "backup", "--from-name", "chat", "--unsigned", "--server", server.url, "--to", join(dir, "b2"), "--json"], { cwd: dir });
    expect(byName.stderr).toBe("");
    const byDir = await exec(process.execPath, [join(cwd, "dist/cli/main.js"), "backup", "--from-dir", "chat", "--to", join(dir, "b3"), "--json"], { cwd: dir });
    expect(byDir.stderr).toBe("");
    expect(JSON.parse(byDir.stdout).head).toBe(JSON.parse(guessed.stdout).head);
    const both = await runCli(["backup", "--from-dir", "x", "--from-name", "y", "--to", join(dir, "b4")]);
    expect(both.code).toBe(2);
  });
});

describe("cli - backup into the local log it backs up", () => {
  it("refuses --to the very directory of --from-dir (or --from), however spelled, as a usage error before writing anything", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const data = join(dir, "chat");
    try {
      expect((await runCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", data], { stdin: "hi\n" })).code).toBe(0);
    } finally {
      await stop(server.process);
    }
    await symlink(data, join(dir, "link"));
    const before = await snapshot(data);
    // The old backup wrote its pack and HEAD among log.bin and owner.json, exit 0.
    for (const [flag, to] of [["--from-dir", data], ["--from-dir", `${data}/.`], ["--from-dir", join(dir, "link")], ["--from-dir", relative(process.cwd(), data)], ["--from", `${dir}/missing/../chat`]]) {
      const backup = await runCli(["backup", flag, data, "--to", to]);
      expect(backup.stderr, to).toBe(`remotelog: INVALID_ARGUMENT: ${flag} ${data} and --to ${to} are the same directory: a backup goes to a directory of its own, not into the local log it backs up\n`);
      expect(backup.code, to).toBe(2);
      expect(backup.stdout).toBe("");
    }
    expect(await snapshot(data)).toEqual(before);
    // Another directory is backed up to as before.
    expect((await runCli(["backup", "--from-dir", data, "--to", join(dir, "backup")])).code).toBe(0);
  });
});

describe("cli - duplicate lines (issue 12 §9)", () => {
  it("send says a repeated line was skipped, and --timestamp-ms keeps both", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const send = (...extra: string[]) => runCli(["send", "--unsigned", "--name", "d", "--server", server.url, "--data", join(dir, "d"), ...extra], { stdin: "same\nsame\n" });
    const once = await send();
    expect(once.code).toBe(0);
    expect(once.stderr).toMatch(/appended 1; 1 skipped as duplicates .*--timestamp-ms keeps them apart/);
    const twice = await send("--timestamp-ms");
    expect(twice.stderr).toMatch(/appended 2,/);
    expect(parseJsonl((await runCli(["cat", "--unsigned", "d", "--format", "jsonl", "--server", server.url])).stdout).length).toBe(3);
  });
});

describe("cli - what a user of git, restic or kubo misses (issue 12 §10)", () => {
  it("completion prints bash, zsh and fish scripts naming every verb; bash's parses", async () => {
    for (const shell of ["bash", "zsh", "fish"]) {
      const script = await runCli(["completion", shell]);
      expect(script.code, shell).toBe(0);
      for (const verb of Object.keys(verbs)) expect(script.stdout, `${shell}: ${verb}`).toContain(verb);
      expect(script.stdout).toContain(shell === "fish" ? "-l retry-for" : "--retry-for");
    }
    const dir = await tempDir();
    const file = join(dir, "completion.bash");
    await import("node:fs/promises").then(async ({ writeFile }) => writeFile(file, (await runCli(["completion", "bash"])).stdout));
    const checked = await exec("bash", ["-c", `source ${file} && complete -p remotelog`]);
    expect(checked.stdout).toContain("_remotelog");
    expect((await runCli(["completion", "tcsh"])).code).toBe(2);
  });

  it("REMOTELOG_KEY, REMOTELOG_DATA and REMOTELOG_SERVER stand in for their flags", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    const key = join(dir, "k.key");
    const name = (await runCli(["key", "gen", "--out", key])).stdout.trim();
    const env = { REMOTELOG_KEY: key, REMOTELOG_DATA: join(dir, "data"), REMOTELOG_SERVER: server.url, REMOTELOG_STATE: join(dir, "state") };
    expect((await runCli(["send"], { stdin: "via env\n", env })).code).toBe(0);
    const received = await runCli(["receive", "--name", name, "--format", "text"], { env });
    expect(received.stdout).toMatch(/^0\t\S+\tvia env\n$/);
    expect(JSON.parse((await runCli(["status", "--json"], { env })).stdout)).toMatchObject({ name, messages: 1, published: 1, pending: 0 });
  });

  it("serve logs JSON lines when stderr is not a terminal, readable lines with --log-format pretty", async () => {
    const json = await startServer(["--listen", "127.0.0.1:0", "--memory"]);
    await stop(json.process);
    expect(() => JSON.parse(json.stderr().split("\n")[0])).not.toThrow();
    const pretty = await startServer(["--listen", "127.0.0.1:0", "--memory", "--log-format", "pretty"]);
    await stop(pretty.process);
    expect(pretty.stderr()).toMatch(/INFO.*listening|INFO \(remotelog/);
    expect(() => JSON.parse(pretty.stderr().split("\n")[0])).toThrow();
  });

  it("make build does nothing when nothing changed", async () => {
    // The global setup has just built dist/ and stamped it.
    const query = await exec("make", ["-q", "build"]).then(() => 0, (err: { code: number }) => err.code);
    expect(query).toBe(0);
  });
});
