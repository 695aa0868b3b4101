import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ContentStore } from "../core/content-store.js";
import type { NameStore } from "../core/name-store.js";
import type { CodeName } from "./connect-errors.js";
import type { ReplacedHeads } from "./replaced-heads.js";

// Calls on loopback take tens of microseconds to a few milliseconds; prom-client's default buckets
// start at 5 ms and would put nearly every call in the first one.
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

// The process metrics describe the process, not a server, and collecting them starts an event-loop
// monitor and a GC observer that prom-client never stops: one set per process, shared by every server.
let processRegistry: Registry | undefined;

function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * One server's Prometheus metrics, in a registry of its own rather than prom-client's global one, so
 * that several servers in one process (tests, a CAS and an NS side by side) keep separate counts:
 *
 * - `remotelog_rpc_requests_total{method,code}`: calls that ended, by method ("vac.cas.CAS/Get") and final code ("OK", "NotFound");
 * - `remotelog_rpc_duration_seconds{method}`: how long each call ran;
 * - `remotelog_blocks_stored`, `remotelog_block_bytes_stored`: the CAS's blocks and their total size, when its store tells;
 * - `remotelog_names`: names the NS holds, when its store tells;
 * - `remotelog_limit_hits_total{limit}`: refusals by a limit, named as its serve flag ("max-connections");
 * - `remotelog_watches_evicted_total`: watches let go (a WatchMany's names, or whole streams) to give another client address its share of a full --max-watches;
 * - and prom-client's default process metrics (`process_*`, `nodejs_*`).
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: "remotelog_rpc_requests_total",
    help: "RPCs that ended, by method and final code (OK or a Connect code name).",
    labelNames: ["method", "code"] as const,
    registers: [this.registry],
  });
  private readonly durations = new Histogram({
    name: "remotelog_rpc_duration_seconds",
    help: "How long each RPC ran in its method, in seconds; a server stream counts until its end.",
    labelNames: ["method"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly limits = new Counter({
    name: "remotelog_limit_hits_total",
    help: "Requests and connections refused or cut by a limit, by the limit's name (the serve flag without --).",
    labelNames: ["limit"] as const,
    registers: [this.registry],
  });
  private readonly evictedWatches = new Counter({
    name: "remotelog_watches_evicted_total",
    help: "Watched names let go to give another client address its share of a full --max-watches: names a WatchMany let go of and went on without, and the names of streams ended (each ended stream is also a max-watches limit hit).",
    registers: [this.registry],
  });

  constructor() {
    // Now rather than at the first scrape: the CPU counters count from when they were set up.
    processMetrics();
  }

  /** Counts one call that ended. */
  observeCall(method: string, code: CodeName, seconds: number): void {
    this.requests.inc({ method, code });
    this.durations.observe({ method }, seconds);
  }

  /** Counts refusals by the named limit ("max-watches-per-address", "headers-timeout"), one unless told. */
  limitHit(limit: string, times = 1): void {
    this.limits.inc({ limit }, times);
  }

  /** Counts watches ended to make room for another client address's (services/ns-service.ts Watchers). */
  watchesEvicted(watches: number): void {
    this.evictedWatches.inc(watches);
  }

  /** Reports the store's blocks and bytes at each scrape; a store without stats() adds no gauges. */
  watchContent(store: ContentStore): void {
    if (!store.stats) return;
    const stats = () => store.stats!();
    this.gauge("remotelog_blocks_stored", "Distinct blocks in the CAS.", () => stats().blocks);
    this.gauge("remotelog_block_bytes_stored", "Total size of the blocks in the CAS, in bytes, without storage overhead.", () => stats().bytes);
    this.gauge("remotelog_quarantined_packs", "Damaged packs the CAS set aside at open (their blocks answer DataLoss).", () => stats().quarantinedPacks ?? 0);
  }

  /** Reports how many names the store holds at each scrape; a store without count() adds no gauge. */
  watchNames(store: NameStore): void {
    if (!store.count) return;
    const count = () => store.count!();
    this.gauge("remotelog_names", "Names in the NS.", count);
  }

  /** Reports the replaced head pages the gateway keeps serving (services/replaced-heads.ts) at each scrape. */
  watchReplacedHeads(replaced: Pick<ReplacedHeads, "size">): void {
    this.gauge("remotelog_gateway_replaced_heads", "Head pages names moved on from that the gateway still serves by CID (the latest 8 a name, for 10 s).", () => replaced.size.entries);
    this.gauge("remotelog_gateway_replaced_head_bytes", "Bytes of the replaced head pages the gateway keeps in memory (at most 32 MiB).", () => replaced.size.bytes);
  }

  /** A gauge of this server's set to value() at each scrape; a value that cannot be read fails the scrape. */
  private gauge(name: string, help: string, value: () => number | Promise<number>): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      async collect() {
        this.set(await value());
      },
    });
  }

  /** Prometheus' text format, of this server's metrics and the process's. Rejects when a store cannot be read. */
  async text(): Promise<string> {
    const [own, process] = await Promise.all([this.registry.metrics(), processMetrics().metrics()]);
    return own.endsWith("\n") || own === "" ? own + process : `${own}\n${process}`;
  }

  /** The Content-Type of text(). */
  get contentType(): string {
    return this.registry.contentType;
  }
}
