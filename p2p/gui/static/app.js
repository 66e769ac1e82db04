// The p2p dashboard: plain JavaScript over the JSON API of docs/API.md, and nothing else.
// The access token travels in the HttpOnly cookie the server set when /?token=... was opened.
"use strict";

const $ = (id) => document.getElementById(id);

const view = {
  feed: 0,            // the last /rest/events number seen
  status: null,
  timeline: [],       // newest first, as /rest/history answers
  moment: null,       // id of the event the slider stands on, or null: now
  treePath: "",
  filter: "",
  remotePeer: "",
  remotePath: "",
};

// -- the API ----------------------------------------------------------------------
async function call(method, path, params, body) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null) url.searchParams.set(k, v);
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const data = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) {
    const error = new Error(data.error || `${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}
const get = (path, params) => call("GET", path, params);
const post = (path, body) => call("POST", path, null, body);

// -- small helpers ------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined)
    node.append(child instanceof Node ? child : String(child));
  return node;
}

function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
}
const rate = (n) => `${size(Math.round(n))}/s`;
function stamp(ms) {   // local time, 2026-12-01 11:55:09
  const d = new Date(ms), two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}
const when = (seconds) => seconds ? stamp(seconds * 1000) : "-";
const mtime = (ns) => ns ? stamp(ns / 1e6) : "";

function ago(t, now) {
  if (!t) return "-";
  const s = Math.max(0, now - t);
  return s < 120 ? `${s.toFixed(0)}s ago` : s < 7200 ? `${(s / 60).toFixed(0)}m ago` : `${(s / 3600).toFixed(0)}h ago`;
}

function say(text, error) {
  const m = $("message");
  m.textContent = text;
  m.className = error ? "error" : "";
}

function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: columns }, empty))]));
}

// -- status: this device, the folder, the peers --------------------------------------
async function refreshStatus() {
  const st = await get("/rest/status");
  view.status = st;
  $("offline").hidden = true;
  $("device-name").textContent = st.device.name;
  $("device-id").textContent = st.device.id_dashed;
  $("device-listen").textContent = st.device.listen;
  $("device-discovery").textContent = st.device.discovery;
  $("device-rates").textContent = `${rate(st.device.upload_rate)} / ${rate(st.device.download_rate)}`;
  const f = st.folder;
  const badge = $("folder-state");
  badge.textContent = f.state;
  badge.className = "badge " + (f.state === "in sync" ? "ok" : f.paused || f.missing || st.not_synced.length ? "bad" : "warn");
  $("folder-pause").textContent = f.paused ? "Resume" : "Pause";
  $("folder-path").textContent = f.path;
  $("folder-size").textContent = `${f.files} files, ${f.dirs} directories, ${size(f.bytes)}`;
  $("folder-history").textContent = `${f.events} events` + (f.pending ? `, ${f.pending} waiting` : "") +
    `; block store ${size(f.store_bytes)}`;
  $("transfers").replaceChildren(...(st.transfers.length ? st.transfers.map((t) => el("li", {},
    t.path, el("span", { class: "bar" }, progress(t.done, t.bytes)),
    `${size(t.done)} of ${size(t.bytes)} at ${rate(t.rate || 0)}`)) : [el("li", { class: "empty" }, "none")]));
  $("not-synced").replaceChildren(...(st.not_synced.length ? st.not_synced.map((p) =>
    el("li", {}, el("code", {}, p.path), ": ", p.reason)) : [el("li", { class: "empty" }, "none")]));
  renderPeers(st);
}

function progress(done, total) {
  const bar = el("span");
  bar.style.width = `${total ? (100 * done) / total : 100}%`;
  return bar;
}

function renderPeers(st) {
  const rows = st.peers.map((p) => el("tr", { dataset: { id: p.id, state: p.state } },
    el("td", {}, p.name || "?"), el("td", {}, el("code", {}, p.id.slice(0, 7))),
    el("td", {}, el("span", { class: "badge " + (p.state === "connected" ? "ok" : p.paused ? "warn" : "") }, p.state)),
    el("td", {}, p.address || "-"), el("td", {}, ago(p.last_seen, st.now)),
    el("td", { class: "num" }, p.completion === null || p.completion === undefined ? "-" : `${p.completion.toFixed(0)}%`),
    el("td", { class: "num" }, `${rate(p.upload_rate)} / ${rate(p.download_rate)}`),
    el("td", {}, p.last_error || ""),
    el("td", {}, el("button", { type: "button", onclick: () => pause(p.paused ? "resume" : "pause", p.id) },
      p.paused ? "Resume" : "Pause"))));
  fill(document.querySelector("#peers tbody"), rows, "no peer yet", 9);
  const select = $("remote-peer");
  const connected = st.peers.filter((p) => p.state === "connected");
  const wanted = [""].concat(connected.map((p) => p.id));
  if (wanted.join() !== Array.from(select.options).map((o) => o.value).join()) {
    select.replaceChildren(el("option", { value: "" }, "choose a connected peer"),
      ...connected.map((p) => el("option", { value: p.id }, `${p.name || "?"} (${p.id.slice(0, 7)})`)));
    select.value = connected.some((p) => p.id === view.remotePeer) ? view.remotePeer : "";
  }
}

async function pause(action, peer) {
  try {
    const paused = await post(`/rest/${action}`, { peer: peer || "" });
    say(paused.folder || paused.peers.length ? `paused: ${[paused.folder ? "the folder" : null,
      ...paused.peers.map((p) => "peer " + p.slice(0, 7))].filter(Boolean).join(", ")}` : "nothing is paused");
    await refreshStatus();
  } catch (e) { say(e.message, true); }
}

// -- conflicts -----------------------------------------------------------------------
async function refreshConflicts() {
  const { conflicts } = await get("/rest/conflicts");
  $("conflicts").replaceChildren(...(conflicts.length ? conflicts.map((c) => el("li", {},
    el("code", {}, c.of), ": ",
    c.current ? el("a", { href: fileUrl(c.current.id), download: "" }, "this version") : "deleted",
    " or ", el("a", { href: fileUrl(c.copy.id), download: "" }, `the copy by ${c.copy.peer}`),
    ` (${c.copy.path})`)) : [el("li", { class: "empty" }, "none")]));
}

const fileUrl = (id) => `/rest/file?event=${encodeURIComponent(id)}`;

// -- the history ------------------------------------------------------------------------
async function refreshTimeline() {
  const { events } = await get("/rest/history", { path: view.filter, limit: 200 });
  view.timeline = events;
  const rows = events.map((e) => el("li", {
    dataset: { id: e.id, path: e.path }, class: e.id === view.moment ? "selected" : "",
    onclick: () => pickMoment(e.id), title: `event ${e.short}: the folder just after it`,
  }, el("span", {}, when(e.time)), el("span", {}, e.peer), el("span", { class: "t-" + e.type }, e.type),
    el("span", {}, e.from ? `${e.from} → ${e.path}` : e.path + (e.kind === "dir" ? "/" : "")),
    el("span", { class: "num" }, e.kind === "file" && e.type !== "delete" ? size(e.size) : "")));
  $("timeline").replaceChildren(...(rows.length ? rows : [el("li", { class: "empty" }, "no event")]));
  placeSlider();
}

// The slider's positions are the timeline's events, oldest left; the last position is now.
function placeSlider() {
  const slider = $("slider");
  const n = view.timeline.length;
  slider.max = String(n);
  const index = view.moment === null ? -1 : view.timeline.findIndex((e) => e.id === view.moment);
  if (view.moment !== null && index < 0) view.moment = null;   // scrolled out of the timeline
  slider.value = String(view.moment === null ? n : n - 1 - index);
  labelMoment();
}

function labelMoment() {
  const e = view.timeline.find((x) => x.id === view.moment);
  $("moment-label").textContent = e ? `as of ${when(e.time)} (event ${e.short}, ${e.type} ${e.path})` : "now";
  $("restore-all").hidden = !e;
  for (const li of $("timeline").children) li.classList.toggle("selected", li.dataset.id === view.moment);
}

function fromSlider() {
  const n = view.timeline.length;
  const v = Number($("slider").value);
  view.moment = v >= n ? null : view.timeline[n - 1 - v].id;
  labelMoment();
  refreshTree();
}

function pickMoment(id) {
  view.moment = id;
  placeSlider();
  refreshTree();
}

// -- the folder at a moment ------------------------------------------------------------------
let treeRequest = 0;
async function refreshTree() {
  const mine = ++treeRequest;
  const at = view.moment || "now";
  let tree;
  try {
    tree = await get("/rest/tree", { at, path: view.treePath });
  } catch (e) {
    if (e.status === 404 && view.treePath) { view.treePath = ""; return refreshTree(); }
    throw e;
  }
  let now = null;
  if (view.moment) now = await get("/rest/tree", { at: "now", path: view.treePath }).catch(() => ({ entries: [] }));
  if (mine !== treeRequest) return;   // a newer request is under way
  const current = new Map((now ? now.entries : []).map((e) => [e.path, e]));
  crumbs($("tree-crumbs"), view.treePath, (p) => { view.treePath = p; refreshTree(); });
  const rows = tree.entries.map((e) => {
    const later = current.get(e.path);
    const cls = !now ? "" : !later ? "gone" : later.id !== e.id && e.kind !== "dir" ? "changed" : "";
    const name = e.kind === "dir"
      ? el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); view.treePath = e.path; refreshTree(); } }, e.name + "/")
      : e.name + (e.kind === "symlink" ? ` → ${e.target || ""}` : "");
    const actions = el("td", {});
    if (e.kind === "file" && e.id) actions.append(el("a", { href: fileUrl(e.id), download: "", class: "download" }, "download"), " ");
    if (view.moment) actions.append(el("button", { type: "button", class: "restore", dataset: { path: e.path },
      onclick: () => restore(e.path) }, "restore"));
    return el("tr", { class: cls, dataset: { path: e.path, kind: e.kind } }, el("td", {}, name),
      el("td", { class: "num" }, e.kind === "file" ? size(e.size) : ""), el("td", {}, mtime(e.mtime)),
      el("td", {}, e.peer || ""), actions);
  });
  fill($("tree-entries"), rows, view.moment ? "the folder was empty then" : "empty", 5);
}

function crumbs(nav, path, go) {
  const parts = path ? path.split("/") : [];
  const links = [el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); go(""); } }, "/")];
  parts.forEach((part, i) => links.push(el("a", { href: "#", onclick: (ev) => {
    ev.preventDefault(); go(parts.slice(0, i + 1).join("/")); } }, part + "/")));
  nav.replaceChildren(...links);
}

async function restore(path) {
  if (!view.moment) return;
  if (!path && !confirm("Restore the whole folder as it was then? Files created since stay.")) return;
  try {
    const { summary } = await post("/rest/restore", { path, at: view.moment });
    say(summary);
  } catch (e) { say(e.message, true); }
}

// -- a peer's folder ---------------------------------------------------------------------------
async function refreshRemote() {
  const body = $("remote-entries");
  if (!view.remotePeer) { fill(body, [], "choose a connected peer", 3); $("remote-crumbs").replaceChildren(); return; }
  try {
    const answer = await get("/rest/peer/ls", { peer: view.remotePeer, path: view.remotePath });
    crumbs($("remote-crumbs"), view.remotePath, (p) => { view.remotePath = p; refreshRemote(); });
    const rows = answer.entries.filter((e) => e.name !== ".").map((e) => {
      const full = view.remotePath ? `${view.remotePath}/${e.name}` : e.name;
      const name = e.kind === "dir"
        ? el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); view.remotePath = full; refreshRemote(); } }, e.name + "/")
        : e.name;
      return el("tr", { dataset: { path: full } }, el("td", {}, name),
        el("td", { class: "num" }, e.kind === "file" ? size(e.size) : ""), el("td", {}, mtime(e.mtime)));
    });
    fill(body, rows, answer.entries.length ? "empty directory" : "no such directory", 3);
  } catch (e) { fill(body, [], e.message, 3); }
}

// -- live updates ---------------------------------------------------------------------------------
async function refreshAll() {
  await refreshStatus();
  view.feed = view.status.feed;
  await Promise.all([refreshTimeline(), refreshConflicts()]);
  await refreshTree();
}

async function listen() {
  for (;;) {
    try {
      const answer = await get("/rest/events", { since: view.feed, timeout: 25 });
      if (answer.reset) { await refreshAll(); continue; }
      if (!answer.events.length) continue;
      view.feed = answer.last;
      const kinds = new Set(answer.events.map((e) => e.type));
      if (kinds.has("history")) await Promise.all([refreshTimeline(), refreshConflicts(), refreshTree()]);
      await refreshStatus();
    } catch (e) {
      $("offline").hidden = false;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

function start() {
  $("folder-pause").addEventListener("click", () => pause(view.status && view.status.folder.paused ? "resume" : "pause", ""));
  $("slider").addEventListener("input", fromSlider);
  $("restore-all").addEventListener("click", () => restore(""));
  let typing = 0;
  $("history-filter").addEventListener("input", (ev) => {
    clearTimeout(typing);
    typing = setTimeout(() => { view.filter = ev.target.value.trim(); view.moment = null; refreshTimeline().then(refreshTree); }, 250);
  });
  $("remote-peer").addEventListener("change", (ev) => { view.remotePeer = ev.target.value; view.remotePath = ""; refreshRemote(); });
  refreshAll().catch((e) => say(e.message, true)).finally(listen);
  setInterval(() => refreshStatus().catch(() => { $("offline").hidden = false; }), 2000);
}

start();
