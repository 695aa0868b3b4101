import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { send, text, type HttpRequest, type HttpResponse, type HttpService, type Reply } from "./gateway.js";

/*
 * The live log explorer's page (issue 14 §4), served at /explorer beside Connect on the same port. The
 * page is static: an HTML file, its stylesheet and one browser bundle (web/explorer/, built by make build
 * into dist/web/explorer/). Everything it shows it reads itself, through the library's browser entry,
 * over Connect from this server or from another one the user points it at.
 */

export const EXPLORER_PATH = "/explorer";

/** The only paths served, each a file of the built page: nothing else under /explorer is looked up, so no path reaches the disk. */
const FILES: ReadonlyMap<string, { file: string; type: string }> = new Map([
  [EXPLORER_PATH, { file: "index.html", type: "text/html; charset=utf-8" }],
  [`${EXPLORER_PATH}/`, { file: "index.html", type: "text/html; charset=utf-8" }],
  [`${EXPLORER_PATH}/explorer.js`, { file: "explorer.js", type: "text/javascript; charset=utf-8" }],
  [`${EXPLORER_PATH}/explorer.css`, { file: "explorer.css", type: "text/css; charset=utf-8" }],
]);

// The page's own files only, inline nothing; it may call any server (connect-src), since pointing it at
// another server is what the URL field is for, and that server's CORS decides whether it answers.
const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src *; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

export interface ExplorerOptions {
  /** The directory of the built page (index.html, explorer.js, explorer.css). */
  dir: string;
  /** Told when the page's files cannot be read (not built); the client gets a 503 that names no path. */
  onMissing?: (err: Error) => void;
}

/** The explorer's page as an HttpService: GET and HEAD of its few files, read once and kept. */
export class Explorer implements HttpService {
  private readonly cache = new Map<string, Promise<Uint8Array>>();

  constructor(private readonly options: ExplorerOptions) {}

  handles(path: string): boolean {
    return path === EXPLORER_PATH || path.startsWith(`${EXPLORER_PATH}/`);
  }

  handle(req: HttpRequest, res: HttpResponse): void {
    this.answer(req).then(
      (reply) => send(req, res, reply),
      () => send(req, res, text(500, "the explorer failed to answer")),
    );
  }

  private async answer(req: HttpRequest): Promise<Reply> {
    const method = req.method ?? "GET";
    if (method !== "GET" && method !== "HEAD") return text(405, `${method} is not served here: the explorer is a page (GET, HEAD)`, { allow: "GET, HEAD" });
    const path = (req.url ?? "").split("?")[0];
    const entry = FILES.get(path);
    if (!entry) return text(404, `no such file of the explorer: the page is at ${EXPLORER_PATH}`);
    let body: Uint8Array;
    try {
      body = await this.read(entry.file);
    } catch (err) {
      this.options.onMissing?.(err as Error);
      return text(503, "the explorer's page is not built on this server (make build)");
    }
    return {
      status: 200,
      headers: {
        "content-type": entry.type,
        "x-content-type-options": "nosniff",
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "referrer-policy": "no-referrer",
        // Small files that change with each build: revalidated, never stale.
        "cache-control": "no-cache",
      },
      body,
    };
  }

  private read(file: string): Promise<Uint8Array> {
    let bytes = this.cache.get(file);
    if (!bytes) {
      bytes = readFile(join(this.options.dir, file));
      // A failed read is not kept: the page may be built while the server runs.
      bytes.catch(() => this.cache.delete(file));
      this.cache.set(file, bytes);
    }
    return bytes;
  }
}
