// tlgan teaching panel: "New knob" -> a name -> pages of faces to click (has it / doesn't / skip).
// After each page the knob is refitted on the server (POST /api/knobs, as a draft), the next page comes from
// POST /api/knobs/suggest (the faces the fit is least sure about, plus some random ones), and strips show what
// the knob does. "Save knob" writes it to the server's knob library; it then sits among the others (group "taught").
// Links that use a taught knob carry its code (taught=name:code), so they open on servers that never saw it.
"use strict";

(() => {
  const PAGE_SIZE = 16;
  const FACE_SIZE = 160;
  const STRIP_FACES = 3;
  const STRIP_STEPS = 5;
  const MARKS = { "": "not marked", 1: "has it", 0: "doesn't have it" };

  let page = null;             // app.js's add-on API (window.tlgan)
  let taught = new Map();      // name -> knob from GET /api/knobs (with its code)
  let rules = { min_labels: 10, min_per_class: 3 };
  let session = null;          // the knob being taught

  const $ = (id) => document.getElementById(id);
  const byId = (id) => $(id);

  async function refreshTaught() {
    const res = await fetch("api/knobs");
    if (!res.ok) throw await page.apiError(res);
    const data = await res.json();
    rules = data;
    taught = new Map(data.knobs.map((k) => [k.name, k]));
    return data;
  }

  // ---------------------------------------------------------------- links
  function usedKnobs(s) {
    const names = new Set(s.locks);
    for (const e of s.edits) { names.add(e.knob); for (const l of e.locks) names.add(l); }
    return [...names].filter((n) => taught.has(n)).sort();
  }

  function linkPart(s) {
    const used = usedKnobs(s);
    return used.length ? "taught=" + used.map((n) => `${encodeURIComponent(n)}:${taught.get(n).code}`).join(",") : "";
  }

  function linkKnobs() {
    const part = location.hash.replace(/^#/, "").split("&").find((p) => p.startsWith("taught="));
    if (!part) return [];
    return part.slice(7).split(",").filter(Boolean).map((item) => {
      const at = item.indexOf(":");
      return { name: decodeURIComponent(item.slice(0, at)), code: item.slice(at + 1) };
    });
  }

  function dropFromHash(bad) {   // the link's edits and locks without the knobs this server cannot use
    const names = (text) => text.split(",").filter((n) => n && !bad.has(decodeURIComponent(n))).join(",");
    const parts = location.hash.replace(/^#/, "").split("&").filter((p) => !p.startsWith("taught=")).map((p) => {
      if (p.startsWith("locks=")) return "locks=" + names(p.slice(6));
      if (!p.startsWith("edits=")) return p;
      const edits = p.slice(6).split(";").filter((item) => !bad.has(decodeURIComponent(item.split(":")[1] || "")))
        .map((item) => { const f = item.split(":"); if (f.length === 4) f[3] = names(f[3]); return f.join(":"); });
      return "edits=" + edits.join(";");
    });
    history.replaceState(null, "", "#" + parts.filter((p) => !/^(edits|locks)=$/.test(p)).join("&"));
  }

  async function registerLinkKnobs() {
    let added = false;
    const bad = new Set();
    for (const { name, code } of linkKnobs()) {
      if (taught.has(name) && taught.get(name).code === code) continue;
      try {
        await page.post("api/knobs/shared", { name, code });
        added = true;
      } catch (err) {
        bad.add(name);
        page.showError(`This link uses the taught knob '${name}', which this server cannot use: ${err.message} ` +
                       "The face is shown without that knob's edits.");
      }
    }
    if (bad.size) dropFromHash(bad);
    if (added) {
      await refreshTaught();
      await page.reloadModel();
    }
  }

  // ---------------------------------------------------------------- the panel
  function build() {
    const el = page.el;
    const open = el("button", { type: "button", id: "teach-open", textContent: "New knob",
      title: "Teach a knob for something the extractors cannot read, by clicking faces" });
    open.addEventListener("click", openPanel);
    document.querySelector(".actions").append(open);

    const panel = el("section", { id: "teach", className: "teach", hidden: true });
    panel.setAttribute("aria-label", "Teach a knob");
    panel.innerHTML = `
      <div class="teach-head">
        <h2 id="teach-title">Teach a knob</h2>
        <button id="teach-close" type="button">Close</button>
      </div>
      <form id="teach-name-form" class="teach-name">
        <label for="teach-name">Name of the new knob</label>
        <input id="teach-name" type="text" maxlength="64" placeholder="e.g. glasses" autocomplete="off">
        <button id="teach-start" type="submit">Start</button>
        <p class="hint">Letters, digits, '_', '.', '-'. You will see pages of ${PAGE_SIZE} faces: click each one that
          has the feature once (green), twice if it clearly doesn't (red); leave it unmarked to skip it.</p>
        <div id="teach-library" class="teach-library"></div>
      </form>
      <div id="teach-work" class="teach-work" hidden>
        <div class="teach-status">
          <p id="teach-counts"></p>
          <p id="teach-accuracy"></p>
          <svg id="teach-chart" class="teach-chart" viewBox="0 0 200 60" aria-label="cross-validated accuracy by labels"></svg>
        </div>
        <div class="teach-tools">
          <button id="teach-rest-no" type="button" title="Mark every unmarked face on this page as not having it">Rest: doesn't</button>
          <button id="teach-rest-yes" type="button" title="Mark every unmarked face on this page as having it">Rest: has it</button>
          <button id="teach-next" type="button">Next page</button>
          <button id="teach-save" type="button" disabled>Save knob</button>
          <button id="teach-cancel" type="button">Discard</button>
        </div>
        <p id="teach-busy" class="hint teach-busy"></p>
        <div id="teach-grid" class="teach-grid"></div>
        <section id="teach-strips" class="teach-strips" hidden>
          <h3 id="teach-strips-title">What the knob does so far</h3>
          <div id="teach-strip-list"></div>
        </section>
      </div>`;
    document.querySelector("main").before(panel);   // in the page's flow, so the error banner stays above it
    byId("teach-close").addEventListener("click", closePanel);
    byId("teach-name-form").addEventListener("submit", (ev) => { ev.preventDefault(); startSession(); });
    byId("teach-next").addEventListener("click", () => nextPage());
    byId("teach-save").addEventListener("click", save);
    byId("teach-cancel").addEventListener("click", discard);
    byId("teach-rest-no").addEventListener("click", () => markRest(0));
    byId("teach-rest-yes").addEventListener("click", () => markRest(1));
  }

  function openPanel() {
    byId("teach").hidden = false;
    document.body.classList.add("teaching");
    if (!session) {
      byId("teach-name-form").hidden = false;
      byId("teach-work").hidden = true;
      byId("teach-title").textContent = "Teach a knob";
      byId("teach-name").value = "";
      byId("teach-name").focus();
      showLibrary();
    }
  }

  function closePanel() {
    byId("teach").hidden = true;
    document.body.classList.remove("teaching");
  }

  function showLibrary() {
    const box = byId("teach-library");
    box.replaceChildren();
    if (!taught.size) return;
    box.append(page.el("h3", { textContent: "Taught knobs" }));
    for (const k of taught.values()) {
      const acc = k.cv_accuracy === null || k.cv_accuracy === undefined ? "" : ` · cv accuracy ${k.cv_accuracy.toFixed(2)}`;
      const what = k.status === "shared" ? "from a shared link" : `${k.labels} labels${acc}`;
      const row = page.el("div", { className: "teach-knob" }, page.el("span", { textContent: `${k.label} (${what})` }));
      row.dataset.knob = k.name;
      if (k.status !== "shared") {
        const more = page.el("button", { type: "button", className: "teach-more", textContent: "Teach more" });
        more.addEventListener("click", () => extend(k.name));
        row.append(more);
      }
      const del = page.el("button", { type: "button", className: "teach-delete", textContent: "Delete" });
      del.addEventListener("click", () => remove(k.name));
      row.append(del);
      box.append(row);
    }
  }

  // ---------------------------------------------------------------- a teaching session
  function checkName(name) {
    if (!name) return "give the knob a name";
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(name)) return "use letters, digits, '_', '.' or '-' (not starting with '.' or '-')";
    if (page.model.knobs.some((k) => k.name === name)) return `there is already a knob '${name}'`;
    return null;
  }

  function startSession() {
    const name = byId("teach-name").value.trim();
    const problem = checkName(name);
    if (problem) return page.showError(problem);
    page.clearError();
    begin({ name, labels: [], history: [], created: false, saved: false, pool: Math.floor(Math.random() * 100000), stripSeeds: [] });
  }

  async function extend(name) {
    try {
      const res = await fetch(`api/knobs/${encodeURIComponent(name)}`);
      if (!res.ok) throw await page.apiError(res);
      const knob = await res.json();
      begin({ name, labels: knob.examples, history: knob.history, created: true, saved: knob.status === "saved", pool: Math.floor(Math.random() * 100000),
              stripSeeds: knob.examples.slice(0, STRIP_FACES).map((e) => e.seed), cv: knob.cv_accuracy });
    } catch (err) {
      page.showError(err.message);
    }
  }

  function begin(s) {
    session = s;
    byId("teach-name-form").hidden = true;
    byId("teach-work").hidden = false;
    byId("teach-title").textContent = `Teaching '${s.name}'`;
    byId("teach-save").disabled = !s.created;
    showProgress();
    if (s.created) showStrips();
    loadPage();
  }

  async function loadPage() {
    const grid = byId("teach-grid");
    grid.replaceChildren();
    grid.dataset.ready = "false";
    busy("Choosing the faces to show next…");
    let seeds;
    try {
      const res = await page.post("api/knobs/suggest", { labels: session.labels, count: PAGE_SIZE, pool: session.pool });
      seeds = (await res.json()).seeds;
    } catch (err) {
      page.showError(err.message);
      return;
    } finally {
      busy("");
    }
    if (!session.stripSeeds.length) session.stripSeeds = seeds.slice(0, STRIP_FACES);
    for (const seed of seeds) {
      const img = page.el("img", { alt: `face #${seed}`, width: FACE_SIZE, height: FACE_SIZE });
      const tile = page.el("button", { type: "button", className: "teach-face", title: `face #${seed}: not marked` }, img);
      tile.dataset.seed = String(seed);
      tile.dataset.mark = "";
      tile.addEventListener("click", () => cycle(tile));
      grid.append(tile);
    }
    await Promise.all(seeds.map(async (seed, i) => {
      try {
        const res = await page.post("api/render", { seed, edits: [], locks: [], format: "png", size: FACE_SIZE });
        grid.children[i].firstChild.src = URL.createObjectURL(await res.blob());
      } catch (err) {
        page.showError(err.message);
      }
    }));
    grid.dataset.ready = "true";
  }

  function busy(text) {   // what the panel is waiting for (the first fit of a server renders 2,000 faces to learn from)
    const grid = byId("teach-grid");
    byId("teach-busy").textContent = text;
    grid.setAttribute("aria-busy", text ? "true" : "false");
    grid.classList.toggle("busy", Boolean(text));   // marks made now would be lost: the answers were sent
    if (text) grid.dataset.ready = "false";
  }

  function setMark(tile, mark) {
    tile.dataset.mark = mark;
    tile.title = `face #${tile.dataset.seed}: ${MARKS[mark]}`;
    tile.setAttribute("aria-pressed", mark === "" ? "false" : "true");
  }

  function cycle(tile) {   // unmarked -> has it -> doesn't -> unmarked
    setMark(tile, { "": "1", 1: "0", 0: "" }[tile.dataset.mark]);
    showProgress();
  }

  function markRest(label) {
    for (const tile of byId("teach-grid").children) if (tile.dataset.mark === "") setMark(tile, String(label));
    showProgress();
  }

  function pageLabels() {
    return [...byId("teach-grid").children].filter((t) => t.dataset.mark !== "")
      .map((t) => ({ seed: Number(t.dataset.seed), label: Number(t.dataset.mark) }));
  }

  function allLabels() {
    const onPage = pageLabels();
    const seen = new Set(onPage.map((l) => l.seed));
    return [...session.labels.filter((l) => !seen.has(l.seed)), ...onPage];
  }

  function enough(labels) {
    const ones = labels.filter((l) => l.label === 1).length;
    return labels.length >= rules.min_labels && Math.min(ones, labels.length - ones) >= rules.min_per_class;
  }

  function showProgress() {
    const labels = allLabels();
    const ones = labels.filter((l) => l.label === 1).length;
    let text = `${labels.length} faces labelled: ${ones} have it, ${labels.length - ones} don't.`;
    if (!enough(labels)) {
      text += ` A knob needs at least ${rules.min_labels}, with ${rules.min_per_class} of each.`;
    }
    byId("teach-counts").textContent = text;
    const h = session.history;
    byId("teach-accuracy").textContent = h.length
      ? "Cross-validated accuracy: " + h.map(([n, a]) => `${a.toFixed(2)} (${n} labels)`).join(" → ")
      : "Cross-validated accuracy: after the first fit.";
    drawChart(h);
  }

  function drawChart(history) {
    const svg = byId("teach-chart");
    svg.replaceChildren();
    if (!history.length) return;
    const NS = "http://www.w3.org/2000/svg";
    const maxN = Math.max(...history.map(([n]) => n), 1);
    const pts = history.map(([n, a]) => [20 + 175 * (n / maxN), 55 - 50 * Math.max(0, (a - 0.5) / 0.5)]);
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts.map((p) => p.join(",")).join(" "));
    const base = document.createElementNS(NS, "line");
    Object.entries({ x1: 20, x2: 195, y1: 55, y2: 55, class: "axis" }).forEach(([k, v]) => base.setAttribute(k, v));
    const label = (text, x, y) => {
      const t = document.createElementNS(NS, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.textContent = text;
      return t;
    };
    svg.append(base, line, label("1.0", 0, 9), label("0.5", 0, 54), label(`${maxN} labels`, 150, 54));
    for (const [x, y] of pts) {
      const dot = document.createElementNS(NS, "circle");
      dot.setAttribute("cx", x); dot.setAttribute("cy", y); dot.setAttribute("r", 2.5);
      svg.append(dot);
    }
  }

  async function fit(save) {
    const labels = allLabels();
    const res = await page.post("api/knobs", { name: session.name, labels, save: save || session.saved, replace: session.created });
    const knob = await res.json();
    session.created = true;
    session.labels = labels;
    session.history = knob.history;
    session.cv = knob.cv_accuracy;
    return knob;
  }

  async function nextPage() {
    page.clearError();
    const labels = allLabels();
    byId("teach-next").disabled = true;
    try {
      if (enough(labels)) {
        busy("Refitting the knob from your answers…");
        await fit(false);
        byId("teach-save").disabled = false;
        await refreshTaught();
        showStrips();
      } else {
        session.labels = labels;
      }
      showProgress();
      await loadPage();
      showProgress();
    } catch (err) {
      page.showError(err.message);
    } finally {
      busy("");
      byId("teach-next").disabled = false;
    }
  }

  async function showStrips() {
    const box = byId("teach-strip-list");
    byId("teach-strips").hidden = false;
    byId("teach-strips-title").textContent = `'${session.name}' from −3σ to +3σ on ${STRIP_FACES} faces`;
    const seeds = session.stripSeeds.slice(0, STRIP_FACES);
    const imgs = seeds.map((seed) => page.el("img", { alt: `face #${seed} with ${session.name} from −3σ to +3σ`, className: "teach-strip" }));
    box.replaceChildren(...imgs);
    await Promise.all(seeds.map(async (seed, i) => {
      try {
        const res = await page.post("api/strip", { seed, edits: [], locks: [], knob: session.name, span: 3, steps: STRIP_STEPS, size: 96 });
        imgs[i].src = URL.createObjectURL(await res.blob());
      } catch (err) {
        page.showError(err.message);
      }
    }));
  }

  async function save() {
    page.clearError();
    try {
      if (!enough(allLabels())) throw new Error(`label at least ${rules.min_labels} faces, ${rules.min_per_class} of each, first`);
      const knob = await fit(true);
      const name = session.name;
      session = null;
      await refreshTaught();
      closePanel();
      await page.reloadModel();
      page.toast(`Saved '${name}' (cross-validated accuracy ${knob.cv_accuracy.toFixed(2)}): it is under "taught"`);
    } catch (err) {
      page.showError(err.message);
    }
  }

  async function discard() {
    const s = session;
    session = null;
    if (s && s.created && taught.has(s.name) && taught.get(s.name).status === "draft") {
      try { await fetch(`api/knobs/${encodeURIComponent(s.name)}`, { method: "DELETE" }); } catch (_) { /* gone */ }
      await refreshTaught();
      await page.reloadModel();
    }
    closePanel();
  }

  async function remove(name) {
    page.clearError();
    try {
      const res = await fetch(`api/knobs/${encodeURIComponent(name)}`, { method: "DELETE" });
      if (!res.ok) throw await page.apiError(res);
      await refreshTaught();
      showLibrary();
      await page.reloadModel();
      page.toast(`Deleted '${name}'`);
    } catch (err) {
      page.showError(err.message);
    }
  }

  // ---------------------------------------------------------------- "more like this" from the editor
  // A taught knob's row offers "this face: has it / doesn't": the editor's face joins the knob's labels and the
  // knob is refitted. Labels name faces by seed, so only a face shown as drawn (no edits, no blend) qualifies.
  function labelable(s) {
    return !s.edits.length && !(s.mix && s.mix.t > 0);
  }

  function decorateTaughtRows(s) {
    const why = labelable(s) ? "" : "only a face as drawn can be a label (faces are named by seeds): Reset or draw a new face";
    for (const [name, k] of taught) {
      const row = document.querySelector(`.knob[data-knob="${CSS.escape(name)}"]`);
      if (!row || k.status === "shared" || !k.labels) continue;
      let box = row.querySelector(".teach-more");
      if (!box) {
        const button = (label, text) => {
          const b = page.el("button", { type: "button", textContent: text });
          b.dataset.label = String(label);
          b.addEventListener("click", () => labelEditorFace(name, label));
          return b;
        };
        box = page.el("div", { className: "teach-more" }, page.el("span", { textContent: "This face:" }),
                      button(1, "has it"), button(0, "doesn't"));
        row.append(box);
      }
      for (const b of box.querySelectorAll("button")) {
        b.disabled = Boolean(why);
        b.title = why || `add face #${s.seed} to '${name}''s labels as ${b.dataset.label === "1" ? "having" : "not having"} it, and refit`;
      }
    }
  }

  async function labelEditorFace(name, label) {
    const s = page.state;
    if (!labelable(s)) return;
    page.clearError();
    for (const b of document.querySelectorAll(".teach-more button")) b.disabled = true;   // one refit at a time
    try {
      const res = await fetch(`api/knobs/${encodeURIComponent(name)}`);
      if (!res.ok) throw await page.apiError(res);
      const knob = await res.json();
      const labels = [...knob.examples.filter((l) => l.seed !== s.seed), { seed: s.seed, label }];
      const fitted = await (await page.post("api/knobs", { name, labels, save: knob.status === "saved", replace: true })).json();
      await refreshTaught();
      await page.reloadModel();
      page.toast(`'${name}' refitted with face #${s.seed} (${label ? "has it" : "doesn't"}): ${fitted.labels} labels, ` +
                 `cross-validated accuracy ${fitted.cv_accuracy.toFixed(2)}`);
    } catch (err) {
      page.showError(err.message);
    } finally {
      decorateTaughtRows(page.state);
    }
  }

  page = window.tlgan;         // app.js runs first (both scripts are deferred)
  page.addLinkPart(linkPart);
  page.onFrame((s) => decorateTaughtRows(s));
  page.onStart(async () => {
    build();
    await refreshTaught();
    await registerLinkKnobs();
  });
})();
