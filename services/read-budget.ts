/**
 * serve's default: 32 MiB a second, so 128 MiB at once. A fresh catch-up of a million 256-byte
 * messages (~330 MB) at the speed of this machine is never held: it stays under the 128 MiB burst
 * plus 32 MiB for every second it has run. A client reading blocks without pause is held to four full
 * GetMany answers a second.
 */
export const DEFAULT_READ_RATE = 32 << 20;

/** What a held or running read hands back: its end, once, when its answer is over (sent, failed or cut). */
export interface ReadTicket {
  finish(): void;
}

interface Line {
  /** Reads of the address running now. */
  running: number;
  /** Reads held, oldest first. */
  held: { start: () => void; done: boolean }[];
  timer?: NodeJS.Timeout;
}

/**
 * How many bytes of blocks each client address may have read for it per second: a token bucket per
 * address that holds up to burst seconds' worth and may go into debt.
 *
 * Why: a GetMany answer is capped, but nothing stopped one client from asking again at once, and a
 * client that downloads as fast as it can takes the server's thread and its cores from everyone else
 * (make bench-abuse's getmany phase: honest p99 12x the quiet baseline). The handlers that read
 * blocks charge what they read, after they read it; the server asks admit() before it reads a block
 * read's body (so a held call costs a socket, not memory).
 *
 * An address in debt gets one read at a time: its held reads wait until its running ones are over and
 * its debt is paid back, and then only the oldest goes. Let go together after one wait, as they once
 * were, a client's four held calls ran back to back, and their answers took the thread for as long as
 * four. Nothing is refused, so clients need no new handling; an honest reader that fits in the burst
 * (a 100k-message catch-up is ~30 MB) is never held at all.
 */
export class ReadBudget {
  private readonly accounts = new Map<string, { balance: number; at: number }>();
  private readonly lines = new Map<string, Line>();
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

  /**
   * Runs start now, or holds it while address is in debt or has reads held already. held says which;
   * the ticket's finish() must be called when the read's answer is over, or when a held read's caller
   * goes away (then it never starts).
   */
  admit(address: string, start: () => void): { held: boolean; ticket: ReadTicket } {
    let line = this.lines.get(address);
    if (!line) this.lines.set(address, (line = { running: 0, held: [] }));
    const entry = { start, done: false };
    const held = line.held.length > 0 || this.waitMs(address) > 0;
    if (held) {
      line.held.push(entry);
      this.pump(address, line);
    } else {
      line.running++;
      start();
    }
    const ticket = {
      finish: () => {
        if (entry.done) return;
        entry.done = true;
        const index = line.held.indexOf(entry);
        if (index >= 0) line.held.splice(index, 1);
        else line.running--;
        this.pump(address, line);
      },
    };
    return { held, ticket };
  }

  /** How long a new read for address must wait until its debt is paid back, in ms; 0 when it is not in debt. */
  waitMs(address: string): number {
    const held = this.accounts.get(address);
    if (!held) return 0;
    const balance = this.refilled(held);
    return balance >= 0 ? 0 : Math.ceil((-balance / this.bytesPerSecond) * 1000);
  }

  /** Lets the oldest held read of address go once none runs and its debt is paid. */
  private pump(address: string, line: Line): void {
    if (line.timer || line.running > 0) return;
    if (line.held.length === 0) {
      this.lines.delete(address);
      return;
    }
    const wait = this.waitMs(address);
    if (wait > 0) {
      line.timer = setTimeout(() => {
        line.timer = undefined;
        this.pump(address, line);
      }, wait);
      line.timer.unref();
      return;
    }
    const next = line.held.shift()!;
    line.running++;
    next.start();
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
