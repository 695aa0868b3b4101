/**
 * remotelog in a browser: the library's reading and writing, over the page's fetch, with no Node
 * built-ins. `import { … } from "remotelog/browser"`, or load the prebuilt bundle
 * (dist/browser/remotelog.js, `make build`) as an ES module. The server must allow the page's origin
 * (`remotelog serve --cors-origin https://app.example`).
 *
 * ```ts
 * import { openRemote, generateKey, keyName, Sender, Receiver } from "remotelog/browser";
 *
 * const remote = openRemote("https://log.example");
 * const key = await generateKey();
 * const alice = await Sender.open({ remote, key });
 * await alice.send(["hello"]);
 *
 * const bob = await Receiver.open({ remote, name: keyName(key) });
 * for await (const delivery of bob.follow({ signal })) console.log(delivery.seq, delivery.message?.body);
 * ```
 *
 * The same classes as the Node library (lib/index.ts), and the same one log reader: every head record,
 * page and message is verified in the page (SHA-256 from @noble/hashes, signatures by @libp2p/crypto).
 * What differs is where things are kept: a Sender's log and a Receiver's checkpoints live in memory
 * (a `data` or `state` directory is INVALID_ARGUMENT), or in any CheckpointStore a Receiver is given;
 * and messages are checked on the page's thread.
 *
 * @packageDocumentation
 */

// Where the log lives. openRemote speaks Connect through connect-web; openGateway reads IPFS's HTTP protocols.
export { openRemote, openGateway, type Endpoints, type OpenGatewayOptions, type OpenRemoteOptions } from "./open-remote.js";
export type { LogRemote, LogReadRemote, NameHead, CasLimits, PendingUpdate, NameLister, NamePage } from "../core/log-remote.js";
export { WatchUnsupportedError } from "../core/log-remote.js";

// Writing and reading a log.
export { Sender, blockLimit, casBlockLimit, type OpenSenderOptions, type SenderOptions, type SendResult, type PublishResult, type EmbedMode } from "./sender.js";
export type { LocalLog, LocalLogEntry, LogOwner, ClaimResult } from "./sender.js";
export { Receiver, type OpenReceiverOptions, type ReceiverOptions, type ReceiverRemote, type ReceiveResult, type FollowOptions, type Deliver, type Delivery, type SyncResult } from "./receiver.js";
export { verifyLog, type VerifyLogOptions, type VerifyReport, type Fault } from "./verify.js";
// What the live log explorer (serve's /explorer, web/explorer/) shows of a name, each part checked.
export { LogExplorer, bytesView, MAX_VIEW_PAGES, VIEW_MESSAGE_BYTES, VIEW_MESSAGES_A_PAGE, VIEW_PAGE_BYTES, type LogView, type PageView, type MessageView, type RecordView, type SkipView, type BytesView, type ExplorerFault, type ExplorerEvent, type ExploreOptions } from "./explorer.js";

// Checkpoints: where a receiver remembers how far it got. Any CheckpointStore will do.
export type { Checkpoint, CheckpointStore } from "../core/checkpoint-store.js";
export { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";

// Keys, names and messages.
export { generateKey, keyName, keyToBytes, keyFromBytes, type PrivateKey, type PublicKey } from "./keys.js";
export { isKeyName } from "../core/names.js";
export { mvdsId, toHex, fromHex, type Message, type Metadata } from "./messages.js";

// Errors and retries.
export { RemoteLogError, ErrorCodes, isRemoteLogError, type ErrorCode, type ErrorDetails } from "../core/errors.js";
export { withRetry, type RetryOptions } from "../actors/remote.js";
