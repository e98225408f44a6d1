// New run: a form with every config key (doc and default from the server's config dataclasses).
// Only changed fields are sent, as key=value overrides; the server validates them as the CLI does.

import { post, get } from "./api.js";
import { el, failure, table } from "./dom.js";

const OPEN = new Set(["", "model", "data", "train"]);  // groups shown unfolded
const DATA_KEYS = new Set(["data.train", "data.validation", "data.test", "distill.unlabelled"]);  // offer files

function initial(field) {
  return Array.isArray(field.default) ? field.default.join(",") : String(field.default);
}

function input(field) {
  const id = `f-${field.key}`;
  // A text input drops newlines, so a multi-line default (a prompt template) gets a text area:
  // otherwise the form would send a changed value the user never typed.
  const multiline = typeof field.default === "string" && field.default.includes("\n");
  const control = field.type === "bool"
    ? el("input", { type: "checkbox", id, name: field.key, checked: field.default })
    : multiline
      ? el("textarea", { id, name: field.key, rows: 3 }, initial(field))
      : el("input", { type: "text", id, name: field.key, value: initial(field),
        list: DATA_KEYS.has(field.key) ? "data-files" : undefined,
        inputmode: field.type === "int" || field.type === "float" ? "decimal" : undefined });
  return el("div", { class: "field", "data-key": field.key },
    el("label", { for: id }, field.key), control, el("small", {}, field.doc), el("span", { class: "field-error" }));
}

function changed(form, schema) {
  const values = {};
  for (const field of schema) {
    const control = form.elements[field.key];
    const value = field.type === "bool" ? String(control.checked) : control.value.trim();
    if (value !== (field.type === "bool" ? String(field.default) : initial(field))) values[field.key] = value;
  }
  return values;
}

export async function showNewRun(view) {
  const [schema, files] = await Promise.all([get("/api/schema"), get("/api/files")]);
  const groups = new Map();
  for (const field of schema) {
    const group = field.key.includes(".") ? field.key.split(".")[0] : "";
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group).push(field);
  }
  const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-");
  const name = el("div", { class: "field", "data-key": "name" }, el("label", { for: "f-name" }, "run name"),
    el("input", { type: "text", id: "f-name", name: "name", value: `run-${stamp}`, required: true }),
    el("small", {}, "folder under the runs folder the run writes into"), el("span", { class: "field-error" }));
  const report = el("div", { id: "preflight" });
  const form = el("form", { id: "new-run", onsubmit: (e) => e.preventDefault() }, name,
    [...groups].map(([group, fields]) => el("details", { open: OPEN.has(group), "data-group": group || "run" },
      el("summary", {}, group || "run"), fields.map(input))),
    el("div", { class: "toolbar" },
      el("button", { type: "button", id: "check", onclick: () => submit("/api/preflight") }, "Check data"),
      el("button", { type: "button", id: "start", class: "primary", onclick: () => submit("/api/start") }, "Start run")),
    report, el("datalist", { id: "data-files" }, files.map((f) => el("option", { value: f }))));
  view.replaceChildren(el("h1", {}, "New run"), form);

  async function submit(route) {
    for (const node of form.querySelectorAll(".field")) {
      node.classList.remove("invalid");
      node.querySelector(".field-error").textContent = "";
    }
    report.replaceChildren(el("p", { class: "muted" }, route === "/api/start" ? "starting…" : "checking…"));
    try {
      const result = await post(route, { name: form.elements.name.value.trim(), values: changed(form, schema) });
      if (route === "/api/start") location.hash = `#/run?path=${encodeURIComponent(result.path)}`;
      else report.replaceChildren(preflight(result));
      report.scrollIntoView({ block: "nearest" });
    } catch (error) {
      report.replaceChildren(failure(error));
      report.scrollIntoView({ block: "nearest" });
      const field = error.key && form.querySelector(`.field[data-key="${CSS.escape(error.key)}"]`);
      if (field) {
        field.classList.add("invalid");
        field.querySelector(".field-error").textContent = error.message;
        field.closest("details")?.setAttribute("open", "");
        field.scrollIntoView({ block: "center" });
      }
    }
  }
}

function preflight(result) {
  const labels = (s) => Object.entries(s.labels).map(([name, n]) => `${name} ${n}`).join(" · ");
  const rows = Object.entries(result.splits).map(([split, s]) => [split, s.rows, labels(s), s.source]);
  return el("div", { class: result.ok ? "ok" : "problems" },
    el("h2", {}, result.ok ? "Data checked: ready to start" : `${result.problems.length} data problem(s)`),
    rows.length ? table(["split", "rows", "labels", "source"], rows) : "",
    result.problems.length ? el("ul", { class: "error" }, result.problems.map((p) => el("li", {}, p))) : "",
    result.warnings.length ? el("ul", { class: "warnings" }, result.warnings.map((w) => el("li", {}, w))) : "");
}
