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
