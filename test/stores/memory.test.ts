import { MemoryCheckpointStore } from "../../stores/memory/checkpoint-store.js";
import { MemoryContentStore } from "../../stores/memory/content-store.js";
import { MemoryLocalLog } from "../../stores/memory/local-log.js";
import { MemoryNameStore } from "../../stores/memory/name-store.js";
import { checkpointStoreContract } from "../contract/checkpoint-store.contract.js";
import { contentStoreContract } from "../contract/content-store.contract.js";
import { localLogContract } from "../contract/local-log.contract.js";
import { nameStoreContract } from "../contract/name-store.contract.js";

const close = async (store: { close(): Promise<void> }) => store.close();

contentStoreContract("memory", async () => new MemoryContentStore(), close);
nameStoreContract("memory", async () => new MemoryNameStore(), close);
// The cases an IPNS store runs (test/kubo), against an embedded store: both pass the same ones.
nameStoreContract("memory", async () => new MemoryNameStore(), close, { signedOnly: true });
localLogContract("memory", async () => new MemoryLocalLog(), close);
checkpointStoreContract("memory", async () => new MemoryCheckpointStore(), close);
