// Line charts drawn as inline SVG: no library, nothing fetched. Series are {name, points: [[x, y], ...]}.

const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#c026d3"];
const W = 480, H = 220, PAD = { left: 56, right: 12, top: 12, bottom: 28 };

function svg(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function ticks(low, high, count) {
  if (low === high) return [low];
  return Array.from({ length: count + 1 }, (_, i) => low + ((high - low) * i) / count);
}

function label(value) {
  const size = Math.abs(value);
  if (size !== 0 && (size < 1e-2 || size >= 1e4)) return value.toExponential(2);
  return Number.isInteger(value) ? String(value) : value.toFixed(size < 1 ? 3 : 1);
}

// Draws into `box` (a figure element), replacing what was there; the svg's data-points attribute
// holds the number of points drawn.
export function lineChart(box, title, series) {
  const drawn = series.filter((s) => s.points.length);
  const all = drawn.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const sx = (x) => PAD.left + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const sy = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", "data-points": all.length, role: "img" });
  chart.append(svg("title", {}, title));
  for (const y of ticks(y0, y1, 4)) {
    chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: sy(y), y2: sy(y), class: "grid" }));
    chart.append(svg("text", { x: PAD.left - 4, y: sy(y) + 4, "text-anchor": "end" }, label(y)));
  }
  if (all.length) {
    for (const x of new Set(ticks(x0, x1, 4).map(Math.round))) {  // steps are whole: no tick twice
      chart.append(svg("text", { x: sx(x), y: H - 8, "text-anchor": "middle" }, label(x)));
    }
  }
  drawn.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const points = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points, fill: "none", stroke: color, "stroke-width": 1.6 }));
    if (s.points.length < 40) {
      for (const [x, y] of s.points) chart.append(svg("circle", { cx: sx(x), cy: sy(y), r: 2.5, fill: color }));
    }
  });
  const legend = document.createElement("figcaption");
  const name = document.createElement("strong");
  name.textContent = title;
  legend.append(name);
  drawn.forEach((s, i) => {
    const item = document.createElement("span");
    item.style.color = COLORS[i % COLORS.length];
    item.textContent = ` ■ ${s.name}`;
    legend.append(item);
  });
  box.replaceChildren(legend, chart);
}

// Curves of one run's log records: which charts exist and which record keys feed them.
export function curves(records, metric) {
  const defs = [
    ["loss", ["train_loss", "eval_loss"]],
    [metric && metric !== "loss" ? metric : "eval metric", metric && metric !== "loss" ? [`eval_${metric}`] : []],
    ["learning rate", ["lr"]],
    ["tokens / s", ["tokens_per_s"]],
  ];
  return defs.map(([title, keys]) => ({
    title,
    series: keys.map((key) => ({ name: key, points: points(records, key) })),
  })).filter((c) => c.series.some((s) => s.points.length));
}

export function points(records, key) {
  return records.filter((r) => typeof r[key] === "number" && Number.isFinite(r[key])).map((r) => [r.step, r[key]]);
}
