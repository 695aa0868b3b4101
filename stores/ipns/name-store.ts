import { nextVersion, type NameEntry, type NameStore, type PutOptions } from "../../core/name-store.js";
import { RemoteLogError, isRemoteLogError } from "../../core/errors.js";
import type { RemoteLog } from "../../gen/vac/cas/cas_pb.js";
import { addressOf, equalBytes, parseAddress } from "../../core/hash.js";
import { decodePage } from "../../core/page.js";
import { isKeyName, peerIdOfKeyName, verifyNameRecord, verifySignedRecord } from "../../core/names.js";
import { KuboApi, type KuboApiOptions } from "../kubo/kubo-api.js";
import { KuboContentStore } from "../kubo/content-store.js";

/**
 * The NS on IPNS, through a Kubo node's RPC API (design/remote-log.md §5, §7). A name's entry is its
 * sender-signed IPNS record, published with `routing put` as it came (the sender's key never reaches
 * the node), and its content, the head page, stored as a pinned raw block whose CID the record's value
 * names (/ipfs/<CID>). The version is the record's sequence. Only a name's current head page stays
 * pinned as a head: a put unpins the page the name pointed at before (unless the new head links it).
 *
 * get() resolves with `routing get`, then checks everything itself, as the embedded NS's callers do,
 * and never trusts the node's own validation (js-ipfs has none): the signature by the name's key, a
 * value that names a raw block, and the block's bytes against that CID. An expired record is returned
 * as the embedded NS returns one: its readers refuse it, and its sender renews it. A record that
 * fails is refused with the codes of verifyNameRecord, so a reader sees the same error whichever NS
 * served it. It is meant to sit under NsService, which checks updates before they reach put().
 *
 * Limits, by the nature of IPNS:
 * - Only key names (k51…): a free-form name has no key to sign its record, so put() refuses it with
 *   INVALID_ARGUMENT and get() finds nothing under it. `serve --ns ipns` therefore serves signed names only.
 * - A record with sequence 0 (what `ipfs name publish` makes first) is refused (CONFLICT): version 0
 *   means "no name" here, so a remotelog sender's first record has sequence 1.
 * - A conditional update (expectedVersion) reads the current sequence, compares, then publishes: it is
 *   serialised within this process, not across several NS servers on one Kubo or across Kubo nodes.
 *   There the last writer by sequence wins, and Kubo's own rule (a lower sequence never replaces a
 *   higher one) keeps a name from going back.
 * - No count(): IPNS cannot list names.
 */
export class IpnsNameStore implements NameStore {
  private readonly blocks: KuboContentStore;
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    readonly api: KuboApi,
    blocks?: KuboContentStore,
  ) {
    this.blocks = blocks ?? new KuboContentStore(api);
  }

  /** A store on the node at options.url; checks that the node answers (retrying as configured). */
  static async open(options: KuboApiOptions & { concurrency?: number }): Promise<IpnsNameStore> {
    const blocks = await KuboContentStore.open(options);
    return new IpnsNameStore(blocks.api, blocks);
  }

  async get(name: string): Promise<NameEntry | undefined> {
    if (!isKeyName(name)) return undefined;
    const record = await this.resolve(name);
    if (record === undefined) return undefined;
    const from = `Kubo API ${this.api.url}`;
    // Expiry is the reader's to judge (LogReader, with its floor), as the embedded NS leaves it: the
    // record's own sender must get an expired one back to renew it, and refused here, `send` stayed
    // CONFLICT for good once it had been away longer than --validity.
    const { sequence, cid } = await verifySignedRecord(name, record, { now: new Date(0) }).catch((err: unknown) => {
      throw withSource(err, from);
    });
    if (sequence === 0n) {
      throw RemoteLogError.conflict(`${from}: record for name ${name} has sequence 0; a key name's first record has sequence 1 or more`);
    }
    let address: Uint8Array;
    try {
      address = parseAddress(cid.bytes).bytes;
    } catch (err) {
      throw RemoteLogError.invalidArgument(`${from}: record for name ${name} points at ${cid.toString()}, which is not a raw block (not a remotelog head page)`, err);
    }
    // getMany hashes the bytes against the CID, so the content is bound to the signed value.
    const [content] = await this.blocks.getMany([address]);
    if (content === undefined) {
      throw RemoteLogError.dataLoss(`${from}: record for name ${name} points at head page ${cid.toString()}, which the node does not hold`);
    }
    return { content, version: sequence, record };
  }

  /**
   * Publishes a signed record and its content. The record must verify for the name and the content
   * (verifyNameRecord; its codes), and `version`, when given, must be its sequence (INVALID_ARGUMENT
   * otherwise); the version checks of every NameStore follow (nextVersion: CONFLICT).
   */
  async put(name: string, content: Uint8Array, options: PutOptions = {}): Promise<bigint> {
    if (!isKeyName(name)) {
      throw RemoteLogError.invalidArgument(`name ${JSON.stringify(name)} is not a key name (k51…); an IPNS name store keeps signed names only`);
    }
    const record = options.record ?? new Uint8Array(0);
    if (record.length === 0) throw RemoteLogError.invalidArgument(`name ${name}: an IPNS name store needs the update's signed record`);
    if (options.version !== undefined) nextVersion(name, 0n, { version: options.version });
    const { sequence } = await verifyNameRecord(name, record, content, { update: true });
    if (options.version !== undefined && options.version !== sequence) {
      throw RemoteLogError.invalidArgument(`name ${name}: version ${options.version} is not the record's sequence ${sequence}`);
    }
    return this.serialised(name, async () => {
      const { version: current, page: previous } = await this.current(name);
      const version = nextVersion(name, current, { ...options, version: sequence });
      // The page first: a reader who resolves the new record must find what it names. Pinned under a
      // root of this name's own: another name's head may be the very same page.
      await this.blocks.putUnder(name, content);
      const key = `/ipns/${peerIdOfKeyName(name)}`;
      await this.api.call(`routing/put ${key}`, async (signal) => {
        // A node without peers (a lone Kubo) keeps the record locally instead of failing.
        for await (const _event of this.api.client.routing.put(key, record, { allowOffline: true, signal })) {
          // The events tell which peers took it; a put that fails throws.
        }
      });
      await this.unpinReplaced(name, previous, content);
      return version;
    });
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.queues.values()]);
    await this.blocks.close();
  }

  /** The record bytes the node holds for name, or undefined when it has none. */
  private async resolve(name: string): Promise<Uint8Array | undefined> {
    // Routing keys name the peer id (12D3KooW…): js-ipfs resolves no other form, and Kubo takes both.
    const key = `/ipns/${peerIdOfKeyName(name)}`;
    try {
      return await this.api.call(`routing/get ${key}`, async (signal) => {
        let value: Uint8Array | undefined;
        for await (const event of this.api.client.routing.get(key, { signal })) {
          if (event.name === "VALUE") value = event.value;
        }
        if (value === undefined) throw RemoteLogError.notFound(`Kubo API ${this.api.url} routing/get ${key}: no value`);
        return value;
      });
    } catch (err) {
      if (isRemoteLogError(err, "NOT_FOUND")) return undefined;
      throw err;
    }
  }

  /**
   * The sequence of the record the node holds for name, for the version checks of a put, and the head
   * page it names: a record whose signature does not verify counts as none (anyone can put bytes
   * there; Kubo itself would refuse them), while a validly signed one counts even once expired or
   * without its page, so that an old record can never be replaced by one with a lower sequence.
   */
  private async current(name: string): Promise<{ version: bigint; page?: Uint8Array }> {
    const record = await this.resolve(name);
    if (record === undefined) return { version: 0n };
    try {
      // Expiry does not matter here, only who signed which sequence: judged as of the epoch.
      const { sequence, cid } = await verifySignedRecord(name, record, { now: new Date(0) });
      return { version: sequence, page: cid.bytes };
    } catch (err) {
      if (isRemoteLogError(err, "PERMISSION_DENIED") || isRemoteLogError(err, "INVALID_ARGUMENT") || isRemoteLogError(err, "TOO_LARGE")) return { version: 0n };
      throw err;
    }
  }

  /**
   * Unpins the head page a name pointed at before this put, so that pins do not grow by one with every
   * publish: only the current head of each name stays pinned as a head. A page the new head still
   * names (its tail or a skip link: the old head sealed as it was) keeps its pin. Best effort: a
   * failure leaves one pin too many, never a page too few.
   */
  private async unpinReplaced(name: string, previous: Uint8Array | undefined, content: Uint8Array): Promise<void> {
    if (!previous || equalBytes(previous, addressOf(content))) return;
    let page: RemoteLog | undefined;
    try {
      page = decodePage(content, "head page");
    } catch {
      page = undefined; // a backup head or other content: it names no page
    }
    if (page && (equalBytes(page.tail, previous) || page.info?.skips.some((skip) => equalBytes(skip.address, previous)))) return;
    await this.blocks.unpinUnder(name, previous);
  }

  /** Runs fn after every earlier put of name in this process has settled. */
  private serialised<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(name) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(name, settled);
    void settled.then(() => {
      if (this.queues.get(name) === settled) this.queues.delete(name);
    });
    return run;
  }
}

/** A RemoteLogError from checking a record the node served, saying which node served it. */
function withSource(err: unknown, from: string): unknown {
  if (!(err instanceof RemoteLogError)) return err;
  return new RemoteLogError(err.code, `${from}: ${err.text}`, { cause: err, details: err.details });
}
