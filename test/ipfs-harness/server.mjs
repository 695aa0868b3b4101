// A real IPFS RPC server on loopback for the Kubo backend tests: js-ipfs (ipfs-core + ipfs-http-server),
// since Kubo's own npm installer downloads a binary and this machine reaches only the npm registry.
//
//   node test/ipfs-harness/server.mjs --repo DIR [--port 0]
//
// Prints `listening on http://127.0.0.1:PORT` once the API answers; stops on SIGTERM or SIGINT, or when
// stdin closes (so that a test runner that dies takes it along).

// ipfs-core 0.18's dependencies call Promise.withResolvers, which Node 20 lacks.
import "../helpers/with-resolvers.mjs";

const { create } = await import("ipfs-core");
const { HttpApi } = await import("ipfs-http-server");
// The package exports only its entry point; the dht resources sit beside it.
const { getResource, putResource } = await import(new URL("./api/resources/dht.js", import.meta.resolve("ipfs-http-server")).href);

const { CID } = await import("multiformats/cid");
const { peerIdFromString } = await import("@libp2p/peer-id");
const { base36 } = await import("multiformats/bases/base36");
// The DHT's own record layout in the repo's datastore, so that records sit where js-ipfs keeps them.
const dhtUtils = await import(new URL("./utils.js", import.meta.resolve("@libp2p/kad-dht")).href);
const { Libp2pRecord } = await import("@libp2p/record");

function flag(name, fallback) {
  const at = process.argv.indexOf(name);
  return at === -1 ? fallback : process.argv[at + 1];
}

const repo = flag("--repo");
const port = Number(flag("--port", "0"));
if (!repo) {
  process.stderr.write("usage: server.mjs --repo DIR [--port N]\n");
  process.exit(2);
}

// The repo is made here, as ipfs-core would make it, so that the routing and block shims below can
// reach its datastore and blockstore; the public API has neither.
const { createRepo } = await import("ipfs-core-config/repo");
const { Multicodecs } = await import("ipfs-core-utils/multicodecs");
const { codecs } = await import("multiformats/basics");
const blockCodecs = [...Object.values(codecs), await import("@ipld/dag-pb"), await import("@ipld/dag-cbor"), await import("@ipld/dag-json")];
const store = createRepo(() => {}, new Multicodecs({ codecs: blockCodecs }), { path: repo, autoMigrate: false });

const ipfs = await create({
  repo: store,
  offline: true,
  silent: true,
  start: true,
  // The test never talks to a network: no swarm listeners, no bootstrap peers, no discovery.
  config: {
    Addresses: { Swarm: [], API: `/ip4/127.0.0.1/tcp/${port}`, Gateway: "" },
    Bootstrap: [],
    Discovery: { MDNS: { Enabled: false }, webRTCStar: { Enabled: false } },
    // No DHT: offline it finds no peers, and it only kept a provider record for every block stored
    // (a LevelDB write and scan a block). `routing put` and `routing get` are served below, from the
    // datastore, as an offline Kubo serves them.
    Routing: { Type: "none" },
  },
  init: { algorithm: "Ed25519" },
  // js-ipfs otherwise asks its public preload nodes (https://node*.preload.ipfs.io) for every block it
  // adds or serves: unreachable here, each attempt still cost a TLS context and an HTTP pool, a third of
  // the node's CPU per block. Kubo has no such thing, so it is no part of what the harness stands for.
  preload: { enabled: false },
});

// An offline Kubo keeps blocks in its blockstore and nothing more. js-ipfs's bitswap, left running with
// no peer to trade with, announced every block stored to the (empty) content routing and made each a
// want first: two thirds of the node's CPU per block. With it stopped, js-ipfs's block storage reads
// and writes its blockstore directly (ipfs-core/src/block-storage.js).
await store.blocks.bitswap.stop();

const api = new HttpApi(ipfs);
await api.start();
for (const server of api._apiServers) {
  server.route([
    { method: "POST", path: "/api/v0/routing/put", options: putResource.options, handler: routingPut },
    { method: "POST", path: "/api/v0/routing/get", options: getResource.options, handler: routingGet },
  ]);
  server.ext({ type: "onRequest", method: offlineBlocks });
}
/*
 * Kubo's `routing put` and `routing get`, which kubo-rpc-client calls, on js-ipfs. Its own dht put and
 * get need peers (offline they fail with "No peers found in routing table!"), and its get re-validates
 * records with an IPNS validator too old for V2-only records. Kubo, offline or alone, keeps the record
 * in its datastore and serves it from there; so does this, reusing js-ipfs's request parsing. Like
 * js-ipfs's dht put, it stores whatever it is given without validating it: a client must verify what
 * it reads (test/kubo shows that remotelog does).
 */
function routingKey(text) {
  const id = String(text).replace(/^\/ipns\//, "");
  // A k51… name is a CIDv1 libp2p-key in base36; the routing key holds the peer id's multihash.
  const peer = id.startsWith("k") ? peerIdFromString(CID.parse(id, base36).toString()) : peerIdFromString(id);
  const ipns = new TextEncoder().encode("/ipns/");
  const multihash = peer.toBytes();
  const key = new Uint8Array(ipns.length + multihash.length);
  key.set(ipns, 0);
  key.set(multihash, ipns.length);
  return key;
}

function rpcError(h, message, status = 500) {
  return h.response({ Message: message, Code: 0, Type: "error" }).code(status).takeover();
}

async function routingPut(request, h) {
  let key;
  try {
    key = routingKey(request.query.key);
  } catch (err) {
    return rpcError(h, `invalid key: ${err.message}`, 400);
  }
  const value = request.pre.args.value;
  await store.datastore.put(dhtUtils.bufferToRecordKey(key), dhtUtils.createPutRecord(key, value));
  const event = { Extra: "", ID: ipfsId, Responses: null, Type: 5 };
  return h.response(JSON.stringify(event) + "\n").type("application/json").header("X-Chunked-Output", "1");
}

async function routingGet(request, h) {
  let key;
  try {
    key = routingKey(request.query.key);
  } catch (err) {
    return rpcError(h, `invalid key: ${err.message}`, 400);
  }
  let raw;
  try {
    raw = await store.datastore.get(dhtUtils.bufferToRecordKey(key));
  } catch {
    return rpcError(h, "routing: not found");
  }
  const value = Libp2pRecord.deserialize(raw).value;
  const event = { Extra: Buffer.from(value).toString("base64"), ID: "", Responses: null, Type: 5 };
  return h.response(JSON.stringify(event) + "\n").type("application/json").header("X-Chunked-Output", "1");
}

/**
 * Kubo answers `block get` and `block stat` with offline=true from its own blockstore: a block it
 * lacks is an immediate "not found", where js-ipfs would wait for the (absent) network forever.
 */
async function offlineBlocks(request, h) {
  if ((request.path === "/api/v0/block/get" || request.path === "/api/v0/block/stat") && request.query.offline === "true") {
    let cid;
    try {
      cid = CID.parse(String(request.query.arg));
    } catch (err) {
      return rpcError(h, `invalid CID: ${err.message}`, 400);
    }
    if (!(await store.blocks.has(cid))) return rpcError(h, `block was not found locally (offline): ipld: could not find ${cid}`);
  }
  return h.continue;
}

const ipfsId = (await ipfs.id()).id.toString();
const { port: bound } = api._apiServers[0].info;
process.stdout.write(`listening on http://127.0.0.1:${bound}\n`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => process.exit(0), 5000);
  try {
    await api.stop();
    await ipfs.stop();
  } finally {
    clearTimeout(timer);
    process.exit(0);
  }
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
