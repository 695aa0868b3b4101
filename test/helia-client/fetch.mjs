// An independent IPFS client against a remotelog server: Helia's @helia/verified-fetch, with the
// server as its only trustless gateway and delegated router. Each argument is an ipfs:// or ipns://
// URL; for each, one JSON line on stdout: {"url","status","contentType","body":<base64>} or {"url","error"}.
// verified-fetch checks every block against its CID and every IPNS record against the name's key
// itself; it is told nothing else. HELIA_TIMEOUT_MS bounds each fetch (default 20 s): a client that
// is handed bad bytes keeps looking for good ones until then.
import { createVerifiedFetch } from "@helia/verified-fetch";

const [server, ...urls] = process.argv.slice(2);
const verifiedFetch = await createVerifiedFetch({ gateways: [server], routers: [server], allowLocal: true, allowInsecure: true });
let failed = 0;
try {
  for (const url of urls) {
    try {
      const response = await verifiedFetch(url, { signal: AbortSignal.timeout(Number(process.env.HELIA_TIMEOUT_MS ?? 20_000)) });
      const body = Buffer.from(await response.arrayBuffer());
      if (!response.ok) failed++;
      console.log(JSON.stringify({ url, status: response.status, contentType: response.headers.get("content-type"), body: body.toString("base64") }));
    } catch (err) {
      failed++;
      console.log(JSON.stringify({ url, error: `${err.name}: ${err.message}` }));
    }
  }
} finally {
  await verifiedFetch.stop();
}
process.exit(failed ? 1 : 0);
