import { resolve } from "node:path";
import { generateKey, keyName, loadKey, saveKey } from "../lib/index.js";
import { newCommand, runCommand, type Io } from "./command.js";

export const summary = "make a name key (key gen) or print a key file's name (key name)";

export const DEFAULT_KEY_FILE = "./remotelog.key";

export function command(io: Io) {
  const key = newCommand("key", io).description(
    "A log's name is the IPNS name of an Ed25519 key (k51…), and only the holder of that key can update " +
      "it: every update carries a record signed with the key. `key gen` makes a key file; `key name` prints " +
      "the name of one.",
  );
  key
    .command("gen")
    .description(
      "Make a new Ed25519 key, write it to FILE (readable by you only; an existing file is never " +
        "overwritten) and print its name on stdout. Keep the file: without it the name can never be updated again.",
    )
    .option("--out <file>", "where to write the key", DEFAULT_KEY_FILE)
    .addHelpText("after", "\nExamples:\n  remotelog key gen\n  remotelog key gen --out ~/.remotelog/alice.key")
    .action(async (flags: { out: string }) => {
      const secret = await generateKey();
      await saveKey(flags.out, secret);
      io.stderr.write(`remotelog key: wrote ${resolve(flags.out)}\n`);
      io.stdout.write(`${keyName(secret)}\n`);
    });
  key
    .command("name")
    .description("Print the name (k51…) of the key in FILE.")
    .argument("<file>", "a key file made by `remotelog key gen`")
    .addHelpText("after", "\nExamples:\n  remotelog key name remotelog.key\n  remotelog receive --name $(remotelog key name alice.key) --server http://127.0.0.1:7420 --state ./bob")
    .action(async (file: string) => {
      io.stdout.write(`${keyName(await loadKey(file))}\n`);
    });
  return key;
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
