import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { CID } from "multiformats/cid";
import { create } from "kubo-rpc-client";
import { addressOf, addressText, cidOf, equalBytes } from "../../core/hash.js";
import { createNameRecord, generateNameKey, keyName, peerIdOfKeyName, verifyNameRecord } from "../../core/names.js";
import { KuboContentStore } from "../../stores/kubo/content-store.js";
import { IpnsNameStore } from "../../stores/ipns/name-store.js";
import { KuboApi } from "../../stores/kubo/kubo-api.js";
import { KuboRemote } from "../../actors/kubo-remote.js";
import { Sender } from "../../actors/sender.js";
import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { create as createMessage } from "@bufbuild/protobuf";
import { RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";
import { encodePage } from "../../core/page.js";
import { contentStoreContract } from "../contract/content-store.contract.js";
import { nameStoreContract } from "../contract/name-store.contract.js";
import { failure, text } from "../stores/temp.js";
import { startProxy, useIpfs } from "./ipfs-node.js";

// One node for the whole file: starting js-ipfs takes seconds. Each case writes fresh blocks and
// fresh keys, so cases do not see each other's data.
const ipfsNode = useIpfs();

const close = async (store: { close(): Promise<void> }) => store.close();

// js-ipfs on two cores answers a few hundred block requests a second, so its bulk case is smaller;
// a real Kubo (KUBO_API) gets the full 10,000.
contentStoreContract("kubo", async () => KuboContentStore.open({ url: ipfsNode().url }), close, { bulkBlocks: process.env.KUBO_API ? 10_000 : 1_000 });
nameStoreContract("ipns", async () => IpnsNameStore.open({ url: ipfsNode().url }), close, { signedOnly: true });

/** A proxy to the node that flips a bit of "corrupt me" in the bodies of one command on their way in. */
function corruptingProxy(corrupted: string) {
  return startProxy(ipfsNode().url, {
    request: (command, body) => {
      if (command !== corrupted) return body;
      const altered = Buffer.from(body);
      const at = altered.indexOf("corrupt me");
      if (at >= 0) altered[at] ^= 0x20;
      return altered;
    },
  });
}

/** A port on loopback that nothing listens on: a node that is down. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("kubo content store - against a real IPFS RPC API", () => {
  it("stores raw CIDv1 sha2-256 blocks, pinned, at our addresses", async () => {
    const store = await KuboContentStore.open({ url: ipfsNode().url });
    try {
      const block = text(`pinned ${Date.now()} ${Math.random()}`);
      const [address] = await store.putMany([block]);
      const cid = CID.decode(address);
      expect(cid.version).toBe(1);
      expect(cid.code).toBe(0x55);
      expect(cid.multihash.code).toBe(0x12);
      const pins = [];
      for await (const pin of create({ url: ipfsNode().url }).pin.ls({ paths: [cid] })) pins.push(pin);
      expect(pins.map((pin) => pin.cid.toString())).toEqual([cid.toString()]);
      expect(["recursive", "direct"]).toContain(pins[0].type);
    } finally {
      await store.close();
    }
  });

  it("a batch goes in as one dag import: every block stored, each pinned under the batch, none by a block put", async () => {
    const commands: string[] = [];
    const proxy = await startProxy(ipfsNode().url, { request: (command, body) => (commands.push(command), body) });
    const store = await KuboContentStore.open({ url: proxy.url });
    try {
      const blocks = Array.from({ length: 40 }, (_, i) => text(`batched ${i} ${Math.random()}`));
      const addresses = await store.putMany(blocks);
      expect(commands.filter((command) => command === "dag/import")).toHaveLength(1);
      expect(commands).not.toContain("block/put");
      expect(store.putPath).toBe("car");
      const ipfs = create({ url: ipfsNode().url });
      for (const [i, address] of addresses.entries()) {
        expect(equalBytes(await ipfs.block.get(CID.decode(address), { offline: true } as never), blocks[i])).toBe(true);
      }
      // Pinned: kept by the node's garbage collector, through the batch block's recursive pin.
      const pins = [];
      for await (const pin of ipfs.pin.ls({ paths: addresses.map((address) => CID.decode(address)) })) pins.push(pin);
      expect(pins.map((pin) => pin.cid.toString()).sort()).toEqual(addresses.map((address) => CID.decode(address).toString()).sort());
      // js-ipfs says "indirect through <the batch block>", Kubo "indirect".
      for (const pin of pins) expect(pin.type).toMatch(/^indirect/);
      expect((await store.getMany(addresses)).map((block) => block && text(new TextDecoder().decode(block)))).toEqual(blocks);
    } finally {
      await store.close();
      await proxy.close();
    }
  });

  it("a node without dag import (404 for the command) is detected once, and every block then goes in by block put, pinned", async () => {
    const commands: string[] = [];
    const proxy = await startProxy(ipfsNode().url, {
      request: (command, body) => (commands.push(command), body),
      // As Kubo answers a command it does not know; the proxy answers before its request hook sees it.
      answer: (command) => {
        if (command !== "dag/import") return undefined;
        commands.push(command);
        return { status: 404, body: "404 page not found" };
      },
    });
    const store = await KuboContentStore.open({ url: proxy.url, retryForMs: 0 });
    try {
      const first = Array.from({ length: 5 }, (_, i) => text(`fallback a${i} ${Math.random()}`));
      const second = Array.from({ length: 5 }, (_, i) => text(`fallback b${i} ${Math.random()}`));
      const addresses = [...(await store.putMany(first)), ...(await store.putMany(second))];
      expect(store.putPath).toBe("block");
      expect(commands.filter((command) => command === "dag/import")).toHaveLength(1);
      expect(commands.filter((command) => command === "block/put")).toHaveLength(10);
      const got = await store.getMany(addresses);
      expect(got.map((block) => block && new TextDecoder().decode(block))).toEqual([...first, ...second].map((block) => new TextDecoder().decode(block)));
      const pins = [];
      for await (const pin of create({ url: ipfsNode().url }).pin.ls({ paths: addresses.map((address) => CID.decode(address)) })) pins.push(pin);
      expect(pins).toHaveLength(10);
      for (const pin of pins) expect(["recursive", "direct"]).toContain(pin.type);
    } finally {
      await store.close();
      await proxy.close();
    }
  });

  it("a batch whose bytes were changed on the way in is DATA_LOSS when read, never returned", async () => {
    // js-ipfs takes a CAR's blocks at their word (Kubo checks each against its CID and refuses the import).
    const proxy = await corruptingProxy("dag/import");
    const store = await KuboContentStore.open({ url: proxy.url, retryForMs: 0 });
    try {
      const blocks = [text(`fine ${Math.random()}`), text(`corrupt me ${Math.random()}`)];
      const addresses = await store.putMany(blocks).catch((err) => {
        // A node that checks the CAR refuses the import: also never a block at the wrong address.
        expect(String(err)).toMatch(/INTERNAL/);
        return undefined;
      });
      if (addresses) {
        const err = await failure(store.getMany(addresses), "DATA_LOSS");
        expect(err.message).toContain(addressText(addresses[1]));
      }
    } finally {
      await store.close();
      await proxy.close();
    }
  });

  it("a missing block is undefined from getMany and false from has, at once", async () => {
    const store = await KuboContentStore.open({ url: ipfsNode().url });
    try {
      const missing = addressOf(text(`never stored ${Math.random()}`));
      // Offline lookups: the node does not go looking for it on the network (which would outlast the test's time).
      expect(await store.getMany([missing])).toEqual([undefined]);
      expect(await store.has(missing)).toBe(false);
    } finally {
      await store.close();
    }
  });

  it("a node that answers a put with another CID has the block refused as DATA_LOSS", async () => {
    // The proxy flips a byte of every block on its way in: the node stores and names other bytes.
    const proxy = await corruptingProxy("block/put");
    const store = await KuboContentStore.open({ url: proxy.url, retryForMs: 0 });
    try {
      const err = await failure(store.putMany([text("corrupt me, please")]), "DATA_LOSS");
      expect(err.message).toContain(proxy.url);
      expect(err.message).toContain(addressText(addressOf(text("corrupt me, please"))));
      expect(err.message).toMatch(/refused/);
    } finally {
      await store.close();
      await proxy.close();
    }
  });

  it("bytes that do not hash to the block asked for are DATA_LOSS, never returned", async () => {
    const good = await KuboContentStore.open({ url: ipfsNode().url });
    const block = text(`to be damaged ${Math.random()}`);
    const [address] = await good.putMany([block]);
    await good.close();
    const proxy = await startProxy(ipfsNode().url, {
      response: (command, body) => {
        if (command !== "block/get" || body.length === 0) return body;
        const altered = Buffer.from(body);
        altered[0] ^= 0xff;
        return altered;
      },
    });
    const store = await KuboContentStore.open({ url: proxy.url, retryForMs: 0 });
    try {
      const err = await failure(store.getMany([address]), "DATA_LOSS");
      expect(err.message).toContain(proxy.url);
      expect(err.message).toContain(addressText(address));
    } finally {
      await store.close();
      await proxy.close();
    }
  });

  it("the node's disk failing (no such file or directory) is INTERNAL naming it, never a missing block", async () => {
    const proxy = await startProxy(ipfsNode().url, {
      answer: (command) =>
        command === "block/get" || command === "block/stat"
          ? { status: 500, body: JSON.stringify({ Message: "open /data/ipfs/blocks/2Q/CIQA.data: no such file or directory", Code: 0, Type: "error" }) }
          : undefined,
    });
    const store = await KuboContentStore.open({ url: proxy.url, retryForMs: 0 });
    try {
      const address = addressOf(text(`on a failing disk ${Math.random()}`));
      const err = await failure(store.getMany([address]), "INTERNAL");
      expect(err.message).toMatch(/disk failed: .*no such file or directory/);
      await failure(store.has(address), "INTERNAL");
    } finally {
      await store.close();
      await proxy.close();
    }
  });

  it("a node that is down is retried with backoff, then UNAVAILABLE naming the URL", async () => {
    const url = `http://127.0.0.1:${await deadPort()}`;
    const retries: number[] = [];
    const err = await failure(KuboContentStore.open({ url, retryForMs: 1_500, onRetry: (_err, delay) => retries.push(delay) }), "UNAVAILABLE");
    expect(err.message).toContain(url);
    expect(err.message).toMatch(/gave up after/);
    expect(retries.length).toBeGreaterThanOrEqual(3);
    // Backoff: the waits grow.
    expect(retries[2]).toBeGreaterThan(retries[0]);
  });

  it("a node that answers too slowly is UNAVAILABLE naming the URL", async () => {
    // A listener that accepts and never answers.
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
    try {
      const api = new KuboApi({ url, timeoutMs: 300, retryForMs: 0 });
      const store = new KuboContentStore(api);
      const err = await failure(store.getMany([addressOf(text("slow"))]), "UNAVAILABLE");
      expect(err.message).toContain(url);
      expect(err.message).toMatch(/no answer within/);
      await store.close();
    } finally {
      silent.close();
    }
  });

  it("the node coming back while a call retries lets the call succeed", async () => {
    const proxyTarget = ipfsNode().url;
    let up = false;
    const proxy = await startProxy(proxyTarget, { down: () => !up });
    const store = new KuboContentStore(new KuboApi({ url: proxy.url, retryForMs: 10_000 }));
    try {
      setTimeout(() => (up = true), 400);
      const block = text(`after the outage ${Math.random()}`);
      const [address] = await store.putMany([block]);
      expect(equalBytes(address, addressOf(block))).toBe(true);
    } finally {
      await store.close();
      await proxy.close();
    }
  });
});

describe("kubo remote - the actors' view of a node, directly", () => {
  it("a missing block is NOT_FOUND naming it and the URL; a name without a record is undefined", async () => {
    const remote = new KuboRemote({ kuboApi: ipfsNode().url });
    try {
      const missing = addressOf(text(`absent ${Math.random()}`));
      const err = await failure(remote.getBlock(missing), "NOT_FOUND");
      expect(err.message).toContain(addressText(missing));
      expect(err.message).toContain(ipfsNode().url);
      await failure(remote.getBlocks([addressOf(text("x")), missing]), "NOT_FOUND");
      expect(await remote.fetchName(keyName(await generateNameKey()))).toBeUndefined();
    } finally {
      remote.close();
    }
  });

  it("updates pass the NS's checks before they reach the node", async () => {
    const remote = new KuboRemote({ kuboApi: ipfsNode().url });
    try {
      const key = await generateNameKey();
      const name = keyName(key);
      const page = text("a head");
      await remote.putBlocks([page]);
      await failure(remote.updateName(name, page, 0n), "PERMISSION_DENIED");
      await failure(remote.updateName("chat", page, 0n), "PERMISSION_DENIED");
      expect(await remote.updateName(name, page, 0n, await createNameRecord(key, page, 1n))).toBe(1n);
      // The conditional update: the name is at 1 now.
      await failure(remote.updateName(name, text("b"), 0n, await createNameRecord(key, text("b"), 2n)), "ABORTED");
      expect(await remote.fetchName(name)).toMatchObject({ content: page, version: 1n });
    } finally {
      remote.close();
    }
  });
});

describe("ipns name store - against a real IPFS RPC API", () => {
  /** Puts bytes under a name straight through the RPC API, as anyone who can reach the node could. */
  async function putRaw(name: string, value: Uint8Array): Promise<void> {
    for await (const _event of create({ url: ipfsNode().url }).routing.put(`/ipns/${peerIdOfKeyName(name)}`, value, { allowOffline: true })) {
      // drained
    }
  }

  it("publishes the sender's record as signed, and the page as a pinned raw block", async () => {
    const store = await IpnsNameStore.open({ url: ipfsNode().url });
    try {
      const key = await generateNameKey();
      const name = keyName(key);
      const page = text("head page");
      const record = await createNameRecord(key, page, 1n);
      expect(await store.put(name, page, { record, version: 1n })).toBe(1n);
      // What the node holds is the very record the sender signed: no key of ours signed anything.
      const values = [];
      for await (const event of create({ url: ipfsNode().url }).routing.get(`/ipns/${peerIdOfKeyName(name)}`)) if (event.name === "VALUE") values.push(event.value);
      expect(values.length).toBeGreaterThan(0);
      expect(equalBytes(values.at(-1)!, record)).toBe(true);
      const pins = [];
      for await (const pin of create({ url: ipfsNode().url }).pin.ls({ paths: [cidOf(page)] })) pins.push(pin);
      expect(pins).toHaveLength(1);
    } finally {
      await store.close();
    }
  });

  it.each(["can't replace a newer record with an older one", "can't replace a newer value with an older value"])(
    "a routing put the node refuses, as Kubo does a record no newer than the one it holds (%s), is ABORTED: a race lost to another writer, not INTERNAL",
    async (refusal) => {
      // Kubo's offline router and its DHT refuse so; js-ipfs keeps either record silently.
      const proxy = await startProxy(ipfsNode().url, {
        answer: (command) => (command === "routing/put" ? { status: 500, body: JSON.stringify({ Message: refusal, Code: 0, Type: "error" }) } : undefined),
      });
      const store = await IpnsNameStore.open({ url: proxy.url, retryForMs: 0 });
      try {
        const key = await generateNameKey();
        const page = text(`refused head ${Math.random()}`);
        const err = await failure(store.put(keyName(key), page, { record: await createNameRecord(key, page, 1n), version: 1n }), "ABORTED");
        expect(err.message).toContain("another writer");
        expect(err.message).toContain(refusal);
      } finally {
        await store.close();
        await proxy.close();
      }
    },
  );

  it("a send straight to the node whose name updates it refuses so (another device's record went in first) retries each on the name's head, and publishes", async () => {
    // Three refusals: as many as the API client's own tries of one command, which took them for the
    // node failing and gave up INTERNAL.
    let puts = 0;
    const proxy = await startProxy(ipfsNode().url, {
      answer: (command) =>
        command === "routing/put" && puts++ < 3
          ? { status: 500, body: JSON.stringify({ Message: "can't replace a newer record with an older one", Code: 0, Type: "error" }) }
          : undefined,
    });
    const remote = new KuboRemote({ kuboApi: proxy.url });
    try {
      const key = await generateNameKey();
      const sender = new Sender({ published: new MemoryCheckpointStore(), name: keyName(key), key, log: new MemoryLocalLog(), remote });
      await sender.append([text("one"), text("two")], text("g"), 1n);
      expect(await sender.publish()).toMatchObject({ published: 2, lostRaces: 3 });
      expect(puts).toBe(4);
    } finally {
      remote.close();
      await proxy.close();
    }
  });

  it("a publish unpins the head page it replaces, so pins do not grow; a page the new head links stays pinned", async () => {
    const node = create({ url: ipfsNode().url });
    const pinned = async (bytes: Uint8Array) => {
      try {
        for await (const _pin of node.pin.ls({ paths: [cidOf(bytes)] })) return true;
        return false;
      } catch (err) {
        if (/not pinned/i.test(String((err as Error).message))) return false;
        throw err;
      }
    };
    const store = await IpnsNameStore.open({ url: ipfsNode().url });
    try {
      const key = await generateNameKey();
      const name = keyName(key);
      const first = text(`first head ${Math.random()}`);
      const second = text(`second head ${Math.random()}`);
      // The third head links the second as its tail, as a head sealed into the chain would be.
      const third = encodePage(createMessage(RemoteLogSchema, { pair: [], tail: addressOf(second) }));
      await store.put(name, first, { record: await createNameRecord(key, first, 1n), version: 1n });
      expect(await pinned(first)).toBe(true);
      await store.put(name, second, { record: await createNameRecord(key, second, 2n), version: 2n });
      expect(await pinned(first)).toBe(false);
      expect(await pinned(second)).toBe(true);
      await store.put(name, third, { record: await createNameRecord(key, third, 3n), version: 3n });
      expect(await pinned(second)).toBe(true);
      expect(await pinned(third)).toBe(true);
      expect((await store.get(name))?.content).toEqual(third);
    } finally {
      await store.close();
    }
  });

  it.each(["car", "block"] as const)("two names whose heads are the same page: one moving on leaves the other's head pinned, through the node's garbage collection (heads put by %s)", async (put) => {
    const node = create({ url: ipfsNode().url });
    const blocks = await KuboContentStore.open({ url: ipfsNode().url, put });
    const store = new IpnsNameStore(blocks.api, blocks);
    try {
      const [alice, bob] = [await generateNameKey(), await generateNameKey()];
      // Two logs that start with the same message at the same second have byte-identical heads (or a
      // stranger copies a victim's head into a name of its own, to unpin it later).
      const shared = text(`the same first head ${Math.random()}`);
      const next = text(`alice moves on ${Math.random()}`);
      for (const key of [alice, bob]) await store.put(keyName(key), shared, { record: await createNameRecord(key, shared, 1n), version: 1n });
      await store.put(keyName(alice), next, { record: await createNameRecord(alice, next, 2n), version: 2n });
      for await (const _ of node.repo.gc()) {
        // each removed block
      }
      // Before, alice's publish unpinned the shared page, the node's one pin of it, and the GC removed it:
      // bob's head was DATA_LOSS for good.
      expect((await store.get(keyName(bob)))?.content).toEqual(shared);
      expect((await store.get(keyName(alice)))?.content).toEqual(next);
      // And moving bob on lets it go.
      const bobNext = text(`bob moves on ${Math.random()}`);
      await store.put(keyName(bob), bobNext, { record: await createNameRecord(bob, bobNext, 2n), version: 2n });
      const removed: string[] = [];
      for await (const result of node.repo.gc()) if (result.cid) removed.push(result.cid.toString());
      expect(removed).toContain(cidOf(shared).toString());
    } finally {
      await store.close();
    }
  });

  it("a record put straight into the node that does not verify is refused with the embedded NS's codes", async () => {
    const store = await IpnsNameStore.open({ url: ipfsNode().url });
    try {
      // Garbage: not an IPNS record at all. js-ipfs stores it without a word.
      const garbage = keyName(await generateNameKey());
      await putRaw(garbage, text("not a record"));
      expect((await failure(store.get(garbage), "INVALID_ARGUMENT")).message).toContain(ipfsNode().url);

      // Forged: a valid record of another key, served under this name.
      const victim = await generateNameKey();
      const forger = await generateNameKey();
      const page = text("forged head");
      await store.put(keyName(forger), page, { record: await createNameRecord(forger, page, 1n) });
      await putRaw(keyName(victim), await createNameRecord(forger, page, 5n));
      const forged = await failure(store.get(keyName(victim)), "PERMISSION_DENIED");
      expect(forged.message).toContain(keyName(victim));
      expect(forged.message).toContain(ipfsNode().url);

      // Expired: signed by the right key, but no longer valid. Returned, as the embedded NS returns it:
      // its readers refuse it (CONFLICT), and its sender takes it to renew.
      const lapsed = await generateNameKey();
      await putRaw(keyName(lapsed), await createNameRecord(lapsed, page, 2n, { validityMs: 1 }));
      await new Promise((resolve) => setTimeout(resolve, 10));
      const entry = await store.get(keyName(lapsed));
      expect(entry?.version).toBe(2n);
      await failure(verifyNameRecord(keyName(lapsed), entry!.record!, entry!.content), "CONFLICT");

      // A record with sequence 0, as `ipfs name publish` makes first: version 0 means no name here.
      const zero = await generateNameKey();
      await putRaw(keyName(zero), await createNameRecord(zero, page, 0n));
      expect((await failure(store.get(keyName(zero)), "CONFLICT")).message).toMatch(/sequence 0/);

      // Signed and valid, but naming a page the node does not have.
      const orphan = await generateNameKey();
      await putRaw(keyName(orphan), await createNameRecord(orphan, text(`never stored ${Math.random()}`), 1n));
      await failure(store.get(keyName(orphan)), "DATA_LOSS");
    } finally {
      await store.close();
    }
  });

  it("a forged record in the node does not block the key's owner, and a valid record's sequence does", async () => {
    const store = await IpnsNameStore.open({ url: ipfsNode().url });
    try {
      const key = await generateNameKey();
      const name = keyName(key);
      await putRaw(name, text("garbage"));
      const page = text("real head");
      expect(await store.put(name, page, { record: await createNameRecord(key, page, 1n) })).toBe(1n);
      expect((await store.get(name))?.content).toEqual(page);
      // Expired records still hold their sequence: nobody can roll the name back below it.
      const later = await createNameRecord(key, text("later"), 7n, { validityMs: 1 });
      await putRaw(name, later);
      await new Promise((resolve) => setTimeout(resolve, 10));
      await failure(store.put(name, text("older"), { record: await createNameRecord(key, text("older"), 3n) }), "ABORTED");
    } finally {
      await store.close();
    }
  });

  it("free-form names cannot live on IPNS: put is INVALID_ARGUMENT, get finds nothing", async () => {
    const store = await IpnsNameStore.open({ url: ipfsNode().url });
    try {
      const err = await failure(store.put("chat", text("head")), "INVALID_ARGUMENT");
      expect(err.message).toMatch(/key name/);
      expect(await store.get("chat")).toBeUndefined();
      // Nor can a key name go without its record.
      await failure(store.put(keyName(await generateNameKey()), text("head")), "INVALID_ARGUMENT");
    } finally {
      await store.close();
    }
  });

  it("a record for other content than the update's is refused before anything is published", async () => {
    const store = await IpnsNameStore.open({ url: ipfsNode().url });
    try {
      const key = await generateNameKey();
      const record = await createNameRecord(key, text("page A"), 1n);
      await failure(store.put(keyName(key), text("page B"), { record }), "INVALID_ARGUMENT");
      expect(await store.get(keyName(key))).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
