import { describe, expect, it } from "vitest";
import { RemoteLogError } from "../../core/errors.js";
import { sleep, withRetry } from "../../core/retry.js";

describe("withRetry", () => {
  it("does not call fn under a signal aborted already: it rejects at once, UNAVAILABLE with the signal's reason", async () => {
    const stop = new AbortController();
    const reason = new Error("stopped by the caller");
    stop.abort(reason);
    let calls = 0;
    const attempt = async () => {
      calls++;
      return "called";
    };
    // The old withRetry called fn once before it looked at the signal (and here returned "called").
    await expect(withRetry(attempt, { timeoutMs: 0, signal: stop.signal })).rejects.toMatchObject({ code: "UNAVAILABLE", cause: reason });
    expect(calls).toBe(0);
  });

  it("does not call fn again once the signal aborts during a wait: it rejects with the failure that began the wait", async () => {
    const stop = new AbortController();
    let calls = 0;
    const failures: RemoteLogError[] = [];
    const attempt = async () => {
      calls++;
      const failure = RemoteLogError.unavailable(`server down (attempt ${calls})`);
      failures.push(failure);
      throw failure;
    };
    // Aborted as the first wait begins; the old withRetry woke and called fn a second time.
    const retried = withRetry(attempt, { timeoutMs: 0, signal: stop.signal, firstDelayMs: 60_000, maxDelayMs: 60_000, onRetry: () => stop.abort() });
    await expect(retried).rejects.toBe(failures[0]);
    expect(calls).toBe(1);
  });

  it("spends its whole budget: the last wait ends where the budget does, for one more attempt there", async () => {
    let attempts = 0;
    const waits: number[] = [];
    const failing = withRetry(
      async () => {
        attempts++;
        throw RemoteLogError.unavailable("server down");
      },
      { timeoutMs: 1_500, firstDelayMs: 1_000, maxDelayMs: 1_000, onRetry: (_err, delayMs) => waits.push(delayMs) },
    );
    await expect(failing).rejects.toMatchObject({ code: "UNAVAILABLE" });
    // A wait of ~1 s, then what is left of the 1.5 s, then the last attempt. The old withRetry gave up
    // after the second attempt, at ~1 s, since a full second wait would have passed the budget.
    expect(attempts).toBe(3);
    expect(waits).toHaveLength(2);
    expect(waits[1]).toBeLessThan(waits[0]);
  });

  it("counts its budget from the first failure: an attempt that worked a long time before it failed is retried", async () => {
    let attempts = 0;
    const result = await withRetry(
      async () => {
        attempts++;
        if (attempts === 1) {
          // A long catch-up or backup that then loses its server: longer than the whole budget.
          await sleep(300);
          throw RemoteLogError.unavailable("server went away");
        }
        return "done";
      },
      { timeoutMs: 200, firstDelayMs: 10, maxDelayMs: 10 },
    );
    // The old count ran from the first attempt's start, so the 300 ms attempt had used up the 200 ms.
    expect(result).toBe("done");
    expect(attempts).toBe(2);
  });

  it("asks a budget function again at each failure, so a call that reaches its service mid-way gets the longer budget", async () => {
    // backup's case: a first-contact budget of a few seconds until the services answer, then 60 s for an outage.
    let reached = false;
    let attempts = 0;
    const asked: number[] = [];
    const result = await withRetry(
      async () => {
        attempts++;
        if (attempts === 1) reached = true;
        if (attempts <= 3) throw RemoteLogError.unavailable("server restarting");
        return "done";
      },
      {
        timeoutMs: (failingSince) => {
          asked.push(failingSince);
          return reached ? 10_000 : 1;
        },
        firstDelayMs: 20,
        maxDelayMs: 20,
      },
    );
    expect(result).toBe("done");
    expect(attempts).toBe(4);
    // Asked at each of the three failures, always with the moment the outage began.
    expect(asked).toHaveLength(3);
    expect(new Set(asked).size).toBe(1);
  });

  it("still gives up on a service that keeps failing, and never retries another error", async () => {
    let attempts = 0;
    await expect(
      withRetry(
        async () => {
          attempts++;
          throw RemoteLogError.unavailable("connection refused");
        },
        { timeoutMs: 150, firstDelayMs: 20, maxDelayMs: 20 },
      ),
    ).rejects.toMatchObject({ code: "UNAVAILABLE", message: expect.stringContaining("gave up after") });
    expect(attempts).toBeGreaterThan(1);

    let other = 0;
    await expect(
      withRetry(
        async () => {
          other++;
          throw RemoteLogError.dataLoss("page does not hash to its address");
        },
        { timeoutMs: 1_000 },
      ),
    ).rejects.toMatchObject({ code: "DATA_LOSS" });
    expect(other).toBe(1);
  });
});
