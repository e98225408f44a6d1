// Compare: two or more runs — summaries, every metric side by side, overlaid curves, config diff.

import { get } from "./api.js";
import { curves, lineChart, points } from "./chart.js";
import { badge, el, failure, link, number, table } from "./dom.js";

export async function showCompare(view, params) {
  const paths = params.getAll("path");
  if (paths.length < 2) {
    view.replaceChildren(el("h1", {}, "Compare"),
      el("p", {}, "Tick two or more runs on the ", link("#/runs", "Runs"), " page, then press Compare selected."));
    return;
  }
  let data, logs;
  try {
    [data, logs] = await Promise.all([get("/api/compare", { path: paths }),
      Promise.all(paths.map((path) => get("/api/run/log", { path, max_points: 1000 })))]);
  } catch (error) {
    view.replaceChildren(el("h1", {}, "Compare"), failure(error));
    return;
  }
  const names = data.runs.map((r) => r.path);
  const charts = el("div", { class: "charts", id: "charts" });
  const titles = [...new Set(logs.flatMap((log, i) => curves(log.records, data.runs[i].metric).map((c) => c.title)))];
  for (const title of titles) {
    const series = [];
    logs.forEach((log, i) => {
      const chart = curves(log.records, data.runs[i].metric).find((c) => c.title === title);
      // One curve per run: its first series with points (train_loss for the loss chart).
      const first = chart && chart.series.find((s) => s.points.length);
      if (first) series.push({ name: `${names[i]} ${first.name}`, points: points(log.records, first.name) });
    });
    const figure = el("figure", { "data-chart": title });
    lineChart(figure, title, series);
    charts.append(figure);
  }
  view.replaceChildren(el("h1", {}, "Compare"),
    table(["", ...names], [
      ["status", ...data.runs.map((r) => badge(r.status))],
      ["task", ...data.runs.map((r) => r.task)],
      ["model", ...data.runs.map((r) => r.model)],
      ["steps", ...data.runs.map((r) => r.steps)],
    ], { id: "compare-runs" }),
    el("h2", {}, "Metrics"),
    table(["metric", ...names], data.metrics.map((m) => [m.key, ...m.values.map(number)]), { id: "compare-metrics" }),
    el("h2", {}, "Curves"), charts,
    el("h2", {}, "Config differences"),
    data.config.length
      ? table(["key", ...names], data.config.map((c) => [c.key, ...c.values.map((v) => JSON.stringify(v))]), { id: "compare-config" })
      : el("p", {}, "The configs are identical."));
}
