import { join } from "node:path";
import { Option } from "commander";
import { pino, type Logger } from "pino";
import type { ContentStore } from "../core/content-store.js";
import type { NameStore } from "../core/name-store.js";
import { RemoteLogError } from "../core/errors.js";
import { DEFAULT_READ_MAX_BYTES, listen, routes } from "../services/server.js";
import { intOption, newCommand, runCommand, usageError, type Io } from "./command.js";

export const summary = "run the CAS and NS services on one port";

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
  logLevel: LogLevel;
  logFormat: "auto" | "json" | "pretty";
}

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "silent"] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

export function command(io: Io) {
  const serve = newCommand("serve", io)
    .description(
      "Serve the CAS (vac.cas.CAS and the remotelog.v1.BlockService batches) and the NS (vac.cas.NS) on one " +
        "port, to Connect, gRPC and gRPC-Web clients over HTTP/1.1 and HTTP/2 alike. Blocks are kept in " +
        "DIR/cas and names in DIR/ns. Prints `listening on URL` once ready; stops on SIGINT or SIGTERM. " +
        "The same port answers grpc.health.v1.Health and, unless --no-metrics, a GET of /metrics " +
        "(Prometheus). Logs go to stderr: readable lines on a terminal, JSON lines in pino's format otherwise (--log-format).",
    )
    .option("--listen <host:port>", "address to listen on; port 0 picks a free one", "127.0.0.1:7420")
    .option("--data <dir>", "where blocks and names are kept", "./remotelog-data")
    .addOption(new Option("--only <service>", "serve just one of the two, to run them apart").choices(["cas", "ns"]))
    .option("--max-block <bytes>", "largest block, and largest name content, accepted", intOption(1, 1 << 30), 1 << 20)
    .option("--memory", "keep everything in memory and lose it on exit, for throwaway runs")
    .option("--require-signed", "accept updates of key names (k51…) with a signed record only; refuse free-form names")
    .addOption(new Option("--cas <backend>", "where blocks go: fs (DIR/cas, or memory with --memory) or kubo (a Kubo node, pinned)").choices(["fs", "kubo"]).default("fs"))
    .addOption(new Option("--ns <backend>", "where names go: level (DIR/ns, or memory with --memory) or ipns (a Kubo node's IPNS; signed names only)").choices(["level", "ipns"]).default("level"))
    .option("--kubo-api <url>", "the Kubo RPC API of --cas kubo and --ns ipns, such as http://127.0.0.1:5001")
    .option("--metrics", "serve Prometheus metrics at /metrics on the same port", true)
    .option("--no-metrics", "do not keep or serve metrics")
    .option("--gateway", "answer IPFS's Trustless Gateway (/ipfs/, /ipns/) and Delegated Routing V1 (/routing/v1/) on the same port", true)
    .option("--no-gateway", "do not answer IPFS's HTTP protocols")
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
    const log = await newLogger(flags.logLevel, flags.logFormat, io);
    const kubo = flags.cas === "kubo" || flags.ns === "ipns";
    if (kubo && !flags.kuboApi) throw usageError("--cas kubo and --ns ipns need --kubo-api URL (a Kubo RPC API)");
    if (!kubo && flags.kuboApi) throw usageError("--kubo-api is for --cas kubo or --ns ipns");
    // IPNS names are keys: a free-form name has nothing to sign its record with.
    const requireSigned = (flags.requireSigned ?? false) || flags.ns === "ipns";
    const stores = await openStores(flags, log);
    try {
      const server = await listen({
        host,
        port,
        // A request must still fit one block of the largest size, with room for its framing.
        readMaxBytes: Math.max(DEFAULT_READ_MAX_BYTES, flags.maxBlock + (1 << 16)),
        metrics: flags.metrics,
        onError: (err) => log.warn({ err }, "accept failed"),
        onMetricsError: (err) => log.error({ err }, "metrics scrape failed"),
        routes: routes({
          ...stores,
          limits: { maxBlockBytes: flags.maxBlock, maxContentBytes: flags.maxBlock },
          requireSigned,
          gateway: flags.gateway,
          onInternalError: (err, method) => log.error({ method, err: err.cause ?? err }, `${method} failed`),
          // Wired only at debug, so that below it no call pays for a log line that is never written.
          onCallEnd: log.isLevelEnabled("debug") ? (method, code, seconds) => log.debug({ method, code, ms: roundMs(seconds) }, "rpc") : undefined,
        }),
      }).catch((err: unknown) => {
        throw RemoteLogError.unavailable(`cannot listen on ${flags.listen}: ${(err as Error).message}`, err);
      });
      try {
        const services = [stores.content && "CAS", stores.names && "NS"].filter((name): name is string => Boolean(name));
        const signed = stores.names && requireSigned ? ", signed names only" : "";
        const where = describeStores(flags, stores);
        log.info(
          {
            url: server.url,
            services,
            store: where,
            maxBlockBytes: flags.maxBlock,
            requireSigned: stores.names ? requireSigned : undefined,
            metrics: flags.metrics ? `${server.url}/metrics` : false,
          },
          `${services.join(" and ")} from ${where}, blocks up to ${flags.maxBlock} bytes${signed}, on ${server.url}`,
        );
        io.stdout.write(`listening on ${server.url}\n`);
        await aborted(io.signal);
        log.info({ reason: signalName(io.signal) }, "stopping");
      } finally {
        await server.close();
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

/** HOST:PORT, with IPv6 hosts in brackets ([::1]:7420). */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw usageError(`--listen takes HOST:PORT (such as 127.0.0.1:7420), not ${JSON.stringify(text)}`);
  return { host: match[1] ?? match[2], port };
}

async function openStores(flags: ServeFlags, log: Logger): Promise<{ content?: ContentStore; names?: NameStore }> {
  const wantCas = flags.only !== "ns";
  const wantNs = flags.only !== "cas";
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
      else content = await (await import("../stores/fs/content-store.js")).FsContentStore.open(join(flags.data, "cas"));
      if (content && content !== kubo) opened.push(content);
    }
    let names: NameStore | undefined;
    if (wantNs) {
      // The NS keeps head pages on the node too, through the same API (and the CAS store, when both are Kubo).
      if (flags.ns === "ipns") names = new (await import("../stores/ipns/name-store.js")).IpnsNameStore(kubo!.api, kubo);
      else if (flags.memory) names = new (await import("../stores/memory/name-store.js")).MemoryNameStore();
      else names = await (await import("../stores/level/name-store.js")).LevelNameStore.open(join(flags.data, "ns"));
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

