import net from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A TCP proxy in front of a real server whose open connections can go silent: after silence(), what
 * either side sends on them is dropped, and neither is told (no FIN, no RST), as when a NAT or a load
 * balancer forgets a connection or a laptop shuts. Connections made after that pass as ever.
 */
export interface SilentProxy {
  url: string;
  /** Connections proxied so far. */
  connections(): number;
  /** Bytes the server has sent through it so far: what its clients were made to take. */
  bytesToClients(): number;
  silence(): void;
  close(): Promise<void>;
}

export async function startSilentProxy(target: string): Promise<SilentProxy> {
  const upstream = new URL(target);
  const open = new Set<{ client: net.Socket; server: net.Socket; silent: boolean }>();
  let made = 0;
  let toClients = 0;
  const proxy = net.createServer((client) => {
    made++;
    const server = net.connect(Number(upstream.port), upstream.hostname);
    const pair = { client, server, silent: false };
    open.add(pair);
    client.on("data", (chunk) => pair.silent || server.write(chunk));
    server.on("data", (chunk) => {
      toClients += chunk.length;
      if (!pair.silent) client.write(chunk);
    });
    const end = () => {
      open.delete(pair);
      client.destroy();
      server.destroy();
    };
    // A silent connection stays open whatever either side does: it is gone only for them.
    client.on("close", () => pair.silent || end());
    server.on("close", () => pair.silent || end());
    client.on("error", () => {});
    server.on("error", () => {});
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    connections: () => made,
    bytesToClients: () => toClients,
    silence: () => {
      for (const pair of open) pair.silent = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const { client, server } of open) {
          client.destroy();
          server.destroy();
        }
        proxy.close(() => resolve());
      }),
  };
}
