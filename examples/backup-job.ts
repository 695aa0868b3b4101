/**
 * A backup job, to run from cron: appends every message of a log that is not in DIR yet to
 * DIR/messages.jsonl, one JSON line each, then checks the whole remote log, every message included.
 * Lines reach the disk before the checkpoint moves past them, so a crash can repeat the last batch
 * (same seq and id) but never skip one. Prints one JSON summary; exits 1 when the log has faults.
 *
 *   node dist/examples/backup-job.js SERVER NAME DIR
 */
import { mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { openRemote, Receiver, toHex, verifyLog } from "remotelog";

const [server, name, dir] = process.argv.slice(2);
if (!server || !name || !dir) {
  console.error("usage: backup-job SERVER NAME DIR");
  process.exit(2);
}

await mkdir(dir, { recursive: true });
const remote = openRemote(server);
const receiver = await Receiver.open({ remote, name, state: join(dir, "checkpoints") });
const out = await open(join(dir, "messages.jsonl"), "a");
try {
  const text = new TextDecoder();
  const result = await receiver.sync(async (batch) => {
    let lines = "";
    for (const { seq, id, message, redacted } of batch) {
      const fields = redacted ? { redacted } : { group: text.decode(message!.groupId), timestamp: Number(message!.timestamp), body: text.decode(message!.body) };
      lines += `${JSON.stringify({ seq, id: toHex(id), ...fields })}\n`;
    }
    await out.write(lines);
    await out.datasync();
  });
  const report = await verifyLog(remote, name, { readData: true });
  console.log(JSON.stringify({ saved: result.delivered, total: result.total, verified: report.ok, pages: report.objects, messages: report.messages }));
  for (const fault of report.faults) console.error(`fault in ${fault.object}: ${fault.problem}`);
  if (!report.ok) process.exitCode = 1;
} finally {
  await out.close();
  await receiver.close();
  remote.close();
}
