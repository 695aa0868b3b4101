import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import {
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type Health,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from "../gen/grpc/health/v1/health_pb.js";

/**
 * gRPC's standard health service (grpc/health/v1/health.proto), for probes and load balancers.
 *
 * "" (the whole server) and every service named in the constructor are SERVING until `closing` is
 * aborted, then NOT_SERVING: a balancer that watches stops sending new calls while those in flight
 * finish. Any other name is unknown: Check fails with NotFound, as the protocol asks, and Watch sends
 * SERVICE_UNKNOWN once. Watch sends the current status at once and again when it changes; since a
 * server's status changes only once, a Watch ends after it has sent NOT_SERVING (and so does a Watch of
 * an unknown name then), so that it does not hold up the server's close for its whole grace period.
 */
export class HealthService implements ServiceImpl<typeof Health> {
  private readonly known: ReadonlySet<string>;
  // One listener on `closing` for all watches: a listener each would pile up on one signal (and make
  // Node warn of a leak) with a few dozen probes watching.
  private readonly waiting = new Set<() => void>();

  /**
   * @param services full names of the services mounted beside this one ("vac.cas.CAS")
   * @param closing aborted when the server starts shutting down; never, if not given
   * @param quarantinedPacks how many damaged packs the CAS set aside; a Check answers it in the
   *   `remotelog-quarantined-packs` response header, since the health protocol has only a status (the
   *   server still serves everything else, so it stays SERVING)
   */
  constructor(
    services: Iterable<string>,
    private readonly closing: AbortSignal = new AbortController().signal,
    private readonly quarantinedPacks?: () => number,
  ) {
    this.known = new Set(["", ...services]);
    closing.addEventListener("abort", () => this.waiting.forEach((wake) => wake()), { once: true });
  }

  async check(request: HealthCheckRequest, context?: HandlerContext): Promise<HealthCheckResponse> {
    const status = this.status(request.service);
    if (this.quarantinedPacks && context) context.responseHeader.set("remotelog-quarantined-packs", String(this.quarantinedPacks()));
    if (status === ServingStatus.SERVICE_UNKNOWN) throw new ConnectError(`unknown service ${JSON.stringify(request.service)}`, Code.NotFound);
    return create(HealthCheckResponseSchema, { status });
  }

  async *watch(request: HealthCheckRequest, context: HandlerContext): AsyncGenerator<HealthCheckResponse> {
    const first = this.status(request.service);
    yield create(HealthCheckResponseSchema, { status: first });
    if (this.closing.aborted) return;
    await this.untilClosingOr(context.signal);
    if (context.signal.aborted) return;
    const now = this.status(request.service);
    if (now !== first) yield create(HealthCheckResponseSchema, { status: now });
  }

  private status(service: string): ServingStatus {
    if (!this.known.has(service)) return ServingStatus.SERVICE_UNKNOWN;
    return this.closing.aborted ? ServingStatus.NOT_SERVING : ServingStatus.SERVING;
  }

  /** Resolves once the server is closing or the call is over, and leaves nothing behind. */
  private untilClosingOr(call: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (this.closing.aborted || call.aborted) return resolve();
      const wake = () => {
        this.waiting.delete(wake);
        call.removeEventListener("abort", wake);
        resolve();
      };
      this.waiting.add(wake);
      call.addEventListener("abort", wake, { once: true });
    });
  }
}
