import { Option } from "commander";
import { readFile } from "node:fs/promises";
import { RemoteLogError, ErrorCodes } from "../core/errors.js";
import { LogReader } from "../core/log-reader.js";
import { addressOf, addressText, decodeMessage, equalBytes, fromHex, matchesAddress, parseAddressText, toHex } from "../core/hash.js";
import { decodePage } from "../core/page.js";
import { FileLocalLog, publishedCount } from "../stores/file/local-log.js";
import { dirOption, readAll, newCommand, runCommand, intOption, type Io } from "./command.js";
import { endpointOptions, readerBounds, readerOptions, remoteFrom, type EndpointFlags, type ReaderFlags } from "./endpoints.js";
import { messageJson, pageJson } from "./format.js";

export const summary = "decode a page, a message, a name's chain or a local log as JSON";

function print(io: Io, value: unknown) {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Bytes named by a CID (fetched from the CAS and checked), a file path, or "-" for stdin. With a name, a
 * CID the CAS does not hold is looked for in that name's head, where a sender's newest messages are
 * embedded and live only (read through the one LogReader, the head's record and the bytes checked).
 */
async function loadBytes(source: string, flags: EndpointFlags & { name?: string }, io: Io, what: "page" | "message"): Promise<{ bytes: Uint8Array; address?: string; embeddedIn?: string }> {
  if (source === "-") return { bytes: new Uint8Array(await readAll(io.stdin)) };
  if (/^(bafk|b[a-z2-7]{20,})/.test(source) && !source.includes("/")) {
    const cid = parseAddressText(source);
    const remote = await remoteFrom(flags, { cas: true, ns: flags.name !== undefined });
    try {
      let bytes: Uint8Array;
      try {
        bytes = await remote.getBlock(cid.bytes);
      } catch (err) {
        if (!(err instanceof RemoteLogError) || err.code !== ErrorCodes.NOT_FOUND) throw err;
        // A name's head page is kept by its NS, and the newest messages embedded in it: neither in a CAS.
        const inHead = what === "page" ? "a name's head page is in no CAS (its NS holds it)" : "a message embedded in a head is in no CAS";
        if (flags.name === undefined) {
          throw new RemoteLogError(ErrorCodes.NOT_FOUND, `${err.text}; ${inHead}: give --name to look in that name's head`, { cause: err, details: err.details });
        }
        const reader = new LogReader(remote, flags.name);
        const head = await reader.require();
        if (what === "page" && equalBytes(head.address, cid.bytes)) return { bytes: head.entry.content, address: cid.toString() };
        const embedded = what === "message" ? reader.embeddedMessage(head, cid.bytes) : undefined;
        if (!embedded) throw new RemoteLogError(ErrorCodes.NOT_FOUND, `${err.text}, nor ${what === "page" ? "the head" : "embedded in the head"} of name ${JSON.stringify(flags.name)}`, { cause: err, details: { ...err.details, name: flags.name } });
        return { bytes: embedded, address: cid.toString(), embeddedIn: addressText(head.address) };
      }
      if (!matchesAddress(bytes, cid)) throw RemoteLogError.dataLoss(`block ${cid} does not hash to its address`);
      return { bytes, address: cid.toString() };
    } finally {
      remote.close();
    }
  }
  try {
    return { bytes: new Uint8Array(await readFile(source)) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw RemoteLogError.notFound(`${source} is neither a CID (bafk…) nor a file here`);
    if (code === "EISDIR") throw RemoteLogError.invalidArgument(`${source} is a directory; give a CID, a file, or - for stdin`);
    throw RemoteLogError.internal(`cannot read ${source}: ${(err as Error).message}`, err);
  }
}

export function command(io: Io) {
  const inspect = newCommand("inspect", io).description(summary);
  endpointOptions(inspect.command("page").description("decode a page (a vac.cas.RemoteLog)"))
    .argument("<source>", "the page's CID (fetched from the CAS), a file, or - for stdin")
    .option("--name <name>", "also look for it as this name's head page, which its NS holds (in no CAS)")
    .action(async (source: string, flags: EndpointFlags & { name?: string }) => {
      const { bytes, address } = await loadBytes(source, flags, io, "page");
      print(io, { address: address ?? null, bytes: bytes.length, ...pageJson(decodePage(bytes, "page")) });
    });
  endpointOptions(inspect.command("message").description("decode a vac.mvds.Message and compute its id"))
    .argument("<source>", "the message's CID (fetched from the CAS), hex bytes, a file, or - for stdin")
    .option("--name <name>", "also look in this name's head, where a sender's newest messages are embedded (in no CAS)")
    .action(async (source: string, flags: EndpointFlags & { name?: string }) => {
      const { bytes, address, embeddedIn } = /^[0-9a-fA-F]*$/.test(source) && source.length % 2 === 0 ? { bytes: fromHex(source), address: undefined, embeddedIn: undefined } : await loadBytes(source, flags, io, "message");
      print(io, { address: address ?? null, ...(embeddedIn ? { embeddedIn } : {}), bytes: bytes.length, ...messageJson(decodeMessage(bytes)) });
    });
  readerOptions(endpointOptions(inspect.command("chain").description("fetch a name and every page of its chain, newest first")))
    .requiredOption("--name <name>", "the name to read")
    .action(async (flags: EndpointFlags & ReaderFlags & { name: string }) => {
      const remote = await remoteFrom(flags);
      try {
        // The one reader: the head's record is verified (key names), every page checked, the walk bounded.
        const bounds = readerBounds(flags);
        const reader = new LogReader(remote, flags.name, { maxPages: bounds.maxPages });
        const head = await reader.open({ floor: bounds.minSequence });
        if (!head) throw RemoteLogError.notFound(`name ${JSON.stringify(flags.name)} has no remote log`);
        const pages: Record<string, unknown>[] = [];
        let messages = 0;
        for await (const { page, address } of reader.pages(head.page)) {
          // The head page has no address of its own in the walk: it is the name's content, whose address is its hash.
          pages.push({ address: addressText(address ?? addressOf(head.entry.content)), ...pageJson(page) });
          messages += page.pair.length;
        }
        print(io, { name: flags.name, version: Number(head.entry.version), messages, pageCount: pages.length, pages });
      } finally {
        remote.close();
      }
    });
  inspect
    .command("log")
    .description("print a sender's local log")
    .addOption(new Option("--data <dir>", "the sender's local log directory").env("REMOTELOG_DATA").argParser(dirOption).makeOptionMandatory())
    .option("--from <seq>", "first seq", intOption(0), 0)
    .option("--limit <n>", "at most this many messages", intOption(0), 1000)
    .action(async (flags: { data: string; from: number; limit: number }) => {
      // Read-only: looking at a log, damaged or in use by a sender, changes nothing in its directory.
      const log = await FileLocalLog.open(flags.data, { readOnly: true });
      try {
        // A log holding fewer messages than its owner published from it is damage, as send says it:
        // what it holds is still printed, then the same DATA_LOSS.
        const short = log.shortOf(await publishedCount(flags.data, log.owner?.name));
        if (log.tornBytes > 0 && !short) io.stderr.write(`remotelog inspect: ${log.path} ends in ${log.tornBytes} bytes of an unfinished append, not shown (left as they are)\n`);
        const entries = await log.read(flags.from, flags.from + flags.limit);
        print(io, {
          length: log.length,
          messages: entries.map((entry) => ({ seq: entry.seq, ...messageJson(decodeMessage(entry.data)), id: toHex(entry.id) })),
        });
        if (short) throw short;
      } finally {
        await log.close();
      }
    });
  inspect.addHelpText(
    "after",
    "\nExamples:\n  remotelog inspect chain --name alice --server http://127.0.0.1:7420\n  remotelog inspect page bafkrei… --server http://127.0.0.1:7420\n  remotelog inspect log --data ./alice --limit 10",
  );
  return inspect;
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
