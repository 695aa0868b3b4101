import { join } from "node:path";
import { Option } from "commander";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { GcService } from "../gen/remotelog/v1/gc_pb.js";
import { bearer, fromConnectError } from "../actors/remote.js";
import { clientCredentials } from "./endpoints.js";
import { RemoteLogError, ErrorCodes, isRemoteLogError } from "../core/errors.js";
import { collectGarbage, DEFAULT_GRACE_MS, type GcSummary } from "../backup/gc.js";
import { durationOption, newCommand, runCommand, usageError, type Io } from "./command.js";
import { printJson, progressOf } from "./pack-options.js";

export const summary = "delete CAS blocks that no name and no backup head reaches (mark and sweep)";

interface GcFlags {
  data?: string;
  server?: string;
  grace?: number;
  dryRun?: boolean;
  json?: boolean;
  adminTokenFile?: string;
  ca?: string;
}

export function command(io: Io) {
  return newCommand("gc", io)
    .description(
      "Delete the blocks of the embedded CAS that no name in its NS reaches (log heads and backup heads), by mark\n" +
        "and sweep: packs holding garbage are rewritten without it. Blocks written or put again less than --grace\n" +
        "before the mark began, or while it runs, are always kept, so a sender publishing at the same time loses\n" +
        "nothing. --data DIR works on a stopped server's directory (a running one holds it locked); --server URL\n" +
        "asks a running `remotelog serve` to collect its own store: URL is its admin listener (serve --admin-listen,\n" +
        "http://127.0.0.1:PORT or unix:/path/to/socket), or its public port with --admin-token-file. The server's\n" +
        "--gc-grace is the least grace; --grace may only lengthen it.",
    )
    .option("--data <dir>", "a stopped server's data directory (blocks in DIR/cas, names in DIR/ns)")
    .addOption(new Option("--server <url>", "a running remotelog serve with the fs CAS: its admin listener, or its public port with --admin-token-file").env("REMOTELOG_SERVER"))
    .addOption(new Option("--admin-token-file <file>", "send the admin token in this file (serve --admin-token-file)").env("REMOTELOG_ADMIN_TOKEN_FILE"))
    .addOption(new Option("--ca <file>", "trust this CA (PEM) for an https:// server").env("REMOTELOG_CA"))
    .option("--grace <duration>", "keep what was written this recently: 1h with --data; with --server, the server's --gc-grace, which this may only lengthen", durationOption)
    .option("--dry-run", "report what would be deleted; delete nothing")
    .option("--json", "print a JSON summary")
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog gc --data ./server-data --dry-run\n  remotelog gc --server http://127.0.0.1:7421 --grace 2h --json\n" +
        "  remotelog gc --server https://cas.example.org --admin-token-file admin.token",
    )
    .action(async (flags: GcFlags, command: import("commander").Command) => {
      // REMOTELOG_SERVER, set for the other verbs, does not stand against an explicit --data.
      if (flags.data && command.getOptionValueSource("server") === "env") flags.server = undefined;
      if (Boolean(flags.data) === Boolean(flags.server)) throw usageError("give either --data DIR (a stopped server) or --server URL (a running one)");
      const result = flags.server ? await remoteGc(flags) : await localGc(flags.data!, flags, io);
      if (flags.json) printJson(io, result);
      else {
        io.stdout.write(
          `${flags.dryRun ? "would remove" : "removed"} ${result.removedBlocks} blocks (${result.freedBytes} bytes) from ${result.sweptPacks} of ${result.packs} packs; ` +
            `${result.marked} blocks reachable from ${result.roots} names\n`,
        );
        for (const cid of result.missing) io.stderr.write(`missing: ${cid} (a name reaches it, the CAS lacks it)\n`);
      }
    });
}

async function localGc(dir: string, flags: GcFlags, io: Io): Promise<GcSummary> {
  const [{ FsContentStore }, { LevelNameStore }] = await Promise.all([import("../stores/fs/content-store.js"), import("../stores/level/name-store.js")]);
  let names;
  try {
    names = await LevelNameStore.open(join(dir, "ns"));
  } catch (err) {
    if (isRemoteLogError(err, ErrorCodes.CONFLICT)) {
      throw RemoteLogError.conflict(`${dir} is in use, by a running \`remotelog serve --data ${dir}\`?; run \`remotelog gc --server URL\` against it instead`);
    }
    throw err;
  }
  try {
    const store = await FsContentStore.open(join(dir, "cas"));
    try {
      return await collectGarbage({ store, names, graceMs: flags.grace ?? DEFAULT_GRACE_MS, dryRun: flags.dryRun, progress: progressOf(io, flags.json) });
    } finally {
      await store.close();
    }
  } finally {
    await names.close();
  }
}

async function remoteGc(flags: GcFlags): Promise<GcSummary> {
  const url = flags.server!.replace(/\/+$/, "");
  const { token, ca } = await clientCredentials({ tokenFile: flags.adminTokenFile, ca: flags.ca });
  const interceptors = token ? [bearer(token)] : [];
  // unix:/path reaches an admin listener on a Unix socket; the host in the base URL is then a placeholder.
  const transport = url.startsWith("unix:")
    ? createConnectTransport({ baseUrl: "http://localhost", httpVersion: "1.1", nodeOptions: { socketPath: url.slice("unix:".length) }, interceptors })
    : createConnectTransport({ baseUrl: url, httpVersion: "1.1", nodeOptions: ca ? { ca } : undefined, interceptors });
  const client = createClient(GcService, transport);
  try {
    const response = await client.collect({ graceMs: BigInt(flags.grace ?? 0), dryRun: flags.dryRun ?? false });
    return {
      roots: Number(response.roots),
      marked: Number(response.marked),
      packs: Number(response.packs),
      sweptPacks: Number(response.sweptPacks),
      removedBlocks: Number(response.removedBlocks),
      freedBytes: Number(response.freedBytes),
      missing: response.missing,
      dryRun: flags.dryRun ?? false,
      ms: Number(response.ms),
    };
  } catch (err) {
    throw fromConnectError(err, `GcService ${url} Collect`);
  }
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
