// One run: live curves (server-sent events tailing train_log.jsonl), metrics, config, report, resume/cancel.

import { events, get, post, text } from "./api.js";
import { curves, lineChart } from "./chart.js";
import { badge, el, failure, number, table } from "./dom.js";

const MAX_POINTS = 4000;  // past this, every other training record is dropped (the server sent at most 2000)

export async function showRun(view, params, signal) {
  const path = params.get("path");
  let detail;
  try {
    detail = await get("/api/run", { path });
  } catch (error) {
    view.replaceChildren(el("h1", {}, path), failure(error));
    return;
  }
  const log = await get("/api/run/log", { path });
  let records = log.records;
  const charts = el("div", { class: "charts", id: "charts" });
  const head = el("div", { class: "run-head" });
  view.replaceChildren(el("h1", {}, path), head, charts, el("div", { id: "details" }, ...details(detail)));
  header(head, detail, view, params, signal);
  // The header follows the log; the config and folders are read again once the run has written them.
  const refresh = async (last) => {
    if (!detail.config.task) {
      detail = await get("/api/run", { path });
      view.querySelector("#details").replaceChildren(...details(detail));
    }
    detail.summary.steps = last.step ?? detail.summary.steps;
    header(head, detail, view, params, signal);
  };
  const redraw = () => {
    const figures = curves(records, detail.summary.metric).map((c) => {
      const figure = el("figure", { "data-chart": c.title });
      lineChart(figure, c.title, c.series);
      return figure;
    });
    charts.replaceChildren(...(figures.length ? figures : [el("p", { class: "muted" }, "No training records yet.")]));
  };
  redraw();
  if (detail.summary.status !== "running") return;
  try {
    await events("/api/run/stream", { path, offset: log.offset }, (name, data) => {
      if (name === "records") {
        records = thin(records.concat(data));
        redraw();
        refresh(data[data.length - 1]);
      } else if (name === "end") {
        showRun(view, params, signal);  // the run stopped: show its final state (metrics, report)
      }
    }, signal);
  } catch (error) {
    if (!signal.aborted) charts.append(failure(error));
  }
}

function thin(records) {
  if (records.length <= MAX_POINTS) return records;
  return records.filter((r, i) => i % 2 === 0 || Object.keys(r).some((k) => k.startsWith("eval_")));
}

function header(head, detail, view, params, signal) {
  const run = detail.summary;
  const act = (label, route) => el("button", { type: "button", id: `${label.toLowerCase()}-run`, onclick: async (e) => {
    e.target.disabled = true;
    try {
      await post(route, {}, { path: run.path });
      showRun(view, params, signal);
    } catch (error) {
      head.append(failure(error));
    }
  } }, label);
  head.replaceChildren(badge(run.status), ` ${run.task || ""} · ${run.model || ""} · step ${run.steps}`,
    run.best === null ? "" : ` · ${run.metric} ${number(run.best)}`,
    run.status === "interrupted" ? act("Resume", "/api/run/resume") : "",
    run.status === "running" ? act("Cancel", "/api/run/cancel") : "");
}

function details(detail) {
  const scalars = Object.entries(detail.metrics).filter(([, v]) => typeof v === "number");
  const parts = [];
  if (scalars.length) {
    parts.push(el("h2", {}, "Metrics"), table(["metric", "value"], scalars.map(([k, v]) => [k, number(v)]), { id: "metrics" }));
  }
  if (detail.output.length) parts.push(el("h2", {}, "Process output"), el("pre", { class: "output" }, detail.output.join("\n")));
  if (detail.folders.length) parts.push(el("h2", {}, "Folders"), el("p", {}, detail.folders.join(" · ")));
  parts.push(el("h2", {}, "Config"), el("pre", { class: "config" }, JSON.stringify(detail.config, null, 2)));
  if (detail.report) {
    const frame = el("iframe", { class: "report", sandbox: "", title: "report.html" });
    text("/api/run/report", { path: detail.summary.path }).then((html) => { frame.srcdoc = html; });
    parts.push(el("h2", {}, "Report"), frame);
  }
  return parts;
}
