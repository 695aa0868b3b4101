import { describe, expect, it } from "vitest";
import { PassThrough } from "node:stream";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { NS } from "../../gen/vac/cas/cas_pb.js";
import { run } from "../../cli/serve.js";
import type { Io } from "../../cli/command.js";
import { createNameRecord, generateNameKey, keyName } from "../../core/names.js";

/** Starts `remotelog serve ARGS` in this process; returns its URL, its stderr so far, and a stop function. */
async function serve(...args: string[]) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let err = "";
  stderr.on("data", (chunk: Buffer) => (err += chunk.toString("utf8")));
  const controller = new AbortController();
  const io: Io = { stdin: new PassThrough(), stdout, stderr, env: {}, signal: controller.signal };
  const exited = run(args, io);
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
      const match = /listening on (\S+)\n/.exec(out);
      if (match) resolve(match[1]);
    });
    exited.then((code) => reject(new Error(`serve exited with ${code}: ${err}`)), reject);
  });
  return {
    url,
    stderr: () => err,
    stop: async () => {
      controller.abort();
      return exited;
    },
  };
}

describe("cli - serve --require-signed", () => {
  it("refuses unsigned names with PermissionDenied and accepts signed updates", async () => {
    const server = await serve("--memory", "--listen", "127.0.0.1:0", "--require-signed");
    try {
      expect(server.stderr()).toContain("signed names only");
      const ns = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
      const err = await ns.update({ name: "chat", content: new Uint8Array([1]) }).catch((e: unknown) => ConnectError.from(e));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.PermissionDenied);
      await expect(ns.fetch({ name: "chat" })).rejects.toMatchObject({ code: Code.NotFound });

      const key = await generateNameKey();
      const content = new Uint8Array([2]);
      const record = await createNameRecord(key, content, 1n);
      expect((await ns.update({ name: keyName(key), content, record })).version).toBe(1n);
      expect(await ns.fetch({ name: keyName(key) })).toMatchObject({ data: content, version: 1n, record });
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it("without the flag, free-form names stay open", async () => {
    const server = await serve("--memory", "--listen", "127.0.0.1:0");
    try {
      expect(server.stderr()).not.toContain("signed names only");
      const ns = createClient(NS, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
      expect((await ns.update({ name: "chat", content: new Uint8Array([1]) })).version).toBe(1n);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});
