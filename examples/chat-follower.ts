/**
 * A chat follower: prints every message of a signed log as text, oldest first, then each new one as
 * it is published, until Ctrl-C. With a state directory, a restart goes on where the last run stopped.
 *
 *   node dist/examples/chat-follower.js SERVER NAME [STATE_DIR]
 */
import { openRemote, Receiver, toHex } from "remotelog";

const [server, name, state] = process.argv.slice(2);
if (!server || !name) {
  console.error("usage: chat-follower SERVER NAME [STATE_DIR]");
  process.exit(2);
}

const remote = openRemote(server);
const receiver = await Receiver.open({ remote, name, state });
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());

const text = new TextDecoder();
try {
  for await (const delivery of receiver.follow({ signal: stop.signal })) {
    if (delivery.redacted) console.log(`#${delivery.seq} (removed by its author: ${toHex(delivery.id)})`);
    else console.log(`#${delivery.seq} ${text.decode(delivery.message!.body)}`);
  }
} finally {
  await receiver.close();
  remote.close();
}
