/**
 * serve's default: 128 MiB a second, so 512 MiB at once. A fresh catch-up of a million 256-byte
 * messages (~330 MB) is never held; a client reading blocks without pause is held to ~8 full GetMany
 * answers a second.
 */
export const DEFAULT_READ_RATE = 128 << 20;

/**
 * How many bytes of blocks each client address may have read for it per second: a token bucket per
 * address that holds up to burst seconds' worth and may go into debt.
 *
 * Why: a GetMany answer is capped, but nothing stopped one client from asking again at once, and a
 * client that downloads as fast as it can takes the server's thread and its cores from everyone else
 * (make bench-abuse's getmany phase: honest p99 12x the quiet baseline). The handlers that read
 * blocks charge what they read, after they read it; the server holds back the next such call of an
 * address in debt, before reading its body (so a held call costs a socket, not memory), until the
 * debt is paid back. Nothing is refused, so clients need no new handling; an honest reader that
 * fits in the burst (a 100k-message catch-up is ~30 MB) is never held at all.
 */
export class ReadBudget {
  private readonly accounts = new Map<string, { balance: number; at: number }>();
  private readonly burstBytes: number;
  private charges = 0;

  constructor(
    /** Bytes per second each address earns back. */
    private readonly bytesPerSecond: number,
    /** Seconds' worth an address may hold, and so read at once after a quiet spell. */
    burstSeconds = 4,
  ) {
    this.burstBytes = bytesPerSecond * burstSeconds;
  }

  /** Debits bytes read for address; its balance may go below zero. */
  charge(address: string, bytes: number): void {
    const account = this.settle(address);
    account.balance -= bytes;
    // Accounts back at a full burst carry nothing: they go, a sweep every few thousand charges.
    if (++this.charges % 4096 === 0) {
      for (const [key, held] of this.accounts) if (this.refilled(held) >= this.burstBytes) this.accounts.delete(key);
    }
  }

  /** How long a new read for address must wait until its debt is paid back, in ms; 0 when it is not in debt. */
  waitMs(address: string): number {
    const held = this.accounts.get(address);
    if (!held) return 0;
    const balance = this.refilled(held);
    return balance >= 0 ? 0 : Math.ceil((-balance / this.bytesPerSecond) * 1000);
  }

  private settle(address: string): { balance: number; at: number } {
    const now = performance.now();
    let account = this.accounts.get(address);
    if (!account) this.accounts.set(address, (account = { balance: this.burstBytes, at: now }));
    account.balance = this.refilled(account, now);
    account.at = now;
    return account;
  }

  private refilled(account: { balance: number; at: number }, now = performance.now()): number {
    return Math.min(this.burstBytes, account.balance + ((now - account.at) / 1000) * this.bytesPerSecond);
  }
}
