import { afterEach, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { chmod, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createIPNSRecord, marshalIPNSRecord, multihashToIPNSRoutingKey, unmarshalIPNSRecord } from "ipns";
import { ipnsValidator } from "ipns/validator";
import { generateKeyPair, privateKeyToProtobuf, publicKeyToProtobuf } from "@libp2p/crypto/keys";
import { base32 } from "multiformats/bases/base32";
import { base36 } from "multiformats/bases/base36";
import { CID } from "multiformats/cid";
import { bases } from "multiformats/basics";
import {
  DEFAULT_TTL_MS,
  DEFAULT_VALIDITY_MS,
  MAX_RECORD_BYTES,
  createNameRecord,
  canonicalKeyName,
  generateNameKey,
  isKeyName,
  keyName,
  parseKeyName,
  verifyNameRecord,
} from "../../core/names.js";
import { cidOf } from "../../core/hash.js";
import { loadKeyFile, saveKeyFile } from "../../stores/file/key-file.js";
import { TempDirs, failure } from "../stores/temp.js";
import { encodeCborMap, encodeEntry, rfc3339, signV2, signedRecord } from "../helpers/records.js";

const temp = new TempDirs();
afterEach(() => temp.removeAll());

const page = new TextEncoder().encode("head page bytes");
const otherPage = new TextEncoder().encode("another head page");
const utf8 = (text: string) => new TextEncoder().encode(text);

describe("names - other spellings of a key name", () => {
  it("maps upper case, base32 and peer-id spellings to the canonical name, and nothing else", async () => {
    const key = await generateNameKey();
    const name = keyName(key);
    const cid = CID.parse(name, base36);
    for (const spelling of [name.toUpperCase(), cid.toString(base32), key.publicKey.toString()]) {
      expect(isKeyName(spelling)).toBe(false);
      expect(canonicalKeyName(spelling)).toBe(name);
    }
    expect(canonicalKeyName(name)).toBeUndefined();
    for (const other of ["chat", "", "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq", "K51", "Qm"]) expect(canonicalKeyName(other)).toBeUndefined();
  });

  it("finds a key's spelling in any multibase, none of them shorter than the names it turns away unparsed", async () => {
    const key = await generateNameKey();
    const name = keyName(key);
    const cid = CID.parse(name, base36);
    for (const base of Object.values(bases)) {
      const spelling = cid.toString(base);
      // canonicalKeyName takes no string of under 41 UTF-8 bytes for a key.
      expect(new TextEncoder().encode(spelling).length, base.name).toBeGreaterThanOrEqual(41);
      // Over 200 characters (base2) is refused before any parse, and raw bytes (identity) are no spelling
      // a person types: neither was ever mapped.
      if (spelling !== name && spelling.length <= 200 && base.name !== "identity") expect(canonicalKeyName(spelling), base.name).toBe(name);
    }
  });
});

describe("names - key names", () => {
  it("names an Ed25519 key with its base36 CIDv1 libp2p-key, and parses it back", async () => {
    const key = await generateNameKey();
    const name = keyName(key);
    expect(name).toMatch(/^k51[0-9a-z]+$/);
    expect(keyName(key.publicKey)).toBe(name);
    expect(isKeyName(name)).toBe(true);
    expect(parseKeyName(name).equals(key.publicKey)).toBe(true);
  });

  it("refuses anything but the canonical spelling of an Ed25519 key", async () => {
    const key = await generateNameKey();
    const name = keyName(key);
    const cid = CID.parse(name, base36);
    const secp = keyName.bind(null, (await generateKeyPair("secp256k1")).publicKey);
    const notKeys = [
      "",
      "alice",
      "k51",
      name.slice(0, -1),
      `${name}a`,
      name.toUpperCase(),
      cid.toString(base32), // the same key, spelled in base32
      `K${name.slice(1)}`,
      (await generateKeyPair("secp256k1")).publicKey.toCID().toString(base36),
      CID.createV1(0x55, cid.multihash).toString(base36), // raw codec, not libp2p-key
      cidOf(page).toString(base36),
    ];
    for (const text of notKeys) {
      expect(isKeyName(text), text).toBe(false);
      expect(() => parseKeyName(text)).toThrow(/INVALID_ARGUMENT/);
    }
    expect(secp).toThrow(/INVALID_ARGUMENT/);
  });
});

describe("names - key files", () => {
  it("saves a key readable by its owner only, and loads it back", async () => {
    const dir = await temp.make();
    const path = join(dir, "remotelog.key");
    const key = await generateNameKey();
    await saveKeyFile(path, key);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(keyName(await loadKeyFile(path))).toBe(keyName(key));
    expect(await readdir(dir)).toEqual(["remotelog.key"]);
  });

  it("never overwrites a key file", async () => {
    const dir = await temp.make();
    const path = join(dir, "remotelog.key");
    const first = await generateNameKey();
    await saveKeyFile(path, first);
    const before = await readFile(path);
    await failure(saveKeyFile(path, await generateNameKey()), "CONFLICT");
    expect(await readFile(path)).toEqual(before);
    expect(keyName(await loadKeyFile(path))).toBe(keyName(first));
    expect(await readdir(dir)).toEqual(["remotelog.key"]);
  });

  it("refuses a missing directory with NOT_FOUND", async () => {
    const dir = await temp.make();
    await failure(saveKeyFile(join(dir, "no", "such.key"), await generateNameKey()), "NOT_FOUND");
  });

  it("loads with NOT_FOUND, PERMISSION_DENIED or INVALID_ARGUMENT for what is not a private key file", async () => {
    const dir = await temp.make();
    await failure(loadKeyFile(join(dir, "missing.key")), "NOT_FOUND");

    const open = join(dir, "open.key");
    await saveKeyFile(open, await generateNameKey());
    await chmod(open, 0o644);
    expect((await failure(loadKeyFile(open), "PERMISSION_DENIED")).message).toMatch(/chmod 600/);
    await chmod(open, 0o640);
    await failure(loadKeyFile(open), "PERMISSION_DENIED");

    const garbage = join(dir, "garbage.key");
    await writeFile(garbage, "not a key", { mode: 0o600 });
    await failure(loadKeyFile(garbage), "INVALID_ARGUMENT");

    const secp = join(dir, "secp.key");
    await writeFile(secp, privateKeyToProtobuf(await generateKeyPair("secp256k1")), { mode: 0o600 });
    await failure(loadKeyFile(secp), "INVALID_ARGUMENT");

    // A private half and a public half from two different keys.
    const mixed = join(dir, "mixed.key");
    const bytes = privateKeyToProtobuf(await generateNameKey());
    const other = privateKeyToProtobuf(await generateNameKey());
    bytes.set(other.subarray(bytes.length - 32), bytes.length - 32);
    await writeFile(mixed, bytes, { mode: 0o600 });
    await failure(loadKeyFile(mixed), "INVALID_ARGUMENT");

    await failure(loadKeyFile(dir), "INVALID_ARGUMENT");

    // A FIFO is refused at once, not waited on.
    const fifo = join(dir, "fifo.key");
    if (spawnSync("mkfifo", ["-m", "600", fifo]).status === 0) await failure(loadKeyFile(fifo), "INVALID_ARGUMENT");
  });
});

describe("names - records", () => {
  it("creates a V2 record that points the name at /ipfs/<cid of the content>, and verifies it", async () => {
    const key = await generateNameKey();
    const name = keyName(key);
    const before = Date.now();
    const record = await createNameRecord(key, page, 7n);
    const verified = await verifyNameRecord(name, record, page);
    expect(verified.sequence).toBe(7n);
    expect(verified.value).toBe(`/ipfs/${cidOf(page).toString()}`);
    expect(verified.ttlMs).toBe(DEFAULT_TTL_MS);
    expect(verified.validity.getTime()).toBeGreaterThanOrEqual(before + DEFAULT_VALIDITY_MS - 1);
    expect(verified.validity.getTime()).toBeLessThanOrEqual(Date.now() + DEFAULT_VALIDITY_MS);
    // The record is what IPNS itself accepts for this name, so it can be published to Kubo as it is.
    await ipnsValidator(multihashToIPNSRoutingKey(key.publicKey.toMultihash()), record);
    const parsed = unmarshalIPNSRecord(record);
    expect("signatureV1" in parsed && parsed.signatureV1 !== undefined).toBe(false);
    expect(parsed.pubKey).toBeUndefined();

    const custom = await verifyNameRecord(name, await createNameRecord(key, page, 0n, { validityMs: 5000, ttlMs: 1234 }), page);
    expect(custom.ttlMs).toBe(1234);
    expect(custom.sequence).toBe(0n);
  });

  it("verifies a V1+V2 record as Kubo writes them", async () => {
    const key = await generateNameKey();
    const record = marshalIPNSRecord(await createIPNSRecord(key, cidOf(page), 3n, 60_000, { v1Compatible: true }));
    expect((await verifyNameRecord(keyName(key), record, page)).sequence).toBe(3n);
  });

  it("refuses bad arguments to createNameRecord", async () => {
    const key = await generateNameKey();
    await failure(createNameRecord(key, page, -1n), "INVALID_ARGUMENT");
    await failure(createNameRecord(key, page, 1n << 64n), "INVALID_ARGUMENT");
    await failure(createNameRecord(key, page, 1n, { validityMs: 0 }), "INVALID_ARGUMENT");
    await failure(createNameRecord(key, page, 1n, { ttlMs: -1 }), "INVALID_ARGUMENT");
    await failure(createNameRecord(await generateKeyPair("secp256k1"), page, 1n), "INVALID_ARGUMENT");
  });

  it("TOO_LARGE: a record over IPNS's limit", async () => {
    const key = await generateNameKey();
    const err = await failure(verifyNameRecord(keyName(key), new Uint8Array(MAX_RECORD_BYTES + 1), page), "TOO_LARGE");
    expect(err.message).toContain(keyName(key));
  });

  it("INVALID_ARGUMENT: bytes that are not a record, or lack V2 signature data", async () => {
    const key = await generateNameKey();
    const name = keyName(key);
    const good = await createNameRecord(key, page, 1n);
    const data = unmarshalIPNSRecord(good).data;
    const cases: Record<string, Uint8Array> = {
      empty: new Uint8Array(0),
      garbage: utf8("this is not a protobuf"),
      "truncated by one byte": good.subarray(0, good.length - 1),
      "truncated to half": good.subarray(0, good.length >> 1),
      "no signatureV2": encodeEntry({ data }),
      "no data": encodeEntry({ signatureV2: unmarshalIPNSRecord(good).signatureV2 }),
      "V1 only": encodeEntry({ value: utf8(`/ipfs/${cidOf(page)}`), signatureV1: new Uint8Array(64), validityType: 0, validity: rfc3339(new Date(Date.now() + 60_000)), sequence: 1n }),
      "data that is not CBOR": encodeEntry({ data: Uint8Array.of(0xff, 0xff), signatureV2: new Uint8Array(64) }),
    };
    for (const [what, record] of Object.entries(cases)) {
      const err = await failure(verifyNameRecord(name, record, page), "INVALID_ARGUMENT");
      expect(err.message, what).toContain(name);
    }
  });

  it("INVALID_ARGUMENT: a name that is not a key name", async () => {
    const key = await generateNameKey();
    await failure(verifyNameRecord("alice", await createNameRecord(key, page, 1n), page), "INVALID_ARGUMENT");
  });

  it("INVALID_ARGUMENT: signed fields of the wrong kind", async () => {
    const key = await generateNameKey();
    const name = keyName(key);
    const value = utf8(`/ipfs/${cidOf(page)}`);
    const cases = {
      "a negative sequence": await signedRecord(key, { Value: value, Sequence: -1n }),
      "a text sequence": await signedRecord(key, { Value: value, Sequence: "1" }),
      "a validity that is not a time": await signedRecord(key, { Value: value, Validity: utf8("tomorrow") }),
      "a negative TTL": await signedRecord(key, { Value: value, TTL: -5n }),
      "another validity type": await signedRecord(key, { Value: value, ValidityType: 1 }),
      "no TTL": await (async () => {
        const data = encodeCborMap({ Value: value, Validity: rfc3339(new Date(Date.now() + 60_000)), ValidityType: 0, Sequence: 1n });
        return encodeEntry({ data, signatureV2: await signV2(key, data) });
      })(),
    };
    for (const [what, record] of Object.entries(cases)) {
      const err = await failure(verifyNameRecord(name, record, page), "INVALID_ARGUMENT");
      expect(err.message, what).toContain(name);
    }
  });

  it("INVALID_ARGUMENT: a value that is not /ipfs/<cid>, or names another CID", async () => {
    const key = await generateNameKey();
    const name = keyName(key);
    const values = [`/ipns/${name}`, "/ipfs/not-a-cid", `/ipfs/${cidOf(page)}/sub/path`, "/other", `/ipfs/${cidOf(otherPage)}`];
    for (const value of values) {
      const record = marshalIPNSRecord(await createIPNSRecord(key, value, 1n, 60_000, { v1Compatible: false }));
      const err = await failure(verifyNameRecord(name, record, page), "INVALID_ARGUMENT");
      expect(err.message, value).toContain(name);
    }
    const record = await createNameRecord(key, page, 1n);
    const err = await failure(verifyNameRecord(name, record, otherPage), "INVALID_ARGUMENT");
    expect(err.message).toContain(cidOf(otherPage).toString());
  });

  it("PERMISSION_DENIED: a signature that does not verify with the name's key", async () => {
    const key = await generateNameKey();
    const thief = await generateNameKey();
    const name = keyName(key);
    // The thief's own record, claimed for the victim's name.
    await failure(verifyNameRecord(name, await createNameRecord(thief, page, 9n), page), "PERMISSION_DENIED");

    const good = await createNameRecord(key, page, 1n);
    const parsed = unmarshalIPNSRecord(good);
    for (let i = 0; i < parsed.signatureV2.length; i += 13) {
      const signature = parsed.signatureV2.slice();
      signature[i] ^= 0x01;
      await failure(verifyNameRecord(name, encodeEntry({ data: parsed.data, signatureV2: signature }), page), "PERMISSION_DENIED");
    }
    // Signed data changed after signing: a higher sequence.
    const data = encodeCborMap({ Value: utf8(`/ipfs/${cidOf(page)}`), Validity: rfc3339(new Date(Date.now() + 60_000)), ValidityType: 0, Sequence: 2n, TTL: 0n });
    await failure(verifyNameRecord(name, encodeEntry({ data, signatureV2: parsed.signatureV2 }), page), "PERMISSION_DENIED");
    // A truncated signature.
    await failure(verifyNameRecord(name, encodeEntry({ data: parsed.data, signatureV2: parsed.signatureV2.subarray(0, 32) }), page), "PERMISSION_DENIED");
  });

  it("PERMISSION_DENIED: a record signed by another key that embeds that key", async () => {
    const key = await generateNameKey();
    const thief = await generateNameKey();
    const name = keyName(key);
    const theirs = unmarshalIPNSRecord(await createNameRecord(thief, page, 5n));
    const record = encodeEntry({ data: theirs.data, signatureV2: theirs.signatureV2, pubKey: publicKeyToProtobuf(thief.publicKey) });
    const err = await failure(verifyNameRecord(name, record, page), "PERMISSION_DENIED");
    expect(err.message).toContain(name);
    // Even the owner's own valid signature does not excuse a wrong embedded key.
    const mine = unmarshalIPNSRecord(await createNameRecord(key, page, 5n));
    await failure(
      verifyNameRecord(name, encodeEntry({ data: mine.data, signatureV2: mine.signatureV2, pubKey: publicKeyToProtobuf(thief.publicKey) }), page),
      "PERMISSION_DENIED",
    );
    // Embedding the name's own key is allowed.
    const embedded = encodeEntry({ data: mine.data, signatureV2: mine.signatureV2, pubKey: publicKeyToProtobuf(key.publicKey) });
    expect((await verifyNameRecord(name, embedded, page)).sequence).toBe(5n);
  });

  it("PERMISSION_DENIED: a valid record of one name presented for another", async () => {
    const alice = await generateNameKey();
    const bob = await generateNameKey();
    await failure(verifyNameRecord(keyName(bob), await createNameRecord(alice, page, 1n), page), "PERMISSION_DENIED");
  });

  it("CONFLICT: an expired record", async () => {
    const key = await generateNameKey();
    const name = keyName(key);
    const record = await createNameRecord(key, page, 1n, { validityMs: 60_000 });
    await verifyNameRecord(name, record, page, { now: new Date(Date.now() + 30_000) });
    const err = await failure(verifyNameRecord(name, record, page, { now: new Date(Date.now() + 120_000) }), "CONFLICT");
    expect(err.message).toContain(name);
    const short = await createNameRecord(key, page, 1n, { validityMs: 1 });
    await new Promise((resolve) => setTimeout(resolve, 5));
    await failure(verifyNameRecord(name, short, page), "CONFLICT");
  });

  it("agrees with ipnsValidator on what is valid", async () => {
    const key = await generateNameKey();
    const routingKey = multihashToIPNSRoutingKey(key.publicKey.toMultihash());
    const good = await createNameRecord(key, page, 1n);
    const forged = await createNameRecord(await generateNameKey(), page, 1n);
    await ipnsValidator(routingKey, good);
    await verifyNameRecord(keyName(key), good, page);
    await expect(ipnsValidator(routingKey, forged)).rejects.toThrow();
    await failure(verifyNameRecord(keyName(key), forged, page), "PERMISSION_DENIED");
  });
});
