// Node 20 lacks Promise.withResolvers (Node 22 has it), which Helia's libraries and ipfs-core 0.18's
// dependencies call: loaded before them, with `node --import test/helpers/with-resolvers.mjs` (the Helia
// client) or an import at the top (the IPFS harness).
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
