import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { CID } from "multiformats/cid";
import { sha256, sha512 } from "multiformats/hashes/sha2";
import { AddressSchema, CAS, ContentSchema, NameUpdateSchema, NS, QuerySchema } from "../../gen/vac/cas/cas_pb.js";
import { AddManyRequestSchema, BlockService, GetManyRequestSchema } from "../../gen/remotelog/v1/blocks_pb.js";
import { ErrorCodes, RemoteLogError, type ErrorCode } from "../../core/errors.js";
import { addressOf, addressText } from "../../core/hash.js";
import { createNameRecord, generateNameKey, keyName } from "../../core/names.js";
import type { ContentStore } from "../../core/content-store.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { CasService } from "../../services/cas-service.js";
import { BlockServiceImpl } from "../../services/block-service.js";
import { NsService, checkName } from "../../services/ns-service.js";
import { toConnectError } from "../../services/connect-errors.js";
import { routes } from "../../services/server.js";

const utf8 = (text: string) => new TextEncoder().encode(text);

/** Addresses this CAS must refuse, each for a different reason. */
async function wrongAddresses(): Promise<Record<string, Uint8Array>> {
  const bytes = utf8("hello");
  const digest = await sha256.digest(bytes);
  return {
    empty: new Uint8Array(0),
    "random bytes": new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]),
    "a CIDv0": CID.createV0(digest).bytes,
    "a dag-pb CIDv1": CID.createV1(0x70, digest).bytes,
    "a sha2-512 CIDv1": CID.createV1(0x55, await sha512.digest(bytes)).bytes,
    "a CID with trailing bytes": new Uint8Array([...addressOf(bytes), 0]),
  };
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode, text?: string | RegExp): Promise<RemoteLogError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RemoteLogError);
  expect((err as RemoteLogError).code).toBe(code);
  if (text !== undefined) expect((err as RemoteLogError).message).toMatch(text);
  return err as RemoteLogError;
}

async function expectConnectCode(promise: Promise<unknown>, code: Code, text?: string | RegExp): Promise<ConnectError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  expect(Code[(err as ConnectError).code]).toBe(Code[code]);
  if (text !== undefined) expect((err as ConnectError).rawMessage).toMatch(text);
  return err as ConnectError;
}

describe("connect errors - toConnectError", () => {
  const cases: [ErrorCode, Code][] = [
    [ErrorCodes.NOT_FOUND, Code.NotFound],
    [ErrorCodes.INVALID_ARGUMENT, Code.InvalidArgument],
    [ErrorCodes.TOO_LARGE, Code.ResourceExhausted],
    [ErrorCodes.CONFLICT, Code.FailedPrecondition],
    [ErrorCodes.ABORTED, Code.Aborted],
    [ErrorCodes.OUT_OF_RANGE, Code.OutOfRange],
    [ErrorCodes.DATA_LOSS, Code.DataLoss],
    [ErrorCodes.UNAVAILABLE, Code.Unavailable],
    [ErrorCodes.PERMISSION_DENIED, Code.PermissionDenied],
  ];
  it.each(cases)("maps %s to its Connect code, without repeating our code in the message", (ours, theirs) => {
    const err = new RemoteLogError(ours, "what happened");
    const mapped = toConnectError(err);
    expect(mapped.code).toBe(theirs);
    expect(mapped.rawMessage).toBe("what happened");
    expect(mapped.cause).toBe(err);
  });

  it("hides internals of INTERNAL and of foreign errors, keeping them as cause", () => {
    for (const err of [RemoteLogError.internal("EIO on /secret/path"), new Error("ENOSPC /secret/path"), "a string", undefined]) {
      const mapped = toConnectError(err);
      expect(mapped.code).toBe(Code.Internal);
      expect(mapped.rawMessage).toBe("internal error");
      expect(mapped.cause).toBe(err);
    }
  });

  it("passes a ConnectError through", () => {
    const err = new ConnectError("slow down", Code.ResourceExhausted);
    expect(toConnectError(err)).toBe(err);
  });
});

describe("cas service - direct", () => {
  it("adds, gets back the same bytes, and adds again to the same address", async () => {
    const store = new MemoryContentStore();
    const cas = new CasService(store);
    const data = utf8("a block");
    const { id } = await cas.add(create(ContentSchema, { data }));
    expect(id).toEqual(addressOf(data));
    expect((await cas.get(create(AddressSchema, { id }))).data).toEqual(data);
    expect((await cas.add(create(ContentSchema, { data }))).id).toEqual(id);
  });

  it("stores the empty block", async () => {
    const cas = new CasService(new MemoryContentStore());
    const { id } = await cas.add(create(ContentSchema, {}));
    expect((await cas.get(create(AddressSchema, { id }))).data).toEqual(new Uint8Array(0));
  });

  it("takes a block at the limit and refuses one byte more, naming size and limit", async () => {
    const store = new MemoryContentStore();
    const cas = new CasService(store, { maxBlockBytes: 16 });
    await cas.add(create(ContentSchema, { data: new Uint8Array(16) }));
    await expectCode(cas.add(create(ContentSchema, { data: new Uint8Array(17) })), "TOO_LARGE", /17 bytes.*limit of 16 bytes/);
    expect(await store.has(addressOf(new Uint8Array(17)))).toBe(false);
  });

  it("refuses every address it does not hand out", async () => {
    const cas = new CasService(new MemoryContentStore());
    for (const [what, id] of Object.entries(await wrongAddresses())) {
      await expectCode(cas.get(create(AddressSchema, { id })), "INVALID_ARGUMENT").catch((err) => {
        throw new Error(`${what}: ${err}`);
      });
    }
  });

  it("names the missing CID in base32", async () => {
    const id = addressOf(utf8("never stored"));
    await expectCode(new CasService(new MemoryContentStore()).get(create(AddressSchema, { id })), "NOT_FOUND", addressText(id));
    expect(addressText(id)).toMatch(/^bafk/);
  });

  it("reports a block that no longer matches its address as DATA_LOSS", async () => {
    const store = new MemoryContentStore();
    const cas = new CasService(store);
    const { id } = await cas.add(create(ContentSchema, { data: utf8("original") }));
    store.corrupt(id, utf8("flipped"));
    await expectCode(cas.get(create(AddressSchema, { id })), "DATA_LOSS");
  });
});

describe("block service - direct", () => {
  it("adds a batch and gets it back in request order, duplicates included", async () => {
    const blocks = new BlockServiceImpl(new MemoryContentStore());
    const data = [utf8("one"), utf8("two"), utf8("three"), utf8("one")];
    const { ids } = await blocks.addMany(create(AddManyRequestSchema, { blocks: data }));
    expect(ids).toEqual(data.map(addressOf));
    const reversed = [...ids].reverse();
    const got = await blocks.getMany(create(GetManyRequestSchema, { ids: reversed }));
    expect(got.blocks).toEqual([...data].reverse());
    expect(got.missing).toEqual([]);
  });

  it("tells apart ids whose digests share their first bytes, repeated or not", async () => {
    const blocks = new BlockServiceImpl(new MemoryContentStore());
    const stored = utf8("stored");
    const [id] = (await blocks.addMany(create(AddManyRequestSchema, { blocks: [stored] }))).ids;
    // Another address with the same first 8 digest bytes (of no stored block): GetMany tells ids
    // apart by a few digest bits first, and must not take this one for the stored block.
    const twin = Uint8Array.from(id);
    twin[35] ^= 1;
    twin[20] ^= 0x80;
    const got = await blocks.getMany(create(GetManyRequestSchema, { ids: [id, twin, twin, id, twin], allowMissing: true }));
    expect(got.blocks).toEqual([stored, new Uint8Array(0), new Uint8Array(0), stored, new Uint8Array(0)]);
    expect(got.missing).toEqual([1, 2, 4]);
  });

  it("answers empty batches", async () => {
    const blocks = new BlockServiceImpl(new MemoryContentStore());
    expect((await blocks.addMany(create(AddManyRequestSchema, {}))).ids).toEqual([]);
    expect((await blocks.getMany(create(GetManyRequestSchema, {}))).blocks).toEqual([]);
  });

  it("stores nothing when one block of the batch is over the limit", async () => {
    const store = new MemoryContentStore();
    const blocks = new BlockServiceImpl(store, { maxBlockBytes: 8 });
    await expectCode(blocks.addMany(create(AddManyRequestSchema, { blocks: [utf8("fits"), new Uint8Array(9)] })), "TOO_LARGE", /block 1 of 9 bytes/);
    expect(await store.has(addressOf(utf8("fits")))).toBe(false);
  });

  it("refuses batches over the count limit, both ways", async () => {
    const store = new MemoryContentStore();
    const blocks = new BlockServiceImpl(store, { maxBatchBlocks: 3 });
    const four = [1, 2, 3, 4].map((n) => new Uint8Array([n]));
    await expectCode(blocks.addMany(create(AddManyRequestSchema, { blocks: four })), "TOO_LARGE", /4 blocks.*limit of 3/);
    expect(await store.has(addressOf(four[0]))).toBe(false);
    await expectCode(blocks.getMany(create(GetManyRequestSchema, { ids: four.map(addressOf) })), "TOO_LARGE", /4 blocks.*limit of 3/);
    expect((await blocks.addMany(create(AddManyRequestSchema, { blocks: four.slice(0, 3) }))).ids).toHaveLength(3);
  });

  it("names the index of a malformed id, whatever else the batch holds", async () => {
    const blocks = new BlockServiceImpl(new MemoryContentStore());
    const { ids } = await blocks.addMany(create(AddManyRequestSchema, { blocks: [utf8("stored")] }));
    for (const [what, wrong] of Object.entries(await wrongAddresses())) {
      const err = await expectCode(blocks.getMany(create(GetManyRequestSchema, { ids: [ids[0], addressOf(utf8("missing")), wrong] })), "INVALID_ARGUMENT");
      expect(err.message, what).toMatch(/^INVALID_ARGUMENT: id 2: /);
    }
  });

  it("fails on a missing block naming it, or reports it not found when allowed", async () => {
    const blocks = new BlockServiceImpl(new MemoryContentStore());
    const { ids } = await blocks.addMany(create(AddManyRequestSchema, { blocks: [utf8("here")] }));
    const missing = addressOf(utf8("not here"));
    await expectCode(blocks.getMany(create(GetManyRequestSchema, { ids: [ids[0], missing] })), "NOT_FOUND", addressText(missing));
    const got = await blocks.getMany(create(GetManyRequestSchema, { ids: [missing, ids[0]], allowMissing: true }));
    expect(got.blocks.map((b) => b.length)).toEqual([0, 4]);
    expect(got.missing).toEqual([0]);
  });

  it("bounds a partial answer at the client's max_bytes, below its own cap, always with the first block; max_bytes alone is refused", async () => {
    const blocks = new BlockServiceImpl(new MemoryContentStore());
    const data = [new Uint8Array(100).fill(1), new Uint8Array(100).fill(2), new Uint8Array(100).fill(3)];
    const { ids } = await blocks.addMany(create(AddManyRequestSchema, { blocks: data }));
    const missing = addressOf(utf8("not here"));
    const answer = async (maxBytes: bigint, asked = ids) => (await blocks.getMany(create(GetManyRequestSchema, { ids: asked, partialOk: true, allowMissing: true, maxBytes }))).blocks.length;
    expect(await answer(0n)).toBe(3);
    expect(await answer(1n)).toBe(1);
    expect(await answer(200n)).toBe(2);
    expect(await answer(299n)).toBe(2);
    // A missing block costs the answer nothing.
    expect(await answer(200n, [ids[0], missing, ids[1], ids[2]])).toBe(3);
    await expectCode(blocks.getMany(create(GetManyRequestSchema, { ids, maxBytes: 200n })), "INVALID_ARGUMENT", /max_bytes.*partial_ok/);
  });

  it("reports a corrupt block as DATA_LOSS", async () => {
    const store = new MemoryContentStore();
    const blocks = new BlockServiceImpl(store);
    const { ids } = await blocks.addMany(create(AddManyRequestSchema, { blocks: [utf8("fine")] }));
    store.corrupt(ids[0], utf8("rotten"));
    await expectCode(blocks.getMany(create(GetManyRequestSchema, { ids })), "DATA_LOSS");
  });
});

describe("ns service - direct", () => {
  const update = (name: string, content: Uint8Array, expectedVersion?: bigint) => create(NameUpdateSchema, { name, content, expectedVersion });

  it("counts versions from 1 and fetches the latest", async () => {
    const ns = new NsService(new MemoryNameStore());
    expect((await ns.update(update("alice", utf8("head 1")))).version).toBe(1n);
    expect((await ns.update(update("alice", utf8("head 2")))).version).toBe(2n);
    const fetched = await ns.fetch(create(QuerySchema, { name: "alice" }));
    expect(fetched.data).toEqual(utf8("head 2"));
    expect(fetched.version).toBe(2n);
  });

  it("applies a conditional update only at the expected version", async () => {
    const ns = new NsService(new MemoryNameStore());
    expect((await ns.update(update("bob", utf8("v1"), 0n))).version).toBe(1n);
    await expectCode(ns.update(update("bob", utf8("again"), 0n)), "ABORTED");
    expect((await ns.update(update("bob", utf8("v2"), 1n))).version).toBe(2n);
    await expectCode(ns.update(update("bob", utf8("stale"), 1n)), "ABORTED");
    await expectCode(ns.update(update("bob", utf8("ahead"), 7n)), "ABORTED");
    expect((await ns.fetch(create(QuerySchema, { name: "bob" }))).data).toEqual(utf8("v2"));
    // Unset is the draft's unconditional update, unlike 0.
    expect((await ns.update(update("bob", utf8("v3")))).version).toBe(3n);
  });

  it("lets exactly one of two racing conditional updates win", async () => {
    const ns = new NsService(new MemoryNameStore());
    await ns.update(update("race", utf8("base")));
    const results = await Promise.allSettled([ns.update(update("race", utf8("a"), 1n)), ns.update(update("race", utf8("b"), 1n))]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect((await ns.fetch(create(QuerySchema, { name: "race" }))).version).toBe(2n);
  });

  it("names an unknown name", async () => {
    await expectCode(new NsService(new MemoryNameStore()).fetch(create(QuerySchema, { name: "nobody" })), "NOT_FOUND", /"nobody"/);
  });

  it("refuses bad names in Update and Fetch alike", async () => {
    const ns = new NsService(new MemoryNameStore(), { maxNameBytes: 8 });
    for (const name of ["", "123456789", "ééééé", "tab\there", "nul\u0000", "del\u007f", "c1\u0085", "\ud800x", "bad\ufffd"]) {
      await expectCode(ns.update(update(name, utf8("x"))), "INVALID_ARGUMENT").catch((err) => {
        throw new Error(`${JSON.stringify(name)}: ${err}`);
      });
      await expectCode(ns.fetch(create(QuerySchema, { name })), "INVALID_ARGUMENT");
    }
    for (const name of ["12345678", "k51qzi5u", "a/b c.d", "😀😀"]) expect(() => checkName(name, 8)).not.toThrow();
  });

  it("refuses content over the limit and takes content at it", async () => {
    const store = new MemoryNameStore();
    const ns = new NsService(store, { maxContentBytes: 10 });
    expect((await ns.update(update("n", new Uint8Array(10)))).version).toBe(1n);
    await expectCode(ns.update(update("n", new Uint8Array(11))), "TOO_LARGE", /11 bytes.*limit of 10 bytes/);
    expect((await store.get("n"))?.version).toBe(1n);
  });
});

describe("services - through an in-memory router", () => {
  function clients(content: ContentStore = new MemoryContentStore(), names = new MemoryNameStore(), onInternalError?: (err: Error, method: string) => void) {
    const transport = createRouterTransport(routes({ content, names, limits: { maxBlockBytes: 64, maxContentBytes: 64, maxBatchBlocks: 4 }, onInternalError }));
    return { cas: createClient(CAS, transport), ns: createClient(NS, transport), blocks: createClient(BlockService, transport) };
  }

  it("roundtrips blocks one at a time and in batches", async () => {
    const { cas, blocks } = clients();
    const { id } = await cas.add({ data: utf8("single") });
    expect((await cas.get({ id })).data).toEqual(utf8("single"));
    expect((await cas.add({ data: utf8("single") })).id).toEqual(id);
    const { ids } = await blocks.addMany({ blocks: [utf8("b1"), utf8("b2")] });
    const got = await blocks.getMany({ ids: [...ids, id] });
    expect(got.blocks).toEqual([utf8("b1"), utf8("b2"), utf8("single")]);
  });

  it("roundtrips names with versions and conditional updates", async () => {
    const { ns } = clients();
    expect((await ns.update({ name: "alice", content: utf8("h1"), expectedVersion: 0n })).version).toBe(1n);
    expect((await ns.update({ name: "alice", content: utf8("h2"), expectedVersion: 1n })).version).toBe(2n);
    await expectConnectCode(ns.update({ name: "alice", content: utf8("h3"), expectedVersion: 1n }), Code.Aborted, /version 2, not 1/);
    expect(await ns.fetch({ name: "alice" })).toMatchObject({ data: utf8("h2"), version: 2n });
  });

  it("stores an update's blocks before the name moves, in one call, with the CAS's limits", async () => {
    const content = new MemoryContentStore();
    const { ns, blocks } = clients(content);
    const [b1, b2] = [utf8("block 1"), utf8("block 2")];
    expect((await ns.update({ name: "pub", content: utf8("head 1"), blocks: [b1, b2] })).version).toBe(1n);
    expect((await blocks.getMany({ ids: [addressOf(b1), addressOf(b2)] })).blocks).toEqual([b1, b2]);
    // A refused block refuses the update, and nothing of it is stored or published.
    await expectConnectCode(ns.update({ name: "pub", content: utf8("head 2"), blocks: [utf8("ok"), new Uint8Array(65)] }), Code.ResourceExhausted, /block 1/);
    expect(await content.has(addressOf(utf8("ok")))).toBe(false);
    expect(await ns.fetch({ name: "pub" })).toMatchObject({ data: utf8("head 1"), version: 1n });
    // A lost race still stores the blocks (a retry needs them) but does not move the name.
    await expectConnectCode(ns.update({ name: "pub", content: utf8("head 3"), expectedVersion: 0n, blocks: [utf8("raced")] }), Code.Aborted);
    expect(await ns.fetch({ name: "pub" })).toMatchObject({ data: utf8("head 1") });

    // An NS with no CAS beside it cannot take blocks.
    const alone = createClient(NS, createRouterTransport(routes({ names: new MemoryNameStore() })));
    await expectConnectCode(alone.update({ name: "pub", content: utf8("h"), blocks: [b1] }), Code.FailedPrecondition, /no CAS beside it/);
    expect((await alone.update({ name: "pub", content: utf8("h") })).version).toBe(1n);
  });

  it("refuses a dropped key name's old record as FailedPrecondition before storing anything of the update, its blocks sent ahead too", async () => {
    const content = new MemoryContentStore();
    const names = new MemoryNameStore();
    const { ns, blocks } = clients(content, names);
    const key = await generateNameKey();
    const name = keyName(key);
    const head = utf8("head 3");
    const record = await createNameRecord(key, head, 3n);
    expect((await ns.update({ name, content: head, record })).version).toBe(3n);
    expect(await names.drop(name)).toBe(true);
    const dropped = new RegExp(`^name "${name}" was dropped by the operator at sequence 3; only a newer record from its key is taken, and this one has sequence 3$`);
    const smuggled = utf8("smuggled");
    await expectConnectCode(ns.update({ name, content: head, record, blocks: [smuggled] }), Code.FailedPrecondition, dropped);
    // The kept record authorized blocks sent ahead of the update again, as if it were not published yet.
    await expectConnectCode(blocks.addMany({ blocks: [smuggled], pending: { name, content: head, record } }), Code.FailedPrecondition, dropped);
    expect(await content.has(addressOf(smuggled))).toBe(false);
    await expectConnectCode(ns.fetch({ name }), Code.NotFound);
    // The key's owner signs a newer record: taken, its blocks with it.
    const newer = await createNameRecord(key, utf8("head 4"), 4n);
    expect((await blocks.addMany({ blocks: [smuggled], pending: { name, content: utf8("head 4"), record: newer } })).ids).toHaveLength(1);
    expect((await ns.update({ name, content: utf8("head 4"), record: newer })).version).toBe(4n);
  });

  it("gives each refusal its Connect code", async () => {
    const { cas, ns, blocks } = clients();
    const missing = addressOf(utf8("missing"));
    await expectConnectCode(cas.get({ id: new Uint8Array([1, 2, 3]) }), Code.InvalidArgument, /not a binary CID/);
    await expectConnectCode(cas.get({ id: missing }), Code.NotFound, addressText(missing));
    await expectConnectCode(cas.add({ data: new Uint8Array(65) }), Code.ResourceExhausted, /65 bytes.*limit of 64/);
    await expectConnectCode(blocks.addMany({ blocks: [new Uint8Array(1), new Uint8Array(65)] }), Code.ResourceExhausted, /block 1/);
    await expectConnectCode(blocks.getMany({ ids: [missing, missing, missing, missing, missing] }), Code.ResourceExhausted);
    await expectConnectCode(blocks.getMany({ ids: [missing, new Uint8Array(0)] }), Code.InvalidArgument, /^id 1: /);
    await expectConnectCode(blocks.getMany({ ids: [missing] }), Code.NotFound, addressText(missing));
    await expectConnectCode(ns.fetch({ name: "nobody" }), Code.NotFound, /"nobody"/);
    await expectConnectCode(ns.update({ name: "", content: new Uint8Array(0) }), Code.InvalidArgument);
    await expectConnectCode(ns.update({ name: "n", content: new Uint8Array(65) }), Code.ResourceExhausted);
  });

  it("reports DATA_LOSS as DataLoss", async () => {
    const store = new MemoryContentStore();
    const { cas } = clients(store);
    const { id } = await cas.add({ data: utf8("soon corrupt") });
    store.corrupt(id, utf8("corrupted"));
    await expectConnectCode(cas.get({ id }), Code.DataLoss);
  });

  it("answers Internal without internals when a store breaks, and tells the server", async () => {
    const broken: ContentStore = {
      putMany: async () => {
        throw new Error("EIO: /var/lib/secret/blocks/ab/cd");
      },
      getMany: async () => {
        throw RemoteLogError.internal("disk gone at /var/lib/secret");
      },
      has: async () => false,
      close: async () => {},
    };
    const seen: string[] = [];
    const { cas } = clients(broken, undefined, (err, method) => seen.push(`${method}: ${(err.cause as Error).message}`));
    const put = await expectConnectCode(cas.add({ data: utf8("x") }), Code.Internal);
    expect(put.rawMessage).toBe("internal error");
    const get = await expectConnectCode(cas.get({ id: addressOf(utf8("x")) }), Code.Internal);
    expect(get.rawMessage).not.toMatch(/secret/);
    expect(seen).toEqual(["vac.cas.CAS/Add: EIO: /var/lib/secret/blocks/ab/cd", "vac.cas.CAS/Get: INTERNAL: disk gone at /var/lib/secret"]);
  });

  it("mounts only the services whose store is given", async () => {
    const casOnly = createRouterTransport(routes({ content: new MemoryContentStore() }));
    await expectConnectCode(createClient(NS, casOnly).fetch({ name: "x" }), Code.Unimplemented);
    expect((await createClient(CAS, casOnly).add({ data: utf8("x") })).id).toEqual(addressOf(utf8("x")));
    const nsOnly = createRouterTransport(routes({ names: new MemoryNameStore() }));
    await expectConnectCode(createClient(CAS, nsOnly).add({ data: utf8("x") }), Code.Unimplemented);
    await expectConnectCode(createClient(BlockService, nsOnly).getMany({}), Code.Unimplemented);
    expect((await createClient(NS, nsOnly).update({ name: "x", content: utf8("y") })).version).toBe(1n);
  });
});
