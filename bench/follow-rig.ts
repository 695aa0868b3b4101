/**
 * The setup bench/follow-latency.bench.ts and bench/follow-trace.ts share: a real `serve`, a sender in
 * this process with one message published, and a real `receive --follow` process (poll interval 60 s,
 * so that pushed heads wake it) that has printed that message.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Remote } from "../actors/remote.js";
import { Sender } from "../actors/sender.js";
import type { EmbedMode } from "../core/page.js";
import { FileLocalLog } from "../stores/file/local-log.js";
import { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
import { GROUP, MAIN, startServer, stopChild, type ServerHandle } from "./harness.js";

export interface FollowRig {
  server: ServerHandle;
  sender: Sender;
  receiver: ChildProcess;
  /**
   * The follower's next line and when this process read it (process.hrtime.bigint(), taken as the line
   * came: a pushed head can print it before the publish has returned); fails after 10 s. Ask before
   * the message is sent.
   */
  nextLine(what: string): Promise<{ line: string; at: bigint }>;
  /** Appends and publishes one message: when it started, was appended and was published (process.hrtime.bigint()). */
  send(body: string): Promise<{ start: bigint; appended: bigint; published: bigint }>;
  close(): Promise<void>;
}

/** Under root; nodeArgs(side) are Node flags for the "server" and "receiver" processes (profiling, say). */
export async function startFollowRig(root: string, embed: EmbedMode, nodeArgs: (side: "server" | "receiver") => string[] = () => []): Promise<FollowRig> {
  const server = await startServer(root, [], nodeArgs("server"));
  const remote = new Remote({ casUrl: server.url, nsUrl: server.url });
  const log = await FileLocalLog.open(join(root, "alice"));
  const sender = new Sender({ name: "follow", log, published: new MemoryCheckpointStore(), remote, embed });
  await sender.append([new TextEncoder().encode("start")], GROUP);
  await sender.publish();
  const receiver = spawn(
    process.execPath,
    [...nodeArgs("receiver"), MAIN, "receive", "--unsigned", "--follow", "--interval", "60000", "--name", "follow", "--server", server.url, "--state", join(root, "bob")],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let arrived: ((read: { line: string; at: bigint }) => void) | undefined;
  createInterface({ input: receiver.stdout! }).on("line", (line) => arrived?.({ line, at: process.hrtime.bigint() }));
  const nextLine = (what: string) =>
    Promise.race([
      new Promise<{ line: string; at: bigint }>((ok) => (arrived = ok)),
      new Promise<never>((_, fail) => setTimeout(() => fail(new Error(`${what} did not arrive in 10 s`)), 10_000).unref()),
    ]);
  // The follower is ready once it has printed the first message.
  await new Promise((ok) => (arrived = ok));
  return {
    server,
    sender,
    receiver,
    nextLine,
    async send(body) {
      const start = process.hrtime.bigint();
      await sender.append([new TextEncoder().encode(body)], GROUP);
      const appended = process.hrtime.bigint();
      await sender.publish();
      return { start, appended, published: process.hrtime.bigint() };
    },
    async close() {
      await stopChild(receiver);
      await server.stop();
      remote.close();
      await log.close();
    },
  };
}
