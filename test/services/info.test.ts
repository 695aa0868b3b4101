import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { Remote } from "../../actors/remote.js";

describe("ServerInfoService - a real server tells clients its limits", () => {
  let full: Listening;
  let nsOnly: Listening;
  beforeAll(async () => {
    full = await listen({ host: "127.0.0.1", port: 0, routes: routes({ content: new MemoryContentStore(), names: new MemoryNameStore(), limits: { maxBlockBytes: 4096, maxBatchBlocks: 99 }, readMaxBytes: 1 << 20 }) });
    nsOnly = await listen({ host: "127.0.0.1", port: 0, routes: routes({ names: new MemoryNameStore() }) });
  });
  afterAll(async () => {
    await full?.close();
    await nsOnly?.close();
  });

  it("advertises the CAS's block and batch limits as configured", async () => {
    const remote = new Remote({ casUrl: full.url, nsUrl: full.url });
    try {
      expect(await remote.casLimits()).toEqual({ maxBlockBytes: 4096, maxBatchBlocks: 99, maxResponseBytes: 8 << 20 });
    } finally {
      remote.close();
    }
  });

  it("a server without a CAS advertises a block limit of 0", async () => {
    const remote = new Remote({ casUrl: nsOnly.url, nsUrl: nsOnly.url });
    try {
      expect((await remote.casLimits())?.maxBlockBytes).toBe(0);
    } finally {
      remote.close();
    }
  });
});
