import { describe, expect, it } from "vitest";
import { deliveryJson, deliveryLine } from "../../cli/format.js";
import { addressOf, encodeMessage, messageId, newMessage } from "../../core/hash.js";

describe("cli - JSONL delivery lines", () => {
  it.each([
    ["a UTF-8 group", new TextEncoder().encode('chat "room" \\ ü\n')],
    ["a binary group", new Uint8Array([0xff, 0x00, 0xfe])],
    ["an empty group", new Uint8Array(0)],
  ])("the fast line equals JSON.stringify of the object, for %s", (_, groupId) => {
    for (const timestamp of [0n, -5n, 1_700_000_000n]) {
      const message = newMessage(groupId, timestamp, new Uint8Array([1, 2, 3, 250]));
      const id = messageId(message);
      const address = addressOf(encodeMessage(message));
      const line = deliveryLine(42, id, address, message);
      expect(line).toBe(`${JSON.stringify(deliveryJson(42, id, address, message))}\n`);
      expect(JSON.parse(line)).toMatchObject({ seq: 42, timestamp: Number(timestamp) });
    }
  });

  it.each(["n0", 'a "quoted" name \\ ü', "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8"])("with a name, the name is the first key, and the line still equals JSON.stringify: %s", (name) => {
    const message = newMessage(new TextEncoder().encode("g"), 7n, new Uint8Array([9]));
    const id = messageId(message);
    const address = addressOf(encodeMessage(message));
    const line = deliveryLine(3, id, address, message, name);
    expect(line).toBe(`${JSON.stringify(deliveryJson(3, id, address, message, name))}\n`);
    expect(Object.keys(JSON.parse(line))).toEqual(["name", "seq", "id", "group", "timestamp", "body", "address"]);
    expect(JSON.parse(line).name).toBe(name);
  });
});
