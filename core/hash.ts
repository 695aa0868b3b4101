import { createHash } from "node:crypto";
import { CID } from "multiformats/cid";
import * as Digest from "multiformats/hashes/digest";
import { toBinary, fromBinary, create } from "@bufbuild/protobuf";
import { MessageSchema, type Message } from "../gen/vac/mvds/mvds_pb.js";
import { RemoteLogError } from "./errors.js";

/** The multicodec of raw bytes, the only codec our CAS addresses use. */
export const RAW_CODEC = 0x55;
/** The multihash code of sha2-256. */
export const SHA2_256 = 0x12;

const MESSAGE_ID_PREFIX = Buffer.from("MESSAGE_ID", "ascii");

/**
 * H1, the MVDS message id, laid out as the reference Go implementation does:
 * SHA-256("MESSAGE_ID" || group_id || LE64(timestamp) || body). Metadata is not hashed.
 */
export function messageId(message: Pick<Message, "groupId" | "timestamp" | "body">): Uint8Array {
  const timestamp = Buffer.allocUnsafe(8);
  timestamp.writeBigInt64LE(BigInt.asIntN(64, message.timestamp));
  return new Uint8Array(
    createHash("sha256").update(MESSAGE_ID_PREFIX).update(message.groupId).update(timestamp).update(message.body).digest(),
  );
}

/**
 * H2, the CAS address of bytes: binary CIDv1, raw codec, sha2-256, the same CID that
 * `ipfs block put --cid-codec raw` gives. The digest comes from node:crypto because the multiformats
 * hasher is async and this runs once per message on every hot path.
 */
export function cidOf(bytes: Uint8Array): CID {
  const digest = createHash("sha256").update(bytes).digest();
  return CID.createV1(RAW_CODEC, Digest.create(SHA2_256, new Uint8Array(digest.buffer, digest.byteOffset, digest.length)));
}

export function addressOf(bytes: Uint8Array): Uint8Array {
  return cidOf(bytes).bytes;
}

/**
 * Parses a binary address and accepts only what this CAS hands out (CIDv1, raw, sha2-256 of 32 bytes);
 * anything else is INVALID_ARGUMENT, so a malformed address never reaches a store.
 */
export function parseAddress(bytes: Uint8Array): CID {
  let cid: CID;
  try {
    cid = CID.decode(bytes);
  } catch (err) {
    throw RemoteLogError.invalidArgument(`address is not a binary CID (${(err as Error).message})`, err);
  }
  checkAddress(cid);
  return cid;
}

/** Parses a text address (base32 `bafk…` or any multibase CID string). */
export function parseAddressText(text: string): CID {
  let cid: CID;
  try {
    cid = CID.parse(text.trim());
  } catch (err) {
    throw RemoteLogError.invalidArgument(`${JSON.stringify(text)} is not a CID (${(err as Error).message})`, err);
  }
  checkAddress(cid);
  return cid;
}

function checkAddress(cid: CID): void {
  if (cid.version !== 1 || cid.code !== RAW_CODEC || cid.multihash.code !== SHA2_256 || cid.multihash.size !== 32) {
    throw RemoteLogError.invalidArgument(
      `address ${cid.toString()} is not a CIDv1 with the raw codec and a sha2-256 multihash`,
    );
  }
}

/** True when bytes hash to the given address. */
export function matchesAddress(bytes: Uint8Array, address: CID | Uint8Array): boolean {
  const expected = address instanceof Uint8Array ? address : address.bytes;
  return equalBytes(addressOf(bytes), expected);
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

export function addressText(bytes: Uint8Array): string {
  return CID.decode(bytes).toString();
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex");
}

export function fromHex(text: string, what = "hex"): Uint8Array {
  const clean = text.trim();
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw RemoteLogError.invalidArgument(`${what} is not hex: ${JSON.stringify(clean.slice(0, 80))}`);
  }
  return new Uint8Array(Buffer.from(clean, "hex"));
}

export function encodeMessage(message: Message): Uint8Array {
  return toBinary(MessageSchema, message);
}

export function decodeMessage(bytes: Uint8Array, where = "message"): Message {
  try {
    return fromBinary(MessageSchema, bytes);
  } catch (err) {
    throw RemoteLogError.invalidArgument(`${where} is not a vac.mvds.Message (${(err as Error).message})`, err);
  }
}

export function newMessage(groupId: Uint8Array, timestamp: bigint, body: Uint8Array): Message {
  return create(MessageSchema, { groupId, timestamp, body });
}
