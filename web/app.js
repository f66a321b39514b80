// The Coven web view: every running session as a live tile, one full size
// with the keyboard going to it, and the finished ones below. No framework
// and no build step: the daemon serves this file as it is written.
"use strict";

const api = "/api/v1";
const $ = (id) => document.getElementById(id);
const tiles = new Map(); // id -> { el, screen, state, meta, record, last, seen }
let visible = new Set();
let stream = null;
let streamIds = "";
let full = null; // { id, cols, rows }
let cursor = null; // the finished list's next page

async function call(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(api + path, init);
  if (r.status === 401) {
    $("link").textContent = "signed out: run coven web --open";
    throw new Error("signed out");
  }
  if (!r.ok) throw new Error(method + " " + path + ": " + r.status);
  return r.json();
}

// The xterm palette: 16 named colours, a 6x6x6 cube, a grey ramp.
const BASE = ["#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
  "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff"];
function colour(c) {
  if (c < 0) return null;
  if (c >= 0x1000000) return "#" + (c & 0xffffff).toString(16).padStart(6, "0");
  if (c < 16) return BASE[c];
  if (c < 232) {
    const n = c - 16, v = (x) => (x ? 55 + x * 40 : 0);
    return `rgb(${v(Math.floor(n / 36))},${v(Math.floor(n / 6) % 6)},${v(n % 6)})`;
  }
  const g = 8 + (c - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

// Draws a screen (cells, colours, cursor) into an element: only the rows
// that changed since it was last drawn are made again.
function row(runs) {
  const div = document.createElement("div");
  div.className = "row";
  for (const [text, fg, bg, attrs] of runs) {
    if (fg < 0 && bg < 0 && !attrs) {
      div.append(text);
      continue;
    }
    const span = document.createElement("span");
    span.textContent = text;
    let f = colour(fg), b = colour(bg);
    if (attrs & 16) [f, b] = [b || "#0b0c10", f || "#d0d0d0"];
    if (f) span.style.color = f;
    if (b) span.style.backgroundColor = b;
    if (attrs & 1) span.classList.add("b");
    if (attrs & 2) span.classList.add("d");
    if (attrs & 4) span.classList.add("i");
    if (attrs & 8) span.classList.add("u");
    div.append(span);
  }
  return div;
}

const drawn = new WeakMap(); // element -> the rows' JSON as last drawn
function draw(el, s) {
  const keys = s.cells.map((runs) => JSON.stringify(runs));
  const before = drawn.get(el);
  const rows = el.querySelectorAll(":scope > .row");
  if (!before || before.length !== keys.length || rows.length !== keys.length) {
    el.replaceChildren(...s.cells.map(row));
  } else {
    keys.forEach((k, i) => { if (k !== before[i]) rows[i].replaceWith(row(s.cells[i])); });
  }
  drawn.set(el, keys);
  let c = el.querySelector(":scope > .cursor");
  if (s.cursor.visible) {
    if (!c) {
      c = document.createElement("div");
      c.className = "cursor";
      el.append(c);
    }
    c.style.left = `calc(6px + ${s.cursor.col}ch)`;
    c.style.top = `calc(4px + ${s.cursor.row * 1.2}em)`;
  } else if (c) {
    c.remove();
  }
  el.dataset.seq = s.seq;
  el.dataset.cols = s.cols;
  fit(el, s.cols);
}

// Tiles scale the font so that the whole width shows.
function fit(el, cols) {
  if (el.id === "full-screen") return;
  const width = el.clientWidth - 12;
  if (width > 0 && cols) el.style.fontSize = Math.min(12, width / (cols * 0.6)) + "px";
}

function age(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.floor(s) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m";
  if (s < 86400) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

function label(t) {
  const quietFor = (Date.now() - t.last) / 1000;
  const busy = t.last && quietFor < 3;
  t.state.textContent = busy ? "busy" : "quiet";
  t.state.className = "state " + (busy ? "busy" : "quiet");
  t.meta.textContent = `${t.record.harness} · ${age(t.record.created_at)}`;
  t.el.dataset.state = busy ? "busy" : "quiet";
}

const seen = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const id = e.target.dataset.id;
    if (e.isIntersecting) visible.add(id);
    else visible.delete(id);
  }
  follow();
});

function tile(record) {
  const el = document.createElement("div");
  el.className = "tile";
  el.tabIndex = 0;
  el.dataset.id = record.id;
  const head = document.createElement("div");
  head.className = "head";
  const title = document.createElement("span");
  title.className = "title";
  const state = document.createElement("span");
  const meta = document.createElement("span");
  meta.className = "meta";
  head.append(title, state, meta);
  const screen = document.createElement("div");
  screen.className = "screen";
  el.append(head, screen);
  el.addEventListener("click", () => open(record.id));
  el.addEventListener("keydown", (e) => { if (e.key === "Enter") open(record.id); });
  const t = { el, screen, title, state, meta, record, last: 0 };
  title.textContent = record.title;
  title.title = record.title;
  label(t);
  $("tiles").append(el);
  seen.observe(el);
  return t;
}

async function refresh() {
  let list;
  try {
    list = await call("GET", "/sessions?status=running&limit=1000");
  } catch (e) {
    return;
  }
  const running = new Set();
  for (const r of list.sessions) {
    running.add(r.id);
    const t = tiles.get(r.id) || tiles.set(r.id, tile(r)).get(r.id);
    t.record = r;
    label(t);
  }
  let ended = false;
  for (const [id, t] of tiles) {
    if (!running.has(id)) {
      seen.unobserve(t.el);
      t.el.remove();
      tiles.delete(id);
      visible.delete(id);
      ended = true;
    }
  }
  $("none").hidden = tiles.size > 0;
  $("summary").textContent = `${tiles.size} running`;
  if (ended) finished(true);
  follow();
}

// One stream for every screen on view (a tile nobody sees costs nothing).
function follow() {
  const ids = [...visible].filter((id) => tiles.has(id));
  if (full && !ids.includes(full.id)) ids.push(full.id);
  ids.sort();
  const key = ids.join(",");
  if (key === streamIds) return;
  streamIds = key;
  if (stream) stream.close();
  stream = null;
  if (!ids.length) return;
  stream = new EventSource(`${api}/screens/stream?ids=${encodeURIComponent(key)}`);
  stream.addEventListener("screen", (e) => {
    const { id, screen } = JSON.parse(e.data);
    const t = tiles.get(id);
    if (t) {
      if (t.screen.dataset.seq && t.screen.dataset.seq !== String(screen.seq)) t.last = Date.now();
      draw(t.screen, screen);
      label(t);
    }
    if (full && full.id === id) draw($("full-screen"), screen);
  });
  stream.onerror = () => { $("link").textContent = "reconnecting…"; };
  stream.onopen = () => { $("link").textContent = ""; };
}

// The full view: the view's size is the terminal's, keys are input.
function cell() {
  const probe = document.createElement("span");
  probe.textContent = "M".repeat(10);
  probe.style.visibility = "hidden";
  $("full-screen").append(probe);
  const r = probe.getBoundingClientRect();
  probe.remove();
  return { w: r.width / 10, h: r.height * 1.2 };
}

async function open(id) {
  const t = tiles.get(id);
  full = { id };
  $("full").hidden = false;
  $("full-title").textContent = t ? t.record.title : id;
  $("full-screen").replaceChildren();
  drawn.delete($("full-screen"));
  $("full-screen").focus();
  await size();
  streamIds = "";
  follow();
}

async function size() {
  if (!full) return;
  const el = $("full-screen");
  const c = cell();
  const cols = Math.max(20, Math.min(1000, Math.floor((el.clientWidth - 12) / c.w)));
  const rows = Math.max(5, Math.min(1000, Math.floor((el.clientHeight - 8) / c.h)));
  if (full.cols === cols && full.rows === rows) return;
  full.cols = cols;
  full.rows = rows;
  try {
    await call("POST", `/sessions/${full.id}/resize`, { cols, rows });
  } catch (e) { /* it ended */ }
}

function close() {
  full = null;
  $("full").hidden = true;
  follow();
}

// What a key sends to a terminal (xterm's, normal cursor mode).
const KEYS = {
  Enter: "\r", Tab: "\t", Backspace: "\x7f", Escape: "\x1b",
  ArrowUp: "\x1b[A", ArrowDown: "\x1b[B", ArrowRight: "\x1b[C", ArrowLeft: "\x1b[D",
  Home: "\x1b[H", End: "\x1b[F", PageUp: "\x1b[5~", PageDown: "\x1b[6~",
  Insert: "\x1b[2~", Delete: "\x1b[3~",
  F1: "\x1bOP", F2: "\x1bOQ", F3: "\x1bOR", F4: "\x1bOS", F5: "\x1b[15~", F6: "\x1b[17~",
  F7: "\x1b[18~", F8: "\x1b[19~", F9: "\x1b[20~", F10: "\x1b[21~", F11: "\x1b[23~", F12: "\x1b[24~",
};
function bytes(e) {
  if (e.key === "Tab" && e.shiftKey) return "\x1b[Z";
  let s = KEYS[e.key];
  if (s === undefined && e.key.length === 1) {
    s = e.key;
    if (e.ctrlKey) {
      const c = e.key.toLowerCase().charCodeAt(0);
      if (c >= 97 && c <= 122) s = String.fromCharCode(c - 96);
      else if ("@[\\]^_".includes(e.key)) s = String.fromCharCode("@[\\]^_".indexOf(e.key) === 0 ? 0 : 26 + "@[\\]^_".indexOf(e.key));
      else if (e.key === " ") s = "\x00";
    }
  }
  if (s === undefined) return null;
  return e.altKey ? "\x1b" + s : s;
}

// Keys are sent in order, one request after the other.
let typing = Promise.resolve();
function send(data) {
  if (!full) return;
  const id = full.id;
  typing = typing.then(() => call("POST", `/sessions/${id}/input`, { data })).catch(() => {});
}

$("full-screen").addEventListener("keydown", (e) => {
  if (e.ctrlKey && e.key === "]") { e.preventDefault(); close(); return; }
  if (e.metaKey) return;
  const data = bytes(e);
  if (data === null) return;
  e.preventDefault();
  send(data);
});
$("full-screen").addEventListener("paste", (e) => {
  e.preventDefault();
  send(e.clipboardData.getData("text"));
});
$("close").addEventListener("click", close);
window.addEventListener("resize", () => {
  size();
  for (const t of tiles.values()) if (t.screen.firstChild) fit(t.screen, t.screen.dataset.cols);
});

// Finished sessions, a page at a time, each with its recording.
async function finished(again) {
  if (again) cursor = null;
  let page;
  try {
    page = await call("GET", `/sessions?status=completed,failed,killed,orphaned&limit=20${cursor ? "&cursor=" + cursor : ""}`);
  } catch (e) {
    return;
  }
  const body = $("finished").tBodies[0];
  if (again) body.replaceChildren();
  for (const r of page.sessions) {
    const row = body.insertRow();
    const td = (text, cls) => { const c = row.insertCell(); c.textContent = text; if (cls) c.className = cls; return c; };
    td(r.title, "t").title = r.title;
    td(r.harness, "h");
    td(r.status + (r.exit_code !== null && r.exit_code !== undefined ? ` (${r.exit_code})` : ""));
    td(age(r.updated_at) + " ago");
    const a = document.createElement("a");
    a.href = `${api}/sessions/${encodeURIComponent(r.id)}/cast`;
    a.download = `${r.id}.cast`;
    a.textContent = "recording";
    row.insertCell().append(a);
  }
  if (!body.rows.length) {
    const c = body.insertRow().insertCell();
    c.colSpan = 5;
    c.className = "empty";
    c.textContent = "None yet.";
  }
  cursor = page.next_cursor;
  $("more").hidden = !cursor;
}
$("more").addEventListener("click", () => finished(false));

refresh();
finished(true);
setInterval(refresh, 2000);
setInterval(() => { for (const t of tiles.values()) label(t); }, 1000);
