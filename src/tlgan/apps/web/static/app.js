// tlgan web page: holds the state (seed, edits, locks) and asks the server's API for pictures of it.
// The state lives in the URL's #fragment, so a copied link reproduces the same image.
// Only the newest state is ever requested: while a frame is being rendered, newer states
// replace each other in `pending`, and only the last one is sent when the frame arrives.
"use strict";

const $ = (id) => document.getElementById(id);
const GALLERY_COUNT = 12;
const STRIP_STEPS = 7;
const STRIP_SPAN = 3;

let model = null;            // GET /api/model
const rows = new Map();      // knob name -> {row, slider, value, reading, lock, minus, plus}
let state = { seed: 0, edits: [], locks: [], exact: false };
let undoStack = [];
let redoStack = [];
let values = null;           // knob values (σ) of the shown frame, in model.knobs order
let shown = null;            // {key, blob, url} of the shown frame
let lastGood = null;         // the last state the server rendered
let dragging = null;         // knob whose slider is being dragged
let focusedKnob = null;
let stripKnob = null;

// ---------------------------------------------------------------- state helpers
const clone = (s) => ({ seed: s.seed, edits: s.edits.map((e) => ({ ...e, locks: [...e.locks] })), locks: [...s.locks],
  exact: !!s.exact });
const keyOf = (s) => JSON.stringify([s.seed, s.edits, s.locks, !!s.exact]);
const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const knobIndex = (name) => model.knobs.findIndex((k) => k.name === name);
const label = (name) => model.knobs[knobIndex(name)].label;

function encodeHash(s) {
  const enc = encodeURIComponent;
  const parts = [`seed=${s.seed}`];
  if (s.locks.length) parts.push("locks=" + s.locks.map(enc).join(","));
  if (s.exact) parts.push("exact=1");
  if (s.edits.length) {
    // an exact edit carries a fifth field 'x' (links made before exact mode stay valid)
    parts.push("edits=" + s.edits.map((e) =>
      [e.op === "set" ? "s" : "d", enc(e.knob), String(e.value), e.locks.map(enc).join(",")]
        .concat(e.exact ? ["x"] : []).join(":")).join(";"));
  }
  return "#" + parts.join("&");
}

function decodeHash(hash) {
  const fields = {};
  for (const part of hash.replace(/^#/, "").split("&")) {
    if (!part) continue;
    const at = part.indexOf("=");
    if (at < 0) throw new Error(`'${part}' is not name=value`);
    fields[part.slice(0, at)] = part.slice(at + 1);
  }
  if (!/^\d+$/.test(fields.seed || "") || !Number.isSafeInteger(Number(fields.seed))) {
    throw new Error("the seed must be a whole number");
  }
  const names = (text) => (text ? text.split(",").filter(Boolean).map(decodeURIComponent) : []);
  const edits = (fields.edits ? fields.edits.split(";") : []).map((item) => {
    const [op, knob, value, locks, ...rest] = item.split(":");
    const number = Number(value);
    const exact = rest.length === 1 && rest[0] === "x";
    if ((rest.length && !exact) || !["s", "d"].includes(op) || !knob || value === "" || !Number.isFinite(number)) {
      throw new Error(`edit '${decodeURIComponent(item)}' is not op:knob:value:locks[:x]`);
    }
    const edit = { op: op === "s" ? "set" : "step", knob: decodeURIComponent(knob), value: number, locks: names(locks) };
    return exact ? { ...edit, exact: true } : edit;
  });
  if (fields.exact !== undefined && !["0", "1"].includes(fields.exact)) throw new Error("exact must be 0 or 1");
  return { seed: Number(fields.seed), edits, locks: names(fields.locks).sort(), exact: fields.exact === "1" };
}

function writeHash() {
  history.replaceState(null, "", encodeHash(state));
}

// ---------------------------------------------------------------- API
class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function apiError(res) {
  let detail = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) { /* not JSON */ }
  return new ApiError(res.status, detail);
}

async function post(path, body, signal) {
  let res;
  try {
    res = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "cannot reach the tlgan server (is it still running?)");
  }
  if (!res.ok) throw await apiError(res);
  return res;
}

// ---------------------------------------------------------------- messages
let toastTimer = null;
function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 2500);
}

function showError(text) {
  $("error-text").textContent = text;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

// ---------------------------------------------------------------- rendering
let inflight = false;
let pending = null;

function requestFrame() {
  document.body.dataset.idle = "false";
  pending = clone(state);
  cancelReadings();
  if (!inflight) pump();
}

async function pump() {
  const s = pending;
  pending = null;
  inflight = true;
  $("face").classList.add("busy");
  try {
    const last = s.edits[s.edits.length - 1];
    if (last && last.exact) {
      // An exact path can take a moment: show the linear move at once, then replace it with the exact frame.
      const quick = { ...s, edits: [...s.edits.slice(0, -1), { ...last, exact: false }] };
      $("caption").textContent = "exact path: computing…";
      const pre = await post("/api/render", { ...quick, format: "png", size: model.image_size });
      showPreview(await pre.blob());
      if (pending) return;  // a newer state is waiting: skip this one's exact frame
    }
    const res = await post("/api/render", { ...s, format: "png", size: model.image_size });
    const blob = await res.blob();
    const knobValues = JSON.parse(res.headers.get("X-Knob-Values"));
    showFrame(s, blob, knobValues);
    showWarnings(res.headers);
  } catch (err) {
    renderFailed(s, err);
  } finally {
    inflight = false;
    if (pending) {
      pump();
    } else {
      $("face").classList.remove("busy");
      document.body.dataset.idle = "true";
      scheduleReadings();
    }
  }
}

function showPreview(blob) {
  const img = $("face");
  const old = img.dataset.preview;
  img.src = URL.createObjectURL(blob);
  img.dataset.preview = img.src;
  img.dataset.key = "preview";
  if (old) setTimeout(() => URL.revokeObjectURL(old), 1000);
}

function showWarnings(headers) {
  const report = headers.get("X-Exact-Report");
  if (report) showError(JSON.parse(report));
  const typical = JSON.parse(headers.get("X-Latent-Typicality") || "null");
  const warn = $("typicality");
  warn.hidden = !(typical && typical.warn);
  if (typical && typical.warn) {
    warn.textContent = `This face's latent is far from typical (‖z‖ = ${typical.norm.toFixed(1)}, faces ` +
      `usually ${typical.expected.toFixed(1)}): it may break. Exact mode keeps edited faces typical.`;
  }
}

function showFrame(s, blob, knobValues) {
  const url = URL.createObjectURL(blob);
  const img = $("face");
  const old = shown;
  img.src = url;
  img.dataset.key = keyOf(s);
  shown = { key: keyOf(s), blob, url };
  if (old) setTimeout(() => URL.revokeObjectURL(old.url), 1000);
  lastGood = clone(s);
  values = knobValues;
  if (!pending) updateValues();
  $("caption").textContent = `face #${s.seed}` + (s.edits.length ? ` · ${s.edits.length} edit${s.edits.length > 1 ? "s" : ""}` : "");
}

function renderFailed(s, err) {
  showError(err.message);
  // The state the server refused is dropped: go back to the last picture it made.
  if (!pending && keyOf(s) === keyOf(state) && lastGood && keyOf(lastGood) !== keyOf(state)) {
    state = clone(lastGood);
    writeHash();
    updateLocks();
    updateValues();
  }
}

function fmt(v) {
  return (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(2) + "σ";
}

function updateValues() {
  if (!values) return;
  model.knobs.forEach((k, i) => {
    const r = rows.get(k.name);
    r.value.textContent = fmt(values[i]);
    if (dragging !== k.name) r.slider.value = String(values[i]);
    r.slider.setAttribute("aria-valuetext", fmt(values[i]));
    r.row.classList.toggle("off-scale", Math.abs(values[i]) > model.slider_range);
  });
}

function updateLocks() {
  $("exact").checked = state.exact;
  for (const [name, r] of rows) {
    const locked = state.locks.includes(name);
    r.row.classList.toggle("locked", locked);
    r.lock.setAttribute("aria-pressed", String(locked));
    r.lock.title = locked ? `Unlock ${label(name)} (l)` : `Lock ${label(name)}: keep its value while other knobs move (l)`;
  }
  $("undo").disabled = undoStack.length === 0;
  $("redo").disabled = redoStack.length === 0;
}

// ---------------------------------------------------------------- readings
let readingsTimer = null;
let readingsCtl = null;

function cancelReadings() {
  clearTimeout(readingsTimer);
  if (readingsCtl) readingsCtl.abort();
  readingsCtl = null;
}

function scheduleReadings() {
  cancelReadings();
  readingsTimer = setTimeout(() => {
    if (model.extractor) fetchReadings();
    if (stripKnob) fetchStrip();
  }, 120);
}

async function fetchReadings() {
  const s = clone(state);
  const ctl = new AbortController();
  readingsCtl = ctl;
  try {
    const res = await post("/api/readings", s, ctl.signal);
    const data = await res.json();
    if (keyOf(s) === keyOf(state)) showReadings(data.readings);
  } catch (err) {
    if (err.name !== "AbortError" && keyOf(s) === keyOf(state)) showError(err.message);
  }
}

function fmtReading(r) {
  if (r.value === null) return "–";
  return Math.abs(r.value) < 10 ? r.value.toFixed(2) : r.value.toPrecision(3);
}

function showReadings(readings) {
  const others = [];
  for (const r of readings) {
    const row = rows.get(r.name);
    if (row) {
      row.reading.textContent = fmtReading(r);
      row.reading.title = `the extractor reads ${r.name} = ${fmtReading(r)} on the current image`;
    } else {
      others.push(`${r.name.replace(/_/g, " ")} ${fmtReading(r)}`);
    }
  }
  $("other-readings").textContent = others.length ? "Other readings: " + others.join(" · ") : "";
}

// ---------------------------------------------------------------- edits
function pushHistory() {
  undoStack.push(clone(state));
  if (undoStack.length > 500) undoStack.shift();
  redoStack = [];
}

function commit() {
  clearError();
  writeHash();
  updateLocks();
  requestFrame();
}

function lockedMessage(name) {
  toast(`${label(name)} is locked: unlock it to move it`);
}

function setKnob(name, value) {
  if (state.locks.includes(name)) return lockedMessage(name);
  const last = state.edits[state.edits.length - 1];
  // Consecutive 'set's of one knob under the same locks collapse into one: the result is the same
  // state, and links stay short however long a slider is dragged.
  if (last && last.op === "set" && last.knob === name && sameList(last.locks, state.locks) && !!last.exact === state.exact) {
    last.value = value;
  } else {
    state.edits.push({ op: "set", knob: name, value, locks: [...state.locks], ...(state.exact ? { exact: true } : {}) });
  }
  commit();
}

function stepKnob(name, delta) {
  if (state.locks.includes(name)) return lockedMessage(name);
  const target = values ? values[knobIndex(name)] + delta : delta;
  if (Math.abs(target) > model.slider_range) {
    showError(`${label(name)} would go to ${fmt(target)}; the knobs' range is ±${model.slider_range}σ`);
    return;
  }
  pushHistory();
  const last = state.edits[state.edits.length - 1];
  if (last && last.op === "step" && last.knob === name && sameList(last.locks, state.locks) && !!last.exact === state.exact) {
    last.value = Math.round((last.value + delta) * 1e6) / 1e6;
    if (last.value === 0) state.edits.pop();
  } else {
    state.edits.push({ op: "step", knob: name, value: delta, locks: [...state.locks], ...(state.exact ? { exact: true } : {}) });
  }
  commit();
}

function toggleLock(name) {
  pushHistory();
  state.locks = state.locks.includes(name) ? state.locks.filter((k) => k !== name) : [...state.locks, name].sort();
  clearError();
  writeHash();
  updateLocks();
}

function newFace(seed) {
  pushHistory();
  state = { seed, edits: [], locks: [...state.locks], exact: state.exact };
  commit();
}

const randomSeed = () => Math.floor(Math.random() * 2147483647);

function reset() {
  if (!state.edits.length) return;
  pushHistory();
  state.edits = [];
  commit();
}

function undo() {
  if (!undoStack.length) return;
  redoStack.push(clone(state));
  state = undoStack.pop();
  commit();
}

function redo() {
  if (!redoStack.length) return;
  undoStack.push(clone(state));
  state = redoStack.pop();
  commit();
}

// ---------------------------------------------------------------- download, share
async function download() {
  try {
    let blob = shown && shown.key === keyOf(state) ? shown.blob : null;
    if (!blob) blob = await (await post("/api/render", { ...clone(state), format: "png", size: model.image_size })).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `tlgan-face-${state.seed}.png`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (err) {
    showError(err.message);
  }
}

async function share() {
  const url = location.href;
  const box = $("share-box");
  const input = $("share-url");
  input.value = url;
  box.hidden = false;
  try {
    await navigator.clipboard.writeText(url);
    toast("Link copied: it reproduces this exact image");
  } catch (_) {
    input.focus();
    input.select();
    toast("Copy the link below");
  }
}

// ---------------------------------------------------------------- strip and gallery
async function fetchStrip() {
  const name = stripKnob;
  const s = clone(state);
  $("strip-title").textContent = `${label(name)} from −${STRIP_SPAN}σ to +${STRIP_SPAN}σ`;
  try {
    const res = await post("/api/strip", { ...s, knob: name, span: STRIP_SPAN, steps: STRIP_STEPS, size: 96 });
    const blob = await res.blob();
    if (name !== stripKnob || keyOf(s) !== keyOf(state)) return;
    const img = $("strip-img");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.alt = `${label(name)} from −${STRIP_SPAN}σ to +${STRIP_SPAN}σ`;
    img.dataset.values = res.headers.get("X-Strip-Values");
  } catch (err) {
    showError(err.message);
  }
}

function openStrip(name) {
  stripKnob = name;
  $("strip").hidden = false;
  fetchStrip();
}

function stripClick(ev) {
  const img = $("strip-img");
  if (!stripKnob || !img.dataset.values) return;
  const stops = JSON.parse(img.dataset.values);
  const box = img.getBoundingClientRect();
  const i = Math.min(stops.length - 1, Math.max(0, Math.floor(((ev.clientX - box.left) / box.width) * stops.length)));
  pushHistory();
  setKnob(stripKnob, stops[i]);
}

async function fillGallery() {
  const grid = $("gallery-grid");
  grid.replaceChildren();
  const seeds = Array.from({ length: GALLERY_COUNT }, randomSeed);
  for (const seed of seeds) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.title = `Start from face #${seed}`;
    button.dataset.seed = String(seed);
    const img = document.createElement("img");
    img.alt = `face #${seed}`;
    img.width = img.height = 128;
    button.append(img);
    button.addEventListener("click", () => {
      closeGallery();
      newFace(seed);
    });
    grid.append(button);
  }
  // Sent together: the server renders them in one batch.
  await Promise.all(seeds.map(async (seed, i) => {
    try {
      const res = await post("/api/render", { seed, edits: [], locks: [], format: "png", size: 128 });
      grid.children[i].firstChild.src = URL.createObjectURL(await res.blob());
    } catch (err) {
      showError(err.message);
    }
  }));
}

function openGallery() {
  $("gallery").hidden = false;
  $("gallery-toggle").setAttribute("aria-expanded", "true");
  fillGallery();
}

function closeGallery() {
  $("gallery").hidden = true;
  $("gallery-toggle").setAttribute("aria-expanded", "false");
  for (const img of $("gallery-grid").querySelectorAll("img")) if (img.src) URL.revokeObjectURL(img.src);
}

// ---------------------------------------------------------------- building the knob rows
const SVG_NS = "http://www.w3.org/2000/svg";
function padlock() {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("aria-hidden", "true");
  const shackle = document.createElementNS(SVG_NS, "path");
  shackle.setAttribute("class", "shackle");
  shackle.setAttribute("d", "M4.5 7V5a3.5 3.5 0 0 1 7 0v2");
  const body = document.createElementNS(SVG_NS, "rect");
  body.setAttribute("x", "2.5"); body.setAttribute("y", "7"); body.setAttribute("width", "11");
  body.setAttribute("height", "8"); body.setAttribute("rx", "1.5");
  svg.append(shackle, body);
  return svg;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function knobRow(k) {
  const id = `knob-${knobIndex(k.name)}`;
  const lock = el("button", { type: "button", className: "lock" }, padlock());
  lock.setAttribute("aria-label", `lock ${k.label}`);
  const name = el("label", { className: "name", htmlFor: id, textContent: k.label });
  const quality = k.r2 === null ? "held-out R² unknown" : `held-out R² ${k.r2.toFixed(2)}`;
  name.title = (k.description ? k.description + " — " : "") + quality;
  if (k.weak) {
    name.append(" ", el("span", { className: "weak", textContent: "weak", title: `${quality}: this knob follows its feature only loosely` }));
  }
  const slider = el("input", { type: "range", id, min: String(-model.slider_range), max: String(model.slider_range), step: "0.01", value: "0" });
  const minus = el("button", { type: "button", className: "step minus", textContent: "−" });
  minus.setAttribute("aria-label", `decrease ${k.label} by ${model.step}σ`);
  const plus = el("button", { type: "button", className: "step plus", textContent: "+" });
  plus.setAttribute("aria-label", `increase ${k.label} by ${model.step}σ`);
  const value = el("output", { className: "value", textContent: "" });
  value.setAttribute("for", id);
  const reading = el("span", { className: "reading", textContent: "" });
  const strip = el("button", { type: "button", className: "strip-btn", textContent: "strip", title: `${k.label} from −3σ to +3σ` });
  const row = el("div", { className: "knob" + (k.weak ? " is-weak" : "") }, lock, name, value, reading, minus, slider, plus, strip);
  row.dataset.knob = k.name;

  lock.addEventListener("click", () => toggleLock(k.name));
  minus.addEventListener("click", () => stepKnob(k.name, -model.step));
  plus.addEventListener("click", () => stepKnob(k.name, model.step));
  strip.addEventListener("click", () => openStrip(k.name));
  slider.addEventListener("input", () => {
    if (state.locks.includes(k.name)) {
      slider.value = String(values ? values[knobIndex(k.name)] : 0);
      return lockedMessage(k.name);
    }
    if (dragging !== k.name) {   // first move of a drag: one undo step per drag
      pushHistory();
      dragging = k.name;
    }
    setKnob(k.name, Number(slider.value));
  });
  slider.addEventListener("change", () => {
    dragging = null;
    if (!pending && !inflight) updateValues();
  });
  row.addEventListener("focusin", () => {
    focusedKnob = k.name;
    for (const r of rows.values()) r.row.classList.toggle("focused", r.row === row);
  });
  rows.set(k.name, { row, slider, value, reading, lock, minus, plus });
  return row;
}

function buildKnobs() {
  const container = $("knobs");
  container.replaceChildren();
  const section = (title, knobs) => {
    const box = el("section", { className: "group" }, el("h2", { textContent: title }));
    for (const k of knobs) box.append(knobRow(k));
    return box;
  };
  for (const group of model.groups) {
    const knobs = model.knobs.filter((k) => k.group === group && k.shown);
    if (knobs.length) container.append(section(group, knobs));
  }
  const hidden = model.knobs.filter((k) => !k.shown);
  if (hidden.length) {
    const more = el("details", { className: "more" }, el("summary", { textContent: `More knobs (${hidden.length})` }));
    for (const group of model.groups) {
      const knobs = hidden.filter((k) => k.group === group);
      if (knobs.length) more.append(section(group, knobs));
    }
    container.append(more);
  }
  if (!model.extractor) {
    for (const r of rows.values()) r.reading.hidden = true;
    document.querySelector(".legend-readings").hidden = true;
  }
}

// ---------------------------------------------------------------- keyboard
function onKey(ev) {
  if (ev.target.matches && ev.target.matches("input[type=text], textarea")) return;
  if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "z") {
    ev.preventDefault();
    return ev.shiftKey ? redo() : undo();
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const row = ev.target.closest ? ev.target.closest(".knob") : null;
  const knob = row ? row.dataset.knob : null;
  if (knob && ["ArrowLeft", "ArrowDown", "ArrowRight", "ArrowUp"].includes(ev.key)) {
    ev.preventDefault();   // the slider's own 0.01 step is replaced by the knob step
    stepKnob(knob, ev.key === "ArrowRight" || ev.key === "ArrowUp" ? model.step : -model.step);
  } else if (ev.key === "r") {
    ev.preventDefault();
    newFace(randomSeed());
  } else if (ev.key === "l" && (knob || focusedKnob)) {
    ev.preventDefault();
    toggleLock(knob || focusedKnob);
  }
}

// ---------------------------------------------------------------- start
function loadFromHash() {
  if (location.hash.length > 1) {
    try {
      state = decodeHash(location.hash);
      return;
    } catch (err) {
      showError(`This link is malformed (${err.message}); showing a random face instead.`);
    }
  }
  state = { seed: randomSeed(), edits: [], locks: [], exact: state.exact };
  writeHash();
}

async function start() {
  $("random").addEventListener("click", () => newFace(randomSeed()));
  $("reset").addEventListener("click", reset);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("download").addEventListener("click", download);
  $("share").addEventListener("click", share);
  $("error-close").addEventListener("click", clearError);
  $("gallery-toggle").addEventListener("click", () => ($("gallery").hidden ? openGallery() : closeGallery()));
  $("gallery-more").addEventListener("click", fillGallery);
  $("gallery-close").addEventListener("click", closeGallery);
  $("strip-close").addEventListener("click", () => { stripKnob = null; $("strip").hidden = true; });
  $("strip-img").addEventListener("click", stripClick);
  $("exact").addEventListener("change", () => {
    pushHistory();
    state.exact = $("exact").checked;
    commit();
  });
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", () => {
    if (location.hash === encodeHash(state)) return;
    pushHistory();
    clearError();
    loadFromHash();
    writeHash();
    updateLocks();
    requestFrame();
  });

  try {
    const res = await fetch("/api/model");
    if (!res.ok) throw await apiError(res);
    model = await res.json();
  } catch (err) {
    showError(`Cannot load the model: ${err.message}`);
    return;
  }
  document.title = model.title;
  $("title").textContent = model.title;
  $("face").width = $("face").height = model.image_size;
  buildKnobs();
  loadFromHash();
  updateLocks();
  requestFrame();
  document.body.dataset.ready = "true";
}

start();
