import { readFile, stat, unlink } from "node:fs/promises";
import { connect, isIP } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino, type Logger } from "pino";
import type { ContentStore } from "../core/content-store.js";
import type { NameStore } from "../core/name-store.js";
import { RemoteLogError } from "../core/errors.js";
import { openFilesLimit } from "../core/descriptors.js";
import { adminRoutes, connectionLimitsFor, DEFAULT_READ_MAX_BYTES, defaultConnectionLimits, listen, routes, type Listening } from "../services/server.js";
import { defaultBlockLimits } from "../services/block-service.js";
import { defaultBodyLimits } from "../services/body-budget.js";
import { defaultNsLimits } from "../services/ns-service.js";
import { refusesUnread } from "../services/auth.js";
import { pathExists, requireDirOf } from "../stores/file/atomic.js";
import { LOG_FILE, OWNER_FILE } from "../stores/file/local-log.js";
import { parseTokens, readTokenFile } from "./credentials.js";
import { parseCorsOrigin } from "../services/cors.js";
import { DEFAULT_READ_RATE, ReadBudget } from "../services/read-budget.js";
import { isKeyName } from "../core/names.js";
import { DEFAULT_GRACE_MS } from "../backup/gc.js";
import { InvalidArgumentError, Option } from "commander";
import { dirOption, durationFlag, intOption, newCommand, runCommand, usageError, type Io } from "./command.js";

export const summary = "run the CAS and NS services on one port";

/** The explorer's built page: dist/web/explorer, beside dist/cli where this module (or its bundle chunk) lives. */
const EXPLORER_DIR = fileURLToPath(new URL("../web/explorer/", import.meta.url));

interface ServeFlags {
  listen: string;
  data: string;
  only?: "cas" | "ns";
  maxBlock: number;
  memory?: boolean;
  requireSigned?: boolean;
  cas: "fs" | "kubo";
  ns: "level" | "ipns";
  kuboApi?: string;
  metrics: boolean;
  gateway: boolean;
  explorer: boolean;
  listNames?: boolean;
  corsOrigin: string[];
  logLevel: LogLevel;
  adminListen?: string;
  adminTokenFile?: string;
  gcGrace: number;
  writeTokenFile?: string;
  allowKeys?: string;
  quotaBytes?: number;
  quotaNames?: number;
  quotaBytesPerAddress?: number;
  quotaNamesPerAddress?: number;
  maxStoredBytes?: number;
  insecureOpen?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  maxResponseBytes: number;
  readRatePerAddress: number;
  maxWatchNames: number;
  maxWatches: number;
  maxWatchesPerAddress: number;
  maxWatchAnswerBytes: number;
  maxWatchAnswerBytesPerAddress: number;
  maxWatchesPerConnection: number;
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  maxConcurrentStreams: number;
  maxBodyBytes: number;
  maxBodyBytesPerAddress: number;
  headersTimeout: number;
  idleTimeout: number;
  backlog: number;
  logFormat: "auto" | "json" | "pretty";
}

/** --cors-origin, repeatable: each origin checked as it is given, so that a typo stops serve at once. */
function collectCorsOrigin(value: string, previous: string[]): string[] {
  try {
    return [...previous, parseCorsOrigin(value)];
  } catch (err) {
    throw new InvalidArgumentError((err as RemoteLogError).text ?? (err as Error).message);
  }
}

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "silent"] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

export function command(io: Io) {
  const serve = newCommand("serve", io)
    .description(
      "Serve the CAS (vac.cas.CAS and the remotelog.v1.BlockService batches) and the NS (vac.cas.NS) on one " +
        "port, to Connect, gRPC and gRPC-Web clients over HTTP/1.1 and HTTP/2 alike. Blocks are kept in " +
        "DIR/cas and names in DIR/ns. Prints `listening on URL` once ready; stops on SIGINT or SIGTERM. " +
        "The same port answers grpc.health.v1.Health, unless --no-metrics a GET of /metrics " +
        "(Prometheus), and unless --no-explorer the live log explorer at /explorer. Logs go to stderr: readable lines on a terminal, JSON lines in pino's format otherwise (--log-format).",
    )
    .option("--listen <host:port>", "address to listen on; port 0 picks a free one", "127.0.0.1:7420")
    .option("--data <dir>", "where blocks and names are kept", dirOption, "./remotelog-data")
    .addOption(new Option("--only <service>", "serve just one of the two, to run them apart").choices(["cas", "ns"]))
    .option("--max-block <bytes>", "largest block, and largest name content, accepted", intOption(1, 1 << 30), 1 << 20)
    .option("--memory", "keep everything in memory and lose it on exit, for throwaway runs")
    .option("--require-signed", "take writes from signed updates of key names (k51…) and write-token holders only; refuse anonymous blocks and free-form names")
    .option("--write-token-file <file>", "bearer tokens, one a line, that may write blocks and free-form names; closes the server to anonymous writes")
    .option("--allow-keys <file>", "key names (k51…), one a line, that alone may publish here")
    .option("--quota-bytes <bytes>", "block bytes each key or token may store (counted in DIR/quotas.json, across restarts)", intOption(0))
    .option("--quota-names <n>", "names each key or token may create (counted in DIR/quotas.json, across restarts)", intOption(0))
    .option("--quota-bytes-per-address <bytes>", "block bytes the writes from one client address may store, whatever key signs them (tokens' aside; counted in DIR/quotas.json)", intOption(0))
    .option("--quota-names-per-address <n>", "names the writes from one client address may create, whatever key signs them (tokens' aside; counted in DIR/quotas.json)", intOption(0))
    .option("--max-stored-bytes <bytes>", "block bytes the CAS may hold, written by anyone; past it writes are refused until gc makes room", intOption(1))
    .option("--insecure-open", "let anyone write to a server listening beyond loopback (logs a warning)")
    .option("--admin-listen <host:port|path>", "serve gc to the operator on this loopback address or Unix socket, apart from the public port")
    .option("--admin-token-file <file>", "bearer tokens, one a line, that may call gc on the public port")
    .addOption(durationFlag("--gc-grace <duration>", "gc never removes what was written this recently (0s: no grace); a gc call may ask for longer, never shorter", DEFAULT_GRACE_MS, { zero: true }))
    .option("--tls-cert <file>", "serve HTTPS with this PEM certificate chain (with --tls-key); HTTP/2 through ALPN, HTTP/1.1 beside it")
    .option("--tls-key <file>", "the PEM private key of --tls-cert")
    .option("--max-response-bytes <bytes>", "block bytes in one GetMany response (in JSON, each byte of base64 text counts 4); clients page past it", intOption(1), defaultBlockLimits.maxResponseBytes)
    .option("--read-rate-per-address <bytes>", "block bytes read per second for one client address, in bursts of up to 4 s' worth; past that its reads wait, one at a time (0: no limit)", intOption(0), DEFAULT_READ_RATE)
    .option("--max-watch-names <n>", "names one WatchMany may watch", intOption(1), defaultNsLimits.maxWatchNames)
    .option("--max-watches <n>", "names watched at once, by all clients together; when full, the client address watching the most gives way to one watching fewer", intOption(1), defaultNsLimits.maxWatches)
    .option("--max-watches-per-address <n>", "names watched at once from one client address", intOption(1), defaultNsLimits.maxWatchesPerAddress)
    .option("--max-watch-answer-bytes <n>", "bytes of Watch answers (a head each) written to clients and not yet read, held at once; past it a stream whose name moves ends ResourceExhausted", intOption(1), defaultNsLimits.maxWatchAnswerBytes)
    .option("--max-watch-answer-bytes-per-address <n>", "the same, for one client address", intOption(1), defaultNsLimits.maxWatchAnswerBytesPerAddress)
    .option("--max-watches-per-connection <n>", "names watched at once on one connection", intOption(1), defaultNsLimits.maxWatchesPerConnection)
    .option("--max-connections <n>", `connections open at once; more are closed as they arrive (default: ${defaultConnectionLimits.maxConnections}, or half of ulimit -n if less)`, intOption(1))
    .option("--max-connections-per-address <n>", `connections open at once from one client address (loopback too); more from it are closed as they arrive (default: ${defaultConnectionLimits.maxConnectionsPerAddress}, or a quarter of ulimit -n if less)`, intOption(1))
    .option("--max-concurrent-streams <n>", "streams one HTTP/2 connection may have open at once", intOption(1), defaultConnectionLimits.maxConcurrentStreams)
    .option("--max-body-bytes <bytes>", "request body bytes held at once, read and not yet answered, from all clients; a body past it is refused (ResourceExhausted)", intOption(1), defaultBodyLimits.maxBodyBytes)
    .option("--max-body-bytes-per-address <bytes>", "request body bytes held at once from one client address", intOption(1), defaultBodyLimits.maxBodyBytesPerAddress)
    .addOption(durationFlag("--headers-timeout <duration>", "how long a request may take to send its headers (and a new connection its first bytes)", defaultConnectionLimits.headersTimeoutMs))
    .addOption(durationFlag("--idle-timeout <duration>", "how long a connection with nothing in flight stays open, and how long a request body may send nothing before it is cut", defaultConnectionLimits.idleTimeoutMs))
    .option("--backlog <n>", "connections the kernel queues before they are accepted", intOption(1), defaultConnectionLimits.backlog)
    .addOption(new Option("--cas <backend>", "where blocks go: fs (DIR/cas, or memory with --memory) or kubo (a Kubo node, pinned)").choices(["fs", "kubo"]).default("fs"))
    .addOption(new Option("--ns <backend>", "where names go: level (DIR/ns, or memory with --memory) or ipns (a Kubo node's IPNS; signed names only)").choices(["level", "ipns"]).default("level"))
    .option("--kubo-api <url>", "the Kubo RPC API of --cas kubo and --ns ipns, such as http://127.0.0.1:5001")
    .option("--metrics", "serve Prometheus metrics at /metrics on the same port", true)
    .option("--no-metrics", "do not keep or serve metrics")
    .option("--gateway", "answer IPFS's Trustless Gateway (/ipfs/, /ipns/) and Delegated Routing V1 (/routing/v1/) on the same port", true)
    .option("--no-gateway", "do not answer IPFS's HTTP protocols")
    .option("--explorer", "serve the live log explorer, a web page, at /explorer on the same port (and list names for it)", true)
    .option("--no-explorer", "do not serve the explorer's page, nor list names unless --list-names")
    .option("--list-names", "let anyone list the names this NS holds, a page at a time (remotelog.v1.NameListService); default: on with the explorer")
    .option("--no-list-names", "do not let names be listed, even with the explorer on (it then opens a name it is given)")
    .option("--cors-origin <origin>", "let pages of this origin (scheme://host[:port], or * for any) call the API from a browser; repeatable; default none", collectCorsOrigin, [])
    .addOption(new Option("--log-level <level>", "least severe log lines written to stderr; debug logs every RPC").choices(LOG_LEVELS).default("info"))
    .addOption(new Option("--log-format <format>", "auto: readable on a terminal, JSON lines otherwise").choices(["auto", "json", "pretty"]).default("auto"))
    .addHelpText(
      "after",
      "\nExamples:\n  remotelog serve\n  remotelog serve --listen 0.0.0.0:7420 --data /var/lib/remotelog\n" +
        "  remotelog serve --only ns --listen 127.0.0.1:7421 --require-signed\n  remotelog serve --memory --listen 127.0.0.1:0\n" +
        "  remotelog serve --log-level debug --no-metrics\n" +
        "  remotelog serve --cas kubo --ns ipns --kubo-api http://127.0.0.1:5001",
    );
  return serve.action(async (flags: ServeFlags) => {
    if (flags.memory && serve.getOptionValueSource("data") === "cli") throw usageError("give either --memory or --data, not both");
    const { host, port } = parseListen(flags.listen);
    if (Boolean(flags.tlsCert) !== Boolean(flags.tlsKey)) throw usageError("--tls-cert and --tls-key go together");
    // One block of the largest size, in JSON (base64, a third larger) with room for its framing, must
    // fit in what the server holds from one address, or such blocks could never be stored.
    const oneBlockRequest = Math.ceil((flags.maxBlock * 4) / 3) + (1 << 16);
    for (const [flag, value] of [
      ["--max-body-bytes", flags.maxBodyBytes],
      ["--max-body-bytes-per-address", flags.maxBodyBytesPerAddress],
    ] as const) {
      if (value < oneBlockRequest) throw usageError(`${flag} ${value} is less than one request of a block of --max-block ${flags.maxBlock} (${oneBlockRequest} bytes): such blocks could never be stored`);
    }
    const admin = flags.adminListen !== undefined ? parseAdminListen(flags.adminListen) : undefined;
    const [writeTokens, adminTokens, allowKeys, tlsCert, tlsKey] = await Promise.all([
      flags.writeTokenFile ? readTokens(flags.writeTokenFile, "--write-token-file") : undefined,
      flags.adminTokenFile ? readTokens(flags.adminTokenFile, "--admin-token-file") : undefined,
      flags.allowKeys ? readTokens(flags.allowKeys, "--allow-keys", false) : undefined,
      flags.tlsCert ? readFlagFile(flags.tlsCert, "--tls-cert") : undefined,
      flags.tlsKey ? readFlagFile(flags.tlsKey, "--tls-key") : undefined,
    ]);
    const badKey = allowKeys?.find((name) => !isKeyName(name));
    if (badKey !== undefined) throw usageError(`--allow-keys ${flags.allowKeys}: ${JSON.stringify(badKey)} is not a key name (k51…)`);
    const log = await newLogger(flags.logLevel, flags.logFormat, io);
    const kubo = flags.cas === "kubo" || flags.ns === "ipns";
    if (kubo && !flags.kuboApi) throw usageError("--cas kubo and --ns ipns need --kubo-api URL (a Kubo RPC API)");
    if (!kubo && flags.kuboApi) throw usageError("--kubo-api is for --cas kubo or --ns ipns");
    if (flags.maxStoredBytes !== undefined && (flags.only === "ns" || flags.cas === "kubo")) {
      throw usageError(`--max-stored-bytes bounds this server's own CAS, and ${flags.only === "ns" ? "--only ns serves none" : "--cas kubo keeps its blocks in Kubo, whose size this server cannot see cheaply"}`);
    }
    // IPNS names are keys: a free-form name has nothing to sign its record with.
    const requireSigned = (flags.requireSigned ?? false) || flags.ns === "ipns";
    const open = !requireSigned && !writeTokens;
    if (open && !isLoopback(host)) {
      if (!flags.insecureOpen) {
        throw usageError(
          `--listen ${flags.listen} reaches beyond this machine, and anyone could write: give --require-signed or --write-token-file FILE, or --insecure-open to serve open anyway`,
        );
      }
      log.warn({ listen: flags.listen }, "serving open to anonymous writes beyond loopback (--insecure-open)");
    }
    const stores = await openStores(flags, log);
    try {
      // What the quotas counted survives a restart, except with --memory, where nothing does.
      const quotas = [flags.quotaBytes, flags.quotaNames, flags.quotaBytesPerAddress, flags.quotaNamesPerAddress].some((quota) => quota !== undefined);
      const ledger = quotas && !flags.memory ? await (await import("../stores/file/quota-file.js")).openQuotaFile(join(flags.data, "quotas.json")) : undefined;
      // Quotas per key alone bound nothing where any key may publish: a key costs nothing to make, and
      // one writer with a fresh key per update passes them. The quotas per address bound that writer.
      const perKeyOnly = (flags.quotaBytes !== undefined && flags.quotaBytesPerAddress === undefined) || (flags.quotaNames !== undefined && flags.quotaNamesPerAddress === undefined);
      if (perKeyOnly && !allowKeys) {
        log.warn(
          { quotaBytes: flags.quotaBytes, quotaNames: flags.quotaNames },
          "quotas are per key, and any key may publish here (no --allow-keys): a writer who makes a new key for each update passes them; bound each client with --quota-bytes-per-address and --quota-names-per-address, or list the keys with --allow-keys",
        );
      }
      const openFiles = openFilesLimit();
      const fitted = connectionLimitsFor(openFiles);
      const connectionLimits = {
        maxConnections: flags.maxConnections ?? fitted.maxConnections,
        maxConnectionsPerAddress: flags.maxConnectionsPerAddress ?? fitted.maxConnectionsPerAddress,
        maxConcurrentStreams: flags.maxConcurrentStreams,
        maxBodyBytes: flags.maxBodyBytes,
        maxBodyBytesPerAddress: flags.maxBodyBytesPerAddress,
        headersTimeoutMs: flags.headersTimeout,
        firstBytesTimeoutMs: flags.headersTimeout,
        idleTimeoutMs: flags.idleTimeout,
        backlog: flags.backlog,
      };
      if (openFiles !== undefined && flags.maxConnections !== undefined && flags.maxConnections > openFiles / 2) {
        log.warn({ maxConnections: flags.maxConnections, openFiles }, `--max-connections ${flags.maxConnections} is more than half of the ${openFiles} file descriptors this process may open (ulimit -n): connections that fill them leave none to accept another or to open a pack with`);
      }
      const readBudget = flags.readRatePerAddress > 0 ? new ReadBudget(flags.readRatePerAddress) : undefined;
      const server = await listen({
        host,
        port,
        readBudget,
        ...connectionLimits,
        tls: tlsCert && tlsKey ? { cert: tlsCert, key: tlsKey } : undefined,
        refusesUnread: refusesUnread({ requireSigned, writeTokens }),
        // Every response fits the largest GetMany response or block, with room for its framing. A block
        // in JSON is base64 text, a third larger (GetMany counts its cap in the bytes it sends).
        writeMaxBytes: Math.max(flags.maxResponseBytes, Math.ceil((flags.maxBlock * 4) / 3)) + (1 << 20),
        // A request must still fit one block of the largest size, in JSON too, with room for its framing.
        // No larger than the body budgets: a bigger one could never be held whole.
        readMaxBytes: Math.min(Math.max(DEFAULT_READ_MAX_BYTES, oneBlockRequest), flags.maxBodyBytes, flags.maxBodyBytesPerAddress),
        metrics: flags.metrics,
        corsOrigins: flags.corsOrigin,
        onError: (err) => log.warn({ err }, "accept failed"),
        onMetricsError: (err) => log.error({ err }, "metrics scrape failed"),
        routes: routes({
          ...stores,
          readBudget,
          limits: {
            maxBlockBytes: flags.maxBlock,
            maxContentBytes: flags.maxBlock,
            maxResponseBytes: flags.maxResponseBytes,
            maxWatchNames: flags.maxWatchNames,
            maxWatches: flags.maxWatches,
            maxWatchesPerAddress: flags.maxWatchesPerAddress,
            maxWatchAnswerBytes: flags.maxWatchAnswerBytes,
            maxWatchAnswerBytesPerAddress: flags.maxWatchAnswerBytesPerAddress,
            maxWatchesPerConnection: flags.maxWatchesPerConnection,
          },
          write: {
            requireSigned,
            writeTokens,
            allowKeys,
            quotaBytes: flags.quotaBytes,
            quotaNames: flags.quotaNames,
            quotaBytesPerAddress: flags.quotaBytesPerAddress,
            quotaNamesPerAddress: flags.quotaNamesPerAddress,
            maxStoredBytes: flags.maxStoredBytes,
            ledger,
          },
          adminTokens,
          gcGraceMs: flags.gcGrace,
          gateway: flags.gateway,
          explorer: flags.explorer ? { dir: EXPLORER_DIR, onMissing: (err) => log.error({ err }, "the explorer's page is not built (make build)") } : undefined,
          // Names become enumerable with the explorer, unless the operator says otherwise either way.
          listNames: flags.listNames ?? flags.explorer,
          onInternalError: (err, method) => log.error({ method, err: err.cause ?? err }, `${method} failed`),
          // Wired only at debug, so that below it no call pays for a log line that is never written.
          onCallEnd: log.isLevelEnabled("debug") ? (method, code, seconds) => log.debug({ method, code, ms: roundMs(seconds) }, "rpc") : undefined,
        }),
      }).catch((err: unknown) => {
        throw RemoteLogError.unavailable(`cannot listen on ${flags.listen}: ${(err as Error).message}`, err);
      });
      let adminServer: Listening | undefined;
      try {
        if (admin) {
          if (admin.path !== undefined) {
            // Said as a missing directory, where listen(2) says EACCES.
            await requireDirOf(admin.path, "the --admin-listen socket");
            await removeStaleSocket(admin.path);
          }
          adminServer = await listen({
            host: admin.host ?? "127.0.0.1",
            port: admin.port ?? 0,
            path: admin.path,
            metrics: false,
            routes: adminRoutes({ ...stores, gcGraceMs: flags.gcGrace, onInternalError: (err, method) => log.error({ method, err: err.cause ?? err }, `${method} failed`) }),
          }).catch((err: unknown) => {
            throw RemoteLogError.unavailable(`cannot listen on --admin-listen ${flags.adminListen}: ${(err as Error).message}`, err);
          });
          log.info({ admin: adminServer.url }, `admin listener (gc) on ${adminServer.url}`);
          io.stdout.write(`admin listening on ${adminServer.url}\n`);
        }
        const services = [stores.content && "CAS", stores.names && "NS"].filter((name): name is string => Boolean(name));
        const signed = stores.names && requireSigned ? ", signed names only" : "";
        const where = describeStores(flags, stores);
        log.info(
          {
            url: server.url,
            services,
            store: where,
            maxBlockBytes: flags.maxBlock,
            maxConnections: connectionLimits.maxConnections,
            maxConnectionsPerAddress: connectionLimits.maxConnectionsPerAddress,
            openFiles,
            requireSigned: stores.names ? requireSigned : undefined,
            writeTokens: writeTokens?.length,
            allowKeys: allowKeys?.length,
            quotaBytes: flags.quotaBytes,
            quotaNames: flags.quotaNames,
            quotaBytesPerAddress: flags.quotaBytesPerAddress,
            quotaNamesPerAddress: flags.quotaNamesPerAddress,
            maxStoredBytes: flags.maxStoredBytes,
            tls: Boolean(tlsCert),
            corsOrigins: flags.corsOrigin.length > 0 ? flags.corsOrigin : undefined,
            metrics: flags.metrics ? `${server.url}/metrics` : false,
            explorer: flags.explorer ? `${server.url}/explorer` : false,
            listNames: stores.names ? (flags.listNames ?? flags.explorer) : undefined,
          },
          `${services.join(" and ")} from ${where}, blocks up to ${flags.maxBlock} bytes${signed}, on ${server.url}`,
        );
        io.stdout.write(`listening on ${server.url}\n`);
        await aborted(io.signal);
        log.info({ reason: signalName(io.signal) }, "stopping");
      } finally {
        await Promise.all([server.close(), adminServer?.close()]);
      }
    } finally {
      await Promise.all([stores.content?.close(), stores.names?.close()]);
    }
  });
}

/**
 * pino writing JSON lines to io.stderr, as `remotelog serve` logs, or on a terminal (or with
 * --log-format pretty) pino-pretty's readable lines, formatted in this thread (sync) so that nothing
 * is lost on exit. pino writes each line with one write() call, so lines never interleave.
 */
async function newLogger(level: LogLevel, format: ServeFlags["logFormat"], io: Io): Promise<Logger> {
  const pretty = format === "pretty" || (format === "auto" && (io.stderr as { isTTY?: boolean }).isTTY === true);
  if (!pretty) return pino({ name: "remotelog", level }, io.stderr);
  // Loaded only for a terminal: a server under a supervisor logs JSON and need not pay for it.
  const { default: prettyStream } = await import("pino-pretty");
  return pino({ name: "remotelog", level }, prettyStream({ destination: io.stderr, sync: true, colorize: (io.stderr as { isTTY?: boolean }).isTTY === true, translateTime: "SYS:HH:MM:ss.l" }));
}

function roundMs(seconds: number): number {
  return Math.round(seconds * 1e6) / 1e3;
}

function signalName(signal: AbortSignal): string | undefined {
  return signal.reason instanceof Error ? signal.reason.message : undefined;
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));
}

/** --admin-listen: HOST:PORT on loopback, or the path of a Unix socket. */
function parseAdminListen(text: string): { host?: string; port?: number; path?: string } {
  if (text.includes("/")) return { path: text };
  const { host, port } = parseListen(text, "--admin-listen", " or a Unix socket's path (with a /, such as ./admin.sock)");
  if (!isLoopback(host)) throw usageError(`--admin-listen ${text}: the admin listener serves gc to whoever reaches it, so it listens on loopback or a Unix socket only`);
  return { host, port };
}

/**
 * A Unix socket file left by a server that was killed refuses the next listen: remove it, but only when
 * nothing answers on it (a running server's socket is left alone, and its listen then fails).
 */
async function removeStaleSocket(path: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isSocket()) return;
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once("connect", () => (probe.destroy(), resolve(true)));
    probe.once("error", () => resolve(false));
  });
  if (!alive) await unlink(path).catch(() => {});
}

async function readFlagFile(file: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw usageError(`${flag} ${file}: ${(err as Error).message}`);
  }
}

async function readTokens(file: string, flag: string, bearer = true): Promise<string[]> {
  // Tokens are secrets, refused when others may read them as a key file is; key names are public.
  const tokens = bearer ? await readTokenFile(file) : parseTokens((await readFlagFile(file, flag)).toString("utf8"));
  if (tokens.length === 0) throw usageError(`${flag} ${file} holds no tokens`);
  // A bearer token is one word on the wire (Authorization: Bearer TOKEN): one with a space in it was
  // taken here and then never matched anything a client could send.
  const spaced = tokens.findIndex((token) => /\s/.test(token));
  if (bearer && spaced !== -1) throw usageError(`${flag} ${file}: token ${spaced + 1} holds whitespace, which no Authorization header can carry; one token a line, without spaces`);
  return tokens;
}

/** HOST:PORT, with IPv6 hosts in brackets ([::1]:7420). */
export function parseListen(text: string, flag = "--listen", orElse = ""): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw usageError(`${flag} takes HOST:PORT (such as 127.0.0.1:7420)${orElse}, not ${JSON.stringify(text)}`);
  return { host: match[1] ?? match[2], port };
}

async function openStores(flags: ServeFlags, log: Logger): Promise<{ content?: ContentStore; names?: NameStore }> {
  const wantCas = flags.only !== "ns";
  const wantNs = flags.only !== "cas";
  // Blocks and names are never kept among a sender's log: a mistyped --data would mix the two. Said
  // before any store is opened.
  if (!flags.memory && ((await pathExists(join(flags.data, LOG_FILE))) || (await pathExists(join(flags.data, OWNER_FILE))))) {
    throw usageError(`--data ${flags.data} holds a sender's local log (${LOG_FILE}); serve keeps blocks and names in a --data directory of its own`);
  }
  const opened: { close(): Promise<void> }[] = [];
  try {
    // Loaded only when asked for: a process loads one kind of each store.
    let kubo: import("../stores/kubo/content-store.js").KuboContentStore | undefined;
    if ((wantCas && flags.cas === "kubo") || (wantNs && flags.ns === "ipns")) {
      const { KuboContentStore } = await import("../stores/kubo/content-store.js");
      kubo = await KuboContentStore.open({
        url: flags.kuboApi!,
        onRetry: (err, delayMs) => log.warn({ err: err.message, delayMs: Math.round(delayMs) }, "Kubo API unavailable; retrying"),
      });
      opened.push(kubo);
    }
    let content: ContentStore | undefined;
    if (wantCas) {
      if (flags.cas === "kubo") content = kubo;
      else if (flags.memory) content = new (await import("../stores/memory/content-store.js")).MemoryContentStore();
      else content = await (await import("../stores/fs/content-store.js")).FsContentStore.open(join(flags.data, "cas"), {
          onQuarantine: (pack, movedTo, why) => log.error({ pack, movedTo, why }, "damaged pack quarantined; its blocks answer DataLoss, everything else is served"),
        });
      if (content && content !== kubo) opened.push(content);
    }
    let names: NameStore | undefined;
    if (wantNs) {
      // The NS keeps head pages on the node too, through the same API (and the CAS store, when both are Kubo).
      if (flags.ns === "ipns") names = new (await import("../stores/ipns/name-store.js")).IpnsNameStore(kubo!.api, kubo);
      else if (flags.memory) names = new (await import("../stores/memory/name-store.js")).MemoryNameStore();
      else names = await (await import("../stores/level/name-store.js")).LevelNameStore.open(join(flags.data, "ns"), { counted: true });
    }
    return { content, names };
  } catch (err) {
    await Promise.all(opened.map((store) => store.close()));
    throw err;
  }
}

/** Where the stores keep things, for the start log line. */
function describeStores(flags: ServeFlags, stores: { content?: ContentStore; names?: NameStore }): string {
  const local = flags.memory ? "memory" : flags.data;
  const cas = stores.content ? (flags.cas === "kubo" ? `Kubo ${flags.kuboApi}` : local) : undefined;
  const ns = stores.names ? (flags.ns === "ipns" ? `IPNS via ${flags.kuboApi}` : local) : undefined;
  return cas && ns && cas !== ns ? `${cas} (CAS) and ${ns} (NS)` : (cas ?? ns ?? local);
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

