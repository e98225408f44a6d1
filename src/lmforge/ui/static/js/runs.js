// Runs: every run folder, filtered, sorted and paged on the server; tick rows to compare them.

import { get } from "./api.js";
import { badge, el, failure, link, number, time } from "./dom.js";

const PAGE = 50;
const REFRESH_MS = 5000;  // while a run is running, the list refreshes itself
const COLUMNS = [["path", "run"], ["task", "task"], ["model", "model"], ["status", "status"],
  ["best", "best metric"], ["steps", "steps"], ["updated", "updated"]];

export async function showRuns(view, params, signal) {
  const state = { q: "", status: "", sort: "updated", desc: true, offset: 0 };
  const chosen = new Set();
  let timer;
  signal.addEventListener("abort", () => clearTimeout(timer));
  const body = el("div");
  const compare = el("button", { type: "button", id: "compare-selected", disabled: true,
    onclick: () => { location.hash = `#/compare?${[...chosen].map((p) => `path=${encodeURIComponent(p)}`).join("&")}`; } },
  "Compare selected");
  const search = el("input", { type: "search", id: "runs-filter", placeholder: "filter by run, task or model",
    oninput: () => { state.q = search.value; state.offset = 0; load(); } });
  const status = el("select", { id: "runs-status", onchange: () => { state.status = status.value; state.offset = 0; load(); } },
    ["", "running", "finished", "interrupted", "failed"].map((s) => el("option", { value: s }, s || "any status")));
  view.replaceChildren(el("h1", {}, "Runs"), el("div", { class: "toolbar" }, search, status, compare), body);

  async function load() {
    let page;
    try {
      page = await get("/api/runs", { ...state, limit: PAGE });
    } catch (error) {
      body.replaceChildren(failure(error));
      return;
    }
    body.replaceChildren(page.total ? grid(page) : el("p", {}, "No runs yet. Start one from ", link("#/new", "New run"), "."),
      pager(page.total));
    clearTimeout(timer);
    if (page.counts.running && !signal.aborted) timer = setTimeout(load, REFRESH_MS);
  }

  function grid(page) {
    const head = COLUMNS.map(([key, name]) => el("th", {}, el("button", { type: "button", class: "sort",
      onclick: () => { state.desc = state.sort === key ? !state.desc : true; state.sort = key; load(); } },
    name + (state.sort === key ? (state.desc ? " ▼" : " ▲") : ""))));
    const rows = page.runs.map((run) => el("tr", { "data-path": run.path },
      el("td", {}, el("input", { type: "checkbox", "aria-label": `compare ${run.path}`, checked: chosen.has(run.path),
        onchange: (e) => { e.target.checked ? chosen.add(run.path) : chosen.delete(run.path); compare.disabled = chosen.size < 2; } })),
      el("td", {}, link(`#/run?path=${encodeURIComponent(run.path)}`, run.path), run.kind !== "run" ? ` (${run.kind})` : ""),
      el("td", {}, run.task), el("td", {}, run.model), el("td", {}, badge(run.status)),
      el("td", {}, run.best === null ? "—" : `${run.metric} ${number(run.best)}`,
        run.epsilon ? ` (ε ${number(run.epsilon)})` : ""),
      el("td", {}, run.steps), el("td", {}, time(run.updated))));
    return el("table", { id: "runs" }, el("thead", {}, el("tr", {}, el("th", {}, ""), head)), el("tbody", {}, rows));
  }

  function pager(total) {
    const last = Math.min(state.offset + PAGE, total);
    return el("div", { class: "pager" },
      el("button", { type: "button", disabled: state.offset === 0, onclick: () => { state.offset -= PAGE; load(); } }, "‹ previous"),
      el("span", { id: "runs-range" }, total ? `${state.offset + 1}–${last} of ${total}` : ""),
      el("button", { type: "button", disabled: last >= total, onclick: () => { state.offset += PAGE; load(); } }, "next ›"));
  }

  await load();
}
