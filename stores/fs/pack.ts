/*
 * Pack files: the on-disk format of FsContentStore (content-store.ts).
 *
 * Blocks go into pack files, as restic and git pack many small objects into one file: an fsync costs
 * ~400 µs and a file creation ~80 µs here, so one file per block could never store 10,000 messages
 * in a few tens of milliseconds. One pack per putMany call that stores something new; calls made
 * while a pack is being written are grouped into the next one. Packs are immutable once renamed into
 * place. All integers are big-endian.
 *
 *   <dir>/packs/<name>.pack
 *
 *   offset          size        field
 *   0               4           magic "RLPK"
 *   4               4           u32 format version, 2 (1 in stores written before it, still read)
 *   8               sum(len)    data: the blocks' bytes, back to back, in index order, no padding
 *   indexOffset     40 × count  index: per block a 32-byte sha2-256 digest, a u32 length and a u32
 *                               CRC-32 of its bytes (version 1: 36 × count, no CRC-32)
 *   end - 56        8           u64 indexOffset (= 8 + sum of the lengths)
 *   end - 48        4           u32 count
 *   end - 44        4           u32 format version, as at 4 (again, so the trailer can be checked alone)
 *   end - 40        32          sha2-256 of the index followed by the 16 bytes above
 *   end - 8         8           magic "RLPKEND\n"
 *
 * - A block's offset is not stored: it is 8 plus the lengths before it, so an index entry costs 40
 *   bytes and a pack 64 bytes more. Every address is a CIDv1 raw sha2-256, so the digest is all of it
 *   that needs storing; the CID is the fixed prefix 01 55 12 20 followed by the digest.
 * - <name> is the first 16 bytes, in hex, of the index checksum. The index lists every block's hash,
 *   so the name identifies the content: two writers can never pick the same name for different packs,
 *   and open() checks each name against its checksum, which catches a renamed or damaged file.
 * - open() reads only headers, trailers and indexes. Block bytes are checked when they are read:
 *   against the CRC-32 its index holds (version 2), which the index checksum covers, else by
 *   re-hashing the block. A CRC-32 that does not match sends the block to the re-hash, which decides.
 *   Re-hashing was a sixth of a server's CPU per block read; a CRC-32 costs a fifth of a SHA-256 of a
 *   300-byte block. `check` still re-hashes every block.
 * - A pack is written as <name>.pack.<pid>-<random>.tmp, fsynced, renamed, and the directory fsynced.
 *   A crash leaves at most a .tmp file, which open() removes once its writer is dead.
 */
import { hash } from "node:crypto";
import { crc32 } from "node:zlib";
import { open, type FileHandle } from "node:fs/promises";
import { constants as bufferConstants } from "node:buffer";
import { RemoteLogError } from "../../core/errors.js";
import { ioError } from "../file/atomic.js";

const MAGIC = Buffer.from("RLPK", "latin1");
const END_MAGIC = Buffer.from("RLPKEND\n", "latin1");
/** The version encodePack writes. */
const VERSION = 2;
/** Versions read: 1 has no CRC-32 in its index entries. */
const VERSIONS = [1, 2];
export const HEADER_SIZE = 8;
/** An index entry as encodePack writes it: digest, length, CRC-32. */
export const ENTRY_SIZE = 40;
/** An index entry of a version 1 pack: digest, length. */
const ENTRY_SIZE_V1 = 36;

/** The index entry size of a pack of this version. */
export function entrySize(version: number): number {
  return version === 1 ? ENTRY_SIZE_V1 : ENTRY_SIZE;
}

/** A block's CRC-32 as the index of a version 2 pack holds it. */
export function blockChecksum(block: Uint8Array): number {
  return crc32(block);
}
export const TRAILER_SIZE = 56;
export const PACK_NAME = /^[0-9a-f]{32}\.pack$/;

/** The largest pack (and so the most new bytes one call may store): what fits in one Buffer. */
export const MAX_PACK_SIZE = bufferConstants.MAX_LENGTH;

/**
 * Lays out a pack of blocks whose addresses (36-byte CIDs) are given, and names it. Throws TOO_LARGE
 * when it would not fit in one buffer.
 */
export function encodePack(blocks: Uint8Array[], addresses: Uint8Array[]): { name: string; bytes: Buffer; checksums: Uint32Array } {
  let dataSize = 0;
  for (const block of blocks) dataSize += block.length;
  const indexOffset = HEADER_SIZE + dataSize;
  const total = indexOffset + blocks.length * ENTRY_SIZE + TRAILER_SIZE;
  if (total > MAX_PACK_SIZE) {
    throw RemoteLogError.tooLarge(`${blocks.length} blocks of ${dataSize} bytes do not fit in one pack; store them in smaller calls`);
  }
  const bytes = Buffer.allocUnsafe(total);
  MAGIC.copy(bytes, 0);
  bytes.writeUInt32BE(VERSION, 4);
  let at = HEADER_SIZE;
  for (const block of blocks) {
    bytes.set(block, at);
    at += block.length;
  }
  const checksums = new Uint32Array(blocks.length);
  for (let i = 0; i < blocks.length; i++) {
    checksums[i] = blockChecksum(blocks[i]);
    bytes.set(addresses[i].subarray(4), at);
    bytes.writeUInt32BE(blocks[i].length, at + 32);
    bytes.writeUInt32BE(checksums[i], at + 36);
    at += ENTRY_SIZE;
  }
  writeTrailerFields(bytes, at, indexOffset, blocks.length);
  const checksum = hash("sha256", bytes.subarray(indexOffset, at + 16), "buffer");
  checksum.copy(bytes, at + 16);
  END_MAGIC.copy(bytes, at + 48);
  return { name: `${checksum.subarray(0, 16).toString("hex")}.pack`, bytes, checksums };
}

function writeTrailerFields(bytes: Buffer, at: number, indexOffset: number, count: number): void {
  bytes.writeBigUInt64BE(BigInt(indexOffset), at);
  bytes.writeUInt32BE(count, at + 8);
  bytes.writeUInt32BE(VERSION, at + 12);
}

/** A pack's index as readPackIndex checked it: its entries, entrySize(version) bytes each. */
export interface PackIndex {
  version: number;
  entries: Buffer;
}

/**
 * Reads and checks a pack's header, trailer and index, and returns the index entries. Throws
 * DATA_LOSS naming the file when any of them is wrong.
 */
export async function readPackIndex(path: string, name: string): Promise<PackIndex> {
  const bad = (why: string) => RemoteLogError.dataLoss(`pack ${path} is damaged: ${why}`);
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    throw ioError(`cannot open pack ${path}`, err, path);
  }
  try {
    const size = (await handle.stat()).size;
    if (size < HEADER_SIZE + TRAILER_SIZE) throw bad(`${size} bytes is shorter than an empty pack`);
    const header = await readExactly(handle, 0, HEADER_SIZE);
    if (!header.subarray(0, 4).equals(MAGIC)) throw bad("no pack magic at the start");
    const version = header.readUInt32BE(4);
    if (!VERSIONS.includes(version)) throw bad(`format version ${version}, expected one of ${VERSIONS.join(", ")}`);
    const trailer = await readExactly(handle, size - TRAILER_SIZE, TRAILER_SIZE);
    if (!trailer.subarray(48).equals(END_MAGIC)) throw bad("no trailer magic at the end (truncated?)");
    const indexOffset = Number(trailer.readBigUInt64BE(0));
    const count = trailer.readUInt32BE(8);
    if (trailer.readUInt32BE(12) !== version) throw bad(`trailer format version ${trailer.readUInt32BE(12)}, the header says ${version}`);
    const entry = entrySize(version);
    if (indexOffset < HEADER_SIZE || indexOffset + count * entry + TRAILER_SIZE !== size) {
      throw bad(`index of ${count} entries at ${indexOffset} does not fit a file of ${size} bytes`);
    }
    const indexAndFields = await readExactly(handle, indexOffset, count * entry + 16);
    indexAndFields.set(trailer.subarray(0, 16), count * entry);
    const checksum = hash("sha256", indexAndFields, "buffer");
    if (!checksum.equals(trailer.subarray(16, 48))) throw bad("index checksum mismatch");
    if (`${checksum.subarray(0, 16).toString("hex")}.pack` !== name) throw bad("file name does not match its index checksum");
    const entries = indexAndFields.subarray(0, count * entry);
    let dataSize = 0;
    for (let at = 32; at < entries.length; at += entry) dataSize += entries.readUInt32BE(at);
    if (HEADER_SIZE + dataSize !== indexOffset) throw bad(`block lengths add up to ${dataSize}, but the index starts at ${indexOffset}`);
    return { version, entries };
  } catch (err) {
    throw ioError(`cannot read pack ${path}`, err, path);
  } finally {
    await handle.close();
  }
}

/**
 * For a pack that failed readPackIndex: the digests its index claims to hold, read without trusting the
 * checksum, so that a get of one of its blocks can say it was lost with the pack rather than never
 * stored. Empty when even the trailer does not say where an index of that many entries would be.
 */
export async function suspectDigests(path: string): Promise<Buffer[]> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, "r");
    const size = (await handle.stat()).size;
    if (size < HEADER_SIZE + TRAILER_SIZE) return [];
    const trailer = await readExactly(handle, size - TRAILER_SIZE, TRAILER_SIZE);
    const indexOffset = Number(trailer.readBigUInt64BE(0));
    const count = trailer.readUInt32BE(8);
    // The trailer's version, unchecked: the size it implies must fit the file exactly.
    const entry = entrySize(trailer.readUInt32BE(12));
    if (indexOffset < HEADER_SIZE || indexOffset + count * entry + TRAILER_SIZE !== size) return [];
    const index = await readExactly(handle, indexOffset, count * entry);
    const digests: Buffer[] = [];
    for (let at = 0; at < index.length; at += entry) digests.push(index.subarray(at, at + 32));
    return digests;
  } catch {
    return [];
  } finally {
    await handle?.close().catch(() => {});
  }
}

/** Reads length bytes at position; a file that ends early is DATA_LOSS, since packs never shrink. */
export async function readExactly(handle: FileHandle, position: number, length: number, what = "pack"): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw RemoteLogError.dataLoss(`${what} ends at ${position + done}, before ${position + length}`);
    done += bytesRead;
  }
  return buffer;
}

