// Try: classify a text, or chat (streamed) with a generation model — any model folder under the roots,
// finished runs' best/ offered first.

import { events, get, post } from "./api.js";
import { el, failure } from "./dom.js";

export async function showTry(view, params, signal) {
  const models = await get("/api/models");
  const model = el("input", { type: "text", id: "try-model", list: "try-models", value: params.get("model") || models[0] || "",
    placeholder: "model folder, e.g. my-run/best" });
  view.replaceChildren(el("h1", {}, "Try a model"),
    el("div", { class: "field" }, el("label", { for: "try-model" }, "model folder"), model,
      el("datalist", { id: "try-models" }, models.map((m) => el("option", { value: m })))),
    el("h2", {}, "Classify"), classifier(() => model.value.trim()),
    el("h2", {}, "Chat (generation models)"), chat(() => model.value.trim(), signal));
}

function classifier(model) {
  const input = el("textarea", { id: "try-text", rows: 3, placeholder: "这家酒店的服务很好", "aria-label": "text to classify" });
  const result = el("div", { id: "try-result" });
  const go = el("button", { type: "button", id: "classify", class: "primary", onclick: async () => {
    go.disabled = true;
    result.replaceChildren(el("p", { class: "muted" }, "classifying… (the first call loads the model)"));
    try {
      result.replaceChildren(answer(await post("/api/classify", { model: model(), text: input.value })));
    } catch (error) {
      result.replaceChildren(failure(error));
    } finally {
      go.disabled = false;
    }
  } }, "Classify");
  return el("div", {}, input, go, result);
}

function answer(prediction) {
  const probs = Object.entries(prediction.probs || {}).sort((a, b) => b[1] - a[1]);
  return el("div", {},
    el("p", {}, "label: ", el("strong", { id: "predicted-label" }, [].concat(prediction.label ?? prediction.labels).join(", "))),
    el("table", { class: "probs" }, el("tbody", {}, probs.map(([label, p]) => el("tr", {},
      el("td", {}, label), el("td", {}, el("span", { class: "bar", style: `width:${(p * 200).toFixed(0)}px` })),
      el("td", {}, p.toFixed(4)))))));
}

// The conversation stays in the page; each turn sends it whole, and the answer streams in.
function chat(model, signal) {
  const messages = [];
  const log = el("div", { id: "chat-log", class: "chat" });
  const input = el("textarea", { id: "chat-text", rows: 2, placeholder: "你好", "aria-label": "message" });
  const send = el("button", { type: "button", id: "chat-send", class: "primary", onclick: async () => {
    const text = input.value.trim();
    if (!text) return;
    messages.push({ role: "user", content: text });
    const reply = el("div", { class: "turn assistant" });
    log.append(el("div", { class: "turn user" }, text), reply);
    input.value = "";
    send.disabled = true;
    try {
      await events("/api/chat", {}, (name, piece) => { if (name === "piece") reply.textContent += piece; },
        signal, { model: model(), messages });
      messages.push({ role: "assistant", content: reply.textContent });
    } catch (error) {
      messages.pop();
      reply.replaceChildren(failure(error));
    } finally {
      send.disabled = false;
    }
  } }, "Send");
  return el("div", {}, log, input, send);
}
