import { Option, type Command } from "commander";
import { Remote } from "../actors/remote.js";
import type { KuboRemote } from "../actors/kubo-remote.js";
import { RemoteLogError } from "../core/errors.js";
import { intOption, usageError } from "./command.js";
import { clientCredentials, credentialOptions, type CredentialFlags } from "./credentials.js";

export interface EndpointFlags extends CredentialFlags {
  server?: string;
  cas?: string;
  ns?: string;
  kuboApi?: string;
}

/** Our services, or a Kubo node straight (--kubo-api): the actors take either. */
export type AnyRemote = Remote | KuboRemote;

/** Adds --server, --cas and --ns (and --token-file and --ca) to a verb that talks to the services. */
export function endpointOptions(command: Command): Command {
  return credentialOptions(
    command
      .addOption(new Option("--server <url>", "a combined CAS and NS service (remotelog serve)").env("REMOTELOG_SERVER"))
      .option("--cas <url>", "the CAS service, when it runs apart from the NS")
      .option("--ns <url>", "the NS service, when it runs apart from the CAS")
      .option("--kubo-api <url>", "talk to a Kubo RPC API directly instead (blocks and IPNS; key names only)"),
  ).hook("preAction", (self) => {
    // REMOTELOG_SERVER set in the shell gives way to --cas, --ns or --kubo-api given on the command line.
    const opts = self.opts();
    if (self.getOptionValueSource("server") === "env" && (opts.cas !== undefined || opts.ns !== undefined || opts.kuboApi !== undefined)) self.setOptionValue("server", undefined);
  });
}

export function endpointsFrom(flags: EndpointFlags, needs: { cas: boolean; ns: boolean } = { cas: true, ns: true }): { casUrl: string; nsUrl: string } {
  if (flags.server && (flags.cas || flags.ns)) throw usageError("give either --server, or --cas and --ns, not both");
  // An error names the flag the user gave: --server when the URL came from it.
  const casUrl = checkUrl(flags.cas ?? flags.server, flags.cas !== undefined ? "--cas" : "--server");
  const nsUrl = checkUrl(flags.ns ?? flags.server, flags.ns !== undefined ? "--ns" : "--server");
  if ((needs.cas && !casUrl) || (needs.ns && !nsUrl)) {
    throw usageError(`say where the services are: --server URL${needs.cas && needs.ns ? ", or --cas URL and --ns URL" : needs.cas ? " or --cas URL" : " or --ns URL"}`);
  }
  return { casUrl: casUrl ?? "", nsUrl: nsUrl ?? "" };
}

/**
 * A service URL given by flag, without its trailing slashes; a usage error naming flag for anything but
 * an http:// or https:// URL (or, with unixSocket, unix:PATH, as gc --server reaches an admin socket).
 */
export function checkUrl(url: string | undefined, flag: string, options: { unixSocket?: boolean } = {}): string | undefined {
  if (url === undefined) return undefined;
  if (options.unixSocket && url.startsWith("unix:") && url.length > "unix:".length) return url.replace(/\/+$/, "");
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("not http");
  } catch {
    const takes = options.unixSocket ? "an http:// or https:// URL, or unix:PATH (an admin socket)" : "an http:// or https:// URL";
    throw usageError(`${flag} takes ${takes}, not ${JSON.stringify(url)}${/^[\w.-]+:\d+$/.test(url) ? ` (try http://${url})` : ""}`);
  }
  return url.replace(/\/+$/, "");
}

/**
 * The remote, with fetchName refusing a name that holds a backup head (remotelog backup --head-name)
 * by saying so, instead of failing to decode it as a page.
 */
export function refusingBackupHeads<T extends Pick<AnyRemote, "fetchName">>(remote: T): T {
  const wrapped = Object.create(remote) as T;
  // The call's options go on with it: Remote.withSignal, called on wrapped, passes each call's signal so.
  type FetchName = (name: string, ...options: unknown[]) => ReturnType<AnyRemote["fetchName"]>;
  const fetchName = remote.fetchName.bind(remote) as FetchName;
  (wrapped as { fetchName: FetchName }).fetchName = async (name, ...options) => {
    const head = await fetchName(name, ...options);
    if (head && head.content[0] === 0x09) {
      const { decodeBackupHead } = await import("../backup/pack-format.js");
      if (decodeBackupHead(head.content)) {
        throw RemoteLogError.invalidArgument(`name ${JSON.stringify(name)} holds a backup head, not a log; read it with \`remotelog restore --from URL --name ${name} --to DIR\``);
      }
    }
    return head;
  };
  return wrapped;
}

export async function remoteFrom(flags: EndpointFlags, needs?: { cas: boolean; ns: boolean }): Promise<AnyRemote> {
  if (flags.kuboApi !== undefined) {
    if (flags.server || flags.cas || flags.ns) throw usageError("give either --kubo-api, or --server (or --cas and --ns), not both");
    const kuboApi = checkUrl(flags.kuboApi, "--kubo-api")!;
    // Loaded only when asked for: kubo-rpc-client took a third of a second to load on every send and receive.
    const { KuboRemote } = await import("../actors/kubo-remote.js");
    return new KuboRemote({ kuboApi });
  }
  return new Remote({ ...endpointsFrom(flags, needs), ...(await clientCredentials(flags)) });
}

/**
 * IPNS holds signed names only: a free-form name with --kubo-api is a usage error naming it, before
 * anything is read or sent.
 */
export function checkKuboNames(flags: EndpointFlags, names: string[], isKeyName: (name: string) => boolean): void {
  if (flags.kuboApi === undefined) return;
  const unsigned = names.find((name) => !isKeyName(name));
  if (unsigned !== undefined) {
    throw usageError(`${JSON.stringify(unsigned)} is not a key name (k51…), and --kubo-api reaches IPNS, which holds signed names only`);
  }
}

/** The log reader's bounds as flags (core/log-reader.ts): the longest chain read, and the rollback floor. */
export interface ReaderFlags {
  maxPages: number;
  minSequence?: number;
}

/** Adds --max-pages and --min-sequence to a verb that reads a remote log without keeping state. */
export function readerOptions(command: Command, what = ""): Command {
  return command
    .option("--max-pages <n>", `${what}refuse a chain longer than this many pages`, intOption(1), 10_000_000)
    .option("--min-sequence <n>", `${what}refuse a head whose record is older than this sequence (a rollback)`, intOption(0));
}

/** The bounds of readerOptions, as the log reader takes them. */
export function readerBounds(flags: ReaderFlags): { maxPages: number; minSequence?: bigint } {
  return { maxPages: flags.maxPages, minSequence: flags.minSequence === undefined ? undefined : BigInt(flags.minSequence) };
}
