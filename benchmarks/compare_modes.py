"""Linear-free, linear-locked, exact-free and exact-locked edits of the shipped default, side by side.

Runs the evaluate protocol (``tlgan.evaluation.evaluate``) on the shipped axes in both modes and writes the
"Edit modes" section of docs/comparison.md (between its markers; the rest of the page is compare_methods.py's)
and docs/comparison-modes.json. Linear offsets are σ of the knob (latent units along the axis); exact offsets are
SD of the knob's reading over faces. Locked = the other 19 knobs held (linear: their values; exact: their
readings, within 0.02 SD). Exact-locked is the expensive one (20 gradients per step): give it fewer faces with
--locked-faces when time is short; the page states what was run.

    python benchmarks/compare_methods.py --modes [--faces 32] [--locked-faces 32] [--range 2] [--steps 5]
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import torch

from tlgan.atomic import write_text_atomic
from tlgan.axes.defaults import load_default_axes
from tlgan.editing.exact import ExactSettings, ExactSweeper
from tlgan.evaluation.evaluate import DEFAULT_SEED, evaluate
from tlgan.models.extractors import load_extractor
from tlgan.models.generators import load_generator
from tlgan.sampling.latents import sample_latents
from tlgan.sampling.sweeps import read_faces

BEGIN, END = "<!-- edit-modes:begin -->", "<!-- edit-modes:end -->"
TARGETS = {"leak_mean": 0.05, "leak_max": 0.15, "faces_kept_mean": 0.9, "diagonal_mean": 0.45}


def fmt(v, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


MODES = ("linear-free", "linear-locked", "exact-free", "exact-locked")


def run_modes(faces: int, locked_faces: int, span: float, steps: int, device: str, seed: int = DEFAULT_SEED,
              out: Path | None = None, modes: tuple[str, ...] = MODES, cache: Path | None = None,
              free_faces: int | None = None) -> dict:
    """Evaluate ``modes``; returns {mode: {"summary", "axes", "n", "seconds", "key"}} and writes the page section.

    With ``cache`` each finished mode is kept there as JSON, and the section shows every cached mode, so the
    expensive exact modes can run in separate processes (the linear run gives every mode its yardstick).
    """
    gen, axes = load_generator("digiface", device), load_default_axes()
    ext = load_extractor(axes.extractor_spec(), device)
    sweep = sorted({round(-span + 2 * span * i / (steps - 1), 6) for i in range(steps)} | {0.0})
    res: dict = {}

    def done(mode: str, entry: dict) -> None:
        res[mode] = entry
        if cache:
            cache.mkdir(parents=True, exist_ok=True)
            write_text_atomic(cache / f"{mode}.json", json.dumps(entry, default=str))
        if out:
            merged = {m: json.loads((cache / f"{m}.json").read_text()) for m in MODES
                      if cache and (cache / f"{m}.json").exists()} if cache else dict(res)
            write(out, merged, sweep, span)

    cached = json.loads((cache / "linear-free.json").read_text()) if cache and (cache / "linear-free.json").exists() \
        else None
    # every mode is measured in SDs of each feature over the linear run's fresh faces (as evaluate computes them)
    spread = read_faces(gen, ext, sample_latents(seed, 0, faces, gen.latent_dim)).to(torch.float64).std(0)
    if not (cached and cached["n"] == faces and cached.get("sweep", sweep) == sweep):  # else the linear run is reused
        t = time.perf_counter()
        lin = evaluate(gen, ext, axes, n=faces, seed=seed, sweep=sweep, strip_faces=0, progress=False).to_dict()
        el = time.perf_counter() - t
        print(f"linear done in {el:.0f} s", flush=True)
        done("linear-free", {"summary": lin["summary"]["free"], "axes": {a["name"]: a for a in lin["axes"]},
                             "n": faces, "seconds": el, "key": None, "feature_std": lin["feature_std"],
                             "sweep": sweep})
        done("linear-locked", {"summary": lin["summary"]["locked"], "axes": {a["name"]: a for a in lin["axes"]},
                               "n": faces, "seconds": el, "key": "locked"})
    settings = ExactSettings(max_steps=20)
    if "exact-free" in modes:
        t = time.perf_counter()
        sweeper = ExactSweeper(gen, ext, axes, settings, progress=True)
        free = evaluate(gen, ext, axes, n=free_faces or faces, seed=seed, sweep=sweep, strip_faces=0, progress=False,
                        locked=False, exact=sweeper, spread=spread).to_dict()
        done("exact-free", {"summary": free["summary"]["free"], "axes": {a["name"]: a for a in free["axes"]},
                            "n": free_faces or faces, "seconds": time.perf_counter() - t, "key": None})
    if "exact-locked" in modes:
        t = time.perf_counter()
        sweeper = ExactSweeper(gen, ext, axes, settings, progress=True)
        held = evaluate(gen, ext, axes, n=locked_faces, seed=seed, sweep=sweep, strip_faces=0, progress=False,
                        locked=True, exact=sweeper, spread=spread).to_dict()
        done("exact-locked", {"summary": held["summary"]["locked"], "axes": {a["name"]: a for a in held["axes"]},
                              "n": locked_faces, "seconds": time.perf_counter() - t, "key": "locked"})
    return res


def section(res: dict, sweep: list[float], span: float) -> str:
    lines = [BEGIN, "## Edit modes: linear and exact, free and locked (shipped default axes)", "",
             "<!-- generated by benchmarks/compare_methods.py --modes; rerun it rather than editing this section -->",
             "",
             (f"Fresh faces of evaluation seed {DEFAULT_SEED}, offsets {', '.join(f'{t:+g}' for t in sweep)}; linear "
             "offsets are σ of the knob along its axis, exact offsets SD of the knob's reading over faces (a face's "
             "path runs outward from its own reading). Every mode's effects are in SDs of each feature over the "
             f"{res['linear-free']['n']} faces of the linear run. *Locked*: the other 19 knobs held (linear: their latent "
             "values; exact: their readings, within 0.02 SD). Effects in feature SD per unit offset. *reachable*: "
             f"share of exact moves that reached their goal. Machine: {platform.machine()}, "
             f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''} per process."), "",
             "| mode | faces | diagonal, mean | leak, mean | worst leak | monotonicity | faces kept | reachable | time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode, r in res.items():
        s = r["summary"] or {}
        worst = s.get("leak_max")
        w = "–" if not worst else f"{abs(worst['effect']):.2f} ({worst['axis']} → {worst['feature']})"
        lines.append(f"| {mode} | {r['n']} | {fmt(s.get('diagonal_mean'))} | {fmt(s.get('leak_mean'))} | {w} "
                     f"| {fmt(s.get('monotonicity_mean'))} | {fmt(s.get('faces_kept_mean'))} "
                     f"| {fmt(s.get('reachable_mean'))} | {r['seconds'] / 60:.1f} min |")
    lines += ["", ("Targets of issue 12 for exact-locked: leak mean ≤ 0.05, worst ≤ 0.15, faces kept ≥ 0.9, "
              "diagonal mean ≥ 0.45; exact-free: diagonal ≥ linear-free's, monotonicity ≥ 0.95."), "",
              "### Per knob: diagonal (reachable share) per mode", "",
              "| knob | " + " | ".join(res) + " |", "|---|" + "---|" * len(res)]
    names = list(next(iter(res.values()))["axes"])
    for name in names:
        cells = []
        for r in res.values():
            a = r["axes"].get(name) or {}
            a = (a.get(r["key"]) or {}) if r["key"] else a
            reach = a.get("reachable")
            cells.append(f"{fmt(a.get('diagonal'))}" + (f" ({fmt(reach)})" if reach is not None else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", ("With all six other emotions held, an emotion's probability cannot move at all: the seven are a "
              "softmax and sum to 1, so exact mode stops at once and names the lock in the way (reachable 0). "
              "Hold fewer emotions to move one. Brightness, background and centre_vs_background are tied the same "
              "way (mean luma of the whole image, of its border, and centre minus border): with the other image "
              "statistics held there is almost no room left."), *movable(res), END]
    return "\n".join(lines)


def movable(res: dict) -> list[str]:
    """A sentence on the exact-locked knobs that can move at all (reachable > 0): their mean diagonal."""
    r = res.get("exact-locked")
    if not r:
        return []
    rows = [(r["axes"][k].get(r["key"]) or {}) if r["key"] else r["axes"][k] for k in r["axes"]]
    moving = [a["diagonal"] for a in rows if (a.get("reachable") or 0) > 0 and a.get("diagonal") is not None]
    if not moving:
        return []
    worst = ((r["summary"] or {}).get("leak_max") or {}).get("effect")
    held = "" if worst is None else f"; what the locks hold, they hold (worst leak {abs(worst):.2f} SD per unit)"
    return ["", (f"Exact-locked over the {len(moving)} knobs the other 19 leave any room (reachable > 0): mean "
                 f"diagonal {sum(moving) / len(moving):.2f}{held}.")]


def write(out: Path, res: dict, sweep: list[float], span: float) -> None:
    text = out.read_text() if out.exists() else ""
    block = section(res, sweep, span)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text_atomic(out, text)
    data = {m: {"n": r["n"], "seconds": r["seconds"], "summary": r["summary"],
                "axes": {k: ((v.get(r["key"]) or {}) if r["key"] else v) for k, v in r["axes"].items()}}
            for m, r in res.items()}
    write_text_atomic(out.with_name("comparison-modes.json"), json.dumps(data, indent=1, default=str))
    print(f"wrote {out}", flush=True)
