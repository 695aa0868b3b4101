import net from "node:net";
import { describe, expect, it } from "vitest";
import { ErrorCodes, isRemoteLogError } from "../../core/errors.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { Remote } from "../../actors/remote.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { remoteContract } from "../contract/remote.contract.js";

// Remote against a real server on loopback: Connect over HTTP/2, the services over memory stores.
remoteContract(
  "Remote over Connect, a real listen() server",
  async () => {
    const server: Listening = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore() }) });
    return { remote: new Remote({ casUrl: server.url, nsUrl: server.url }), close: () => server.close() };
  },
  { watches: true },
);

describe("Remote - a connection the server resets is UNAVAILABLE, not a lost race", () => {
  it("maps connect-node's Aborted for ECONNRESET to UNAVAILABLE, and keeps a server's own Aborted as ABORTED", async () => {
    // A peer that takes the connection and resets it: what a client sees when a server is SIGKILLed mid-call.
    const resetting = net.createServer((socket) => socket.once("data", () => socket.resetAndDestroy()));
    await new Promise<void>((ok) => resetting.listen(0, "127.0.0.1", ok));
    const url = `http://127.0.0.1:${(resetting.address() as net.AddressInfo).port}`;
    const reset = new Remote({ casUrl: url, nsUrl: url });
    const server: Listening = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore() }) });
    const real = new Remote({ casUrl: server.url, nsUrl: server.url });
    try {
      const failure = await reset.fetchName("any").then(() => undefined, (err: unknown) => err);
      expect(isRemoteLogError(failure, ErrorCodes.UNAVAILABLE), String(failure)).toBe(true);
      await real.updateName("n", new TextEncoder().encode("a"), 0n);
      const lost = await real.updateName("n", new TextEncoder().encode("b"), 0n).then(() => undefined, (err: unknown) => err);
      expect(isRemoteLogError(lost, ErrorCodes.ABORTED), String(lost)).toBe(true);
    } finally {
      reset.close();
      real.close();
      await server.close();
      await new Promise((ok) => resetting.close(ok));
    }
  });
});
