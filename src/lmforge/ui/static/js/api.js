// Requests to the UI's API. With --api-key, the key is asked once and kept for this browser tab.

const KEY = "lmforge-api-key";

export class ApiError extends Error {
  constructor(status, message, key) {
    super(message);
    this.status = status;
    this.key = key || "";  // the form field (config key) the error is about, if any
  }
}

function headers(extra) {
  const key = sessionStorage.getItem(KEY);
  return { ...(extra || {}), ...(key ? { Authorization: `Bearer ${key}` } : {}) };
}

async function send(path, options) {
  let response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (response.status === 401) {
    const key = window.prompt("API key for this lmforge UI");
    if (key) {
      sessionStorage.setItem(KEY, key);
      response = await fetch(path, { ...options, headers: headers(options.headers) });
    }
  }
  if (!response.ok) {
    let body = {};
    try { body = await response.json(); } catch { /* not JSON */ }
    const error = body.error || {};
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new ApiError(response.status, error.message || detail || response.statusText, error.key);
  }
  return response;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const v of [].concat(value)) if (v !== undefined && v !== null && v !== "") q.append(name, v);
  }
  return q.toString();
}

export async function get(path, params = {}) {
  const q = query(params);
  return (await send(q ? `${path}?${q}` : path, {})).json();
}

export async function post(path, body, params = {}) {
  const q = query(params);
  const response = await send(q ? `${path}?${q}` : path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}),
  });
  return response.json();
}

export async function text(path, params = {}) {
  return (await send(`${path}?${query(params)}`, {})).text();
}

// Server-sent events read with fetch (EventSource cannot send the API key, nor POST a body): calls
// onEvent(name, data) for each event until the stream ends or `signal` aborts.
export async function events(path, params, onEvent, signal, body) {
  const posted = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await send(`${path}?${query(params)}`, { ...posted, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
