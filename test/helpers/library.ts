import { join } from "node:path";
import { openRemote, Receiver, type LogRemote } from "../../lib/index.js";
import { startServer, stop, tempDir } from "./processes.js";

/** The bodies of an unsigned name's whole remote log, as text, read by a fresh library Receiver. */
export async function remoteBodies(remote: LogRemote, name: string): Promise<string[]> {
  const receiver = await Receiver.open({ remote, name, unsigned: true });
  try {
    return (await receiver.sync()).messages.map((delivery) => new TextDecoder().decode(delivery.message!.body));
  } finally {
    await receiver.close();
  }
}

/**
 * A real `serve` process (data in a fresh temporary directory), a library client of it, and a sender's
 * data directory beside it; shrink(limit) stops the server and starts it again on the same port and
 * data with `--max-block limit`, as an operator lowering the limit does.
 */
export async function shrinkingServer(): Promise<{ url: string; remote: ReturnType<typeof openRemote>; data: string; shrink(limit: number): Promise<void> }> {
  const dir = await tempDir();
  const serverData = join(dir, "server");
  const first = await startServer(["--listen", "127.0.0.1:0", "--data", serverData]);
  return {
    url: first.url,
    remote: openRemote(first.url),
    data: join(dir, "alice"),
    shrink: async (limit) => {
      await stop(first.process);
      await startServer(["--listen", `127.0.0.1:${first.port}`, "--data", serverData, "--max-block", String(limit)]);
    },
  };
}
