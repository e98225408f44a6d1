// The page router: #/runs, #/run?path=..., #/new, #/try, #/compare?path=a&path=b.

import { showCompare } from "./compare.js";
import { el, failure } from "./dom.js";
import { showNewRun } from "./newrun.js";
import { showRun } from "./run.js";
import { showRuns } from "./runs.js";
import { showTry } from "./try.js";

const PAGES = { runs: showRuns, run: showRun, new: showNewRun, try: showTry, compare: showCompare };
let current = null;  // aborts the previous page's live streams when the page changes

async function route() {
  const [name, search] = (location.hash.replace(/^#\/?/, "") || "runs").split("?");
  const page = PAGES[name] ? name : "runs";
  current?.abort();
  current = new AbortController();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  const view = document.getElementById("view");
  view.replaceChildren(el("p", { class: "muted" }, "loading…"));
  try {
    await PAGES[page](view, new URLSearchParams(search || ""), current.signal);
  } catch (error) {
    if (!current.signal.aborted) view.replaceChildren(failure(error));
  }
}

window.addEventListener("hashchange", route);
route();
