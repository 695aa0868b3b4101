/*
 * The live log explorer's page: plain DOM over the library's browser entry. It lists a server's names
 * (where the server lets them be listed), and shows one name as LogExplorer reads it, verified here in
 * the page: the signed record, the chain of pages with their seqids and skip links, and the messages,
 * text bodies as text. It follows the name through Watch and redraws on each new head. The server field
 * points it at another server, which must allow this page's origin (`serve --cors-origin`).
 *
 * Everything shown comes from servers nobody has to trust, so nothing is ever parsed as HTML: every
 * string goes into the page as text.
 */
import { LogExplorer, VIEW_MESSAGES_A_PAGE, VIEW_MESSAGE_BYTES, VIEW_PAGE_BYTES, isRemoteLogError, openRemote, type BytesView, type ExplorerFault, type LogView, type MessageView, type PageView, type RecordView } from "../../lib/browser.js";

type Remote = ReturnType<typeof openRemote>;

const PAGES_AT_FIRST = 8;

const state: {
  remote?: Remote;
  server: string;
  name?: string;
  pages: number;
  following?: AbortController;
  namesAfter?: string;
  seen: Set<string>;
} = { server: "", pages: PAGES_AT_FIRST, seen: new Set() };

/** An element with attributes and children; strings become text nodes, never markup. */
function h(tag: string, attributes: Record<string, string | undefined> = {}, ...children: (Node | string | undefined)[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined) element.setAttribute(key, value);
  for (const child of children) if (child !== undefined) element.append(child);
  return element;
}

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  return document.getElementById(id) as T;
}

function badge(status: string, label = status): HTMLElement {
  return h("span", { class: "badge", "data-status": status }, label);
}

function short(text: string, keep = 10): string {
  return text.length > keep * 2 + 1 ? `${text.slice(0, keep)}…${text.slice(-keep)}` : text;
}

function faultLine(fault: ExplorerFault | undefined): HTMLElement | undefined {
  return fault && h("p", { class: "fault" }, `${fault.code}: ${fault.message}`);
}

function facts(rows: [string, Node | string | undefined][]): HTMLElement {
  const list = h("dl", { class: "facts" });
  for (const [term, value] of rows) if (value !== undefined) list.append(h("dt", {}, term), h("dd", {}, value));
  return list;
}

function setLive(liveState: "idle" | "live" | "loading" | "retrying", text: string): void {
  const live = byId("live");
  live.dataset.state = liveState;
  live.textContent = text;
}

/** Keeps the server and name in the address bar, so that a view can be linked to and reloaded. */
function remember(): void {
  const url = new URL(location.href);
  url.searchParams.set("server", state.server);
  if (state.name) url.searchParams.set("name", state.name);
  else url.searchParams.delete("name");
  history.replaceState(null, "", url);
}

function openServer(server: string): void {
  state.following?.abort();
  state.remote?.close();
  state.server = server.replace(/\/+$/, "");
  byId<HTMLInputElement>("server").value = state.server;
  try {
    state.remote = openRemote(state.server);
  } catch (err) {
    state.remote = undefined;
    byId("names-note").textContent = describe(err);
    return;
  }
  state.name = undefined;
  byId("names").replaceChildren();
  byId("log").replaceChildren(h("p", { class: "note" }, "Pick a name to see its chain, its signed record and its messages, each verified in this page."));
  setLive("idle", "idle");
  remember();
  void listNames(true);
}

async function listNames(fresh: boolean): Promise<void> {
  const remote = state.remote;
  if (!remote) return;
  const list = byId("names");
  const note = byId("names-note");
  const more = byId<HTMLButtonElement>("names-more");
  if (fresh) state.namesAfter = undefined;
  try {
    const page = await remote.listNames({ after: state.namesAfter });
    if (remote !== state.remote) return;
    if (fresh) list.replaceChildren();
    if (!page) {
      note.textContent = "This server does not list its names: type one above.";
      more.hidden = true;
      return;
    }
    note.textContent = page.names.length === 0 && fresh ? "No names on this server yet." : "";
    for (const { name, version } of page.names) {
      const button = h("button", { type: "button", "data-name": name, title: name, "aria-current": String(name === state.name) }, short(name, 14), " ", h("span", { class: "version" }, `v${version}`));
      button.addEventListener("click", () => openName(name));
      list.append(h("li", {}, button));
    }
    state.namesAfter = page.next;
    more.hidden = page.next === undefined;
  } catch (err) {
    note.textContent = `Cannot list names: ${describe(err)}`;
  }
}

function openName(name: string): void {
  if (!state.remote) return;
  state.following?.abort();
  state.name = name;
  state.pages = PAGES_AT_FIRST;
  state.seen = new Set();
  byId<HTMLInputElement>("name").value = name;
  for (const button of byId("names").querySelectorAll("button")) button.setAttribute("aria-current", String(button.dataset.name === name));
  remember();
  follow();
}

/** Follows the open name: a redraw for each view LogExplorer hands out, until another name or server is opened. */
function follow(): void {
  const remote = state.remote;
  const name = state.name;
  if (!remote || !name) return;
  const following = new AbortController();
  state.following = following;
  const explorer = new LogExplorer(remote, name);
  setLive("loading", "loading…");
  void (async () => {
    try {
      for await (const event of explorer.follow(following.signal, { pages: state.pages })) {
        if (following.signal.aborted) return;
        if ("view" in event) {
          setLive("live", `live · ${event.view.readAt.toLocaleTimeString()}`);
          render(event.view);
        } else {
          setLive("retrying", `cannot read (${event.fault.code}); again in ${Math.ceil(event.retryInMs / 1000)} s`);
          if (event.fault.code === "NOT_FOUND") showMissing(name, event.fault);
        }
      }
    } catch (err) {
      if (!following.signal.aborted) setLive("retrying", describe(err));
    }
  })();
}

function showMissing(name: string, fault: ExplorerFault): void {
  byId("log").replaceChildren(h("div", { class: "summary" }, h("h2", { class: "mono" }, name), faultLine(fault)));
}

function render(view: LogView): void {
  const log = byId("log");
  // The list is read once; the open name's version is kept current from its views.
  const listed = byId("names").querySelector(`button[data-name="${CSS.escape(view.name)}"] .version`);
  if (listed) listed.textContent = `v${view.version}`;
  const fresh = new Set<string>();
  for (const page of view.pages) for (const message of page.messages) if (state.seen.size > 0 && !state.seen.has(message.id)) fresh.add(message.id);
  for (const page of view.pages) for (const message of page.messages) state.seen.add(message.id);

  const summary = h(
    "div",
    { class: "summary", id: "summary", "data-status": view.status },
    h("h2", { class: "mono" }, view.name, " ", badge(view.status, view.status === "ok" ? "verified" : "FAILED")),
    facts([
      ["server", view.nsUrl],
      ["version", String(view.version)],
      ["messages", view.length === undefined ? "unknown (pages without page info)" : String(view.length)],
      ["not listed", view.unlisted === 0 ? undefined : `${view.unlisted} older messages on the pages shown: a view of ${state.pages} pages lists ${VIEW_MESSAGES_A_PAGE * state.pages} at most`],
      ["not fetched", view.unfetched === 0 ? undefined : `${view.unfetched} older messages on the pages shown: a view fetches ${VIEW_MESSAGE_BYTES >> 20} MiB of messages at most, and those newer took it`],
      ["read", view.readAt.toLocaleString()],
    ]),
  );
  const parts: HTMLElement[] = [summary];
  parts.push(view.record ? recordCard(view.record) : h("p", { class: "note", id: "record" }, "A free-form name: its head is not signed by anyone."));
  parts.push(h("h3", {}, `Chain (${view.pages.length} page${view.pages.length === 1 ? "" : "s"} shown, newest first)`));
  for (const page of view.pages) parts.push(pageCard(page, fresh));
  if (view.pageBytesSpent) {
    parts.push(h("p", { class: "note", id: "older" }, `Older pages are not shown: a view reads ${VIEW_PAGE_BYTES >> 20} MiB of pages at most, and those newer took it.`));
  } else if (view.more) {
    const more = h("button", { type: "button", class: "more", id: "older" }, "Show older pages");
    more.addEventListener("click", () => {
      state.pages *= 2;
      state.following?.abort();
      follow();
    });
    parts.push(more);
  }
  log.replaceChildren(...parts);
}

function recordCard(record: RecordView): HTMLElement {
  return h(
    "div",
    { class: "card", id: "record", "data-status": record.status },
    h("div", { class: "head" }, h("strong", {}, "Signed record"), badge(record.status, record.status === "ok" ? "signature verified" : "FAILED")),
    h(
      "div",
      { class: "body" },
      faultLine(record.fault),
      facts([
        ["sequence", record.sequence === undefined ? undefined : String(record.sequence)],
        ["valid until", record.validity?.toISOString()],
        ["TTL", record.ttlMs === undefined ? undefined : `${record.ttlMs / 1000} s`],
        ["value", record.value && h("code", {}, record.value)],
        ["key", `${record.key.type} ${record.key.publicKey}`],
        ["peer ID", h("code", {}, record.key.peerId)],
      ]),
    ),
  );
}

function pageCard(page: PageView, fresh: Set<string>): HTMLElement {
  const title = page.head ? "Head page" : page.number !== undefined ? `Page ${page.number}` : "Page";
  const seqids = page.firstSeqid !== undefined && page.pairs > 0 ? `seqids ${page.firstSeqid}–${page.firstSeqid + page.pairs - 1}` : undefined;
  const card = h(
    "div",
    { class: "card page", "data-status": page.status, "data-address": page.address },
    h(
      "div",
      { class: "head" },
      h("strong", {}, title),
      page.head && page.number !== undefined ? h("span", {}, `number ${page.number}`) : undefined,
      h("code", { title: page.address }, short(page.address, 12)),
      seqids && h("span", {}, seqids),
      h("span", {}, page.messages.length === page.pairs ? `${page.pairs} pairs` : `${page.pairs} pairs, ${page.messages.length} listed`),
      page.bytes === undefined ? undefined : h("span", { class: "note" }, `${page.bytes} bytes`),
      badge(page.status, page.status === "ok" ? "verified" : "FAILED"),
    ),
  );
  const body = h("div", { class: "body" }, faultLine(page.fault));
  const links: [string, Node | string | undefined][] = [
    ["tail", page.tail ? h("code", { title: page.tail }, short(page.tail, 12)) : page.status === "ok" ? "none: the first page" : undefined],
    ["redactions", page.redactions ? String(page.redactions) : undefined],
  ];
  if (page.skips.length > 0) {
    const skips = h("span", { class: "skips" });
    for (const skip of page.skips) skips.append(h("span", { class: "skip", title: skip.address }, `→ page ${skip.number} (seqid ${skip.firstSeqid}) `, badge(skip.status)), " ");
    links.push(["skip links", skips]);
  }
  body.append(facts(links));
  if (page.messages.length > 0) body.append(messageTable(page.messages, fresh));
  card.append(body);
  return card;
}

function messageTable(messages: MessageView[], fresh: Set<string>): HTMLElement {
  const table = h("table", {}, h("thead", {}, h("tr", {}, ...["seqid", "status", "time", "body", "id (H1)", "address (H2)"].map((label) => h("th", {}, label)))));
  const rows = h("tbody");
  for (const message of messages) {
    rows.append(
      h(
        "tr",
        { class: fresh.has(message.id) ? "message fresh" : "message", "data-status": message.status, "data-seqid": message.seqid === undefined ? undefined : String(message.seqid), "data-id": message.id },
        h("td", {}, message.seqid === undefined ? "" : String(message.seqid)),
        h("td", {}, badge(message.status, message.status === "ok" ? "verified" : message.status === "unfetched" ? "not fetched" : message.status)),
        h("td", {}, message.timestamp === undefined ? "" : timeOf(message.timestamp)),
        h("td", { class: "body" }, ...bodyCell(message)),
        h("td", { class: "mono", title: message.id }, short(message.id, 8)),
        h("td", { class: "mono", title: message.address ?? "" }, message.address ? short(message.address, 8) : "", message.embedded ? " (in page)" : ""),
      ),
    );
  }
  table.append(rows);
  return table;
}

function bodyCell(message: MessageView): (Node | string)[] {
  if (message.status === "redacted") return ["(redacted)"];
  if (message.status === "unfetched") return ["(not fetched: past this view's bytes for messages)"];
  if (message.fault) return [h("span", { class: "fault" }, `${message.fault.code}: ${message.fault.message}`)];
  return message.body ? [bytesNode(message.body)] : [];
}

function bytesNode(bytes: BytesView): Node {
  const cut = bytes.truncated ? ` … (${bytes.length} bytes)` : "";
  if (bytes.kind === "text") return document.createTextNode(bytes.text + cut);
  return h("span", { class: "binary mono", title: `base64 ${bytes.base64}` }, `${bytes.length} bytes, not UTF-8: ${bytes.hex}${cut}`);
}

function timeOf(timestamp: number): string {
  // MVDS timestamps are seconds; a sender with --timestamp-ms writes milliseconds.
  const ms = Math.abs(timestamp) > 1e11 ? timestamp : timestamp * 1000;
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(timestamp) : date.toISOString().replace(".000Z", "Z");
}

function describe(err: unknown): string {
  if (isRemoteLogError(err)) return `${err.code}: ${err.text}`;
  return err instanceof Error ? err.message : String(err);
}

function start(): void {
  const params = new URLSearchParams(location.search);
  byId("server-form").addEventListener("submit", (event) => {
    event.preventDefault();
    openServer(byId<HTMLInputElement>("server").value);
  });
  byId("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = byId<HTMLInputElement>("name").value.trim();
    if (name) openName(name);
  });
  byId("names-more").addEventListener("click", () => void listNames(false));
  byId("names-refresh").addEventListener("click", () => void listNames(true));
  openServer(params.get("server") ?? location.origin);
  const name = params.get("name");
  if (name) openName(name);
}

start();
