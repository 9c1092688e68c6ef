"""The viewer's HTML page (harness/viewer.py builds its data): one standalone file.

No server, no network, no external script or style: the data is one JSON blob in a
``<script type="application/json">`` that the page's own script parses once; only the
current page of samples becomes DOM (with 10,000 records the page stays quick), and the
filters, the task and the page number live in the URL's fragment
(``view.html#task=synth_ground_id&status=wrong&page=2``), which is how a leaderboard cell
opens a run's page on its task.

Stable hooks (tests and scripts rely on them): each sample is a ``div.sample`` (a
``div.pair`` of two ``div.side`` when comparing) with ``data-task``, ``data-id``,
``data-status`` (``data-which`` for a pair) and ``data-role``; its image is an ``svg``
whose ``viewBox`` is the original image's pixels, with ``rect.gt`` (ground truth) and
``rect.pred`` (prediction) in those pixels, or a ``div.placeholder`` with the reason.
Filters are ``button[data-filter=status|role][data-value=...]`` and ``select#task``;
paging is ``button#prev``, ``button#next`` and ``#pageinfo``. ``body[data-rendered]``
counts the renders.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

CSS = """
:root { --gt: #10a050; --pred: #e8590c; --line: #ddd; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.2em; color: #222; }
h1 { font-size: 19px; margin: 0 0 .4em; }
.facts { font-size: 13px; color: #555; margin: .2em 0 .6em; display: flex; flex-wrap: wrap; gap: 0 1.2em; }
.facts span { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 100%; }
table.aggs { border-collapse: collapse; font-size: 13px; margin: .4em 0 1em; }
table.aggs th, table.aggs td { padding: 2px 8px; border-bottom: 1px solid var(--line); text-align: left; }
table.aggs td.num { text-align: right; font-variant-numeric: tabular-nums; }
#controls { position: sticky; top: 0; background: #fff; padding: .5em 0; border-bottom: 1px solid #bbb; z-index: 2;
  display: flex; flex-wrap: wrap; gap: .4em 1.2em; align-items: center; font-size: 13px; }
#controls .group { display: flex; gap: .25em; align-items: center; }
#controls button { font: inherit; padding: 2px 8px; border: 1px solid #999; background: #f6f6f6; border-radius: 3px;
  cursor: pointer; }
#controls button[aria-pressed="true"] { background: #234; color: #fff; border-color: #234; }
#controls button:disabled { opacity: .4; cursor: default; }
.legend-gt { color: var(--gt); font-weight: 600; } .legend-pred { color: var(--pred); font-weight: 600; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 12px; margin-top: 12px; }
#grid.pairs { grid-template-columns: repeat(auto-fill, minmax(680px, 1fr)); }
.sample, .pair { border: 1px solid #ccc; border-radius: 4px; padding: 8px; font-size: 12px; min-width: 0; }
.sample[data-status="correct"] { border-left: 5px solid #2b8a3e; }
.sample[data-status="wrong"] { border-left: 5px solid #c92a2a; }
.sample[data-status="parse"] { border-left: 5px solid #e67700; }
.sample[data-status="broken"] { border-left: 5px solid #555; background: #f8f8f8; }
.head { display: flex; justify-content: space-between; gap: .5em; font-weight: 600; margin-bottom: 4px; }
.badge { font-weight: 400; padding: 0 6px; border-radius: 8px; background: #eee; white-space: nowrap; }
.figure { width: 320px; max-width: 100%; margin: 4px 0; }
.figure svg { width: 100%; height: auto; display: block; background: #eee; }
.figure rect { fill: none; stroke-width: 2.5; vector-effect: non-scaling-stroke; }
.figure rect.gt { stroke: var(--gt); }
.figure rect.pred { stroke: var(--pred); stroke-dasharray: 6 3; }
.placeholder { width: 320px; max-width: 100%; min-height: 90px; padding: 8px; background: #f1f1f1; color: #666;
  border: 1px dashed #aaa; display: flex; align-items: center; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 8px; margin: 4px 0 0; }
dt { color: #666; } dd { margin: 0; min-width: 0; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; max-height: 9em; overflow: auto; font-size: 11.5px; }
.fail { color: #c92a2a; } .note { color: #777; font-style: italic; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.side { min-width: 0; border-top: 3px solid #ccc; padding-top: 4px; }
.side[data-status="correct"] { border-top-color: #2b8a3e; } .side[data-status="wrong"] { border-top-color: #c92a2a; }
.side[data-status="parse"] { border-top-color: #e67700; }
#empty { margin: 2em 0; color: #666; }
"""

JS = r"""
(function () {
"use strict";
const D = JSON.parse(document.getElementById("view-data").textContent);
const SVG = "http://www.w3.org/2000/svg";
const state = {task: "all", role: "all", status: "all", page: 1};
const STATUS = D.compare
  ? [["all", "all differences"], ["a", "better in A"], ["b", "better in B"], ["same", "same score, other answer"],
     ["only", "in one run only"]]
  : [["all", "all"], ["correct", "correct"], ["wrong", "wrong"], ["parse", "parse failure"],
     ["broken", "broken record"]];
const ROLE = [["all", "all"], ["id", "ID"], ["ood", "OOD"]];
const STATUS_WORDS = {correct: "correct", wrong: "wrong", parse: "parse failure", broken: "broken record"};

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}
function pct(v) { return (typeof v === "number" && isFinite(v)) ? (100 * v).toFixed(1) : "–"; }
function taskOf(it) { return D.tasks[it.t]; }
function statusOf(it) { return D.compare ? it.w : it.st; }

function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  for (const k of ["task", "role", "status"]) if (h.get(k)) state[k] = h.get(k);
  const p = parseInt(h.get("page") || "1", 10);
  state.page = p > 0 ? p : 1;
  if (state.task !== "all" && !D.tasks.some(t => t.name === state.task)) state.task = "all";
}
function writeHash() {
  const h = new URLSearchParams();
  for (const k of ["task", "role", "status"]) if (state[k] !== "all") h.set(k, state[k]);
  if (state.page > 1) h.set("page", String(state.page));
  try { history.replaceState(null, "", "#" + h.toString()); } catch (e) { /* a sandboxed frame */ }
}
function passes(it, skip) {
  const t = taskOf(it);
  if (skip !== "task" && state.task !== "all" && t.name !== state.task) return false;
  if (skip !== "role" && state.role !== "all" && t.role !== state.role) return false;
  if (skip !== "status" && state.status !== "all" && statusOf(it) !== state.status) return false;
  return true;
}

function header() {
  const h = document.getElementById("header");
  const title = D.compare ? `Compare: A ${D.runs[0].name} vs B ${D.runs[1].name}` : `Run ${D.runs[0].name}`;
  h.append(el("h1", null, title));
  D.runs.forEach((r, k) => {
    const f = el("div", "facts");
    f.append(el("span", null, (D.compare ? (k ? "B: " : "A: ") : "") + r.path));
    for (const [key, v] of Object.entries(r.facts)) f.append(el("span", null, `${key}: ${v}`));
    h.append(f);
  });
  if (D.compare) {
    h.append(el("div", "facts", `${D.items.length} of ${D.compared} samples differ (a score or the parsed answer).`));
  }
  const table = el("table", "aggs");
  const head = el("tr");
  for (const c of ["task", "role", ...(D.compare ? ["run"] : []), "n", "parse fail", "metrics (%, 95% CI)"]) {
    head.append(el("th", null, c));
  }
  table.append(head);
  for (const t of D.tasks) {
    t.aggregates.forEach((a, k) => {
      const tr = el("tr");
      tr.append(el("td", null, k ? "" : t.name), el("td", null, k ? "" : (t.role ? t.role.toUpperCase() : "–")));
      if (D.compare) tr.append(el("td", null, k ? "B" : "A"));
      const note = t.note ? ` (${t.note})` : "";
      if (!a) {
        tr.append(el("td", "num", "–"), el("td", "num", "–"), el("td", null, "no aggregates" + note));
        table.append(tr);
        return;
      }
      tr.append(el("td", "num", a.n), el("td", "num", a.parse_failures));
      const ms = Object.entries(a.metrics).sort((x, y) => (y[0] === t.primary) - (x[0] === t.primary));
      const text = ms.map(([m, v]) => `${m} ${pct(v.value)}` + (v.ci ? ` [${pct(v.ci[0])}, ${pct(v.ci[1])}]` : ""));
      tr.append(el("td", null, text.join("; ") + note));
      table.append(tr);
    });
  }
  const det = el("details"); det.open = true;
  det.append(el("summary", null, "aggregates"), table);
  h.append(det);
}

function controls() {
  const c = document.getElementById("controls");
  const tg = el("label", "group", "task ");
  const sel = el("select"); sel.id = "task";
  sel.append(new Option("all tasks", "all"));
  for (const t of D.tasks) sel.append(new Option(t.name + (t.role ? ` (${t.role.toUpperCase()})` : ""), t.name));
  sel.addEventListener("change", () => { state.task = sel.value; state.page = 1; render(); });
  tg.append(sel); c.append(tg);
  for (const [filter, values, title] of [["role", ROLE, "role"], ["status", STATUS, D.compare ? "show" : "status"]]) {
    const g = el("div", "group"); g.append(el("span", null, title + ":"));
    for (const [v, label] of values) {
      const b = el("button");
      b.type = "button";
      Object.assign(b.dataset, {filter: filter, value: v, label: label});
      b.addEventListener("click", () => { state[filter] = v; state.page = 1; render(); });
      g.append(b);
    }
    c.append(g);
  }
  const pg = el("div", "group");
  const prev = el("button", null, "‹ prev"); prev.id = "prev"; prev.type = "button";
  const next = el("button", null, "next ›"); next.id = "next"; next.type = "button";
  const info = el("span"); info.id = "pageinfo";
  prev.addEventListener("click", () => { state.page -= 1; render(); window.scrollTo(0, 0); });
  next.addEventListener("click", () => { state.page += 1; render(); window.scrollTo(0, 0); });
  pg.append(prev, info, next); c.append(pg);
  const lg = el("div", "group");
  lg.append(el("span", "legend-gt", "— ground truth"), el("span", "legend-pred", "- - prediction"));
  c.append(lg);
}

function rect(b, cls) {
  const r = document.createElementNS(SVG, "rect");
  r.setAttribute("class", cls);
  r.setAttribute("x", b[0]); r.setAttribute("y", b[1]);
  r.setAttribute("width", Math.max(0, b[2] - b[0])); r.setAttribute("height", Math.max(0, b[3] - b[1]));
  const title = document.createElementNS(SVG, "title");
  title.textContent = `${cls === "gt" ? "ground truth" : "prediction"} [${b.join(", ")}]`;
  r.append(title);
  return r;
}
function figure(it, pred) {
  const box = el("div", "figure");
  if (!(it.img >= 0) || !it.sz) {
    box.append(el("div", "placeholder", "image unavailable: " + (it.ir || "the record names no image")));
    return box;
  }
  const [w, h] = it.sz;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("data-width", w); svg.setAttribute("data-height", h);
  const im = document.createElementNS(SVG, "image");
  im.setAttribute("href", D.images[it.img]);
  im.setAttribute("width", w); im.setAttribute("height", h);
  im.setAttribute("preserveAspectRatio", "none");
  svg.append(im);
  for (const b of it.gt || []) svg.append(rect(b, "gt"));
  for (const b of pred || []) svg.append(rect(b, "pred"));
  box.append(svg);
  return box;
}
function field(dl, name, value, cls) {
  if (value === undefined || value === null || value === "") return;
  dl.append(el("dt", null, name));
  const dd = el("dd", cls);
  dd.append(el("pre", null, String(value)));
  dl.append(dd);
}
function scores(s) {
  return Object.entries(s || {}).map(([m, v]) => `${m} ${typeof v === "number" ? +v.toFixed(4) : v}`).join(", ");
}
function fields(it, withPrompt) {
  const dl = el("dl");
  if (withPrompt) field(dl, "prompt", it.q);
  field(dl, "output", it.o);
  if (it.a !== undefined && it.a !== it.o) field(dl, "answer", it.a);
  field(dl, "parsed", it.v);
  if (withPrompt) { field(dl, "target", it.y); field(dl, "gold", it.g); }
  field(dl, "scores", scores(it.s));
  field(dl, "failure", it.f, "fail");
  field(dl, "note", it.n, "note");
  return dl;
}
function sampleCard(it) {
  const t = taskOf(it);
  const d = el("div", "sample");
  Object.assign(d.dataset, {task: t.name, id: it.id, status: it.st, role: t.role || "none",
                            ngt: (it.gt || []).length, npred: (it.pr || []).length});
  const head = el("div", "head");
  head.append(el("span", null, `${t.name} · ${it.id}`), el("span", "badge", STATUS_WORDS[it.st] || it.st));
  d.append(head);
  if (it.st !== "broken") d.append(figure(it, it.pr));
  d.append(fields(it, true));
  return d;
}
function side(it, k) {
  const s = el("div", "side");
  s.dataset.run = k ? "b" : "a";
  const name = (k ? "B: " : "A: ") + D.runs[k].name;
  if (!it) {
    s.dataset.status = "missing";
    s.append(el("div", "head", name), el("div", "note", "not in this run"));
    return s;
  }
  s.dataset.status = it.st; s.dataset.ngt = (it.gt || []).length; s.dataset.npred = (it.pr || []).length;
  const head = el("div", "head");
  head.append(el("span", null, name), el("span", "badge", STATUS_WORDS[it.st] || it.st));
  s.append(head);
  if (it.st !== "broken") s.append(figure(it, it.pr));
  s.append(fields(it, false));
  return s;
}
function pairCard(p) {
  const t = D.tasks[p.t];
  const any = p.a || p.b;
  const d = el("div", "pair");
  Object.assign(d.dataset, {task: t.name, id: any.id, which: p.w, role: t.role || "none"});
  const words = {a: "better in A", b: "better in B", same: "same score, other answer", only: "in one run only"};
  const head = el("div", "head");
  head.append(el("span", null, `${t.name} · ${any.id}`), el("span", "badge", words[p.w]));
  d.append(head);
  const shared = el("dl");
  field(shared, "prompt", any.q); field(shared, "target", any.y); field(shared, "gold", any.g);
  d.append(shared);
  const sides = el("div", "sides");
  sides.append(side(p.a, 0), side(p.b, 1));
  d.append(sides);
  return d;
}

let renders = 0;
function render() {
  const shown = D.items.filter(it => passes(it));
  const pages = Math.max(1, Math.ceil(shown.length / D.page_size));
  state.page = Math.min(Math.max(1, state.page), pages);
  const start = (state.page - 1) * D.page_size;
  const grid = document.getElementById("grid");
  grid.className = D.compare ? "pairs" : "";
  grid.replaceChildren(...shown.slice(start, start + D.page_size).map(D.compare ? pairCard : sampleCard));
  document.getElementById("empty").hidden = shown.length > 0;
  document.getElementById("task").value = state.task;
  for (const b of document.querySelectorAll("#controls button[data-filter]")) {
    const f = b.dataset.filter, v = b.dataset.value;
    const n = D.items.filter(it => passes(it, f)
      && (v === "all" || (f === "role" ? taskOf(it).role === v : statusOf(it) === v))).length;
    b.textContent = `${b.dataset.label} (${n})`;
    b.setAttribute("aria-pressed", String(state[f] === v));
  }
  const to = Math.min(start + D.page_size, shown.length);
  document.getElementById("pageinfo").textContent =
    shown.length ? `page ${state.page} of ${pages} · ${start + 1}–${to} of ${shown.length}` : "page 1 of 1 · 0";
  document.getElementById("prev").disabled = state.page <= 1;
  document.getElementById("next").disabled = state.page >= pages;
  writeHash();
  document.body.dataset.rendered = String(++renders);
}

header();
controls();
readHash();
render();
window.addEventListener("hashchange", () => { readHash(); render(); });
})();
"""


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity (an empty split's mean, a CI never computed): null instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_for_script(obj: Any) -> str:
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(obj), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # "<" never appears raw, so no "</script>" or "<!--" inside the blob ends or confuses it
    return text.replace("<", "\\u003c")


def render_page(page: dict[str, Any]) -> str:
    runs = page["runs"]
    title = (f"compare {runs[0]['name']} vs {runs[1]['name']}" if page["compare"] else f"run {runs[0]['name']}")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>harness view: {html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<div id="header"></div>
<div id="controls"></div>
<div id="grid"></div>
<div id="empty" hidden>No samples match these filters.</div>
<script type="application/json" id="view-data">{_json_for_script(page)}</script>
<script>{JS}</script>
</body>
</html>
"""
