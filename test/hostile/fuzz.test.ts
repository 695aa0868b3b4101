import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createHash } from "node:crypto";
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import { create, toBinary } from "@bufbuild/protobuf";
import { createIPNSRecordWithExpiration, marshalIPNSRecord } from "ipns";
import { AddressSchema, ContentSchema, NameUpdateSchema, QuerySchema, RemoteLogSchema } from "../../gen/vac/cas/cas_pb.js";
import { AddManyRequestSchema, GetManyRequestSchema } from "../../gen/remotelog/v1/blocks_pb.js";
import { isRemoteLogError, type ErrorCode } from "../../core/errors.js";
import { addressOf, cidOf, decodeMessage, encodeMessage, equalBytes, newMessage } from "../../core/hash.js";
import { decodePage } from "../../core/page.js";
import { keyName, verifyNameRecord, type PrivateKey } from "../../core/names.js";
import { NsService } from "../../services/ns-service.js";
import { CasService } from "../../services/cas-service.js";
import { BlockServiceImpl } from "../../services/block-service.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { encodeCborMap, encodeEntry, signV2 } from "../helpers/records.js";

/*
 * Seeded, time-bounded fuzzing of everything that parses input from the network: every input either
 * succeeds or fails with a RemoteLogError of one of the codes expected there, never anything else,
 * never a hang, and a refused NS update changes nothing. REMOTELOG_FUZZ_SEED=<n> replays a run; the
 * seed is printed at the start, and fast-check prints the failing path with it.
 */

const baseSeed = process.env.REMOTELOG_FUZZ_SEED !== undefined ? Number(process.env.REMOTELOG_FUZZ_SEED) : Date.now() % 0x7fffffff;
if (!Number.isSafeInteger(baseSeed)) throw new Error(`REMOTELOG_FUZZ_SEED must be an integer, not ${process.env.REMOTELOG_FUZZ_SEED}`);
console.log(`fuzz seed ${baseSeed} (replay with REMOTELOG_FUZZ_SEED=${baseSeed})`);

/** The least number of inputs the file must run in all, whatever the machine. */
const MIN_TOTAL = 100_000;
const counts: Record<string, number> = {};
const started = Date.now();

/** Options for one fc.assert: its own seed from the base, its share of runs, and a time bound. */
function params(target: string, index: number, numRuns: number, timeLimitMs: number) {
  counts[target] = 0;
  return { seed: (baseSeed + index * 7919) | 0, numRuns, interruptAfterTimeLimit: timeLimitMs, markInterruptAsFailure: false };
}

/** How each target's inputs ended (ok or a code), logged at the end to show that the inputs reach past the first check. */
const outcomes: Record<string, Record<string, number>> = {};

function tally(target: string, outcome: string): void {
  const of = (outcomes[target] ??= {});
  of[outcome] = (of[outcome] ?? 0) + 1;
}

/** Runs body, and fails unless it succeeded or threw a RemoteLogError with one of codes. */
function expectOnly<T>(target: string, codes: readonly ErrorCode[], body: () => T): T | undefined {
  try {
    const result = body();
    tally(target, "ok");
    return result;
  } catch (err) {
    checkError(target, err, codes);
    return undefined;
  }
}

async function expectOnlyAsync<T>(target: string, codes: readonly ErrorCode[], body: () => Promise<T>): Promise<T | undefined> {
  try {
    const result = await body();
    tally(target, "ok");
    return result;
  } catch (err) {
    checkError(target, err, codes);
    return undefined;
  }
}

function checkError(target: string, err: unknown, codes: readonly ErrorCode[]): void {
  if (!isRemoteLogError(err) || !codes.includes(err.code)) {
    throw new Error(`${target}: expected a RemoteLogError with one of ${codes.join(", ")}, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`, { cause: err });
  }
  tally(target, err.code);
}

/** Random damage to valid bytes: flips, cuts, insertions, overwrites, concatenation. */
function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const edit = fc.oneof(
    fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
    fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    fc.record({ kind: fc.constant("set" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant("append" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }) }),
  );
  return fc.tuple(valid, fc.array(edit, { minLength: 0, maxLength: 3 })).map(([bytes, edits]) => {
    let out = Uint8Array.from(bytes);
    for (const e of edits) {
      const at = out.length === 0 ? 0 : e.kind === "append" ? 0 : e.at % out.length;
      if (e.kind === "flip" && out.length > 0) out[at] ^= 1 << e.bit;
      else if (e.kind === "set" && out.length > 0) out[at] = e.byte;
      else if (e.kind === "cut") out = out.subarray(0, at);
      else if (e.kind === "insert") out = Uint8Array.from([...out.subarray(0, at), ...e.bytes, ...out.subarray(at)]);
      else if (e.kind === "append") out = Uint8Array.from([...out, ...e.bytes]);
    }
    return out;
  });
}

const anyBytes = fc.uint8Array({ maxLength: 300 });

const messageArb = fc
  .record({ groupId: fc.uint8Array({ maxLength: 40 }), timestamp: fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }), body: fc.uint8Array({ maxLength: 200 }) })
  .map((m) => encodeMessage(newMessage(m.groupId, m.timestamp, m.body)));

const pageArb = fc
  .record({
    pairs: fc.array(fc.record({ body: fc.uint8Array({ maxLength: 40 }), localHash: fc.uint8Array({ minLength: 32, maxLength: 32 }), embed: fc.boolean() }), { maxLength: 6 }),
    tail: fc.option(fc.uint8Array({ maxLength: 20 }), { nil: undefined }),
  })
  .map(({ pairs, tail }) =>
    toBinary(
      RemoteLogSchema,
      create(RemoteLogSchema, {
        pair: pairs.map((p) => ({ remoteHash: addressOf(p.body), localHash: p.localHash, data: p.embed ? p.body : new Uint8Array(0) })),
        tail: tail === undefined ? new Uint8Array(0) : addressOf(tail),
      }),
    ),
  );

describe("fuzz - decoders", () => {
  it("decodeMessage: INVALID_ARGUMENT or a message that encodes back to the same fields", () => {
    fc.assert(
      fc.property(fc.oneof(anyBytes, messageArb, mutated(messageArb)), (bytes) => {
        counts.decodeMessage++;
        const message = expectOnly("decodeMessage", ["INVALID_ARGUMENT"], () => decodeMessage(bytes));
        if (message) expect(decodeMessage(encodeMessage(message))).toMatchObject({ groupId: message.groupId, timestamp: message.timestamp, body: message.body });
      }),
      params("decodeMessage", 1, 50_000, 6_000),
    );
  });

  it("decodePage: INVALID_ARGUMENT, or DATA_LOSS when asked to blame the store", () => {
    fc.assert(
      fc.property(fc.oneof(anyBytes, pageArb, mutated(pageArb)), fc.boolean(), (bytes, stored) => {
        counts.decodePage++;
        const code: ErrorCode = stored ? "DATA_LOSS" : "INVALID_ARGUMENT";
        const page = expectOnly("decodePage", [code], () => decodePage(bytes, "page", code));
        if (page) {
          for (const pair of page.pair) expect(pair.localHash.length).toBe(32);
        }
      }),
      params("decodePage", 2, 40_000, 5_000),
    );
  });
});

describe("fuzz - signed names", () => {
  // A fixed validity rather than one from the clock, so that a replayed seed damages the same bytes.
  const EXPIRES = "2100-01-01T00:00:00.000000000Z";
  const AFTER_EXPIRY = new Date("2100-01-01T00:00:00.001Z");
  let owner: PrivateKey;
  let name: string;
  let contents: Uint8Array[];
  /** Valid records of the owner's name, one per (content, sequence), to damage. */
  let valid: { content: Uint8Array; sequence: bigint; record: Uint8Array }[];
  let otherName: string;

  beforeAll(async () => {
    // Keys from the seed, so that a replayed seed meets the same names and records.
    const keyFromSeed = (who: string) => generateKeyPairFromSeed("Ed25519", createHash("sha256").update(`fuzz ${who} ${baseSeed}`).digest());
    owner = await keyFromSeed("owner");
    name = keyName(owner);
    otherName = keyName(await keyFromSeed("other"));
    contents = [0, 1, 2, 3].map((i) => new TextEncoder().encode(`page ${i}`));
    valid = [];
    for (const [i, content] of contents.entries()) {
      for (const step of [1n, 2n, 3n]) {
        const sequence = BigInt(i) * 3n + step;
        valid.push({ content, sequence, record: marshalIPNSRecord(await createIPNSRecordWithExpiration(owner, `/ipfs/${cidOf(content)}`, sequence, EXPIRES, { v1Compatible: false, ttlNs: 60_000_000_000n })) });
      }
    }
    // A V1+V2 record as Kubo writes them, and a hand-built one, so that mutations reach every parser.
    valid.push({ content: contents[0], sequence: 20n, record: marshalIPNSRecord(await createIPNSRecordWithExpiration(owner, cidOf(contents[0]), 20n, EXPIRES, { v1Compatible: true })) });
    const data = encodeCborMap({ Value: new TextEncoder().encode(`/ipfs/${cidOf(contents[1])}`), Validity: new TextEncoder().encode(EXPIRES), ValidityType: 0, Sequence: 21n, TTL: 5n });
    valid.push({ content: contents[1], sequence: 21n, record: encodeEntry({ data, signatureV2: await signV2(owner, data) }) });
  });

  const VERIFY_CODES = ["TOO_LARGE", "INVALID_ARGUMENT", "PERMISSION_DENIED", "CONFLICT", "ABORTED"] as const;

  it("verifyNameRecord: only its codes, and whatever verifies says exactly what the owner signed", async () => {
    const pick = () => fc.nat({ max: valid.length - 1 }).map((i) => valid[i]);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({ base: pick(), record: anyBytes }),
          fc.record({ base: pick(), record: fc.constant(undefined) }),
          pick().chain((base) => fc.record({ base: fc.constant(base), record: mutated(fc.constant(base.record)) })),
        ),
        fc.integer({ min: 0, max: 9 }),
        async ({ base, record }, variant) => {
          counts.verifyNameRecord++;
          const bytes = record ?? base.record;
          // Mostly the record's own name and content; sometimes another name, content, or a late clock.
          const forName = variant === 0 ? otherName : name;
          const content = variant === 1 ? contents[(contents.indexOf(base.content) + 1) % contents.length] : base.content;
          const now = variant === 2 ? AFTER_EXPIRY : undefined;
          const result = await expectOnlyAsync("verifyNameRecord", VERIFY_CODES, () => verifyNameRecord(forName, bytes, content, { now }));
          if (result) {
            expect(forName).toBe(name);
            expect(result.value).toBe(`/ipfs/${cidOf(content)}`);
            expect(result.sequence).toBe(base.sequence);
            expect(content).toBe(base.content);
          }
        },
      ),
      params("verifyNameRecord", 3, 20_000, 8_000),
    );
  });

  it("NsService: only its codes, refused updates change nothing, and stored records verify", async () => {
    const store = new MemoryNameStore();
    const ns = new NsService(store, { maxContentBytes: 64, maxNameBytes: 80 });
    const names = fc.oneof(
      fc.constant(name),
      fc.constant(otherName),
      fc.constantFrom("alice", "k51", name.toUpperCase(), `${name}x`),
      fc.string({ maxLength: 90 }),
      fc.string({ unit: "binary", maxLength: 20 }),
    );
    const records = fc.oneof(
      fc.constant(new Uint8Array(0)),
      fc.nat({ max: valid.length - 1 }).map((i) => valid[i].record),
      fc.nat({ max: valid.length - 1 }).chain((i) => mutated(fc.constant(valid[i].record))),
      anyBytes,
    );
    const contentArb = fc.oneof(fc.constantFrom(...contents), fc.uint8Array({ maxLength: 100 }));
    const update = fc.record({
      op: fc.constant("update" as const),
      name: names,
      content: contentArb,
      record: records,
      expectedVersion: fc.option(fc.bigInt({ min: 0n, max: 30n }), { nil: undefined }),
    });
    // Matching record and content, whose sequence decides: new, republished or stale.
    const signedUpdate = fc.record({
      op: fc.constant("update" as const),
      pick: fc.nat({ max: valid.length - 1 }),
      expectedVersion: fc.option(fc.bigInt({ min: 0n, max: 30n }), { nil: undefined }),
    }).map(({ op, pick, expectedVersion }) => ({ op, name, content: valid[pick].content, record: valid[pick].record, expectedVersion }));
    const fetch = fc.record({ op: fc.constant("fetch" as const), name: names });
    await fc.assert(
      fc.asyncProperty(fc.oneof(update, update, signedUpdate, fetch), async (command) => {
        counts.ns++;
        if (command.op === "fetch") {
          const content = await expectOnlyAsync("NS.Fetch", ["INVALID_ARGUMENT", "NOT_FOUND"], () => ns.fetch(create(QuerySchema, { name: command.name })));
          if (content && content.record.length > 0) await verifyNameRecord(command.name, content.record, content.data, {});
          return;
        }
        const before = await store.get(command.name);
        const { op: _, ...request } = command;
        const response = await expectOnlyAsync(command.record.length > 0 ? "NS.Update signed" : "NS.Update unsigned", ["INVALID_ARGUMENT", "TOO_LARGE", "PERMISSION_DENIED", "CONFLICT", "ABORTED"], () =>
          ns.update(create(NameUpdateSchema, request)),
        );
        const after = await store.get(command.name);
        if (response === undefined) {
          expect(after).toEqual(before);
        } else {
          expect(after?.version).toBe(response.version);
          expect(equalBytes(after!.content, command.content)).toBe(true);
          expect(equalBytes(after!.record, command.record)).toBe(true);
          if (command.record.length > 0) expect((await verifyNameRecord(command.name, after!.record, after!.content)).sequence).toBe(after!.version);
        }
      }),
      params("ns", 4, 15_000, 8_000),
    );
  });
});

describe("fuzz - CAS", () => {
  const store = new MemoryContentStore();
  afterAll(() => store.close());
  const cas = new CasService(store, { maxBlockBytes: 256 });
  const blocks = new BlockServiceImpl(store, { maxBlockBytes: 256, maxBatchBlocks: 8 });
  const blockArb = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 250, maxLength: 300 }));
  // Ids that are valid addresses of stored or unstored blocks, near misses, or anything.
  const idArb = fc.oneof(blockArb.map((b) => addressOf(b)), mutated(blockArb.map((b) => addressOf(b))), fc.uint8Array({ maxLength: 40 }));

  it("CasService: Add and Get, only their codes, and Get returns what matches its address", async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.record({ add: blockArb }), fc.record({ get: idArb })), async (command) => {
        counts.cas++;
        if ("add" in command) {
          const address = await expectOnlyAsync("CAS.Add", ["TOO_LARGE"], () => cas.add(create(ContentSchema, { data: command.add })));
          if (address) expect(equalBytes(address.id, addressOf(command.add))).toBe(true);
          else expect(command.add.length).toBeGreaterThan(256);
        } else {
          const content = await expectOnlyAsync("CAS.Get", ["INVALID_ARGUMENT", "NOT_FOUND"], () => cas.get(create(AddressSchema, { id: command.get })));
          if (content) expect(equalBytes(addressOf(content.data), command.get)).toBe(true);
        }
      }),
      params("cas", 5, 15_000, 4_000),
    );
  });

  it("BlockServiceImpl: AddMany and GetMany, only their codes, and GetMany returns what matches", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.record({ addMany: fc.array(blockArb, { maxLength: 10 }) }),
          fc.record({ getMany: fc.array(idArb, { maxLength: 10 }), allowMissing: fc.boolean() }),
        ),
        async (command) => {
          counts.blocks++;
          if ("addMany" in command) {
            const response = await expectOnlyAsync("AddMany", ["TOO_LARGE"], () => blocks.addMany(create(AddManyRequestSchema, { blocks: command.addMany })));
            if (response) expect(response.ids.map((id) => Buffer.from(id).toString("hex"))).toEqual(command.addMany.map((b) => Buffer.from(addressOf(b)).toString("hex")));
          } else {
            const response = await expectOnlyAsync("GetMany", ["TOO_LARGE", "INVALID_ARGUMENT", "NOT_FOUND"], () =>
              blocks.getMany(create(GetManyRequestSchema, { ids: command.getMany, allowMissing: command.allowMissing })),
            );
            if (response) {
              response.blocks.forEach((block, i) => {
                if (!response.missing.includes(i)) expect(equalBytes(addressOf(block), command.getMany[i])).toBe(true);
              });
            }
          }
        },
      ),
      params("blocks", 6, 10_000, 4_000),
    );
  });
});

describe("fuzz - total", () => {
  it(`ran at least ${MIN_TOTAL} inputs`, () => {
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    console.log(`fuzz seed ${baseSeed}: ${total} inputs in ${((Date.now() - started) / 1000).toFixed(1)} s (${JSON.stringify(counts)})`);
    console.log(`fuzz outcomes: ${JSON.stringify(outcomes)}`);
    expect(total).toBeGreaterThanOrEqual(MIN_TOTAL);
  });
});
