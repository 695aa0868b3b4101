// Node 20 lacks Promise.withResolvers (Node 22 has it), which Helia's libraries call; loaded with
// `node --import ./with-resolvers.mjs` before them.
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
