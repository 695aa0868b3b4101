// Child process of stores.crash.test.ts: writes to a FileLocalLog and an FsContentStore (compiled, from
// dist/) until it is killed, and prints a line for every write as soon as it is acknowledged:
//   L <round> <first i> <count> <first seq>     messages message(round, i) for i in [first, first + count)
//   B <round> <first i> <count>                 blocks block(round, i) likewise
// stdout is a pipe, and pipe writes are synchronous on Linux, so a printed line survives the SIGKILL.
import { FileLocalLog } from "../../dist/stores/file/local-log.js";
import { FsContentStore } from "../../dist/stores/fs/content-store.js";
import { block, message } from "./stores-data.mjs";

const [logDir, casDir, roundText, seedText] = process.argv.slice(2);
const round = Number(roundText);

// The same xorshift as test/helpers/processes.ts seededRandom: batch sizes follow the seed.
let state = Number(seedText) >>> 0 || 1;
const next = () => {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return (state >>> 0) / 0x1_0000_0000;
};

const log = await FileLocalLog.open(logDir);
const cas = await FsContentStore.open(casDir);
const write = (line) => process.stdout.write(`${line}\n`);

async function appendLoop() {
  for (let i = 0; ; ) {
    const count = 1 + Math.floor(next() * 200);
    const entries = await log.append(Array.from({ length: count }, (_, j) => message(round, i + j)));
    write(`L ${round} ${i} ${count} ${entries[0].seq}`);
    i += count;
  }
}

async function putLoop() {
  for (let i = 0; ; ) {
    const count = 1 + Math.floor(next() * 300);
    await cas.putMany(Array.from({ length: count }, (_, j) => block(round, i + j)));
    write(`B ${round} ${i} ${count}`);
    i += count;
  }
}

await Promise.all([appendLoop(), putLoop()]);
