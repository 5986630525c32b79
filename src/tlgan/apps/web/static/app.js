// tlgan web page: holds the state (seed, edits, locks) and asks the server's API for pictures of it.
// The state lives in the URL's #fragment, so a copied link reproduces the same image.
// Only the newest state is ever requested: while a frame is being rendered, newer states
// replace each other in `pending`, and only the last one is sent when the frame arrives.
//
// Other scripts extend the page through `window.tlgan` (see the end of this file): extra state
// fields carried in the link and in every request, extra link parts, hooks at start-up and on each
// shown frame, and the helpers.
"use strict";

const $ = (id) => document.getElementById(id);
const GALLERY_COUNT = 12;
const STRIP_STEPS = 7;
const STRIP_SPAN = 3;
// Knob values come back from float32/float64 arithmetic on the server: a knob set to exactly −3 may read
// −3.0000000001 on another CPU. Range ends are compared with this slack (far below the 0.01σ the page shows),
// so a value the user typed or reached is never treated as outside the range it sits at the end of.
const ROUNDING = 1e-6;
const beyond = (v, limit) => Math.abs(v) > limit + ROUNDING;
const MINUS = "\u2212";
// 'identity' among the locks: keep the person (the "Keep the person" switch). Exact edits hold it; linear
// edits only measure it. A knob of that name (none in the default sets) would be the knob instead.
const IDENTITY = "identity";
const identityLock = () => !model || knobIndex(IDENTITY) < 0;

let model = null;            // GET /api/model
const rows = new Map();      // knob name -> {row, slider, value, reading, lock, minus, plus, strip}
let state = { seed: 0, edits: [], locks: [], exact: false };
let undoStack = [];
let redoStack = [];
let values = null;           // knob values (σ) of the shown frame, in model.knobs order
let shown = null;            // {key, blob, url} of the shown frame
let lastGood = null;         // the last state the server rendered
let dragging = null;         // knob whose slider is being dragged
let stripKnob = null;
// What the page knows of the *requested* state's knob values (name -> σ), before its frame arrives:
// an edit fixes its own knob's value and the locked knobs keep theirs; the others become unknown.
let expected = new Map();
let deferredSteps = [];      // − / + presses waiting for the requested state's values (see stepKnob)

// Extra state fields registered by other scripts: name -> {parse(text), format(value), initial}.
const extraFields = new Map();
const linkParts = [];        // other scripts' (state) -> "name=value" or "": carried in the link only
// Exact mode: new edits follow a per-face path that keeps locked knobs' readings (Edit.exact), and knob
// values are shown as standardised readings. Carried in the link as exact=1; each exact edit has a field 'x'.
extraFields.set("exact", {
  parse(text) {
    if (!["0", "1"].includes(text)) throw new Error("exact must be 0 or 1");
    return text === "1";
  },
  format: (on) => (on ? "1" : null),
  initial: false,
});
let lockReadings = new Map();  // locked knob -> its raw reading when locked (to mark drift in linear mode)
let lastReadingsKey = null;    // keyOf the state lastReadings were read for
let lastReadings = new Map();  // feature -> raw reading of the last readings shown

// ---------------------------------------------------------------- state helpers
const clone = (s) => {
  const out = { ...s, edits: s.edits.map((e) => ({ ...e, locks: [...e.locks] })), locks: [...s.locks] };
  if (!out.mix) delete out.mix;
  return out;
};
const keyOf = (s) => JSON.stringify([s.seed, s.mix || null, s.edits, s.locks, ...[...extraFields.keys()].map((k) => s[k])]);
const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const knobIndex = (name) => model.knobs.findIndex((k) => k.name === name);
const knobOf = (name) => model.knobs[knobIndex(name)];
const label = (name) => (knobIndex(name) >= 0 ? knobOf(name).label : name);
const freshState = (seed, locks = []) => {
  const s = { seed, edits: [], locks: [...locks] };
  for (const [name, field] of extraFields) s[name] = field.initial;
  return s;
};

function encodeHash(s) {
  const enc = encodeURIComponent;
  const parts = [`seed=${s.seed}`];
  if (s.mix) parts.push(`mix=${s.mix.seed}:${s.mix.t}`);
  if (s.locks.length) parts.push("locks=" + s.locks.map(enc).join(","));
  if (s.edits.length) {
    // an exact edit carries a fifth field 'x' (links made before exact mode stay valid)
    parts.push("edits=" + s.edits.map((e) =>
      [e.op === "set" ? "s" : "d", enc(e.knob), String(e.value), e.locks.map(enc).join(",")]
        .concat(e.exact ? ["x"] : []).join(":")).join(";"));
  }
  for (const [name, field] of extraFields) {
    const text = field.format(s[name]);
    if (text !== null && text !== undefined) parts.push(`${name}=${enc(text)}`);
  }
  for (const part of linkParts) { const text = part(s); if (text) parts.push(text); }
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
  const s = { seed: Number(fields.seed), edits, locks: [...new Set(names(fields.locks))].sort() };
  if (fields.mix) {
    const [other, t, ...rest] = fields.mix.split(":");
    if (rest.length || !/^\d{1,18}$/.test(other) || !Number.isSafeInteger(Number(other)) || !(Number(t) >= 0 && Number(t) <= 1)) {
      throw new Error(`mix '${fields.mix}' is not seed:fraction (0 to 1)`);
    }
    if (Number(t) > 0) s.mix = { seed: Number(other), t: Number(t) };
  }
  for (const [name, field] of extraFields) {
    s[name] = name in fields ? field.parse(decodeURIComponent(fields[name])) : field.initial;
  }
  return s;
}

function writeHash() {
  history.replaceState(null, "", encodeHash(state));
  if (!$("share-box").hidden) $("share-url").value = location.href;   // the share box is never stale
}

// The request body for a state: every field but the page's own bookkeeping.
const body = (s, extra = {}) => ({ ...clone(s), ...extra });

// ---------------------------------------------------------------- API
class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(detail);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

async function apiError(res) {
  let detail = `${res.status} ${res.statusText}`;
  try {
    const data = await res.json();
    if (data && data.detail) detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
  } catch (_) { /* not JSON */ }
  return new ApiError(res.status, detail, Number(res.headers.get("Retry-After")) || null);
}

async function post(path, data, signal) {
  let res;
  try {
    res = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data), signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "cannot reach the tlgan server (is it still running?)");
  }
  if (!res.ok) throw await apiError(res);
  return res;
}

// ---------------------------------------------------------------- messages (an overlay; one live region)
let toastTimer = null;
function announce(text) {
  $("announce").textContent = text;
}

function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  announce(text);
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 3000);
}

function showError(text) {
  $("error-text").textContent = text;
  $("error").hidden = false;
  announce(text);
}

function clearError() {
  $("error").hidden = true;
}

// ---------------------------------------------------------------- rendering
let inflight = false;
let pending = null;
const frameHooks = [];

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
      // An exact path can take a moment: show the linear move at once, then the exact frame replaces it.
      const quick = { ...s, edits: [...s.edits.slice(0, -1), { ...last, exact: false }] };
      $("caption").textContent = "exact path: computing…";
      const pre = await post("api/render", body(quick, { format: "png", size: model.frame_size, exact: false }));
      showPreview(await pre.blob());
      if (pending) return;  // a newer state is waiting: skip this one's exact frame
    }
    const res = await post("api/render", body(s, { format: "png", size: model.frame_size }));
    const blob = await res.blob();
    const knobValues = JSON.parse(res.headers.get("X-Knob-Values"));
    retried = false;
    showFrame(s, blob, knobValues);
    showWarnings(res.headers);
  } catch (err) {
    renderFailed(s, err);
  } finally {
    inflight = false;
    if (pending) {
      pump();
    } else if (!retryTimer) {
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
  if (report) showError(exactMessage(JSON.parse(report), JSON.parse(headers.get("X-Exact-Blocked-By") || "null")));
  const typical = JSON.parse(headers.get("X-Latent-Typicality") || "null");
  const warn = $("typicality");
  const wasHidden = warn.hidden;
  warn.hidden = !(typical && typical.warn);
  if (typical && typical.warn) {
    warn.textContent = `This face's latent is far from typical (‖z‖ = ${typical.norm.toFixed(1)}, faces ` +
      `usually ${typical.expected.toFixed(1)}): it may break. Exact mode keeps edited faces typical.`;
    if (wasHidden) announce(warn.textContent);  // through the page's one live region, once when it appears
  }
}

// An exact move that ended short: the server's message, told in the page's words when keeping the person
// (the identity lock) is what stopped it.
function exactMessage(message, blockedBy) {
  if (blockedBy !== IDENTITY || !identityLock()) return message;
  const way = "'identity' is in the way (unlock it to go further)";
  const turnOff = "turn off \u201cKeep the person\u201d to go further";
  const said = message.includes(way) ? message.replace(way, `keeping the person is in the way (${turnOff})`)
    : message.replace(/unlock 'identity'/g, turnOff);
  return "Keep the person stopped this edit: " + said + (said.includes(turnOff) ? "" : ` (${turnOff})`);
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
  if (keyOf(s) === keyOf(state)) {
    expected = new Map(model.knobs.map((k, i) => [k.name, knobValues[i]]));
  }
  if (!pending) updateValues();
  $("caption").textContent = `face #${s.seed}` + (s.mix ? ` blended ${Math.round(s.mix.t * 100)}% with #${s.mix.seed}` : "") +
    (s.edits.length ? ` · ${s.edits.length} edit${s.edits.length > 1 ? "s" : ""}` : "");
  img.alt = describe(s, knobValues);
  for (const hook of frameHooks) hook(s, knobValues);
  if (keyOf(s) === keyOf(state) && deferredSteps.length) {
    const steps = deferredSteps;
    deferredSteps = [];
    for (const [name, delta] of steps) stepKnob(name, delta);
  }
}

// The image's alt text: the face and the knobs its edits moved, with their values.
function describe(s, knobValues) {
  const moved = [...new Set(s.edits.map((e) => e.knob))].filter((n) => knobIndex(n) >= 0);
  const parts = moved.slice(0, 6).map((n) => `${label(n)} ${fmt(knobValues[knobIndex(n)])}`);
  if (moved.length > 6) parts.push(`and ${moved.length - 6} more`);
  return `Generated face #${s.seed}` + (parts.length ? `, edited: ${parts.join(", ")}` : ", unedited");
}

let retried = false;
let retryTimer = null;
function renderFailed(s, err) {
  deferredSteps = [];
  if (err.status === 503 && !retried) {   // busy: try once more when the server says
    retried = true;
    toast(`The server is busy; retrying in ${err.retryAfter || 1} s`);
    retryTimer = setTimeout(() => { retryTimer = null; requestFrame(); }, 1000 * (err.retryAfter || 1));
    return;
  }
  retried = false;
  showError(err.message);
  if (!shown) $("caption").textContent = `face #${s.seed} could not be shown`;
  if (err.status !== 422 || pending || keyOf(s) !== keyOf(state)) return;
  // The state the server refused is dropped: go back to the last picture it made (or the seed's own face).
  const back = lastGood && keyOf(lastGood) !== keyOf(state) ? clone(lastGood)
    : (s.edits.length || s.locks.length ? freshState(s.seed) : null);
  if (back) {
    state = back;
    expected = new Map();
    writeHash();
    updateLocks();
    requestFrame();
  }
}

function fmt(v) {
  return (v >= 0 ? "+" : MINUS) + Math.abs(v).toFixed(2) + "σ";
}

function fmtNumber(v, digits = 2) {
  return (v < 0 ? MINUS : "") + Math.abs(v).toFixed(digits);
}

function parseNumber(text) {
  const cleaned = text.trim().replace(/[\u2212\u2013]/g, "-").replace(/σ$/, "").trim();
  return cleaned === "" ? NaN : Number(cleaned);
}

// A value in σ as a share of faces: Φ(v) from the error function (Abramowitz–Stegun 7.1.26).
function percentile(v) {
  const x = Math.abs(v) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * x);
  const erf = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return 0.5 * (1 + Math.sign(v) * erf);
}

function percentileText(name, v) {
  const p = percentile(v) * 100;
  const share = (q) => (q > 99.9 ? ">99.9" : q < 0.1 ? "<0.1" : q.toFixed(q > 99 || q < 1 ? 1 : 0));
  return v >= 0 ? `more ${label(name)} than ${share(p)}% of faces` : `less ${label(name)} than ${share(100 - p)}% of faces`;
}

function updateValues() {
  if (!values) return;
  model.knobs.forEach((k, i) => {
    const r = rows.get(k.name);
    if (document.activeElement !== r.value) r.value.value = fmt(values[i]).slice(0, -1);
    r.value.title = percentileText(k.name, values[i]);
    if (dragging !== k.name) r.slider.value = String(values[i]);
    r.slider.setAttribute("aria-valuetext", `${fmt(values[i])}, ${percentileText(k.name, values[i])}`);
    r.row.classList.toggle("off-scale", beyond(values[i], model.slider_range));
  });
  if (stripKnob) placeStripMarker();
  const last = state.edits.length ? state.edits[state.edits.length - 1].knob : null;
  $("percentile").textContent = last && knobIndex(last) >= 0
    ? `${label(last)} ${fmt(values[knobIndex(last)])}: ${percentileText(last, values[knobIndex(last)])}` : "";
}

function updateLocks() {
  $("exact").checked = !!state.exact;
  $("keep-person").checked = state.locks.includes(IDENTITY) && identityLock();
  $("keep-person").disabled = !identityLock();
  for (const [name, r] of rows) {
    const locked = state.locks.includes(name);
    r.row.classList.toggle("locked", locked);
    r.lock.setAttribute("aria-pressed", String(locked));
    r.lock.title = locked ? `Unlock ${label(name)} (l)` : `Lock ${label(name)}: keep its value while other knobs move (l)`;
    for (const b of [r.minus, r.plus]) b.title = locked ? `${label(name)} is locked` : "";
    r.value.readOnly = locked;
  }
  $("undo").disabled = undoStack.length === 0;
  $("redo").disabled = redoStack.length === 0;
  $("seed-input").value = String(state.seed);
  updateMix();
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
    fetchReadings();   // the extractor's readings, and identity (also without an extractor)
    if (stripKnob) fetchStrip();
  }, 120);
}

async function fetchReadings() {
  const s = clone(state);
  const ctl = new AbortController();
  readingsCtl = ctl;
  try {
    const res = await post("api/readings", body(s), ctl.signal);
    const data = await res.json();
    if (keyOf(s) === keyOf(state)) {
      showReadings(data.readings, s);
      showIdentity(data.identity, data.identity_detail, s);
    }
  } catch (err) {
    if (err.name !== "AbortError" && keyOf(s) === keyOf(state)) showError(err.message);
  }
}

const featureUnits = () => new Map((model.extractor ? model.extractor.features : []).map((f) => [f.name, f.unit]));

function fmtReading(r, unit) {
  if (r.value === null) return "–";
  if (unit === "%") return `${Math.round(r.value * 100)}%`;
  const digits = Math.abs(r.value) < 10 ? 2 : 1;
  return fmtNumber(r.value, digits) + (unit || "");
}

// A locked knob's reading has drifted when it moved by more than 5 points (probabilities) or 5% (else).
const drifted = (then, now, unit) => then !== null && now !== null &&
  Math.abs(now - then) > (unit === "%" ? 0.05 : 0.05 * Math.max(1, Math.abs(then)));

function showReadings(readings, s = state) {
  const units = featureUnits();
  const others = [];
  for (const name of [...lockReadings.keys()]) if (!s.locks.includes(name)) lockReadings.delete(name);
  lastReadings = new Map(readings.map((r) => [r.name, r.value]));
  lastReadingsKey = keyOf(s);
  for (const r of readings) {
    const row = rows.get(r.name);
    const text = fmtReading(r, units.get(r.name));
    if (row) {
      row.reading.replaceChildren(el("span", { className: "sr", textContent: "reads " }), text);
      row.reading.title = `the extractor reads ${r.name.replace(/_/g, " ")} = ${text} on the current image`;
      if (s.locks.includes(r.name) && !lockReadings.has(r.name)) lockReadings.set(r.name, r.value);
      // Linear locks keep the knob's σ, not what the extractor reads: mark a locked reading that moved.
      const then = lockReadings.get(r.name);
      const drift = !s.exact && s.locks.includes(r.name) && drifted(then ?? null, r.value, units.get(r.name));
      row.row.classList.toggle("drifted", drift);
      if (drift) {
        row.reading.title += ` (it read ${fmtReading({ value: then }, units.get(r.name))} when locked: linear locks ` +
          "keep the knob's σ, not its reading; Exact mode keeps readings)";
      }
    } else {
      others.push(`${r.name.replace(/_/g, " ")} ${text}`);
    }
  }
  $("other-readings").textContent = others.length ? "Other readings: " + others.join(" · ") : "";
}

// The identity line under the face: how far it is from the face it started as, on this generator's scale;
// a warning past the tolerance (or when the landmarks find no face). Shown once the face is edited, or while
// Keep the person is on (then also to say why there is no reading).
function showIdentity(identity, detail, s = state) {
  const line = $("identity");
  const keep = s.locks.includes(IDENTITY) && identityLock();
  const wasWarning = !line.hidden && line.classList.contains("warn");
  if (!identity) {
    line.hidden = !keep || !detail;
    line.classList.remove("warn");
    line.textContent = detail ? `Identity cannot be read here: ${detail}` : "";
    return;
  }
  line.hidden = !(s.edits.length || keep);
  const warn = !identity.kept;
  let text = `Identity: ${identity.message}`;
  if (identity.found && warn) {
    text += ` \u2014 past the ${identity.tolerance.toFixed(2)} tolerance` + (s.exact && keep ? ""
      : keep ? " (linear edits cannot hold identity: Exact mode does)" : " (Keep the person, in Exact mode, holds it)");
  }
  line.textContent = text;
  line.classList.toggle("warn", warn);
  line.title = "dlib face-descriptor distance from the face this one started as; dlib calls faces under 0.6 apart " +
    `the same person. Kept while within ${identity.tolerance.toFixed(2)}.`;
  if (warn && !line.hidden && !wasWarning) announce(text);   // once, when the warning appears
}

function toggleKeepPerson() {
  pushHistory();
  const on = $("keep-person").checked;
  state.locks = on ? [...new Set([...state.locks, IDENTITY])].sort() : state.locks.filter((k) => k !== IDENTITY);
  if (on && !state.exact) toast("Keep the person: new edits lock identity; Exact mode holds it, linear mode shows the distance");
  commit();
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

// After an edit of `name` to `value` σ: what is known of the requested state's values.
function learn(name, value) {
  for (const k of model.knobs) {
    if (k.name !== name && !state.locks.includes(k.name)) expected.delete(k.name);
  }
  expected.set(name, value);
}

function lockedMessage(name) {
  toast(`${label(name)} is locked: unlock it to move it`);
}

function rangeError(name, target) {
  showError(`${label(name)} would go to ${fmt(target)}; the knobs' range is ±${model.slider_range}σ`);
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
  learn(name, value);
  commit();
}

// A − / + press. The ±range guard checks the value in the state being requested: when that is not
// known yet (another knob moved since the last frame), the press waits for that frame.
function stepKnob(name, delta) {
  if (state.locks.includes(name)) return lockedMessage(name);
  if (!expected.has(name)) {
    deferredSteps.push([name, delta]);
    if (!inflight && !pending) requestFrame();
    return;
  }
  const target = expected.get(name) + delta;
  if (beyond(target, model.slider_range)) {
    deferredSteps = [];
    return rangeError(name, target);
  }
  pushHistory();
  const last = state.edits[state.edits.length - 1];
  if (last && last.op === "step" && last.knob === name && sameList(last.locks, state.locks) && !!last.exact === state.exact) {
    last.value = Math.round((last.value + delta) * 1e6) / 1e6;
    if (last.value === 0) state.edits.pop();
  } else {
    state.edits.push({ op: "step", knob: name, value: delta, locks: [...state.locks], ...(state.exact ? { exact: true } : {}) });
  }
  learn(name, target);
  commit();
}

// A typed value or a strip pick: one undo step, refused outside the slider range.
function typeKnob(name, value) {
  if (state.locks.includes(name)) return lockedMessage(name);
  if (!Number.isFinite(value)) return showError(`${label(name)}: type a number of σ, e.g. 1.5 or −0.8`);
  if (beyond(value, model.slider_range)) return rangeError(name, value);
  if (expected.get(name) === value) return;   // already there (or already asked for)
  pushHistory();
  dragging = null;
  setKnob(name, value);
}

// Lock every other shown knob (the focused one stays free): "more of this, nothing else changes". Pressed again with
// all the others locked, it unlocks them. In exact mode the classes of one softmax (the emotions) can be held together.
let lastKnob = null;   // the knob that last had the focus (the toolbar's Lock others acts on it)
function lockOthers(name) {
  if (!name) return toast("Click a knob first: Lock others locks every knob but that one");
  const others = model.knobs.filter((k) => k.shown && k.name !== name).map((k) => k.name);
  const all = others.every((k) => state.locks.includes(k));
  const fresh = lastReadingsKey === keyOf(state);   // as in toggleLock: only this face's readings count
  pushHistory();
  state.locks = all ? state.locks.filter((k) => !others.includes(k)) : [...new Set([...state.locks.filter((k) => k !== name), ...others])].sort();
  for (const k of others) if (fresh && state.locks.includes(k) && lastReadings.has(k)) lockReadings.set(k, lastReadings.get(k));
  clearError();
  writeHash();
  updateLocks();
  toast(all ? `Unlocked all but ${label(name)}` : `Locked every knob but ${label(name)}`);
}

function toggleLock(name) {
  // The shown readings count only if they are this face's: right after a new face or link they are the last one's,
  // and the first frame with the lock records the reading instead (showReadings).
  const fresh = lastReadingsKey === keyOf(state);
  pushHistory();
  state.locks = state.locks.includes(name) ? state.locks.filter((k) => k !== name) : [...state.locks, name].sort();
  if (fresh && state.locks.includes(name) && lastReadings.has(name)) lockReadings.set(name, lastReadings.get(name));
  clearError();
  writeHash();
  updateLocks();
}

function newFace(seed) {
  if (shown) remember(STORE.history, state, HISTORY_LENGTH);
  pushHistory();
  const kept = state.locks;
  state = freshState(seed, kept);
  for (const [name] of extraFields) state[name] = undoStack[undoStack.length - 1][name];
  expected = new Map();
  commit();
  if (kept.length) toast(`New face #${seed}; locks kept: ${kept.map(label).join(", ")}`);
}

const randomSeed = () => Math.floor(Math.random() * 2147483647);

function reset() {
  if (!state.edits.length) return;
  pushHistory();
  state.edits = [];
  expected = new Map();
  commit();
}

function undo() {
  if (!undoStack.length) return;
  redoStack.push(clone(state));
  state = undoStack.pop();
  expected = new Map();
  deferredSteps = [];
  commit();
}

function redo() {
  if (!redoStack.length) return;
  undoStack.push(clone(state));
  state = redoStack.pop();
  expected = new Map();
  deferredSteps = [];
  commit();
}

// ---------------------------------------------------------------- download, share
function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function download() {
  try {
    const size = Number($("export-size").value);
    const res = await post("api/render", body(state, { format: "png", size, meta: true }));   // edits in the file
    saveBlob(await res.blob(), `tlgan-face-${state.seed}.png`);
  } catch (err) {
    showError(err.message);
  }
}

async function share() {
  const url = location.href;
  $("share-url").value = url;
  $("share-box").hidden = false;
  try {
    await navigator.clipboard.writeText(url);
    toast("Link copied: it reproduces this exact image");
  } catch (_) {
    $("share-url").select();
    toast("Copy the link from the box below the image");
  }
}

// ---------------------------------------------------------------- before / after
let beforeUrl = null;
let beforeSeed = null;

async function beforeImage() {
  if (beforeSeed !== state.seed) {
    const res = await post("api/render", body(freshState(state.seed), { format: "png", size: model.frame_size }));
    if (beforeUrl) URL.revokeObjectURL(beforeUrl);
    beforeUrl = URL.createObjectURL(await res.blob());
    beforeSeed = state.seed;
  }
  return beforeUrl;
}

async function showBefore(on) {
  const img = $("face-before");
  if (!on && !$("split").checked) {
    img.hidden = true;
    return;
  }
  try {
    img.src = await beforeImage();
    img.hidden = false;
  } catch (err) {
    showError(err.message);
  }
}

function setSplit(on) {
  $("face-before").parentElement.classList.toggle("split", on);
  showBefore(on);
}

// ---------------------------------------------------------------- blend with another face
let mixDragging = false;

function mixSeed() {
  const text = $("mix-seed").value.trim();
  return /^\d{1,15}$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : null;
}

function setMix(t, oneStep) {
  const other = mixSeed();
  if (other === null) {
    showError("Type the number of the face to blend with (0 or more)");
    return;
  }
  if (oneStep) pushHistory();
  if (t > 0) state.mix = { seed: other, t }; else delete state.mix;
  expected = new Map();
  commit();
}

function updateMix() {
  if (mixDragging) return;
  $("mix-t").value = String(state.mix ? state.mix.t : 0);
  if (state.mix) $("mix-seed").value = String(state.mix.seed);
  $("mix-t").setAttribute("aria-valuetext", state.mix ? `${Math.round(state.mix.t * 100)}% face #${state.mix.seed}` : "not blended");
}

// ---------------------------------------------------------------- strip
let stripEl = null;

function stripElement() {
  if (!stripEl) {
    stripEl = $("strip-template").content.firstElementChild.cloneNode(true);
    stripEl.id = "strip";
    stripEl.querySelector(".strip-img").addEventListener("click", stripClick);
    stripEl.querySelector(".strip-close").addEventListener("click", closeStrip);
    stripEl.querySelector(".strip-gif").addEventListener("click", async () => {
      try {
        const res = await post("api/sweep", body(state, { knob: stripKnob, span: STRIP_SPAN, frames: 24, size: 256, format: "gif" }));
        saveBlob(await res.blob(), `tlgan-sweep-${stripKnob}-${state.seed}.gif`);
      } catch (err) {
        showError(err.message);
      }
    });
    stripEl.querySelector(".strip-save").addEventListener("click", () => {
      const img = stripEl.querySelector(".strip-img");
      if (img.src) fetch(img.src).then((r) => r.blob()).then((b) => saveBlob(b, `tlgan-strip-${stripKnob}-${state.seed}.png`));
    });
  }
  return stripEl;
}

async function fetchStrip() {
  const name = stripKnob;
  const s = clone(state);
  try {
    const res = await post("api/strip", body(s, { knob: name, span: STRIP_SPAN, steps: STRIP_STEPS, size: 96 }));
    const blob = await res.blob();
    if (name !== stripKnob || keyOf(s) !== keyOf(state)) return;
    const img = stripEl.querySelector(".strip-img");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.alt = `${label(name)} from ${MINUS}${STRIP_SPAN}σ to +${STRIP_SPAN}σ, ${STRIP_STEPS} pictures`;
    img.dataset.values = res.headers.get("X-Strip-Values");
    showStripStops(JSON.parse(res.headers.get("X-Strip-Stops") || "[]"));
    placeStripMarker();
  } catch (err) {
    showError(err.message);
  }
}

// Exact mode never fails silently: pictures whose move ended short say so under the strip.
function showStripStops(stops) {
  const el = stripEl.querySelector(".strip-stops");
  el.hidden = !stops.length;
  // one line: which pictures, and the first one's reason (the others' differ only in their numbers)
  el.textContent = stops.length
    ? `Exact mode could not reach ${stops.map((s) => fmt(s.value)).join(", ")}; those pictures show how far ` +
      `it got. At ${fmt(stops[0].value)}: ${stops[0].message}`
    : "";
  el.title = stops.map((s) => `${fmt(s.value)}: ${s.message}`).join("\n");
  if (stops.length) announce(el.textContent);  // through the page's one live region
}

function placeStripMarker() {
  if (!stripEl || !values) return;
  const v = values[knobIndex(stripKnob)];
  const marker = stripEl.querySelector(".strip-marker");
  marker.hidden = beyond(v, STRIP_SPAN);
  // tile i's centre sits at (i + 0.5) / steps of the width; value −span maps to tile 0's centre
  const at = (0.5 + ((v + STRIP_SPAN) / (2 * STRIP_SPAN)) * (STRIP_STEPS - 1)) / STRIP_STEPS;
  marker.style.left = `${(at * 100).toFixed(2)}%`;
}

function openStrip(name) {
  const el = stripElement();
  stripKnob = name;
  el.querySelector(".strip-title").textContent = `${label(name)} from ${MINUS}${STRIP_SPAN}σ to +${STRIP_SPAN}σ`;
  const scale = el.querySelector(".strip-scale");
  scale.replaceChildren();
  for (let i = 0; i < STRIP_STEPS; i++) {
    const v = -STRIP_SPAN + (2 * STRIP_SPAN * i) / (STRIP_STEPS - 1);
    const tick = document.createElement("span");
    tick.textContent = v === 0 ? "0" : (v > 0 ? "+" : MINUS) + Math.abs(v) + "σ";
    tick.style.left = `${(((i + 0.5) / STRIP_STEPS) * 100).toFixed(2)}%`;
    scale.append(tick);
  }
  rows.get(name).row.after(el);      // below its own knob: it opens where the user is looking
  el.querySelector(".strip-img").removeAttribute("src");
  placeStripMarker();
  el.scrollIntoView({ block: "nearest" });
  fetchStrip();
}

function closeStrip() {
  const name = stripKnob;
  stripKnob = null;
  if (stripEl) stripEl.remove();
  if (name) rows.get(name).strip.focus();
}

function stripClick(ev) {
  const img = ev.currentTarget;
  if (!stripKnob || !img.dataset.values) return;
  const stops = JSON.parse(img.dataset.values);
  const box = img.getBoundingClientRect();
  const i = Math.min(stops.length - 1, Math.max(0, Math.floor(((ev.clientX - box.left) / box.width) * stops.length)));
  typeKnob(stripKnob, stops[i]);
}

// ---------------------------------------------------------------- gallery, help
// The gallery: twelve random faces to start from, or twelve variations of this face (each a few random
// knob moves, so picking one just adds its edits: it stays a link like any other state).
async function fillGallery(variations = false) {
  const grid = $("gallery-grid");
  grid.replaceChildren();
  $("gallery-title").textContent = variations ? `Variations of face #${state.seed}` : "Pick a starting face";
  const base = clone(state);
  const movable = model.knobs.filter((k) => k.shown && !base.locks.includes(k.name)).map((k) => k.name);
  const known = values && lastGood && keyOf(lastGood) === keyOf(base);
  const choices = Array.from({ length: GALLERY_COUNT }, () => {
    if (!variations || !known || !movable.length) return freshState(randomSeed(), []);
    const s = clone(base);
    const picked = [...movable].sort(() => Math.random() - 0.5).slice(0, 3);
    for (const name of picked) {
      const now = values[knobIndex(name)];
      const move = (0.6 + Math.random()) * (Math.random() < 0.5 ? -1 : 1);
      const value = Math.round(Math.max(-model.slider_range, Math.min(model.slider_range, now + move)) * 100) / 100;
      s.edits.push({ op: "set", knob: name, value, locks: [...s.locks] });
    }
    return s;
  });
  choices.forEach((s, i) => {
    const added = s.edits.slice(base.edits.length);
    const what = variations && known ? added.map((e) => `${label(e.knob)} ${fmt(e.value)}`).join(", ") : `face #${s.seed}`;
    const button = el("button", { type: "button", className: "thumb", title: variations ? `Use: ${what}` : `Start from face #${s.seed}` },
      el("img", { alt: what, width: 128, height: 128 }));
    button.dataset.seed = String(s.seed);
    button.dataset.index = String(i);
    button.addEventListener("click", () => {
      closeGallery();
      if (variations && known) {
        pushHistory();
        state.edits.push(...added);
        expected = new Map();
        commit();
      } else {
        newFace(s.seed);
      }
    });
    grid.append(button);
  });
  // Sent together: the server renders them in one batch.
  await Promise.all(choices.map(async (s, i) => {
    try {
      const res = await post("api/render", body(s, { format: "png", size: 128 }));
      grid.children[i].firstChild.src = URL.createObjectURL(await res.blob());
    } catch (err) {
      showError(err.message);
    }
  }));
}

function openGallery() {
  closeHelp();
  closeSaved();
  $("gallery").hidden = false;
  $("gallery-toggle").setAttribute("aria-expanded", "true");
  fillGallery(false);
  const first = $("gallery-grid").querySelector("button");
  (first || $("gallery")).focus();
}

function closeGallery() {
  if ($("gallery").hidden) return;
  $("gallery").hidden = true;
  $("gallery-toggle").setAttribute("aria-expanded", "false");
  for (const img of $("gallery-grid").querySelectorAll("img")) if (img.src) URL.revokeObjectURL(img.src);
  $("gallery-toggle").focus();
}

function openHelp() {
  closeGallery();
  closeSaved();
  $("help").hidden = false;
  $("help-toggle").setAttribute("aria-expanded", "true");
  $("help").focus();
}

function closeHelp() {
  if ($("help").hidden) return;
  $("help").hidden = true;
  $("help-toggle").setAttribute("aria-expanded", "false");
  $("help-toggle").focus();
}

// ---------------------------------------------------------------- saved faces: favourites, history, session files
const STORE = { favourites: "tlgan.favourites", history: "tlgan.history" };
const HISTORY_LENGTH = 30;

function stored(key) {
  try {
    const list = JSON.parse(localStorage.getItem(key) || "[]");
    return Array.isArray(list) ? list.filter((x) => x && typeof x.hash === "string" && x.hash.startsWith("#seed=")) : [];
  } catch (_) {
    return [];
  }
}

function store(key, list) {
  try {
    localStorage.setItem(key, JSON.stringify(list));
  } catch (_) { /* storage full or off: the lists are a convenience */ }
}

function remember(key, s, limit = 200) {
  const hash = encodeHash(s);
  const list = stored(key).filter((x) => x.hash !== hash);
  list.unshift({ hash, seed: s.seed, edits: s.edits.length, at: new Date().toISOString().slice(0, 16) });
  store(key, list.slice(0, limit));
}

function fillList(key, id) {
  const list = $(id);
  list.replaceChildren();
  for (const item of stored(key)) {
    const link = el("a", { href: item.hash, textContent: `face #${item.seed}` + (item.edits ? ` · ${item.edits} edit${item.edits > 1 ? "s" : ""}` : "") });
    link.addEventListener("click", () => closeSaved());
    const entry = el("li", {}, link);
    if (key === STORE.favourites) {
      const remove = el("button", { type: "button", textContent: "remove" });
      remove.setAttribute("aria-label", `remove face #${item.seed} from favourites`);
      remove.addEventListener("click", () => {
        store(key, stored(key).filter((x) => x.hash !== item.hash));
        fillList(key, id);
      });
      entry.append(remove);
    }
    list.append(entry);
  }
}

function openSaved() {
  closeGallery();
  closeHelp();
  fillList(STORE.favourites, "favourites");
  fillList(STORE.history, "history");
  $("saved").hidden = false;
  $("saved-toggle").setAttribute("aria-expanded", "true");
  $("fav-add").focus();
}

function closeSaved() {
  if ($("saved").hidden) return;
  $("saved").hidden = true;
  $("saved-toggle").setAttribute("aria-expanded", "false");
  $("saved-toggle").focus();
}

function saveSession() {
  const data = { format: "tlgan.session", version: 1, ...clone(state), link: location.href };
  saveBlob(new Blob([JSON.stringify(data, null, 1)], { type: "application/json" }), `tlgan-session-${state.seed}.json`);
}

async function loadSession(file) {
  let s;
  try {
    const data = JSON.parse(await file.text());
    if (!data || data.format !== "tlgan.session") throw new Error("it is not a tlgan session file");
    // the fields go through the link format, so a session is checked exactly as a link is
    s = decodeHash(encodeHash({ ...data, seed: data.seed, edits: Array.isArray(data.edits) ? data.edits : [],
      locks: Array.isArray(data.locks) ? data.locks.map(String) : [] }));
  } catch (err) {
    return showError(`Cannot load ${file.name}: ${err.message}`);
  }
  closeSaved();
  clearError();
  s = await loadState(s);
  pushHistory();
  state = s;
  expected = new Map();
  commit();
  toast(`Loaded ${file.name}`);
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
  const rect = document.createElementNS(SVG_NS, "rect");
  rect.setAttribute("x", "2.5"); rect.setAttribute("y", "7"); rect.setAttribute("width", "11");
  rect.setAttribute("height", "8"); rect.setAttribute("rx", "1.5");
  svg.append(shackle, rect);
  return svg;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

// R² shown with enough digits that the figure agrees with the weak mark (0.2987 is 0.299, not 0.30).
function fmtR2(r2) {
  let text = r2.toFixed(2);
  if ((Number(text) < model.weak_r2) !== (r2 < model.weak_r2)) text = r2.toFixed(3);
  return text;
}

function knobRow(k) {
  const id = `knob-${knobIndex(k.name)}`;
  const lock = el("button", { type: "button", className: "lock" }, padlock());
  lock.setAttribute("aria-label", `lock ${k.label}`);
  const quality = k.r2 === null ? "held-out R² unknown" : `held-out R² ${fmtR2(k.r2)}`;
  const nameLabel = el("label", { htmlFor: id, textContent: k.label });
  const name = el("div", { className: "name" }, nameLabel);
  name.title = (k.description ? k.description + " — " : "") + quality;
  if (k.weak) {
    name.append(" ", el("span", { className: "weak", textContent: "weak", title: `${quality}: this knob follows its feature only loosely` }));
  }
  if (k.r2 !== null) {
    const bar = el("span", { className: "quality", title: `${quality} (fit on held-out faces)` }, el("span"));
    bar.firstChild.style.width = `${Math.max(0, Math.min(1, k.r2)) * 100}%`;
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", `${k.label}: ${quality}`);
    name.append(bar);
  }
  const slider = el("input", { type: "range", id, min: String(-model.slider_range), max: String(model.slider_range), step: "0.01", value: "0" });
  const minus = el("button", { type: "button", className: "step minus", textContent: MINUS });
  minus.setAttribute("aria-label", `decrease ${k.label} by ${model.step}σ`);
  const plus = el("button", { type: "button", className: "step plus", textContent: "+" });
  plus.setAttribute("aria-label", `increase ${k.label} by ${model.step}σ`);
  const value = el("input", { type: "text", className: "value", value: "", autocomplete: "off", spellcheck: false });
  value.inputMode = "decimal";
  value.setAttribute("aria-label", `${k.label} value in σ (type a number and press Enter)`);
  const valueBox = el("span", { className: "value-box" }, value, el("span", { textContent: "σ", ariaHidden: "true" }));
  const reading = el("span", { className: "reading", textContent: "" });
  const strip = el("button", { type: "button", className: "strip-btn", title: `${k.label} from −3σ to +3σ` },
    "strip", el("span", { className: "sr", textContent: ` for ${k.label}` }));
  const row = el("div", { className: "knob" + (k.weak ? " is-weak" : "") }, lock, name, valueBox, reading, minus, slider, plus, strip);
  row.dataset.knob = k.name;

  lock.addEventListener("click", () => toggleLock(k.name));
  minus.addEventListener("click", () => stepKnob(k.name, -model.step));
  plus.addEventListener("click", () => stepKnob(k.name, model.step));
  strip.addEventListener("click", () => openStrip(k.name));
  value.addEventListener("focus", () => value.select());
  value.addEventListener("change", () => {
    const v = parseNumber(value.value);
    typeKnob(k.name, v);
    if ((!Number.isFinite(v) || beyond(v, model.slider_range)) && values) {   // refused: show the value again
      value.value = fmt(values[knobIndex(k.name)]).slice(0, -1);
      value.select();
    }
  });
  value.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { value.blur(); updateValues(); }
  });
  value.addEventListener("blur", () => updateValues());
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
    lastKnob = k.name;
    for (const r of rows.values()) r.row.classList.toggle("focused", r.row === row);
  });
  rows.set(k.name, { row, slider, value, reading, lock, minus, plus, strip });
  return row;
}

function buildKnobs() {
  const container = $("knobs");
  container.replaceChildren();
  rows.clear();
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

// ---------------------------------------------------------------- trust: what else each knob moves
async function fetchLeaks(tries = 0) {
  let data;
  try {
    data = await (await fetch("api/leaks")).json();
  } catch (_) {
    return;
  }
  if (data.status === "computing" && tries < 120) {
    setTimeout(() => fetchLeaks(tries + 1), 5000);
    return;
  }
  if (data.status !== "ready") return;
  const name = (f) => (knobIndex(f) >= 0 ? label(f) : f.replace(/_/g, " "));
  for (const [knob, leaks] of Object.entries(data.leaks)) {
    const r = rows.get(knob);
    if (!r) continue;
    let line = r.row.querySelector(".drags");
    if (!line) line = r.row.appendChild(el("span", { className: "drags" }));
    line.textContent = leaks.length
      ? "also moves " + leaks.slice(0, 2).map((l) => `${name(l.feature)} ${l.effect > 0 ? "+" : MINUS}${Math.abs(l.effect).toFixed(1)}`).join(", ")
      : "moves little else";
    line.title = `per σ of this knob, in standard deviations of each feature, measured on ${data.faces} fresh faces: ` +
      (leaks.map((l) => `${name(l.feature)} ${fmtNumber(l.effect)}`).join(", ") || "no other feature moves by 0.1 or more");
  }
}

// ---------------------------------------------------------------- keyboard
function onKey(ev) {
  if (ev.key === "Escape") {
    if (!$("gallery").hidden) return closeGallery();
    if (!$("help").hidden) return closeHelp();
    if (!$("saved").hidden) return closeSaved();
    if (stripKnob && stripEl && stripEl.contains(document.activeElement)) return closeStrip();
    if (!$("error").hidden) return clearError();
    return;
  }
  if (ev.target.matches && ev.target.matches("input[type=text], textarea, select")) return;
  const mod = ev.ctrlKey || ev.metaKey;
  if (mod && ev.key.toLowerCase() === "z") {
    ev.preventDefault();
    return ev.shiftKey ? redo() : undo();
  }
  if (mod && ev.key.toLowerCase() === "y") {
    ev.preventDefault();
    return redo();
  }
  if (mod || ev.altKey) return;
  const row = ev.target.closest ? ev.target.closest(".knob") : null;
  const knob = row ? row.dataset.knob : null;
  if (knob && ["ArrowLeft", "ArrowDown", "ArrowRight", "ArrowUp"].includes(ev.key)) {
    ev.preventDefault();   // the slider's own 0.01 step is replaced by the knob step
    stepKnob(knob, ev.key === "ArrowRight" || ev.key === "ArrowUp" ? model.step : -model.step);
  } else if (ev.key === "r") {
    ev.preventDefault();
    newFace(randomSeed());
  } else if (ev.key === "l" && knob) {   // only the knob that has the focus, never one off-screen
    ev.preventDefault();
    toggleLock(knob);
  } else if (ev.key === "o" && knob) {
    ev.preventDefault();
    lockOthers(knob);
  } else if (ev.key === "b" && !ev.repeat) {
    showBefore(true);
  }
}

function onKeyUp(ev) {
  if (ev.key === "b") showBefore(false);
}

// ---------------------------------------------------------------- loading a link
// A link the page cannot show as it is (unknown knobs, values out of range, a move of a locked knob,
// made with other axes) keeps what replays, drops the rest, and says what was dropped.
async function loadState(s) {
  const dropped = [];
  const known = new Set(model.knobs.map((k) => k.name));
  known.add(IDENTITY);   // keep the person (a knob of that name, if any, is the knob)
  const unknownLocks = s.locks.filter((k) => !known.has(k));
  if (unknownLocks.length) dropped.push(`unknown lock${unknownLocks.length > 1 ? "s" : ""} ${unknownLocks.join(", ")}`);
  s.locks = s.locks.filter((k) => known.has(k));
  let keep = s.edits.findIndex((e, i) => i >= model.limits.max_edits || beyond(e.value, model.max_value));
  let reason = keep >= 0 ? (keep >= model.limits.max_edits ? `more than ${model.limits.max_edits} edits`
    : `${e2s(s.edits[keep])} is outside ±${model.max_value}σ`) : null;
  if (keep < 0) keep = s.edits.length;
  try {
    const res = await post("api/check", body({ ...s, edits: s.edits.slice(0, keep) }));
    const check = await res.json();
    if (check.valid_edits < keep) {
      reason = check.detail;
      keep = check.valid_edits;
    }
  } catch (err) {
    reason = err.message;
    keep = 0;
  }
  if (keep < s.edits.length) {
    const n = s.edits.length - keep;
    dropped.unshift(`${n === 1 ? "edit" : `${n} edits from`} ${e2s(s.edits[keep])}${n > 1 ? " on" : ""} (${reason})`);
    s.edits = s.edits.slice(0, keep);
  }
  if (dropped.length) {
    showError(`This link could not be shown whole; dropped ${dropped.join("; ")}. ` +
      (s.edits.length ? `Showing the ${s.edits.length} edit${s.edits.length > 1 ? "s" : ""} before.` : `Showing face #${s.seed} as it is.`));
  }
  return s;
}

const e2s = (e) => `${e.op === "set" ? "set" : "step"} ${e.knob} ${e.op === "set" ? "to" : "by"} ${e.value}σ`;

async function stateFromHash() {
  if (location.hash.length > 1) {
    let s;
    try {
      s = decodeHash(location.hash);
    } catch (err) {
      const seed = /(?:^#|&)seed=(\d{1,15})(?:&|$)/.exec(location.hash);
      showError(`This link is malformed (${err.message}); showing ${seed ? `face #${seed[1]} as it is` : "a random face"} instead.`);
      return freshState(seed ? Number(seed[1]) : randomSeed());
    }
    return loadState(s);
  }
  return freshState(randomSeed());
}

async function onHashChange() {
  if (location.hash === encodeHash(state)) return;
  document.body.dataset.idle = "false";   // busy until the new link's frame is shown
  clearError();
  const s = await stateFromHash();
  pushHistory();
  state = s;
  expected = new Map();
  writeHash();
  updateLocks();
  requestFrame();
}

// ---------------------------------------------------------------- start
function trackBarHeight() {
  const bar = document.querySelector(".bar");
  const set = () => document.documentElement.style.setProperty("--bar-h", `${bar.offsetHeight}px`);
  new ResizeObserver(set).observe(bar);
  set();
}

async function start() {
  trackBarHeight();
  $("random").addEventListener("click", () => newFace(randomSeed()));
  $("reset").addEventListener("click", reset);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("download").addEventListener("click", download);
  $("share").addEventListener("click", share);
  $("error-close").addEventListener("click", clearError);
  $("lock-others").addEventListener("click", () => lockOthers(lastKnob));
  $("keep-person").addEventListener("change", toggleKeepPerson);
  $("exact").addEventListener("change", () => {
    pushHistory();
    state.exact = $("exact").checked;
    expected = new Map();  // the values shown change meaning (σ or standardised reading)
    commit();
  });
  $("gallery-toggle").addEventListener("click", () => ($("gallery").hidden ? openGallery() : closeGallery()));
  $("gallery-more").addEventListener("click", () => fillGallery(false));
  $("gallery-variations").addEventListener("click", () => fillGallery(true));
  $("gallery-close").addEventListener("click", closeGallery);
  $("help-toggle").addEventListener("click", () => ($("help").hidden ? openHelp() : closeHelp()));
  $("help-close").addEventListener("click", closeHelp);
  $("saved-toggle").addEventListener("click", () => ($("saved").hidden ? openSaved() : closeSaved()));
  $("saved-close").addEventListener("click", closeSaved);
  $("fav-add").addEventListener("click", () => {
    remember(STORE.favourites, state);
    fillList(STORE.favourites, "favourites");
    toast(`Face #${state.seed} added to favourites`);
  });
  $("session-save").addEventListener("click", saveSession);
  $("session-load").addEventListener("change", (ev) => {
    if (ev.target.files.length) loadSession(ev.target.files[0]);
    ev.target.value = "";
  });
  const compare = $("compare");
  compare.addEventListener("pointerdown", () => showBefore(true));
  for (const type of ["pointerup", "pointerleave", "pointercancel"]) compare.addEventListener(type, () => showBefore(false));
  compare.addEventListener("keydown", (ev) => { if (ev.key === " " || ev.key === "Enter") showBefore(true); });
  compare.addEventListener("keyup", () => showBefore(false));
  $("split").addEventListener("change", () => setSplit($("split").checked));
  $("mix-t").addEventListener("input", () => {
    setMix(Number($("mix-t").value), !mixDragging);
    mixDragging = true;
  });
  $("mix-t").addEventListener("change", () => { mixDragging = false; updateMix(); });
  $("mix-seed").addEventListener("change", () => { if (state.mix) setMix(state.mix.t, true); });
  $("seed-input").addEventListener("change", () => {
    const text = $("seed-input").value.trim();
    if (!/^\d{1,15}$/.test(text) || !Number.isSafeInteger(Number(text))) {
      showError("The seed must be a whole number (0 or more)");
      $("seed-input").value = String(state.seed);
  updateMix();
      return;
    }
    if (Number(text) !== state.seed) newFace(Number(text));
  });
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", onKeyUp);
  window.addEventListener("hashchange", onHashChange);

  try {
    await fetchModel();
  } catch (err) {
    showError(`Cannot load the model: ${err.message}`);
    return;
  }
  document.title = model.title;
  $("title").textContent = model.title;
  $("face").width = $("face").height = model.image_size;
  document.documentElement.style.setProperty("--face-max", `${model.image_size}px`);
  buildKnobs();
  if (model.report) {
    for (const where of [$("legend"), $("help")]) {
      where.append(" ", el("a", { href: model.report, target: "_blank", rel: "noopener", textContent: "Evaluation report" }),
        " (how well each knob does on fresh faces).");
    }
  }
  fetchLeaks();
  if (model.sets && model.sets.length > 1) {   // several knob sets: switch, keeping the face
    const select = $("knob-set");
    for (const set of model.sets) select.append(el("option", { value: set.url, textContent: set.name, selected: set.name === model.set }));
    select.addEventListener("change", () => { location.href = new URL(select.value, location.origin).href + encodeHash(state); });
    $("set-box").hidden = false;
  }
  try {
    for (const hook of startHooks) await hook(model);
  } catch (err) {
    showError(err.message);
  }
  state = await stateFromHash();
  $("mix-seed").value = String(state.mix ? state.mix.seed : (state.seed + 1) % 2147483647);
  writeHash();
  updateLocks();
  requestFrame();
  document.body.dataset.ready = "true";
}

async function fetchModel() {
  const res = await fetch("api/model");
  if (!res.ok) throw await apiError(res);
  model = await res.json();
}

// After the server's knob set changed (e.g. a knob was taught or deleted): rebuild the rows; the state
// drops the knobs that are gone, and undo starts afresh (old states may name them).
async function reloadModel() {
  await fetchModel();
  stripKnob = null;
  if (stripEl) stripEl.remove();
  buildKnobs();
  fetchLeaks();
  if (document.body.dataset.ready !== "true") return;   // start() loads the state next
  const names = new Set([...model.knobs.map((k) => k.name), IDENTITY]);
  const keep = (list) => list.filter((n) => names.has(n));
  state = { ...clone(state), edits: state.edits.filter((e) => names.has(e.knob)).map((e) => ({ ...e, locks: keep(e.locks) })),
            locks: keep(state.locks) };
  undoStack = [];
  redoStack = [];
  values = null;
  expected = new Map();
  commit();
}

// ---------------------------------------------------------------- for other scripts
const startHooks = [];
window.tlgan = {
  // Say something to screen readers through the page's one live region.
  announce,
  // A state field carried in the link (name=format(value)) and sent with every request.
  addStateField(name, { parse, format, initial }) {
    extraFields.set(name, { parse, format, initial });
    if (!(name in state)) state[name] = initial;
  },
  get model() { return model; },
  get state() { return clone(state); },
  // Change the state as one undoable step: fn gets a copy and returns the new state.
  change(fn) {
    pushHistory();
    state = fn(clone(state));
    expected = new Map();
    commit();
  },
  // A part of the link made from the state ("name=value", or "" for none); not sent with requests.
  addLinkPart(fn) { linkParts.push(fn); },
  onStart(fn) { startHooks.push(fn); },   // fn(model) before the link's state loads; may return a promise
  onFrame(fn) { frameHooks.push(fn); },
  post, apiError, showError, clearError, toast, newFace, el, reloadModel,
};

document.addEventListener("DOMContentLoaded", start);  // after every deferred script: add-ons are registered
