"""Linear-free, linear-locked, exact-free, exact-locked and exact-identity (exact, identity held) edits of the shipped
default, side by side.

Runs the evaluate protocol (``tlgan.evaluation.evaluate``) on the shipped axes in both modes and writes the
"Edit modes" section of docs/comparison.md (between its markers; the rest of the page is compare_methods.py's)
and docs/comparison-modes.json. Linear offsets are σ of the knob (latent units along the axis); exact offsets are
SD of the knob's reading over faces. Locked = the other 19 knobs held (linear: their values; exact: their
readings, within 0.02 SD). Exact-identity holds only the face's identity (ExactSweeper(identity=...)).
Exact-locked is the expensive one (20 gradients per step): give it fewer faces with
--locked-faces when time is short; the page states what was run.

    python benchmarks/compare_methods.py --modes [--faces 32] [--locked-faces 32] [--range 2] [--steps 5]
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tlgan.atomic import write_text_atomic
from tlgan.axes.defaults import load_default_axes
from tlgan.editing.exact import ExactSettings, ExactSweeper
from tlgan.editing.identity import IdentityWatch
from tlgan.evaluation.evaluate import DEFAULT_SEED, evaluate
from tlgan.evaluation.identity import linear_latents, read_identity, sweep_identity
from tlgan.models.extractors import load_extractor
from tlgan.models.extractors.identity import load_identity
from tlgan.models.generators import load_generator
from tlgan.sampling.latents import sample_latents
from tlgan.sampling.sweeps import read_faces

BEGIN, END = "<!-- edit-modes:begin -->", "<!-- edit-modes:end -->"
TARGETS = {"leak_mean": 0.05, "leak_max": 0.15, "faces_kept_mean": 0.9, "diagonal_mean": 0.45}


def fmt(v, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


@dataclass(frozen=True)
class Mode:
    """One edit mode of the table: ``sweeper(gen, ext, axes, identity)`` gives the exact sweeper (None: linear
    moves), ``key`` which block of the evaluation it is (None: free, "locked": the other knobs held) and
    ``faces`` which face count it takes ("faces", "free_faces" or "locked_faces" of ``run_modes``)."""

    name: str
    key: str | None
    sweeper: Callable[..., Any] | None
    faces: str = "faces"


def _exact(gen, ext, axes, identity=None):
    return ExactSweeper(gen, ext, axes, ExactSettings(max_steps=20), progress=True)


def _exact_identity(gen, ext, axes, identity=None):
    """Exact, with the face's identity held (the Editor's identity lock: 8 descriptor coordinates held, the path
    guarded by the whole descriptor distance ≤ 0.1) and nothing else."""
    return ExactSweeper(gen, ext, axes, ExactSettings(max_steps=20), progress=True,
                        identity=IdentityWatch(gen, identity or load_identity(_device(gen))))


def _device(gen) -> torch.device:
    return next((p.device for p in gen.parameters()), torch.device("cpu"))


# Add a mode by appending it here (e.g. exact with an identity lock): every table, column and JSON takes it.
MODES: list[Mode] = [
    Mode("linear-free", None, None),
    Mode("linear-locked", "locked", None),
    Mode("exact-free", None, _exact, "free_faces"),
    Mode("exact-locked", "locked", _exact, "locked_faces"),
    Mode("exact-identity", None, _exact_identity, "identity_held_faces"),
]
LABELS = {"exact-identity": "exact, identity held"}
MODE_NAMES = tuple(m.name for m in MODES)


def identity_part(data: dict, key: str | None, n: int, sweep: list[float]) -> dict | None:
    """The identity figures of one mode from an evaluation's JSON: {n, sweep, summary, axes}, or None."""
    ident = data["settings"].get("identity")
    if not ident:
        return None
    block = data["summary"][key or "free"] or {}
    rows = {}
    for a in data["axes"]:
        block_a = (a.get(key) or {}) if key else a
        rows[a["name"]] = dict(block_a["identity"], reachable=block_a.get("reachable")) \
            if block_a.get("identity") else None
    return {"n": ident["faces"], "faces_of": n, "sweep": sweep, "model": ident["model"],
            "start_not_found": ident["start_not_found"],
            "summary": {k: v for k, v in block.items() if k.startswith("identity_")}, "axes": rows}


def random_reference(gen, identity, seed: int, faces: int, sweep: list[float], directions: int = 3) -> dict:
    """Identity drift of the same faces moved along random unit directions in z (seeded): what any latent move of
    that length costs, for comparison with the knobs. {directions, per_sigma, by_size} (means over directions)."""
    z0 = sample_latents(seed, 0, faces, gen.latent_dim)
    offsets = torch.tensor(sweep, dtype=torch.float64)
    base = read_identity(gen, identity, z0)
    g = torch.Generator().manual_seed(seed)
    stats = []
    for _ in range(directions):
        d = torch.randn(gen.latent_dim, generator=g, dtype=torch.float64)
        stats.append(sweep_identity(gen, identity, linear_latents(z0, d / d.norm(), offsets, 1.0), offsets, base))
    sizes = [b["size"] for b in stats[0]["by_size"]]
    return {"directions": directions,
            "per_sigma": sum(s["per_sigma"] for s in stats) / directions,
            "by_size": [{"size": size, "distance": sum(s["by_size"][i]["distance"] for s in stats) / directions}
                        for i, size in enumerate(sizes)]}


def published_linear(out: Path | None) -> dict | None:
    """The published linear-free results (docs/comparison-modes.json next to ``out``), or None: like a cached run,
    they spare rerunning the linear modes when only other modes are asked for."""
    published = out.with_name("comparison-modes.json") if out else None
    if not published or not published.exists():
        return None
    return json.loads(published.read_text()).get("linear-free")


def run_modes(faces: int, locked_faces: int, span: float, steps: int, device: str, seed: int = DEFAULT_SEED,
              out: Path | None = None, modes: tuple[str, ...] = MODE_NAMES, cache: Path | None = None,
              free_faces: int | None = None, identity_faces: int = 16, identity_only: bool = False,
              render_only: bool = False, held_faces: int | None = None) -> dict:
    """Evaluate ``modes``; returns {mode: {"summary", "axes", "n", "seconds", "key", "identity"}} and writes the
    page section.

    With ``cache`` each finished mode is kept there as JSON, and the section shows every cached mode, so the
    expensive exact modes can run in separate processes (the linear run gives every mode its yardstick).
    ``identity_faces`` > 0 also measures identity drift on that many faces (the first of each mode's faces).
    ``identity_only`` measures only that, on ``identity_faces`` faces per mode, and adds it to the cached (or
    published, docs/comparison-modes.json) results of each mode, which keep their own face counts.
    ``render_only`` runs nothing and rewrites the section from those results. ``held_faces``: faces for
    exact-identity (default: exact-free's). The section shows every mode: the run's, else the cached, else the
    published (docs/comparison-modes.json) results, so one mode can be (re)run alone.
    """
    sweep = sorted({round(-span + 2 * span * i / (steps - 1), 6) for i in range(steps)} | {0.0})
    counts = {"faces": faces, "free_faces": free_faces or faces, "locked_faces": locked_faces,
              "identity_held_faces": held_faces or free_faces or faces}
    res: dict = {}

    def stored() -> dict:
        merged = {}
        published = out.with_name("comparison-modes.json") if out else None
        old = json.loads(published.read_text()) if published and published.exists() else {}
        for m in MODE_NAMES:
            if cache and (cache / f"{m}.json").exists():
                merged[m] = json.loads((cache / f"{m}.json").read_text())
            elif m in old:  # the published numbers, per-axis blocks already unwrapped
                merged[m] = dict(old[m], key=None)
        return merged

    def done(mode: str, entry: dict) -> None:
        res[mode] = entry
        if cache:
            cache.mkdir(parents=True, exist_ok=True)
            write_text_atomic(cache / f"{mode}.json", json.dumps(entry, default=str))
        if out:
            merged = stored()
            merged.update(res)
            write(out, {m: merged[m] for m in MODE_NAMES if m in merged}, sweep, span)

    if render_only:
        if out:
            write(out, stored(), sweep, span)
        return {}
    gen, axes = load_generator("digiface", device), load_default_axes()
    ext = load_extractor(axes.extractor_spec(), device)
    identity = load_identity(device) if identity_faces > 0 else None
    base = stored() if identity_only else {}
    cached = json.loads((cache / "linear-free.json").read_text()) if cache and (cache / "linear-free.json").exists() \
        else published_linear(out)
    # every mode is measured in SDs of each feature over the linear run's fresh faces (as evaluate computes them)
    spread = read_faces(gen, ext, sample_latents(seed, 0, faces, gen.latent_dim)).to(torch.float64).std(0)
    runs: dict = {}  # (linear or exact factory, faces) -> the evaluation's JSON and seconds, shared by free/locked
    for mode in MODES:
        if mode.name not in modes and (mode.sweeper is not None or identity_only):
            continue
        if mode.sweeper is None and mode.name not in modes and not identity_only and cached \
                and cached["n"] == faces and cached.get("sweep", sweep) == sweep:
            continue  # the linear run is reused from the cache
        size = lambda m: identity_faces if identity_only else counts[m.faces]  # noqa: E731
        n = size(mode)
        run_key = (mode.sweeper, n)
        if run_key not in runs:
            # one evaluation serves every wanted mode of this sweeper and face count (the locked one brings free)
            locked = any(m.key == "locked" and m.sweeper is mode.sweeper and size(m) == n
                         and (m.name in modes or (m.sweeper is None and not identity_only)) for m in MODES)
            t = time.perf_counter()
            exact = mode.sweeper(gen, ext, axes, identity) if mode.sweeper else None
            ev = evaluate(gen, ext, axes, n=n, seed=seed, sweep=sweep, strip_faces=0, progress=False,
                          locked=locked, exact=exact,
                          spread=spread if exact is not None else None, identity=identity,
                          identity_faces=identity_faces or 1).to_dict()
            runs[run_key] = (ev, time.perf_counter() - t)
            print(f"{mode.name}: done in {runs[run_key][1]:.0f} s", flush=True)
        ev, seconds = runs[run_key]
        ident = identity_part(ev, mode.key, n, sweep)
        if ident and mode.name == "linear-free":
            ident["random"] = random_reference(gen, identity, seed, ident["n"], sweep)
        if identity_only:
            if mode.name not in base:
                print(f"{mode.name}: no earlier results to add identity to; run it without --identity-only first")
                continue
            done(mode.name, dict(base[mode.name], identity=dict(ident, seconds=seconds)))
            continue
        entry = {"summary": ev["summary"][mode.key or "free"], "axes": {a["name"]: a for a in ev["axes"]},
                 "n": n, "seconds": seconds, "key": mode.key, "identity": ident, "threads": torch.get_num_threads()}
        if mode.name == "linear-free":
            entry.update(feature_std=ev["feature_std"], sweep=sweep)
        done(mode.name, entry)
    return res


def section(res: dict, sweep: list[float], span: float) -> str:
    sweep = (res.get("linear-free") or {}).get("sweep") or sweep  # the sweep the re-scoring figures came from
    threads = (res.get("linear-free") or {}).get("threads") or torch.get_num_threads()
    lines = [BEGIN, "## Edit modes: linear and exact, free and locked (shipped default axes)", "",
             "<!-- generated by benchmarks/compare_methods.py --modes; rerun it rather than editing this section -->",
             "",
             (f"Fresh faces of evaluation seed {DEFAULT_SEED}, offsets {', '.join(f'{t:+g}' for t in sweep)}; linear "
             "offsets are σ of the knob along its axis, exact offsets SD of the knob's reading over faces (a face's "
             "path runs outward from its own reading). Every mode's effects are in SDs of each feature over the "
             f"{res['linear-free']['n']} faces of the linear run. *Locked*: the other 19 knobs held (linear: their latent "
             "values; exact: their readings, within 0.02 SD). Effects in feature SD per unit offset. *reachable*: "
             f"share of exact moves that reached their goal. Machine: {platform.machine()}, "
             f"{threads} thread{'s' if threads != 1 else ''} per process."), "",
             *held_note(res), *knob_sets(res),
             "| mode | faces | diagonal, mean | leak, mean | worst leak | monotonicity | faces kept | reachable | time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode, r in res.items():
        s = r["summary"] or {}
        worst = s.get("leak_max")
        w = "–" if not worst else f"{abs(worst['effect']):.2f} ({worst['axis']} → {worst['feature']})"
        lines.append(f"| {label(mode)} | {r['n']} | {fmt(s.get('diagonal_mean'))} | {fmt(s.get('leak_mean'))} | {w} "
                     f"| {fmt(s.get('monotonicity_mean'))} | {fmt(s.get('faces_kept_mean'))} "
                     f"| {fmt(s.get('reachable_mean'))} | {r['seconds'] / 60:.1f} min |")
    lines += ["", ("Targets of issue 12 for exact-locked: leak mean ≤ 0.05, worst ≤ 0.15, faces kept ≥ 0.9, "
              "diagonal mean ≥ 0.45; exact-free: diagonal ≥ linear-free's, monotonicity ≥ 0.95."), "",
              "### Per knob: diagonal (reachable share) per mode", "",
              "| knob | " + " | ".join(map(label, res)) + " |", "|---|" + "---|" * len(res)]
    names = list(dict.fromkeys(k for r in res.values() for k in r["axes"]))  # every mode's knobs, first seen first
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
              "statistics held there is almost no room left."), *movable(res), *identity_section(res), END]
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


def identity_section(res: dict) -> list[str]:
    """The identity tables: per mode the drift from the unmoved face per unit offset, and per knob."""
    rows = {m: r["identity"] for m, r in res.items() if r.get("identity")}
    if not rows:
        return []
    sizes = sorted({b["size"] for r in rows.values() for b in r["summary"].get("identity_by_size", [])})
    first = next(iter(rows.values()))
    how = "; ".join(f"{m}: {r['n']} faces, offsets {', '.join(f'{t:+g}' for t in r['sweep'])}" for m, r in rows.items())
    lines = ["", "### Identity: how far a knob moves the face from the same person", "",
             (f"The literature's ID metric: for each knob, the mean over faces of the distance between the identity "
              f"descriptors (dlib's face-recognition ResNet, `{first['model']}`) of the moved and the unmoved face, "
              "divided by |offset| (*per unit*: per σ of the knob in linear mode, per SD of the knob's reading in "
              "exact mode), and the mean distance at each |offset|. dlib calls two faces under 0.6 apart the same "
              "person; two different faces of this generator are a median 0.71 apart (10th percentile 0.61). Faces "
              "whose landmarks are not found are left out and counted. *Knobs that move*: exact knobs that reach "
              "their goal in at least half the moves (all linear knobs). *Per SD of the knob's reading*: per unit "
              "divided by the knob's diagonal in the table above (how far its own reading moves per unit), over "
              "the knobs that move with a diagonal above 0.2: identity spent per SD of the feature actually "
              f"changed, comparable across modes. Measured on: {how}."), "",
             "| mode | faces | per unit, mean over knobs | mean over knobs that move | per SD of the knob's reading | "
             + " | ".join(f"distance at ±{s:g}" for s in sizes)
             + " | costliest knob (per unit) | moved faces not found | time |",
             "|---|---|---|---|---|" + "---|" * len(sizes) + "---|---|---|"]
    sd_cost: dict = {}
    for m, r in rows.items():
        s = r["summary"]
        moving, per_sd = [], []
        for name, a in r["axes"].items():
            if not a or a.get("per_sigma") is None or (a.get("reachable") is not None and a["reachable"] < 0.5):
                continue
            moving.append(a["per_sigma"])
            b = res[m]["axes"].get(name) or {}
            diag = ((b.get(res[m]["key"]) or {}) if res[m].get("key") else b).get("diagonal")
            if diag is not None and diag > 0.2:
                per_sd.append(a["per_sigma"] / diag)
        avg = lambda v: sum(v) / len(v) if v else None  # noqa: E731
        sd_cost[m] = avg(per_sd)
        at = {b["size"]: b["distance"] for b in s.get("identity_by_size", [])}
        worst = s.get("identity_max")
        seconds = r.get("seconds", res[m]["seconds"])
        lines.append(f"| {label(m)} | {r['n']} | {fmt(s.get('identity_per_sigma_mean'), 3)} | {fmt(avg(moving), 3)} "
                     f"| {fmt(avg(per_sd), 3)} | "
                     + " | ".join(fmt(at.get(size), 3) for size in sizes)
                     + f" | {'–' if not worst else worst['axis'] + ' ' + fmt(worst['per_sigma'], 3)} "
                     f"| {s.get('identity_not_found', 0)} | {seconds / 60:.1f} min |")
    ref = next((r["random"] for r in rows.values() if r.get("random")), None)
    if ref:
        at = {b["size"]: b["distance"] for b in ref["by_size"]}
        lines.append(f"| random unit direction in z (mean of {ref['directions']}; linear) | {rows['linear-free']['n']} "
                     f"| {fmt(ref['per_sigma'], 3)} | – | – | " + " | ".join(fmt(at.get(size), 3) for size in sizes)
                     + " | – | – | – |")
    names = list(dict.fromkeys(k for r in rows.values() for k in r["axes"]))
    lines += ["", "Per knob: identity distance per unit offset (mean distance at the largest offset).", "",
              "| knob | " + " | ".join(map(label, rows)) + " |", "|---|" + "---|" * len(rows)]
    for name in names:
        cells = []
        for r in rows.values():
            a = r["axes"].get(name) or {}
            last = next((b for b in reversed(a.get("by_size") or []) if b["distance"] is not None), None)
            reach = "" if a.get("reachable") is None else f", reachable {fmt(a['reachable'])}"
            cells.append(fmt(a.get("per_sigma"), 3) + (f" ({fmt(last['distance'])}{reach})" if last else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", *identity_verdict(rows), *held_verdict(rows, res)]
    if ref and math.isfinite(ref["per_sigma"]):
        means = {m: r["summary"].get("identity_per_sigma_mean") for m, r in rows.items()}
        ratios = ", ".join(f"{m} {v / ref['per_sigma']:.1f}×" for m, v in means.items()
                           if v is not None and math.isfinite(v) and ref["per_sigma"] > 0)
        lines += ["", (f"Every latent move changes the person here: a random unit direction in z costs "
                       f"{ref['per_sigma']:.3f} per σ on the same faces. The knobs' mean per unit, as a multiple of "
                       f"that: {ratios} (exact modes per SD of the reading, so not the same yardstick; an exact "
                       "move that stops short costs less because it moves less).")]
    ranked = sorted((v, m) for m, v in sd_cost.items() if v is not None)
    if len(ranked) > 1:
        lines += ["", ("Per SD of the knob's own reading actually moved, from least identity spent to most: "
                       + ", ".join(f"{m} {v:.2f}" for v, m in ranked) + ".")]
    return lines


def identity_verdict(rows: dict) -> list[str]:
    """Which knobs cost the most identity in each mode, written from the numbers."""
    out = []
    for m, r in rows.items():
        # a knob that (almost) never reaches its goal barely moves the face: leave it out of the ranking
        ranked = sorted(((a["per_sigma"], name) for name, a in r["axes"].items()
                         if a and a.get("per_sigma") is not None and math.isfinite(a["per_sigma"])
                         and (a.get("reachable") is None or a["reachable"] >= 0.5)), reverse=True)
        if ranked:
            top = ", ".join(f"{name} ({v:.3f})" for v, name in ranked[:3])
            low = ", ".join(f"{name} ({v:.3f})" for v, name in ranked[-3:][::-1])
            out.append(f"- **{label(m)}**: costliest {top}; cheapest {low}.")
    return ["Which knobs cost the most identity (distance per unit offset; exact modes: among the knobs that reach "
            "their goal in at least half the moves, since one that cannot move leaves the face as it was):", "",
            *out] if out else []


def held_note(res: dict) -> list[str]:
    """What *exact, identity held* holds (only when that mode is shown)."""
    if "exact-identity" not in res:
        return []
    return [("*Exact, identity held*: exact, with only the face's identity held, as `tlgan edit --exact --lock "
             "identity` holds it: 8 coordinates of dlib's descriptor change (the generator's main directions of "
             "between-face variation) held as readings, and every path ended before the whole descriptor distance "
             "from the start face passes 0.1 (the chip cut at the face's start landmarks for all its moves). A face "
             "whose landmarks are not found is not moved (its moves count as not reached)."), ""]


def knob_sets(res: dict) -> list[str]:
    """A sentence when the modes were measured on different sets of knobs (a mode run after the shipped axes
    changed), naming which; nothing when they agree."""
    sets: dict[tuple[str, ...], list[str]] = {}
    for m, r in res.items():
        sets.setdefault(tuple(r["axes"]), []).append(m)
    if len(sets) < 2:
        return []
    parts = [f"{', '.join(ms)} on {len(knobs)} knobs" for knobs, ms in sets.items()]
    return [("The modes were measured on different sets of shipped knobs (the set changed between runs): "
             + "; ".join(parts) + ". A knob a mode did not measure shows – in its column; knobs of the same name "
             "may have been refitted in between."), ""]


def label(mode: str) -> str:
    """A mode's name as the tables show it (the new modes say what they hold)."""
    return f"{mode} ({LABELS[mode]})" if mode in LABELS else mode


def held_verdict(rows: dict, res: dict) -> list[str]:
    """Two sentences from the numbers: the knobs that cost the most identity today (linear-free, exact-free, per
    unit) and those that cost the least with identity held (exact-identity): there the guard caps every move's
    distance near 0.1, so per unit is about the same for every knob, and a knob is cheap when its own reading moves
    far within that bound (identity per SD of its reading, over knobs with a diagonal above 0.2), with how often
    the held knobs still reach a goal."""
    held = rows.get("exact-identity")
    if not held:
        return []

    def costliest(m: str) -> list[tuple[float, str]]:
        r = rows.get(m) or {"axes": {}}
        return sorted(((a["per_sigma"], name) for name, a in r["axes"].items()
                       if a and a.get("per_sigma") is not None and math.isfinite(a["per_sigma"])
                       and (a.get("reachable") is None or a["reachable"] >= 0.5)), reverse=True)[:3]

    b = res["exact-identity"]
    diag = lambda name: (((b["axes"].get(name) or {}).get(b["key"]) or {}) if b.get("key")  # noqa: E731
                         else (b["axes"].get(name) or {})).get("diagonal")
    axes = {name: a for name, a in held["axes"].items() if a and a.get("per_sigma") is not None}
    cheap = sorted((a["per_sigma"] / diag(name), name) for name, a in axes.items()
                   if diag(name) is not None and diag(name) > 0.2)
    reach = [a["reachable"] for a in axes.values() if a.get("reachable") is not None]
    never = [name for name, a in axes.items() if a.get("reachable") == 0]
    half = [name for name, a in axes.items() if (a.get("reachable") or 0) >= 0.5]
    parts = [f"{label(m)}: " + ", ".join(f"{name} {v:.3f}" for v, name in costliest(m)) for m in
             ("linear-free", "exact-free") if costliest(m)]
    today = ("**Today** the knobs that cost the most identity per unit are, " + "; ".join(parts) + ".") if parts else ""
    cheap_txt = ", ".join(f"{name} ({v:.2f} per SD of its reading: {fmt(diag(name))} SD of it per unit for "
                          f"{axes[name]['per_sigma']:.3f}, reachable {fmt(axes[name].get('reachable'))})"
                          for v, name in cheap[:3])
    costs = [a["per_sigma"] for a in axes.values()]
    held_txt = (f"**With identity held** (exact, identity held) every move stays near the 0.1 bound (per unit "
                f"{min(costs):.3f} to {max(costs):.3f}), "
                + (f"and the cheapest knobs are those whose own reading moves furthest within it: {cheap_txt}; "
                   if cheap else "")
                + f"but a held knob rarely reaches a 1-SD goal: {fmt(sum(reach) / len(reach) if reach else None)} of "
                f"the moves (mean reachable), {len(half)} of {len(axes)} knobs in at least half of them"
                + (f" ({', '.join(half)})" if half else "")
                + f", and {len(never)} never ({', '.join(never)}): identity is in the way.")
    return ["", today, "", held_txt]


def write(out: Path, res: dict, sweep: list[float], span: float) -> None:
    text = out.read_text() if out.exists() else ""
    block = section(res, sweep, span)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text_atomic(out, text)
    data = {m: {"n": r["n"], "seconds": r["seconds"], "summary": r["summary"],
                **({"sweep": r["sweep"]} if r.get("sweep") else {}),
                **({"threads": r["threads"]} if r.get("threads") else {}), "identity": r.get("identity"),
                "axes": {k: ((v.get(r["key"]) or {}) if r["key"] else v) for k, v in r["axes"].items()}}
            for m, r in res.items()}
    write_text_atomic(out.with_name("comparison-modes.json"), json.dumps(data, indent=1, default=str))
    print(f"wrote {out}", flush=True)
