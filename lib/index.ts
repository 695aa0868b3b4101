/**
 * remotelog as a library: publish a node's MVDS message log to a content-addressed store and a name
 * system, and read it, verified, while that node is offline.
 *
 * ```ts
 * import { openRemote, generateKey, keyName, Sender, Receiver } from "remotelog";
 *
 * const remote = openRemote("http://127.0.0.1:7420");
 * const key = await generateKey();
 * const alice = await Sender.open({ remote, key, data: "./alice" });
 * await alice.send(["hello", "world"]);
 *
 * const bob = await Receiver.open({ remote, name: keyName(key), state: "./bob" });
 * for await (const delivery of bob.follow({ signal })) console.log(delivery.seq, delivery.message?.body);
 * ```
 *
 * In a browser, import from `remotelog/browser` (lib/browser.ts): the same classes, kept in memory.
 *
 * Every error is a RemoteLogError with a `code` from a closed set (ErrorCodes) and `details` fields
 * (file, offset, seq, name, address, limit, value, taken): branch on those, never on the message text.
 *
 * @packageDocumentation
 */

// Where the log lives: clients of the CAS and NS, or (read-only) a trustless gateway and a delegated router.
export { openRemote, openKubo, openGateway, type Endpoints, type OpenGatewayOptions, type OpenRemoteOptions } from "./open.js";
export type { LogRemote, LogReadRemote, NameHead, CasLimits, PendingUpdate, NameLister, NamePage } from "../core/log-remote.js";
export { WatchUnsupportedError } from "../core/log-remote.js";

// Writing and reading a log.
export { Sender, blockLimit, casBlockLimit, type OpenSenderOptions, type SenderOptions, type SendResult, type PublishResult, type EmbedMode } from "./sender.js";
export type { LocalLog, LocalLogEntry, LogOwner, ClaimResult } from "./sender.js";
export { Receiver, type OpenReceiverOptions, type ReceiverOptions, type ReceiverRemote, type ReceiveResult, type FollowOptions, type Deliver, type Delivery, type SyncResult } from "./receiver.js";
export { Mirror, type MirrorOptions, type MirrorResult } from "../actors/mirror.js";
export { verifyLog, type VerifyLogOptions, type VerifyReport, type Fault } from "./verify.js";
// Salvaging a sender's own local log on purpose (what a Sender's DATA_LOSS or TOO_LARGE with a seq asks for).
export { repairLog, type RepairLogOptions, type RepairLogReport, type RepairReport, type SetAside } from "./repair.js";
// What the live log explorer (serve's /explorer) shows of a name: the record, pages, messages, each checked.
export { LogExplorer, bytesView, MAX_VIEW_PAGES, VIEW_MESSAGE_BYTES, VIEW_MESSAGES_A_PAGE, VIEW_PAGE_BYTES, type LogView, type PageView, type MessageView, type RecordView, type SkipView, type BytesView, type ExplorerFault, type ExplorerEvent, type ExploreOptions } from "./explorer.js";

// Checkpoints: where a receiver remembers how far it got. Any CheckpointStore will do.
export type { Checkpoint, CheckpointStore } from "../core/checkpoint-store.js";
export { MemoryCheckpointStore } from "../stores/memory/checkpoint-store.js";
export { FileCheckpointStore } from "../stores/file/checkpoint-store.js";

// Keys, names and messages.
export { generateKey, keyName, keyToBytes, keyFromBytes, type PrivateKey, type PublicKey } from "./keys.js";
export { saveKey, loadKey } from "./key-files.js";
export { isKeyName } from "../core/names.js";
export { mvdsId, toHex, fromHex, type Message, type Metadata } from "./messages.js";

// Errors and retries.
export { RemoteLogError, ErrorCodes, isRemoteLogError, type ErrorCode, type ErrorDetails } from "../core/errors.js";
export { withRetry, type RetryOptions } from "../actors/remote.js";
