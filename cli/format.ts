import type { RemoteLog } from "../gen/vac/cas/cas_pb.js";
import type { Message } from "../gen/vac/mvds/mvds_pb.js";
import { addressText, messageId, toHex } from "../core/hash.js";
import { utf8OrUndefined } from "../core/text.js";


function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64");
}

/**
 * One JSONL shape, both ways: a group id or a body is text when it is valid UTF-8, else base64 under
 * the key with _base64, so no byte is lost; `send --format jsonl` reads the same keys back.
 */
function textOrBase64(key: "group" | "body", bytes: Uint8Array): Record<string, string> {
  const text = utf8OrUndefined(bytes);
  return text === undefined ? { [`${key}_base64`]: base64(bytes) } : { [key]: text };
}

function textOrBase64Json(key: "group" | "body", bytes: Uint8Array): string {
  const text = utf8OrUndefined(bytes);
  return text === undefined ? `"${key}_base64":"${base64(bytes)}"` : `"${key}":${JSON.stringify(text)}`;
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
    ...textOrBase64("group", message.groupId),
    timestamp: Number(message.timestamp),
    ...textOrBase64("body", message.body),
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
  return `{${prefix}"seq":${seq},"id":"${toHex(id)}",${textOrBase64Json("group", message.groupId)},"timestamp":${Number(message.timestamp)},${textOrBase64Json("body", message.body)},"address":"${addressText(address)}"}\n`;
}

/**
 * One delivered message as a line for people: seq, time (UTC), and the body as UTF-8 text when it is
 * valid, with control characters and backslashes escaped (so one message stays one line), else every
 * byte escaped (\xNN). A tombstone says so.
 */
export function deliveryText(seq: number, message: Message | undefined, name?: string): string {
  const prefix = name === undefined ? "" : `${name}\t`;
  if (!message) return `${prefix}${seq}\t-\t(redacted)\n`;
  const seconds = Number(message.timestamp);
  // --timestamp-ms senders write milliseconds; anything past year 5138 in seconds is taken as such.
  const ms = Math.abs(seconds) > 1e11 ? seconds : seconds * 1000;
  const when = Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString().replace(/\.000Z$/, "Z") : String(seconds);
  return `${prefix}${seq}\t${when}\t${escapeText(message.body)}\n`;
}

function escapeText(bytes: Uint8Array): string {
  const text = utf8OrUndefined(bytes);
  if (text === undefined) return Array.from(bytes, (b) => (b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`)).join("");
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f\\]/g, (c) => (c === "\\" ? "\\\\" : c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === "\r" ? "\\r" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));
}

export function messageJson(message: Message): Record<string, unknown> {
  return {
    id: toHex(messageId(message)),
    ...textOrBase64("group", message.groupId),
    timestamp: Number(message.timestamp),
    ...textOrBase64("body", message.body),
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
