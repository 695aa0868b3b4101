/**
 * One hypercore peer as its own process, for bench/peers/hypercore.bench.ts:
 *
 *   writer DIR COUNT [WARM ROUNDS]
 *                       appends COUNT 256-byte blocks in batches of 100 to the core in DIR, which it
 *                       serves; then to a fresh core WARM more times (default 0) to warm up, and ROUNDS
 *                       times timed (default 0: the served core's append is the one timed), each fresh
 *                       core closed before the next. Serves replication on 127.0.0.1:<free port>;
 *                       prints one JSON line {key, port, appendMs (the median of the timed rounds),
 *                       rounds} and runs until killed.
 *   reader DIR KEY URL COUNT
 *                       connects to URL (http://127.0.0.1:<port>, the writer or a delay proxy in front of it),
 *                       downloads the whole core, reads every block back, prints {catchUpMs} and exits.
 *
 * Timings start after hypercore is loaded and the core is ready, so they compare with the in-process
 * figures of remotelog; the driver times the whole reader process from spawn to exit as well.
 */
import { createConnection, createServer } from "node:net";
import { randomBytes } from "node:crypto";

// hypercore ships no types; it is a bench-only dev dependency.
const { default: Hypercore } = (await import("hypercore" as string)) as { default: any };

const BATCH = 100;
const BODY_BYTES = 256;

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Appends count blocks to core in batches of BATCH; the time it took in ms. */
async function appendAll(core: any, count: number): Promise<number> {
  // Same kind of body as bench/harness.ts bodies(): base64 text of random bytes.
  const blocks = Array.from({ length: count }, () => Buffer.from(randomBytes(BODY_BYTES).toString("base64").slice(0, BODY_BYTES)));
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i += BATCH) await core.append(blocks.slice(i, i + BATCH));
  return ms(start);
}

async function writer(dir: string, count: number, warm: number, rounds: number): Promise<void> {
  const core = new Hypercore(dir);
  await core.ready();
  const first = await appendAll(core, count);
  const times: number[] = [];
  for (let round = 0; round < warm + rounds; round++) {
    const scratch = new Hypercore(`${dir}-round${round}`);
    await scratch.ready();
    const took = await appendAll(scratch, count);
    await scratch.close();
    if (round >= warm) times.push(took);
  }
  // Without rounds, the served core's own append (as before rounds were asked for).
  const appendMs = times.length === 0 ? first : [...times].sort((a, b) => a - b)[times.length >> 1];
  const server = createServer((socket) => {
    socket.on("error", () => {});
    const stream = core.replicate(false);
    stream.on("error", () => {});
    socket.pipe(stream).pipe(socket);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("writer has no port");
  process.stdout.write(JSON.stringify({ key: core.key.toString("hex"), port: address.port, appendMs, rounds: times, length: core.length }) + "\n");
  process.on("SIGTERM", () => {
    server.close();
    void core.close().then(() => process.exit(0));
  });
}

async function reader(dir: string, key: string, url: string, count: number): Promise<void> {
  const core = new Hypercore(dir, Buffer.from(key, "hex"));
  await core.ready();
  const { hostname, port } = new URL(url);
  const start = process.hrtime.bigint();
  const socket = createConnection({ host: hostname, port: Number(port) });
  socket.setNoDelay(true);
  const stream = core.replicate(true);
  stream.on("error", () => {});
  socket.on("error", () => {});
  socket.pipe(stream).pipe(socket);
  await core.update({ wait: true });
  if (core.length !== count) throw new Error(`reader sees ${core.length} blocks, expected ${count}`);
  await core.download({ start: 0, end: count }).done();
  // Read every block back, as a receiver that delivers them would.
  let bytes = 0;
  for await (const block of core.createReadStream({ start: 0, end: count })) bytes += (block as Buffer).length;
  const catchUpMs = ms(start);
  if (bytes !== count * BODY_BYTES) throw new Error(`reader read ${bytes} bytes`);
  process.stdout.write(JSON.stringify({ catchUpMs }) + "\n");
  socket.destroy();
  await core.close();
  process.exit(0);
}

const [role, ...args] = process.argv.slice(2);
if (role === "writer") await writer(args[0], Number(args[1]), Number(args[2] ?? 0), Number(args[3] ?? 0));
else if (role === "reader") await reader(args[0], args[1], args[2], Number(args[3]));
else throw new Error("usage: hypercore-peer writer DIR COUNT [WARM ROUNDS] | reader DIR KEY URL COUNT");
