// Try: classify a text with a model folder (a finished run's best/, or any model folder under the roots).

import { get, post } from "./api.js";
import { el, failure } from "./dom.js";

export async function showTry(view, params) {
  const models = await get("/api/models");
  const model = el("input", { type: "text", id: "try-model", list: "try-models", value: params.get("model") || models[0] || "",
    placeholder: "model folder, e.g. my-run/best" });
  const input = el("textarea", { id: "try-text", rows: 4, placeholder: "这家酒店的服务很好" });
  const result = el("div", { id: "try-result" });
  const go = el("button", { type: "button", id: "classify", class: "primary", onclick: async () => {
    go.disabled = true;
    result.replaceChildren(el("p", { class: "muted" }, "classifying… (the first call loads the model)"));
    try {
      result.replaceChildren(answer(await post("/api/classify", { model: model.value.trim(), text: input.value })));
    } catch (error) {
      result.replaceChildren(failure(error));
    } finally {
      go.disabled = false;
    }
  } }, "Classify");
  view.replaceChildren(el("h1", {}, "Try a model"),
    el("div", { class: "field" }, el("label", { for: "try-model" }, "model folder"), model,
      el("datalist", { id: "try-models" }, models.map((m) => el("option", { value: m })))),
    el("div", { class: "field" }, el("label", { for: "try-text" }, "text"), input), go, result);
}

function answer(prediction) {
  const probs = Object.entries(prediction.probs || {}).sort((a, b) => b[1] - a[1]);
  return el("div", {},
    el("p", {}, "label: ", el("strong", { id: "predicted-label" }, [].concat(prediction.label ?? prediction.labels).join(", "))),
    el("table", { class: "probs" }, el("tbody", {}, probs.map(([label, p]) => el("tr", {},
      el("td", {}, label), el("td", {}, el("span", { class: "bar", style: `width:${(p * 200).toFixed(0)}px` })),
      el("td", {}, p.toFixed(4)))))));
}
