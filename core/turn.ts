/**
 * Resolves once the I/O and timers waiting behind the current job have had their turn, for long
 * stretches of hashing that would otherwise hold an answer that has arrived (a page a walk waits on,
 * a request just made that should go out) until they end.
 *
 * Node's setImmediate where there is one. A browser has none, and clamps a setTimeout made from
 * within a timer's job to 4 ms from the fifth in a row: a message posted to itself on a channel
 * takes its turn as a task, unclamped.
 */
export const nextTurn: () => Promise<void> = typeof setImmediate === "function" ? () => new Promise((resolve) => setImmediate(resolve)) : channelTurn();

/** A browser's MessagePort, as far as used here (Node's typings describe its own, an event emitter). */
interface Port {
  onmessage: (() => void) | null;
  postMessage(message: null): void;
}

function channelTurn(): () => Promise<void> {
  if (typeof MessageChannel !== "function") return () => new Promise((resolve) => setTimeout(resolve, 0));
  let ports: { port1: Port; port2: Port } | undefined;
  const waiting: (() => void)[] = [];
  return () =>
    new Promise<void>((resolve) => {
      // Made at the first use, so that merely loading this module holds no port open.
      if (!ports) {
        ports = new MessageChannel() as unknown as { port1: Port; port2: Port };
        ports.port1.onmessage = () => waiting.shift()?.();
      }
      waiting.push(resolve);
      ports.port2.postMessage(null);
    });
}
