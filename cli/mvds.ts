import { fromHex, mvdsId, toHex } from "../lib/index.js";
import { newCommand, readAll, runCommand, type Io } from "./command.js";

export const summary = "MVDS helpers: compute a message id";

export function command(io: Io) {
  const mvds = newCommand("mvds", io).description(summary);
  mvds
    .command("id")
    .description(
      "Print the 64-hex MVDS id (H1) of one hex-encoded vac.mvds.Message, given as the argument or on stdin. " +
        "Empty input is the empty message.",
    )
    .argument("[hex]", "the encoded message in hex; read from stdin when absent")
    .addHelpText("after", "\nExamples:\n  remotelog mvds id 0a0467726f7570\n  printf '' | remotelog mvds id")
    .action(async (hex: string | undefined) => {
      const text = hex ?? (await readAll(io.stdin)).toString("utf8");
      io.stdout.write(`${toHex(mvdsId(fromHex(text, "message")))}\n`);
    });
  return mvds;
}

export function run(args: string[], io: Io): Promise<number> {
  return runCommand(command(io), args, io);
}
