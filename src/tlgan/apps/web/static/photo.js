// The photo panel: upload (drag and drop), see the aligned crop and its reconstruction, edit with every knob,
// download the photo with the edited face pasted back. Talks only to /api/model and /api/photo*.
"use strict";

(() => {
  const MAX_BYTES = 16 * 1024 * 1024;   // the server's upload limit (photos.MAX_UPLOAD_BYTES)
  const STEPS = 200;
  let knobs = [];
  let range = 4;
  let state = null;                      // {token, latent_file, edits}
  let pending = null;

  const el = (tag, props = {}, children = []) => {
    const node = Object.assign(document.createElement(tag), props);
    for (const child of children) node.append(child);
    return node;
  };

  const input = el("input", { type: "file", id: "photo-file", accept: "image/jpeg,image/png,image/webp,image/bmp,image/tiff,image/gif" });
  // A drop region around the file input (the input itself is the keyboard's way in: no nested controls).
  const drop = el("div", { id: "photo-drop", className: "photo-drop" }, [
    "Drop a photo with a face here, or ", el("label", { htmlFor: "photo-file", textContent: "choose a file" }), input]);
  drop.setAttribute("role", "region");
  drop.setAttribute("aria-label", "Photo upload");
  const status = el("p", { id: "photo-status", className: "hint" });
  const crop = el("img", { id: "photo-crop", alt: "The face found in the photo, aligned", width: 192, height: 192 });
  const recon = el("img", { id: "photo-recon", alt: "The generator's reconstruction of it", width: 192, height: 192 });
  const edited = el("img", { id: "photo-edited", alt: "The reconstruction after your edits", width: 192, height: 192 });
  const quality = el("figcaption", { id: "photo-quality", textContent: "reconstruction" });
  const sliders = el("div", { id: "photo-knobs", className: "photo-knobs" });
  const download = el("button", { id: "photo-download", type: "button", textContent: "Download edited photo" });
  const reset = el("button", { id: "photo-reset", type: "button", textContent: "Reset knobs" });
  const result = el("div", { id: "photo-result", hidden: true }, [
    el("div", { className: "photo-figures" }, [
      el("figure", {}, [crop, el("figcaption", { textContent: "aligned crop" })]),
      el("figure", {}, [recon, quality]),
      el("figure", {}, [edited, el("figcaption", { textContent: "edited" })]),
    ]),
    el("div", { className: "photo-actions" }, [download, reset]),
    sliders,
  ]);
  const panel = el("section", { id: "photo-panel", className: "photo-panel" }, [
    el("h2", { textContent: "Edit your own photo" }),
    el("p", { className: "hint", textContent: "The photo stays on this server only while you edit it (a temporary folder); "
      + "it is deleted when you leave or upload another." }),
    drop, status, result]);
  panel.setAttribute("aria-label", "Edit your own photo");

  // Layout through the CSSOM (the page's CSP allows no inline style attributes; style.css belongs to the main page).
  Object.assign(panel.style, { maxWidth: "1200px", margin: "1.5rem auto", padding: "0 1rem" });
  Object.assign(drop.style, { border: "2px dashed #888", borderRadius: "8px", padding: "1.5rem", textAlign: "center" });
  Object.assign(result.querySelector(".photo-figures").style, { display: "flex", gap: "1rem", flexWrap: "wrap" });
  Object.assign(sliders.style, { display: "grid", gridTemplateColumns: "repeat(auto-fill, minmax(260px, 1fr))", gap: "0.25rem 1.5rem", marginTop: "1rem" });
  input.style.marginLeft = "0.5rem";

  const say = (text) => { status.textContent = text; window.tlgan?.announce?.(text); };

  async function detail(res) {
    try { return (await res.json()).detail || res.statusText; } catch { return res.statusText; }
  }

  async function post(path, body) {
    const res = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(await detail(res));
    return res;
  }

  function forget() {
    if (state) fetch(`/api/photo/${state.token}`, { method: "DELETE", keepalive: true }).catch(() => {});
  }

  async function upload(file) {
    if (!file) return;
    if (file.size > MAX_BYTES) { say(`That file is ${(file.size / 2 ** 20).toFixed(1)} MiB; the limit is ${MAX_BYTES / 2 ** 20} MiB.`); return; }
    forget();
    state = null;
    result.hidden = true;
    say("Finding, inverting and tuning the face… (this takes a while on a CPU)");
    try {
      const res = await fetch(`/api/photo?steps=${STEPS}`, { method: "POST", body: file,
        headers: { "Content-Type": file.type || "application/octet-stream" } });
      if (!res.ok) throw new Error(await detail(res));
      const data = await res.json();
      state = { token: data.token, latent_file: data.latent_file, edits: [] };
      crop.src = data.crop;
      recon.src = data.reconstruction;
      edited.src = data.reconstruction;
      quality.textContent = data.tuning
        ? `reconstruction: ${data.tuning.psnr_after_db.toFixed(1)} dB PSNR (tuned; ${data.quality.psnr_db.toFixed(1)} dB untuned)`
        : `reconstruction: ${data.quality.psnr_db.toFixed(1)} dB PSNR`;
      say(`Face 1 of ${data.faces} (largest). Move the knobs to edit it.`);
      buildSliders(data.values);
      result.hidden = false;
    } catch (err) {
      say(`Error: ${err.message}`);
    }
  }

  function buildSliders(values) {
    sliders.replaceChildren();
    for (const knob of knobs) {
      const id = `photo-knob-${knob.name}`;
      const slider = el("input", { type: "range", id, min: -range, max: range, step: 0.1, value: values[knob.name] ?? 0 });
      slider.dataset.knob = knob.name;
      const out = el("output", { htmlFor: id, textContent: Number(slider.value).toFixed(1) });
      slider.addEventListener("input", () => { out.textContent = Number(slider.value).toFixed(1); });
      slider.addEventListener("change", () => setKnob(knob.name, Number(slider.value)));
      const row = el("div", { className: "photo-knob" }, [el("label", { htmlFor: id, textContent: knob.label || knob.name }), slider, out]);
      Object.assign(row.style, { display: "grid", gridTemplateColumns: "8rem 1fr 2.5rem", alignItems: "center", gap: "0.5rem" });
      sliders.append(row);
    }
  }

  function showValues(values) {
    knobs.forEach((knob, i) => {
      const slider = document.getElementById(`photo-knob-${knob.name}`);
      if (slider && document.activeElement !== slider) {
        slider.value = values[i];
        slider.nextElementSibling.textContent = Number(values[i]).toFixed(1);
      }
    });
  }

  async function setKnob(name, value) {
    if (!state) return;
    const last = state.edits[state.edits.length - 1];
    if (last && last.knob === name) state.edits.pop();   // a drag of one knob is one edit
    state.edits.push({ op: "set", knob: name, value, locks: [] });
    await refresh();
  }

  async function refresh() {
    const body = { latent_file: state.latent_file, edits: state.edits, locks: [], size: 256, token: state.token };
    const mine = pending = Symbol("render");
    try {
      const res = await post("/api/photo/render", body);
      const blob = await res.blob();
      if (mine !== pending) return;
      if (edited.src.startsWith("blob:")) URL.revokeObjectURL(edited.src);
      edited.src = URL.createObjectURL(blob);
      showValues(JSON.parse(res.headers.get("X-Knob-Values") || "[]"));
    } catch (err) {
      say(`Error: ${err.message}`);
    }
  }

  download.addEventListener("click", async () => {
    if (!state) return;
    say("Pasting the edited face back into the photo…");
    try {
      const res = await post(`/api/photo/${state.token}/paste`, { latent_file: state.latent_file, edits: state.edits, locks: [] });
      const url = URL.createObjectURL(await res.blob());
      const a = el("a", { href: url, download: "edited.jpg" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      say("Downloaded edited.jpg (same size as your photo).");
    } catch (err) {
      say(`Error: ${err.message}`);
    }
  });

  reset.addEventListener("click", async () => { if (state) { state.edits = []; await refresh(); } });
  input.addEventListener("change", () => upload(input.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); drop.style.background = "#eef4ff"; });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => { drop.classList.remove("over"); drop.style.background = ""; });
  }
  drop.addEventListener("drop", (e) => { e.preventDefault(); upload(e.dataTransfer.files[0]); });
  window.addEventListener("pagehide", forget);

  async function start() {
    try {
      const res = await fetch("/api/model");
      const model = await res.json();
      knobs = model.knobs;
      range = model.slider_range || 4;
    } catch { /* the main page reports a missing model */ }
    (document.querySelector("main") || document.body).after(panel);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
