// The model browser (service/ui.py). Data comes from the service's own API only; text from model
// cards is only ever set as text (textContent, attributes), never parsed as HTML.
"use strict";

const KEY = "surrogate-api-key"; // sessionStorage: this tab only
const CURVE_POINTS = 61;
const MAP_CELLS = 32;

const byId = (id) => document.getElementById(id);
const enc = encodeURIComponent;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attributes = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

const tick = (value) => String(Number(value.toPrecision(4)));

function fmt(value) {
  if (typeof value !== "number") return value === null || value === undefined ? "" : String(value);
  if (!Number.isFinite(value)) return String(value);
  return String(Number(value.toPrecision(6)));
}

// -- the API, with the key --------------------------------------------------------------------

class KeyNeeded extends Error {}

async function api(path, body) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = "Bearer " + key;
  const options = { headers };
  if (body !== undefined) {
    options.method = "POST";
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    askForKey(key ? "The service refused that key." : "");
    throw new KeyNeeded("an API key is needed");
  }
  return response;
}

async function getJson(path, body) {
  const response = await api(path, body);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function askForKey(message) {
  const panel = byId("key-panel");
  panel.hidden = false;
  const hint = panel.querySelector(".hint");
  if (message) hint.textContent = message + " Enter another; it is kept in this tab only.";
  byId("key-input").focus();
}

function showKeyStatus() {
  const status = byId("key-status");
  status.replaceChildren();
  if (!sessionStorage.getItem(KEY)) return;
  const forget = el("a", { href: "#", id: "forget-key", text: "forget the key" });
  forget.addEventListener("click", (event) => {
    event.preventDefault();
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  status.append("API key set (this tab) · ", forget);
}

function setUpKeyForm(start) {
  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, byId("key-input").value.trim());
    byId("key-input").value = "";
    byId("key-panel").hidden = true;
    showKeyStatus();
    run(start);
  });
  showKeyStatus();
}

function run(start) {
  start().catch((error) => {
    if (error instanceof KeyNeeded) {
      byId("status").textContent = "The service needs an API key.";
      return;
    }
    byId("status").textContent = "Error: " + error.message;
    byId("status").classList.add("warning");
  });
}

// -- the card ---------------------------------------------------------------------------------

function describe(spec) {
  const unit = spec.unit ? ` [${spec.unit}]` : "";
  const range = Number.isFinite(spec.min) ? ` ${fmt(spec.min)} .. ${fmt(spec.max)}` : "";
  return spec.name + unit + range;
}

function isEnsemble(card) {
  const outputs = (card.tensors && card.tensors.outputs) || [];
  return outputs.some((tensor) => tensor.name === "std");
}

function relativeErrors(card) {
  const perOutput = (card.metrics && card.metrics.per_output) || {};
  return Object.entries(perOutput).map(([name, m]) => `${name} ${fmt(m.relative_rmse)}`);
}

// -- the index --------------------------------------------------------------------------------

async function startIndex() {
  const { models } = await getJson("/v1/models");
  const body = document.querySelector("#models tbody");
  body.replaceChildren();
  for (const model of models) {
    let card = null;
    if (model.state === "READY") card = await getJson(`/v1/models/${enc(model.name)}`).catch(() => null);
    const name = el("td", {}, el("a", { href: `/ui/models/${enc(model.name)}`, text: model.name }));
    const state = el("td", {}, el("span", {
      class: model.state === "READY" ? "state-ready" : "state-unavailable", text: model.state }));
    if (model.reason) state.append(el("div", { class: "reason", text: model.reason }));
    const inputs = card ? card.inputs.map(describe) : model.inputs;
    const outputs = card ? card.outputs.map(describe) : model.outputs;
    body.append(el("tr", { dataset: { model: model.name } }, name, state,
      el("td", { text: model.versions.join(", ") }),
      el("td", {}, ...inputs.map((text) => el("div", { text }))),
      el("td", {}, ...outputs.map((text) => el("div", { text }))),
      el("td", {}, ...(card ? relativeErrors(card) : []).map((text) => el("div", { text })))));
  }
  byId("models").hidden = false;
  byId("status").textContent = models.length === 1 ? "1 model" : `${models.length} models`;
}

// -- one model --------------------------------------------------------------------------------

const model = { name: "", version: "", card: null, ensemble: false, values: [], generation: 0 };

async function startModel() {
  model.name = decodeURIComponent(location.pathname.split("/").pop());
  byId("title").textContent = model.name;
  document.title = model.name + " · surrogate";
  const { models } = await getJson("/v1/models");
  const entry = models.find((m) => m.name === model.name);
  if (!entry) throw new Error(`no model named ${model.name}`);
  if (entry.state !== "READY") throw new Error(`the model is not ready: ${entry.reason}`);
  const wanted = new URLSearchParams(location.search).get("version") || entry.latest;
  if (!entry.versions.includes(wanted)) {
    throw new Error(`no ready version ${wanted}; versions: ${entry.versions.join(", ")}`);
  }
  model.version = wanted;
  const picker = byId("version");
  picker.replaceChildren(...entry.versions.map((v) => el("option", { value: v, text: v })));
  picker.value = wanted;
  picker.addEventListener("change", () => { location.search = "?version=" + enc(picker.value); });
  byId("version-label").hidden = false;
  model.card = await getJson(`/v1/models/${enc(model.name)}/versions/${enc(model.version)}`);
  model.ensemble = isEnsemble(model.card);
  document.body.classList.toggle("ensemble", model.ensemble);
  for (const node of document.querySelectorAll(".std")) node.hidden = !model.ensemble;
  byId("description").textContent = model.card.description || "";
  buildControls();
  buildChoices();
  renderCard();
  byId("content").hidden = false;
  byId("status").textContent = "";
  loadPlots();
  await update();
}

function inputs() { return model.card.inputs; }
function outputs() { return model.card.outputs; }

function buildControls() {
  const box = byId("controls");
  box.replaceChildren();
  model.values = inputs().map((spec) => Number(((spec.min + spec.max) / 2).toPrecision(6)));
  inputs().forEach((spec, index) => {
    const step = (spec.max - spec.min) / 1000 || "any";
    const slider = el("input", { type: "range", min: spec.min, max: spec.max, step,
      value: model.values[index], dataset: { input: spec.name }, "aria-label": spec.name });
    const number = el("input", { type: "number", step: "any", value: model.values[index],
      dataset: { input: spec.name }, "aria-label": spec.name + " value" });
    slider.addEventListener("input", () => {
      number.value = slider.value;
      setValue(index, Number(slider.value));
    });
    number.addEventListener("input", () => {
      if (number.value === "" || !Number.isFinite(Number(number.value))) return;
      slider.value = number.value; // the browser clamps the slider to its range
      setValue(index, Number(number.value));
    });
    box.append(el("div", { class: "control" },
      el("label", { text: spec.name + (spec.unit ? ` [${spec.unit}]` : "") }), slider, number,
      el("span", { class: "range", text: `trained on ${fmt(spec.min)} .. ${fmt(spec.max)}` })));
  });
}

let pending = null;
function setValue(index, value) {
  model.values[index] = value;
  clearTimeout(pending);
  pending = setTimeout(() => run(update), 60);
}

function fillSelect(select, specs, chosen) {
  select.replaceChildren(...specs.map((spec) => el("option", { value: spec.name, text: spec.name })));
  select.value = chosen;
  select.addEventListener("change", () => run(update));
}

function buildChoices() {
  const ins = inputs(), outs = outputs();
  fillSelect(byId("curve-output"), outs, outs[0].name);
  fillSelect(byId("curve-input"), ins, ins[0].name);
  fillSelect(byId("map-output"), outs, outs[0].name);
  fillSelect(byId("map-x"), ins, ins[0].name);
  fillSelect(byId("map-y"), ins, ins[ins.length > 1 ? 1 : 0].name);
  byId("map-section").hidden = ins.length < 2;
}

async function predict(columns, parameters) {
  const path = `/v1/models/${enc(model.name)}/versions/${enc(model.version)}:predict`;
  return getJson(path, { inputs: columns, parameters: { domain_policy: "warn", ...parameters } });
}

function columnsAt(count, varying) {
  const columns = {};
  inputs().forEach((spec, index) => {
    columns[spec.name] = varying[spec.name] || Array(count).fill(model.values[index]);
  });
  return columns;
}

async function update() {
  const generation = ++model.generation;
  const current = await predict(columnsAt(1, {}), { return_std: model.ensemble, return_jacobian: true });
  if (generation !== model.generation) return;
  showPrediction(current);
  await drawCurve(generation);
  if (inputs().length > 1) await drawMap(generation);
}

function showPrediction(result) {
  const body = document.querySelector("#prediction tbody");
  body.replaceChildren(...outputs().map((spec) => {
    const value = result.outputs[spec.name][0];
    const std = model.ensemble ? result.std[spec.name][0] : null;
    return el("tr", { dataset: { output: spec.name } }, el("td", { text: spec.name }),
      el("td", { class: "number value", dataset: { value: String(value) }, text: fmt(value) }),
      el("td", { class: "number std", text: model.ensemble ? fmt(std) : "" }),
      el("td", { text: spec.unit || "" }));
  }));
  for (const cell of body.querySelectorAll("td.std")) cell.hidden = !model.ensemble;
  const jacobian = byId("jacobian");
  jacobian.querySelector("thead").replaceChildren(el("tr", {}, el("th", { text: "" }),
    ...inputs().map((spec) => el("th", { text: "∂ / ∂" + spec.name }))));
  jacobian.querySelector("tbody").replaceChildren(...outputs().map((spec) => el("tr", {},
    el("th", { text: spec.name }),
    ...inputs().map((input) => el("td", { class: "number",
      text: fmt(result.jacobian[spec.name][input.name][0]) })))));
  const outside = new Set(((result.out_of_domain || [])[0] || { inputs: [] }).inputs);
  for (const box of document.querySelectorAll("#controls input[type=number]")) {
    box.classList.toggle("outside", outside.has(box.dataset.input));
  }
  const warning = byId("domain-warning");
  warning.hidden = outside.size === 0;
  warning.textContent = outside.size === 0 ? "" : "Outside the training range: " + inputs()
    .filter((spec) => outside.has(spec.name))
    .map((spec) => `${spec.name} (trained on ${fmt(spec.min)} .. ${fmt(spec.max)})`)
    .join(", ") + ". The prediction is an extrapolation.";
}

function ticks(low, high, count) {
  return Array.from({ length: count }, (_, i) => low + (high - low) * i / (count - 1));
}

async function drawCurve(generation) {
  const outputName = byId("curve-output").value, inputName = byId("curve-input").value;
  const spec = inputs().find((s) => s.name === inputName);
  const margin = 0.15 * (spec.max - spec.min);
  const xs = ticks(spec.min - margin, spec.max + margin, CURVE_POINTS);
  const result = await predict(columnsAt(CURVE_POINTS, { [inputName]: xs }), { return_std: model.ensemble });
  if (generation !== model.generation) return;
  const ys = result.outputs[outputName];
  const std = model.ensemble ? result.std[outputName] : ys.map(() => 0);
  const lows = ys.map((y, i) => y - 2 * std[i]), highs = ys.map((y, i) => y + 2 * std[i]);
  let yLow = Math.min(...lows), yHigh = Math.max(...highs);
  if (yHigh === yLow) { yLow -= 1; yHigh += 1; }
  const pad = 0.05 * (yHigh - yLow);
  yLow -= pad; yHigh += pad;
  const W = 640, H = 320, L = 70, R = 16, T = 14, B = 40;
  const x = (v) => L + (v - xs[0]) / (xs[xs.length - 1] - xs[0]) * (W - L - R);
  const y = (v) => T + (yHigh - v) / (yHigh - yLow) * (H - T - B);
  const svg = byId("curve");
  svg.replaceChildren();
  svg.append(svgEl("rect", { class: "training", x: x(spec.min), y: T, width: x(spec.max) - x(spec.min), height: H - T - B }));
  if (model.ensemble) {
    const points = xs.map((v, i) => `${x(v)},${y(highs[i])}`)
      .concat(xs.map((v, i) => `${x(v)},${y(lows[i])}`).reverse());
    svg.append(svgEl("polygon", { class: "band", points: points.join(" ") }));
  }
  svg.append(svgEl("path", { class: "line", d: xs.map((v, i) => `${i ? "L" : "M"}${x(v)},${y(ys[i])}`).join(" ") }));
  xs.forEach((v, i) => svg.append(svgEl("circle", { class: "point", cx: x(v), cy: y(ys[i]), r: 2,
    "data-x": String(v), "data-y": String(ys[i]) })));
  const current = model.values[inputs().indexOf(spec)];
  if (current >= xs[0] && current <= xs[xs.length - 1]) {
    svg.append(svgEl("line", { class: "current", x1: x(current), x2: x(current), y1: T, y2: H - B }));
  }
  svg.append(svgEl("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.append(svgEl("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  for (const v of ticks(xs[0], xs[xs.length - 1], 5)) {
    const label = svgEl("text", { x: x(v), y: H - B + 16, "text-anchor": "middle" });
    label.textContent = tick(v);
    svg.append(label);
  }
  for (const v of ticks(yLow, yHigh, 5)) {
    const label = svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = tick(v);
    svg.append(label);
  }
  const caption = svgEl("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" });
  caption.textContent = `${inputName}${spec.unit ? ` [${spec.unit}]` : ""} → ${outputName}`;
  svg.append(caption);
  Object.assign(svg.dataset, { points: String(xs.length), input: inputName, output: outputName });
}

// Viridis, five stops, interpolated.
const COLORS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function color(t) {
  const s = Math.min(Math.max(t, 0), 1) * (COLORS.length - 1), i = Math.min(Math.floor(s), COLORS.length - 2);
  const f = s - i, [a, b] = [COLORS[i], COLORS[i + 1]];
  return `rgb(${a.map((c, k) => Math.round(c + f * (b[k] - c))).join(",")})`;
}

async function drawMap(generation) {
  const outputName = byId("map-output").value;
  const xSpec = inputs().find((s) => s.name === byId("map-x").value);
  const ySpec = inputs().find((s) => s.name === byId("map-y").value);
  const canvas = byId("map"), scale = byId("map-scale");
  if (xSpec === ySpec) {
    scale.textContent = "Choose two different inputs.";
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    return;
  }
  const n = MAP_CELLS, xs = ticks(xSpec.min, xSpec.max, n), ys = ticks(ySpec.min, ySpec.max, n);
  const gridX = [], gridY = [];
  for (let j = 0; j < n; j++) for (let i = 0; i < n; i++) { gridX.push(xs[i]); gridY.push(ys[j]); }
  const result = await predict(columnsAt(n * n, { [xSpec.name]: gridX, [ySpec.name]: gridY }), {});
  if (generation !== model.generation) return;
  const z = result.outputs[outputName];
  const low = Math.min(...z), high = Math.max(...z), cell = canvas.width / n;
  const context = canvas.getContext("2d");
  z.forEach((v, k) => {
    context.fillStyle = color(high > low ? (v - low) / (high - low) : 0.5);
    const i = k % n, j = Math.floor(k / n);
    context.fillRect(i * cell, canvas.height - (j + 1) * cell, cell + 0.5, cell + 0.5);
  });
  const unit = (outputs().find((s) => s.name === outputName) || {}).unit || "";
  scale.textContent = `${outputName}: ${fmt(low)} (dark) .. ${fmt(high)} (light)${unit ? " " + unit : ""}; ` +
    `${xSpec.name} left to right ${fmt(xSpec.min)} .. ${fmt(xSpec.max)}, ` +
    `${ySpec.name} bottom to top ${fmt(ySpec.min)} .. ${fmt(ySpec.max)}.`;
  Object.assign(canvas.dataset, { cells: String(z.length), min: String(low), max: String(high) });
}

function definitions(pairs) {
  return el("dl", {}, ...pairs.filter(([, value]) => value !== undefined && value !== "")
    .flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: String(value) })]));
}

function renderValue(value) {
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v !== "object" || v === null)) return el("span", { text: value.map(fmt).join(", ") });
    return el("ol", {}, ...value.map((v) => el("li", {}, renderValue(v))));
  }
  if (value && typeof value === "object") {
    return el("dl", {}, ...Object.entries(value).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, renderValue(v))]));
  }
  return el("span", { text: fmt(value) });
}

function rowsText(rows) {
  if (typeof rows === "number") return `${rows} rows`;
  if (rows && typeof rows.fit === "number") {
    return `fit on ${rows.fit} of ${rows.total ?? rows.fit} rows`;
  }
  return "";
}

function renderCard() {
  const card = model.card, training = card.training || {}, scaling = card.scaling || {};
  const selection = training.selection || {};
  byId("card-summary").replaceChildren(definitions([
    ["Layers", (card.layers || []).map((l) => `${l.units} ${l.activation}`).join(" → ")],
    ["Inputs", card.inputs.map(describe).join("; ")],
    ["Outputs", card.outputs.map(describe).join("; ")],
    ["Input scaling", scaling.inputs && scaling.inputs.method],
    ["Output scaling", scaling.outputs && scaling.outputs.method],
    ["Training", [training.estimator, rowsText(training.rows),
      training.epochs !== undefined ? `${training.epochs} epochs` : "",
      training.alpha !== undefined ? `alpha ${fmt(training.alpha)}` : ""].filter(Boolean).join(", ")],
    ["Regularization chosen by", selection.method ? `${selection.method}${selection.folds ? `, ${selection.folds} folds` : ""}` : ""],
    ["Ensemble", card.ensemble ? `${card.ensemble.members} members` : ""],
    ["Training time", typeof training.fit_seconds === "number" ? `${fmt(training.fit_seconds)} s` : ""],
    ["Data", training.data && training.data.source],
    ["Created", card.created],
  ]));
  const metrics = card.metrics || {};
  byId("metrics-source").textContent = metrics.source || "";
  const table = byId("metrics");
  table.querySelector("thead").replaceChildren(el("tr", {}, ...["Output", "R²", "RMSE", "RMSE / std", "max |error|"]
    .map((text) => el("th", { text }))));
  table.querySelector("tbody").replaceChildren(...Object.entries(metrics.per_output || {}).map(([name, m]) =>
    el("tr", {}, el("td", { text: name }), ...[m.r2, m.rmse, m.relative_rmse, m.max_abs_error]
      .map((v) => el("td", { class: "number", text: fmt(v) })))));
  const indices = card.sensitivity && card.sensitivity.indices;
  byId("sensitivity-block").hidden = !indices;
  if (indices) {
    const sens = byId("sensitivity");
    sens.querySelector("thead").replaceChildren(el("tr", {}, ...["Output", "Input", "S1", "ST"].map((text) => el("th", { text }))));
    sens.querySelector("tbody").replaceChildren(...Object.entries(indices).flatMap(([output, s]) =>
      Object.keys(s.S1 || {}).map((input) => el("tr", {}, el("td", { text: output }), el("td", { text: input }),
        el("td", { class: "number", text: `${fmt(s.S1[input])} ± ${fmt((s.S1_conf || {})[input])}` }),
        el("td", { class: "number", text: `${fmt(s.ST[input])} ± ${fmt((s.ST_conf || {})[input])}` })))));
  }
  byId("card-all").replaceChildren(renderValue(card));
}

async function loadPlots() {
  for (const plot of ["convergence", "parity"]) {
    const response = await api(`/ui/plots/${enc(model.name)}/${enc(model.version)}/${plot}.png`).catch(() => null);
    if (!response || !response.ok) continue;
    byId(plot).src = URL.createObjectURL(await response.blob());
    byId(`${plot}-figure`).hidden = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const onModel = location.pathname.startsWith("/ui/models/");
  byId(onModel ? "model-page" : "index-page").hidden = false;
  const start = onModel ? startModel : startIndex;
  setUpKeyForm(start);
  run(start);
});
