/**
 * A real remote, each block fetch's answer weighed as it comes back (getBlocks, and getBlocksWithin
 * where the remote has it): what a reader held at once from one call, for the tests of its byte
 * budget. Every other member is the remote's own.
 */
export function weighedRemote<T extends object & { getBlocks(addresses: Uint8Array[]): Promise<Uint8Array[]> }>(real: T): { remote: T; fetched: number[] } {
  const fetched: number[] = [];
  const weigh = <B extends (Uint8Array | undefined)[]>(blocks: B) => (fetched.push(blocks.reduce((sum, block) => sum + (block?.length ?? 0), 0)), blocks);
  const within = (real as { getBlocksWithin?: (addresses: Uint8Array[], maxBytes: number) => Promise<(Uint8Array | undefined)[]> }).getBlocksWithin;
  const remote = new Proxy(real, {
    get(target, property) {
      if (property === "getBlocks") return (addresses: Uint8Array[]) => target.getBlocks(addresses).then(weigh);
      if (property === "getBlocksWithin" && within) return (addresses: Uint8Array[], maxBytes: number) => within.call(target, addresses, maxBytes).then(weigh);
      const value = Reflect.get(target, property) as unknown;
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { remote, fetched };
}
