import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { publicKeyToProtobuf } from "@libp2p/crypto/keys";
import { unmarshalIPNSRecord } from "ipns";
import { NameUpdateSchema, NS, QuerySchema, type NameUpdate } from "../../gen/vac/cas/cas_pb.js";
import { connectCodeOf } from "../../core/connect-codes.js";
import { isRemoteLogError, type ErrorCode } from "../../core/errors.js";
import type { NameEntry, NameStore } from "../../core/name-store.js";
import { MAX_RECORD_BYTES, createNameRecord, generateNameKey, keyName, type PrivateKey } from "../../core/names.js";
import { NsService } from "../../services/ns-service.js";
import { listen, routes, type Listening } from "../../services/server.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { LevelNameStore } from "../../stores/level/name-store.js";
import { encodeEntry } from "../helpers/records.js";
import { TempDirs } from "../stores/temp.js";

/*
 * Hostile updates of signed names, NS side: each case is refused with one exact code, and the name's
 * stored entry is byte for byte what it was. Run against NsService directly (over the memory and the
 * LevelDB store) and over a real server, where the code must arrive as the matching Connect code.
 */

const utf8 = (text: string) => new TextEncoder().encode(text);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Where a case's update goes: an NS and a way to read the state it changes. */
interface Target {
  update(request: NameUpdate): Promise<bigint>;
  fetch(name: string): Promise<NameEntry | undefined>;
  /** Awaits a failed update and returns its code as ours, whichever side it failed on. */
  failure(promise: Promise<unknown>): Promise<ErrorCode>;
}

/** The state every case starts from: alice's key name at version 2, and a free-form name. */
interface World {
  alice: PrivateKey;
  name: string;
  bob: PrivateKey;
  thief: PrivateKey;
  pages: Uint8Array[];
  records: Uint8Array[];
}

interface Case {
  what: string;
  code: ErrorCode;
  /** The update to try, made from a fresh World; `name` defaults to alice's. */
  update(world: World): Promise<{ name?: string; content: Uint8Array; record?: Uint8Array; expectedVersion?: bigint }>;
  /** Only on a target whose NS has requireSigned. */
  requireSigned?: boolean;
  /** The name whose state must not change; alice's by default. */
  watch?: (world: World) => string;
}

const FREE_NAME = "free-form-name";

const cases: Case[] = [
  {
    what: "an unsigned update of another spelling of the key name (upper case)",
    code: "INVALID_ARGUMENT",
    update: async (w) => ({ name: w.name.toUpperCase(), content: w.pages[3] }),
    watch: (w) => w.name.toUpperCase(),
  },
  {
    what: "a record signed by another key for this name (forged signature)",
    code: "PERMISSION_DENIED",
    update: async (w) => ({ content: w.pages[3], record: await createNameRecord(w.thief, w.pages[3], 3n) }),
  },
  {
    what: "a valid record with one signature byte flipped",
    code: "PERMISSION_DENIED",
    update: async (w) => {
      const parsed = unmarshalIPNSRecord(await createNameRecord(w.alice, w.pages[3], 3n));
      const signature = parsed.signatureV2.slice();
      signature[17] ^= 0x40;
      return { content: w.pages[3], record: encodeEntry({ data: parsed.data, signatureV2: signature }) };
    },
  },
  {
    what: "a record that embeds another public key than the name's",
    code: "PERMISSION_DENIED",
    update: async (w) => {
      const parsed = unmarshalIPNSRecord(await createNameRecord(w.thief, w.pages[3], 3n));
      return { content: w.pages[3], record: encodeEntry({ data: parsed.data, signatureV2: parsed.signatureV2, pubKey: publicKeyToProtobuf(w.thief.publicKey) }) };
    },
  },
  {
    what: "a valid record of another name",
    code: "PERMISSION_DENIED",
    update: async (w) => ({ content: w.pages[3], record: await createNameRecord(w.bob, w.pages[3], 3n) }),
  },
  {
    what: "a replayed older record (sequence 1 when the name is at 2)",
    code: "CONFLICT",
    update: async (w) => ({ content: w.pages[1], record: w.records[1] }),
  },
  {
    what: "an expired record",
    code: "CONFLICT",
    update: async (w) => {
      const record = await createNameRecord(w.alice, w.pages[3], 3n, { validityMs: 1 });
      await sleep(5);
      return { content: w.pages[3], record };
    },
  },
  {
    what: "the current sequence with different content",
    code: "CONFLICT",
    update: async (w) => ({ content: w.pages[3], record: await createNameRecord(w.alice, w.pages[3], 2n) }),
  },
  {
    what: "the current sequence and content with a different (re-signed) record",
    code: "CONFLICT",
    update: async (w) => ({ content: w.pages[2], record: await createNameRecord(w.alice, w.pages[2], 2n, { ttlMs: 1 }) }),
  },
  {
    what: "a newer record with a stale expected_version",
    code: "ABORTED",
    update: async (w) => ({ content: w.pages[3], record: await createNameRecord(w.alice, w.pages[3], 3n), expectedVersion: 1n }),
  },
  {
    what: "a record whose value is another content's CID",
    code: "INVALID_ARGUMENT",
    update: async (w) => ({ content: w.pages[4], record: await createNameRecord(w.alice, w.pages[3], 3n) }),
  },
  {
    what: "a record over IPNS's size limit",
    code: "TOO_LARGE",
    update: async (w) => ({ content: w.pages[3], record: new Uint8Array(MAX_RECORD_BYTES + 1).fill(0x0a) }),
  },
  {
    what: "record bytes that are not a record",
    code: "INVALID_ARGUMENT",
    update: async (w) => ({ content: w.pages[3], record: utf8("definitely not an IPNS record") }),
  },
  {
    what: "a truncated record",
    code: "INVALID_ARGUMENT",
    update: async (w) => {
      const record = await createNameRecord(w.alice, w.pages[3], 3n);
      return { content: w.pages[3], record: record.subarray(0, record.length - 3) };
    },
  },
  {
    what: "an update of a key name without a record",
    code: "PERMISSION_DENIED",
    update: async (w) => ({ content: w.pages[3] }),
  },
  {
    what: "a record on a free-form name",
    code: "INVALID_ARGUMENT",
    update: async (w) => ({ name: FREE_NAME, content: w.pages[3], record: await createNameRecord(w.alice, w.pages[3], 3n) }),
    watch: () => FREE_NAME,
  },
  {
    what: "an unsigned update of a free-form name, with --require-signed",
    code: "PERMISSION_DENIED",
    requireSigned: true,
    update: async (w) => ({ name: FREE_NAME, content: w.pages[3] }),
    watch: () => FREE_NAME,
  },
  {
    what: "a record on a free-form name, with --require-signed",
    code: "INVALID_ARGUMENT",
    requireSigned: true,
    update: async (w) => ({ name: FREE_NAME, content: w.pages[3], record: await createNameRecord(w.alice, w.pages[3], 3n) }),
    watch: () => FREE_NAME,
  },
  {
    what: "a forged signature, with --require-signed",
    code: "PERMISSION_DENIED",
    requireSigned: true,
    update: async (w) => ({ content: w.pages[3], record: await createNameRecord(w.thief, w.pages[3], 3n) }),
  },
];

/** Builds a World on target: alice's name at version 2 (sequence 1, then 2) and a free-form name. */
async function world(target: Target, requireSigned: boolean): Promise<World> {
  const [alice, bob, thief] = await Promise.all([generateNameKey(), generateNameKey(), generateNameKey()]);
  const name = keyName(alice);
  const pages = [0, 1, 2, 3, 4].map((i) => utf8(`head page ${i} of ${name}`));
  const records = [new Uint8Array(0), await createNameRecord(alice, pages[1], 1n), await createNameRecord(alice, pages[2], 2n)];
  expect(await target.update(create(NameUpdateSchema, { name, content: pages[1], record: records[1] }))).toBe(1n);
  expect(await target.update(create(NameUpdateSchema, { name, content: pages[2], record: records[2], expectedVersion: 1n }))).toBe(2n);
  if (!requireSigned) expect(await target.update(create(NameUpdateSchema, { name: FREE_NAME, content: utf8("free") }))).toBeGreaterThan(0n);
  return { alice, name, bob, thief, pages, records };
}

function serviceTarget(store: NameStore, requireSigned: boolean): Target {
  const ns = new NsService(store, {}, { requireSigned });
  return {
    update: async (request) => (await ns.update(request)).version,
    fetch: (name) => store.get(name),
    failure: async (promise) => {
      const err = await promise.then(() => undefined, (e: unknown) => e);
      if (!isRemoteLogError(err)) throw new Error(`expected a RemoteLogError, got ${String(err)}`);
      return err.code;
    },
  };
}

function clientTarget(client: Client<typeof NS>): Target {
  return {
    update: async (request) => (await client.update(request)).version,
    fetch: async (name) => {
      try {
        const content = await client.fetch(create(QuerySchema, { name }));
        return { content: content.data, version: content.version, record: content.record };
      } catch (err) {
        if (ConnectError.from(err).code === Code.NotFound) return undefined;
        throw err;
      }
    },
    failure: async (promise) => {
      const err = await promise.then(() => undefined, (e: unknown) => e);
      if (!(err instanceof ConnectError)) throw new Error(`expected a ConnectError, got ${String(err)}`);
      const ours = (Object.entries(connectCodeOf) as [ErrorCode, Code][]).find(([, theirs]) => theirs === err.code)?.[0];
      if (ours === undefined) throw new Error(`unexpected Connect code ${Code[err.code]}: ${err.message}`);
      return ours;
    },
  };
}

/** Runs every case on targets made by targetFor, each case on a fresh World. */
function suite(label: string, targetFor: (requireSigned: boolean) => Target) {
  describe(`ns records - ${label}`, () => {
    for (const c of cases) {
      it(`${c.code}: ${c.what}, changing nothing`, async () => {
        const target = targetFor(c.requireSigned ?? false);
        // With requireSigned, the free-form name cannot be set up, and stays absent.
        const w = await world(target, c.requireSigned ?? false);
        const watched = c.watch?.(w) ?? w.name;
        const before = await target.fetch(watched);
        const { name = w.name, ...rest } = await c.update(w);
        const code = await target.failure(target.update(create(NameUpdateSchema, { name, ...rest })));
        expect(code).toBe(c.code);
        expect(await target.fetch(watched)).toEqual(before);
        if (watched !== w.name) expect((await target.fetch(w.name))?.version).toBe(2n);
      });
    }

    it("accepts the next record, returns it on Fetch, and lets anyone republish it unchanged", async () => {
      const target = targetFor(false);
      const w = await world(target, false);
      const record = await createNameRecord(w.alice, w.pages[3], 7n);
      expect(await target.update(create(NameUpdateSchema, { name: w.name, content: w.pages[3], record }))).toBe(7n);
      const stored = await target.fetch(w.name);
      expect(stored).toEqual({ content: w.pages[3], version: 7n, record });
      for (let i = 0; i < 3; i++) {
        expect(await target.update(create(NameUpdateSchema, { name: w.name, content: w.pages[3], record }))).toBe(7n);
      }
      expect(await target.update(create(NameUpdateSchema, { name: w.name, content: w.pages[3], record, expectedVersion: 7n }))).toBe(7n);
      expect(await target.fetch(w.name)).toEqual(stored);
    });

    it("of concurrent publishers of one record all succeed; of different records with one sequence, one wins", async () => {
      const target = targetFor(false);
      const w = await world(target, false);
      const record = await createNameRecord(w.alice, w.pages[3], 3n);
      const same = await Promise.all(Array.from({ length: 10 }, () => target.update(create(NameUpdateSchema, { name: w.name, content: w.pages[3], record }))));
      expect(same).toEqual(Array(10).fill(3n));
      const rivals = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const content = utf8(`rival ${i}`);
          return { content, record: await createNameRecord(w.alice, content, 4n) };
        }),
      );
      const results = await Promise.allSettled(rivals.map((r) => target.update(create(NameUpdateSchema, { name: w.name, ...r }))));
      const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
      expect(winners).toHaveLength(1);
      for (const r of results) if (r.status === "rejected") expect(await target.failure(Promise.reject(r.reason))).toBe("CONFLICT");
      expect(await target.fetch(w.name)).toEqual({ version: 4n, ...rivals[winners[0]] });
    });

    it("CONFLICT: a first record with sequence 0", async () => {
      const target = targetFor(false);
      const key = await generateNameKey();
      const name = keyName(key);
      const content = utf8("first");
      expect(await target.failure(target.update(create(NameUpdateSchema, { name, content, record: await createNameRecord(key, content, 0n) })))).toBe("CONFLICT");
      expect(await target.fetch(name)).toBeUndefined();
    });

    it("free-form names keep working without --require-signed, with an empty record on Fetch", async () => {
      const target = targetFor(false);
      // Servers are shared by the suites: a name of its own.
      const name = `plain ${keyName(await generateNameKey())}`;
      expect(await target.update(create(NameUpdateSchema, { name, content: utf8("a"), expectedVersion: 0n }))).toBe(1n);
      expect(await target.fetch(name)).toEqual({ content: utf8("a"), version: 1n, record: new Uint8Array(0) });
    });

    it("--require-signed still accepts signed updates", async () => {
      const target = targetFor(true);
      const w = await world(target, true);
      expect((await target.fetch(w.name))?.version).toBe(2n);
    });
  });
}

suite("NsService on memory", (requireSigned) => serviceTarget(new MemoryNameStore(), requireSigned));

const dirs = new TempDirs();
const levelStores: LevelNameStore[] = [];
let levelFor: (requireSigned: boolean) => Target;
beforeAll(async () => {
  const store = await LevelNameStore.open(await dirs.make());
  levelStores.push(store);
  levelFor = (requireSigned) => serviceTarget(store, requireSigned);
});
afterAll(async () => {
  await Promise.all(levelStores.map((store) => store.close()));
  await dirs.removeAll();
});
suite("NsService on LevelDB", (requireSigned) => levelFor(requireSigned));

// One server of each kind for all cases: every World uses fresh keys, so cases do not meet.
const servers: Record<"open" | "signed", Listening | undefined> = { open: undefined, signed: undefined };
beforeAll(async () => {
  servers.open = await listen({ host: "127.0.0.1", port: 0, routes: routes({ names: new MemoryNameStore() }) });
  servers.signed = await listen({ host: "127.0.0.1", port: 0, routes: routes({ names: new MemoryNameStore(), requireSigned: true }) });
});
afterAll(async () => {
  await Promise.all(Object.values(servers).map((server) => server?.close()));
});
suite("Connect over HTTP/1.1", (requireSigned) =>
  clientTarget(createClient(NS, createConnectTransport({ baseUrl: servers[requireSigned ? "signed" : "open"]!.url, httpVersion: "1.1" }))),
);
suite("gRPC over HTTP/2", (requireSigned) => clientTarget(createClient(NS, createGrpcTransport({ baseUrl: servers[requireSigned ? "signed" : "open"]!.url }))));
