import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { Remote } from "../../actors/remote.js";
import { routes } from "../../services/server.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import type { ContentStore } from "../../core/content-store.js";
import { toHex } from "../../core/hash.js";

/** The Connect code a call ended with, by name ("OK" for success), for tests that compare codes. */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "OK",
    (err: unknown) => Code[ConnectError.from(err).code],
  );
}

/**
 * Real services over Connect's in-memory transport, on memory stores the test can reach into. lie()
 * makes the CAS serve other bytes for an address, unchecked: what a broken or hostile store could do,
 * where the memory store would catch its own corruption first. label names the services in errors.
 */
export function memoryWorld(label?: string) {
  const content = new MemoryContentStore();
  const names = new MemoryNameStore();
  const lies = new Map<string, Uint8Array>();
  const lying: ContentStore = {
    putMany: (blocks) => content.putMany(blocks),
    getMany: async (addresses) => Promise.all(addresses.map(async (a) => lies.get(toHex(a)) ?? (await content.getMany([a]))[0])),
    has: (address) => content.has(address),
    close: () => content.close(),
  };
  const lie = (address: Uint8Array, bytes: Uint8Array) => void lies.set(toHex(address), bytes);
  const transport = createRouterTransport(routes({ content: lying, names }));
  const [casUrl, nsUrl] = label ? [`memory://${label}`, `memory://${label}`] : ["memory://cas", "memory://ns"];
  const remote = () => new Remote({ casUrl, nsUrl, casTransport: transport, nsTransport: transport });
  return { content, names, remote, lie };
}
