import type { RemoteLog } from "../gen/vac/cas/cas_pb.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";
import { addressText, messageId, toHex } from "../core/hash.js";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64");
}

/** A group id as text when it is UTF-8, else as base64 under another key, so no byte is lost. */
function groupFields(groupId: Uint8Array): Record<string, string> {
  try {
    return { group: strictUtf8.decode(groupId) };
  } catch {
    return { group_base64: base64(groupId) };
  }
}

/**
 * One delivered message as a JSONL object: seq and id first, so a consumer can drop repeats. With a
 * name (a receiver following several logs), the name comes first, so lines of different logs can be
 * told apart; seq and id are then per name. A tombstone (no message) is {seq, id, redacted: true}.
 */
export function deliveryJson(seq: number, id: Uint8Array, address: Uint8Array, message: Message | undefined, name?: string): Record<string, unknown> {
  if (!message) return { ...(name === undefined ? {} : { name }), seq, id: toHex(id), redacted: true };
  return {
    ...(name === undefined ? {} : { name }),
    seq,
    id: toHex(id),
    ...groupFields(message.groupId),
    timestamp: Number(message.timestamp),
    body: base64(message.body),
    address: addressText(address),
  };
}

/**
 * deliveryJson as one JSONL line, built directly: `receive` prints one per message, and a generic
 * JSON.stringify of an object was a large share of a catch-up. Same keys, same order, same values.
 */
export function deliveryLine(seq: number, id: Uint8Array, address: Uint8Array, message: Message | undefined, name?: string): string {
  const prefix = name === undefined ? "" : `"name":${JSON.stringify(name)},`;
  // A tombstone: the message was redacted, and whoever holds it drops it.
  if (!message) return `{${prefix}"seq":${seq},"id":"${toHex(id)}","redacted":true}\n`;
  let group: string;
  try {
    group = `"group":${JSON.stringify(strictUtf8.decode(message.groupId))}`;
  } catch {
    group = `"group_base64":"${base64(message.groupId)}"`;
  }
  return `{${prefix}"seq":${seq},"id":"${toHex(id)}",${group},"timestamp":${Number(message.timestamp)},"body":"${base64(message.body)}","address":"${addressText(address)}"}\n`;
}

export function messageJson(message: Message): Record<string, unknown> {
  return {
    id: toHex(messageId(message)),
    ...groupFields(message.groupId),
    timestamp: Number(message.timestamp),
    body: base64(message.body),
    parents: message.metadata?.parents.map(toHex) ?? [],
    ephemeral: message.metadata?.ephemeral ?? false,
  };
}

export function pageJson(page: RemoteLog): Record<string, unknown> {
  return {
    pairs: page.pair.map((pair) => ({
      ...(page.info ? { seqid: Number(pair.seqid) } : {}),
      localHash: toHex(pair.localHash),
      ...(pair.redacted ? { redacted: true } : { remoteHash: addressText(pair.remoteHash) }),
      ...(pair.data.length > 0 ? { embeddedBytes: pair.data.length } : {}),
    })),
    tail: page.tail.length > 0 ? addressText(page.tail) : null,
    ...(page.info
      ? {
          info: {
            firstSeqid: Number(page.info.firstSeqid),
            count: page.info.count,
            number: Number(page.info.number),
            redactions: Number(page.info.redactions),
            skips: page.info.skips.map((skip) => ({ number: Number(skip.number), firstSeqid: Number(skip.firstSeqid), address: addressText(skip.address) })),
          },
        }
      : {}),
  };
}
