import { InvalidArgumentError, Option, type Command } from "commander";
import { RemoteLogError } from "../core/errors.js";
import { parseAddressText } from "../core/hash.js";
import { DirPackStore, isUrl, type PackStore } from "../backup/pack-store.js";
import type { Progress } from "../backup/progress.js";
import { progressFor } from "./progress-bar.js";
import { usageError, type Io } from "./command.js";
import { clientCredentials, credentialOptions, type CredentialFlags } from "./credentials.js";

/*
 * What the backup verbs (backup, restore, verify, export, import) share: where packs are (a
 * directory, or a CAS+NS service URL), which head to start from, sizes and output.
 */

/**
 * A URL (a `remotelog serve` with both services) or a directory, as a pack store; a URL is reached with
 * the token and CA of --token-file and --ca.
 */
export async function packStoreFrom(where: string, options: { headName?: string; keyFile?: string } & CredentialFlags = {}): Promise<PackStore> {
  if (!isUrl(where)) {
    if (options.headName || options.keyFile) throw usageError("--head-name and --key record a head in an NS: they need a URL, not a directory");
    return new DirPackStore(where);
  }
  // Loaded only for a URL: the network and signature code is most of a directory restore's start-up.
  const [{ Remote }, { loadKeyFile }, { RemotePackStore }] = await Promise.all([
    import("../actors/remote.js"),
    import("../stores/file/key-file.js"),
    import("../backup/remote-pack-store.js"),
  ]);
  const url = where.replace(/\/+$/, "");
  const key = options.keyFile ? await loadKeyFile(options.keyFile) : undefined;
  // A signed head lives under the key's own name: say so before anything is uploaded, not after.
  if (key && options.headName !== undefined) {
    const { keyName } = await import("../core/names.js");
    if (options.headName !== keyName(key)) throw usageError(`--head-name ${options.headName} is not the name of the key in ${options.keyFile} (${keyName(key)}); with --key, leave --head-name out`);
  }
  return new RemotePackStore(new Remote({ casUrl: url, nsUrl: url, ...(await clientCredentials(options)) }), { headName: options.headName, key });
}

/**
 * The head pack to start from: --pack CID, else --name (a backup head name in the URL's NS), else a
 * directory's HEAD. NOT_FOUND when there is none. pick says how the verb names a backup in a service,
 * for a URL given neither.
 */
export async function headFrom(flags: { pack?: string; name?: string; from: string } & CredentialFlags, pick: string): Promise<{ store: PackStore; head: Uint8Array }> {
  if (flags.pack && flags.name) throw usageError("give either --pack or --name, not both");
  if (flags.name && !isUrl(flags.from)) throw usageError("--name reads a head from an NS: --from must be a URL");
  // A service holds any number of backups, each under its own name, and no HEAD to fall back on. The
  // store's own refusal named backup's --head-name and --key, which no reading verb takes.
  if (!flags.pack && !flags.name && isUrl(flags.from)) throw usageError(`${flags.from} is a service, with no HEAD to start from: ${pick}`);
  const credentials = { tokenFile: flags.tokenFile, ca: flags.ca };
  const store = await packStoreFrom(flags.from, credentials);
  if (flags.pack) return { store, head: parseAddressText(flags.pack).bytes };
  const named = flags.name ? await packStoreFrom(flags.from, { headName: flags.name, ...credentials }) : store;
  const head = await named.readHead();
  if (named !== store) await named.close();
  if (!head) {
    await store.close();
    throw RemoteLogError.notFound(flags.name ? `name ${JSON.stringify(flags.name)} has no backup at ${flags.from}` : `${flags.from} has no HEAD; give --pack CID`);
  }
  return { store, head: head.pack };
}

/**
 * Adds --from to a verb that reads a backup or a log, with --server (and REMOTELOG_SERVER) as another
 * way to give a service URL, as the other verbs take it, and --token-file and --ca for that URL.
 */
export function fromOptions(command: Command, what: string): Command {
  return credentialOptions(command)
    .option("--from <url|dir>", what)
    .addOption(new Option("--server <url>", "the same as --from URL").env("REMOTELOG_SERVER"))
    .hook("preAction", (self) => {
      // REMOTELOG_SERVER set in the shell gives way to an explicit --from; only a --server typed beside it conflicts.
      if (self.getOptionValueSource("server") === "env" && self.opts().from !== undefined) self.setOptionValue("server", undefined);
    });
}

/** The --from of fromOptions: --from, else --server. */
export function fromOf(flags: { from?: string; server?: string }): string {
  if (flags.from && flags.server && flags.from !== flags.server) throw usageError("give either --from or --server, not both");
  const from = flags.from ?? flags.server;
  if (!from) throw usageError("say where the backup or log is: --from DIR|URL (or --server URL)");
  return from;
}

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1000, kb: 1000, kib: 1024, m: 1e6, mb: 1e6, mib: 1 << 20, g: 1e9, gb: 1e9, gib: 1 << 30 };

/** commander argParser for sizes: 8388608, 8MiB, 512KiB, 1MB. */
export function sizeOption(value: string): number {
  const match = /^(\d+)\s*([a-z]*)$/i.exec(value.trim());
  const unit = match ? UNITS[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined) throw new InvalidArgumentError(`expected a size such as 8MiB, 512KiB or 1048576, got ${JSON.stringify(value)}`);
  const size = Number(match[1]) * unit;
  if (size < 4096 || size > 1 << 30) throw new InvalidArgumentError(`expected a size from 4KiB to 1GiB, got ${JSON.stringify(value)}`);
  return size;
}

/** Progress bars on stdout when it is a terminal and no --json summary is asked for there. */
export function progressOf(io: Io, json: boolean | undefined): Promise<Progress> {
  return progressFor(io.stdout, !json);
}

export function printJson(io: Io, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}\n`);
}
