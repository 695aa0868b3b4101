import { afterEach, describe, expect, it } from "vitest";
import { appendFile, cp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cleanup, lines, parseJsonl, runCli, startServer, tempDir } from "../helpers/processes.js";
import { deadPid } from "../stores/temp.js";

// The user's own files, through real processes: a verb cuts or removes only what it wrote itself.
afterEach(cleanup);

describe("receive --out cuts only its own lines", () => {
  it("refuses, cutting nothing, when FILE holds past its checkpoint another name's lines or a line added by hand; its own unsaved lines it still cuts and delivers again", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    for (const [name, count] of [["alice", 30], ["chat", 5]] as const) {
      const sent = await runCli(["send", "--unsigned", "--name", name, "--server", server.url, "--data", join(dir, name)], { stdin: lines(count, name) });
      expect(sent.code, sent.stderr).toBe(0);
    }
    const out = join(dir, "lines.jsonl");
    const state = join(dir, "bob");
    const receive = (name: string) => runCli(["receive", "--unsigned", "--name", name, "--server", server.url, "--state", state, "--out", out]);

    expect((await receive("alice")).code).toBe(0);
    // A second name into the same file: its lines follow alice's, past what alice's checkpoint recorded.
    expect((await receive("chat")).code).toBe(0);
    const both = await readFile(out);
    expect(parseJsonl<{ body: string }>(both.toString()).map((line) => line.body)).toEqual([...lines(30, "alice").trim().split("\n"), ...lines(5, "chat").trim().split("\n")]);

    const again = await receive("alice");
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("CONFLICT");
    expect(again.stderr).toContain("are not lines this receiver wrote");
    expect(again.stderr).toContain("Nothing was cut");
    expect(await readFile(out)).toEqual(both);
    // chat's own checkpoint still matches the file: it reads on.
    const chat = await receive("chat");
    expect(chat.code, chat.stderr).toBe(0);
    expect(await readFile(out)).toEqual(both);

    // A line added by hand past the last checkpoint is not chat's to cut either.
    await appendFile(out, "a note of the user's\n");
    const noted = await readFile(out);
    const afterNote = await receive("chat");
    expect(afterNote.code).toBe(1);
    expect(afterNote.stderr).toContain("a line that is not a delivery line");
    expect(await readFile(out)).toEqual(noted);

    // Lines a crash left past chat's checkpoint are chat's own: cut, and delivered again.
    await writeFile(out, both);
    const saved = join(dir, "bob-saved");
    await cp(state, saved, { recursive: true });
    const more = await runCli(["send", "--unsigned", "--name", "chat", "--server", server.url, "--data", join(dir, "chat")], { stdin: lines(3, "later") });
    expect(more.code, more.stderr).toBe(0);
    expect((await receive("chat")).code).toBe(0);
    // The checkpoint as it was before that run: as if it had been killed before its save.
    await rm(state, { recursive: true });
    await cp(saved, state, { recursive: true });
    const redelivered = await receive("chat");
    expect(redelivered.code, redelivered.stderr).toBe(0);
    expect(redelivered.stderr).toContain("lines written after the last checkpoint, delivered again now");
    const final = parseJsonl<{ seq: number; body: string }>(await readFile(out, "utf8"));
    expect(final.slice(30).map((line) => `${line.seq} ${line.body}`)).toEqual(["0 chat 0", "1 chat 1", "2 chat 2", "3 chat 3", "4 chat 4", "5 later 0", "6 later 1", "7 later 2"]);
  });
});

describe("leftovers", () => {
  it("send and receive remove what a killed writer of theirs left in --data and --state, and keep every other .tmp file there", async () => {
    const dir = await tempDir();
    const server = await startServer(["--listen", "127.0.0.1:0", "--data", join(dir, "server")]);
    const data = join(dir, "alice");
    const state = join(dir, "bob");
    expect((await runCli(["send", "--unsigned", "--name", "alice", "--server", server.url, "--data", data], { stdin: lines(3) })).code).toBe(0);
    expect((await runCli(["receive", "--unsigned", "--name", "alice", "--server", server.url, "--state", state])).code).toBe(0);
    const users = [join(data, "notes.tmp"), join(data, "published", "keep.tmp"), join(state, "draft.tmp")];
    const killed = [join(data, `log.idx.${deadPid()}-00ff.tmp`), join(state, `alice.${deadPid()}-0a0b.tmp`)];
    for (const path of [...users, ...killed]) await writeFile(path, "x");

    const send = await runCli(["send", "--unsigned", "--name", "alice", "--server", server.url, "--data", data], { stdin: lines(2, "more") });
    expect(send.code, send.stderr).toBe(0);
    const receive = await runCli(["receive", "--unsigned", "--name", "alice", "--server", server.url, "--state", state]);
    expect(receive.code, receive.stderr).toBe(0);
    expect(parseJsonl(receive.stdout)).toHaveLength(2);
    for (const path of users) expect(await readFile(path, "utf8"), path).toBe("x");
    const left = [...(await readdir(data)), ...(await readdir(state))];
    for (const path of killed) expect(left).not.toContain(path.split("/").pop());
  });
});

describe("an empty directory path", () => {
  it("is a usage error naming the flag, for every verb that takes one (it was INTERNAL: mkdir '', or named a parameter no flag has)", async () => {
    const runs: [string[], string][] = [
      [["send", "--unsigned", "--name", "n", "--server", "http://127.0.0.1:1", "--data", ""], "--data <dir>"],
      [["status", "--data", ""], "--data <dir>"],
      [["inspect", "log", "--data", ""], "--data <dir>"],
      [["repair", "--data", ""], "--data <dir>"],
      [["receive", "--unsigned", "--name", "n", "--server", "http://127.0.0.1:1", "--state", ""], "--state <dir>"],
      [["gc", "--data", "", "--dry-run"], "--data <dir>"],
      [["serve", "--data", "", "--listen", "127.0.0.1:0"], "--data <dir>"],
    ];
    for (const [args, flag] of runs) {
      const run = await runCli(args, { stdin: "" });
      expect(run.code, `${args.join(" ")}: ${run.stderr}`).toBe(2);
      expect(run.stderr, args.join(" ")).toContain(`USAGE: option '${flag}' argument '' is invalid. expected the path of a directory, got ""`);
    }
  });
});
