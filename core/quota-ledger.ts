/**
 * Where a server keeps its quotas' counts between runs (services/auth.ts counts them;
 * stores/file/quota-file.ts keeps them in a file).
 */

/** What the quotas have counted, per writer ("key k51…", "token <hash prefix>"). */
export interface QuotaUsage {
  bytes: Record<string, number>;
  names: Record<string, number>;
}

export interface QuotaLedger {
  /** The counts saved last, as read when the ledger was opened. */
  readonly saved: QuotaUsage;
  /** Replaces the saved counts, durably. */
  save(usage: QuotaUsage): Promise<void>;
}
