import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { Remote } from "../../actors/remote.js";
import { routes } from "../../services/server.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";

/** The Connect code a call ended with, by name ("OK" for success), for tests that compare codes. */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "OK",
    (err: unknown) => Code[ConnectError.from(err).code],
  );
}

/** Real services over Connect's in-memory transport, on memory stores the test can reach into. */
export function memoryWorld() {
  const content = new MemoryContentStore();
  const names = new MemoryNameStore();
  const transport = createRouterTransport(routes({ content, names }));
  const remote = () => new Remote({ casUrl: "memory://cas", nsUrl: "memory://ns", casTransport: transport, nsTransport: transport });
  return { content, names, remote };
}
