import type { HandlerContext } from "@connectrpc/connect";

/**
 * How the call is answered: in JSON, in binary, or undefined for an in-process call (no context). A
 * binary response's list of blocks or ids goes out pre-encoded in one buffer (core/page.ts
 * repeatedBytesUnknown), where the generic encoder cost two chunks and a copy per block; JSON leaves
 * unknown fields out, and an in-process caller reads the field, so both get the plain list.
 */
export type AnswerFormat = "json" | "binary" | undefined;

export function answerFormat(context: HandlerContext | undefined): AnswerFormat {
  const type = context?.requestHeader.get("content-type");
  if (!type) return undefined;
  return /json/i.test(type) ? "json" : "binary";
}

/**
 * What one byte of a JSON answer's text costs the server, in bytes of a binary answer: protobuf-es's
 * base64, JSON.stringify's scan of the text and its UTF-8 encoding took ~8 ns a byte here, where a
 * binary GetMany took ~2. JSON requests cost alike: 16,384 ids took 15 ms to parse, 2 ms in binary.
 */
export const JSON_COST = 4;

/**
 * What sending length bytes of a block costs, in bytes of a binary answer: what GetMany's cap and the
 * read budget count. In JSON a block goes as quoted base64, a third larger, each byte at JSON_COST.
 */
export function answerCost(format: AnswerFormat, length: number): number {
  return format === "json" ? JSON_COST * (4 * Math.ceil(length / 3) + 3) : length;
}

/**
 * What one id named by a call costs, answered or not, in bytes of a binary answer: taking it off the
 * wire, checking it and looking it up cost the server about what sending 200 bytes of a block does,
 * and about four times that in JSON (a base64 string in a JSON text). Charged at its 36 bytes on the
 * wire, a GetMany naming 16,384 missing ids cost ~10 ms of the thread for 590 KB of budget.
 */
export function idsCost(format: AnswerFormat, count: number): number {
  return (format === "json" ? JSON_COST : 1) * 256 * count;
}
