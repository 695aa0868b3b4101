import { readFile } from "node:fs/promises";
import { Option, type Command } from "commander";
import { readPrivateFile } from "../stores/file/private-file.js";
import { usageError } from "./command.js";

/*
 * How every verb that talks to a server proves who it is and whom it trusts: --token-file and --ca,
 * defined once. Nothing here loads network code, so that a verb working on a directory does not pay for it.
 */

/** More than any list of bearer tokens needs: a larger file is not a token file. */
const MAX_TOKEN_FILE_BYTES = 1 << 20;

/**
 * The bearer tokens in a token file, one a line (blank lines and lines starting with # skipped), for
 * serve's --write-token-file and --admin-token-file and a client's --token-file alike. Refused, as a
 * key file is, when its group or others may read it (readPrivateFile).
 */
export async function readTokenFile(path: string): Promise<string[]> {
  return parseTokens(new TextDecoder().decode(await readPrivateFile(path, "token file", MAX_TOKEN_FILE_BYTES)));
}

/** Tokens from a file's text: one a line; blank lines and lines starting with # are skipped. */
export function parseTokens(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith("#"));
}

export interface CredentialFlags {
  /** A file holding the bearer token to send (serve --write-token-file). */
  tokenFile?: string;
  /** A PEM file of the CA that signed an https:// server's certificate, when it is not a public one. */
  ca?: string;
}

/** --ca FILE (and REMOTELOG_CA): trust this CA for https:// servers. */
export function caOption(what = "https:// servers"): Option {
  return new Option("--ca <file>", `trust this CA (PEM) for ${what}, besides the system's`).env("REMOTELOG_CA");
}

/** Adds --token-file and --ca to a verb that talks to a server. */
export function credentialOptions(command: Command, what = "a server's write token"): Command {
  return command
    .addOption(new Option("--token-file <file>", `send the bearer token in this file (${what})`).env("REMOTELOG_TOKEN_FILE"))
    .addOption(caOption());
}

/** The token and CA files of --token-file and --ca, read. */
export async function clientCredentials(flags: CredentialFlags): Promise<{ token?: string; ca?: Buffer }> {
  const read = async (file: string, flag: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw usageError(`${flag} ${file}: ${(err as Error).message}`);
    }
  };
  const token = flags.tokenFile ? (await readTokenFile(flags.tokenFile))[0] : undefined;
  if (flags.tokenFile && !token) throw usageError(`--token-file ${flags.tokenFile} holds no token`);
  return { token, ca: flags.ca ? await read(flags.ca, "--ca") : undefined };
}
