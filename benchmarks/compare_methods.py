"""Compare tlgan's direction-finding methods on the default generator and write docs/comparison.md.

Every supervised method (tlgan, ridge, svm, logistic) is fitted on the same labelled samples; the unsupervised
ones (sefa, pca) are computed from the generator. All are then evaluated with ``tlgan.evaluate`` on the same
fresh faces (same evaluation seed, same sweep): diagonal strength, worst off-diagonal leak (free and with the
other axes locked), monotonicity, faces kept, and fit time. Rerunning reuses the cached samples.

    python benchmarks/compare_methods.py [--samples 6000] [--faces 32] [--steps 5] [--out docs/comparison.md]

The defaults keep the run under about five minutes on a 2-core CPU; pass --device cuda and larger numbers on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from tlgan.atomic import write_text_atomic
from tlgan.defaults import DEFAULT_GENERATOR
from tlgan.evaluate import DEFAULT_SEED, evaluate
from tlgan.extractors import DEFAULT_EXTRACTORS, load_extractor
from tlgan.fit import fit_axes
from tlgan.generators import load_generator
from tlgan.methods.discover import discover_axes
from tlgan.pipeline import run_samples, set_cpu_threads

ROOT = Path(__file__).resolve().parent.parent
SUPERVISED = ("tlgan", "ridge", "svm", "logistic")
UNSUPERVISED = ("sefa", "pca")


def fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def leak_text(leak: dict | None) -> str:
    return "–" if not leak else f"{fmt(abs(leak['effect']))} ({leak['axis']} → {leak['feature']})"


def stored_quality(axis_set) -> tuple[str, float]:
    metric = "accuracy" if axis_set.method in ("svm", "logistic") else "r2"
    values = [q[metric] for q in axis_set.quality.values() if metric in q and math.isfinite(q[metric])]
    return metric, sum(values) / max(len(values), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=6000, help="labelled samples shared by the supervised methods")
    parser.add_argument("--seed", type=int, default=0, help="sample seed")
    parser.add_argument("--faces", type=int, default=32, help="fresh faces per evaluation")
    parser.add_argument("--eval-seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--steps", type=int, default=5, help="points of the −RANGE…+RANGE sweep")
    parser.add_argument("--range", dest="span", type=float, default=3.0)
    parser.add_argument("--components", type=int, default=10, help="sefa / pca axes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", default=str(ROOT / ".tlgan-cache" / "compare-samples"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "comparison.md"))
    args = parser.parse_args()
    set_cpu_threads()
    t_start = time.perf_counter()
    gen = load_generator(DEFAULT_GENERATOR, args.device)
    ext = load_extractor(DEFAULT_EXTRACTORS, args.device)
    sweep = sorted({round(-args.span + 2 * args.span * i / (args.steps - 1), 6) for i in range(args.steps)} | {0.0})

    t0 = time.perf_counter()
    run_samples(gen, ext, args.samples, args.seed, args.cache, progress=True)
    sample_seconds = time.perf_counter() - t0

    results: dict[str, dict] = {}
    for method in SUPERVISED + UNSUPERVISED:
        t0 = time.perf_counter()
        if method in SUPERVISED:
            axis_set = fit_axes(args.cache, method=method)
        else:
            axis_set = discover_axes(gen, method, args.components, ext, seed=args.seed)
        wall = time.perf_counter() - t0
        ev = evaluate(gen, ext, axis_set, n=args.faces, seed=args.eval_seed, sweep=sweep, strip_faces=0,
                      progress=False)
        results[method] = {"axes": axis_set, "eval": ev.to_dict(), "fit_seconds": axis_set.params["fit_seconds"],
                           "wall_seconds": wall}
        print(f"{method}: fit {axis_set.params['fit_seconds']:.2f} s, evaluated ({time.perf_counter() - t_start:.0f} s)",
              flush=True)

    total = time.perf_counter() - t_start
    text = render(results, args, sweep, sample_seconds, total, [f.name for f in ext.features])
    write_text_atomic(args.out, text)
    summary = {m: {"fit_seconds": r["fit_seconds"], "summary": r["eval"]["summary"]} for m, r in results.items()}
    write_text_atomic(Path(args.out).with_suffix(".json"), json.dumps(summary, indent=1, allow_nan=False))
    print(f"wrote {args.out} in {total:.0f} s")


def render(results: dict, args: argparse.Namespace, sweep: list[float], sample_seconds: float, total: float,
           features: list[str]) -> str:
    sup = {m: results[m] for m in SUPERVISED}
    lines = [
        "# Comparing the direction-finding methods",
        "",
        "<!-- generated by benchmarks/compare_methods.py; rerun it rather than editing this page -->",
        "",
        f"Generator `{results['tlgan']['axes'].generator}`, extractors `{DEFAULT_EXTRACTORS}` "
        f"({len(features)} features). The supervised methods were fitted on the same {args.samples:,} labelled "
        f"samples (seed {args.seed}, 10% held out; sampling took {sample_seconds:.0f} s); sefa and pca "
        f"({args.components} axes each) were computed from the generator (pca from 5,000 sampled latents) and "
        f"labelled by the extractors. Every method was then evaluated on the same {args.faces} fresh faces "
        f"(evaluation seed {args.eval_seed}), each moved by {', '.join(f'{t:+g}' for t in sweep)} σ along every "
        "axis and re-read (see [evaluate.md](evaluate.md)). Effects are in feature standard deviations per σ of "
        "the knob.",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, device `{args.device}`; the whole run "
        f"took {total / 60:.1f} minutes. Command: `python benchmarks/compare_methods.py --samples {args.samples} "
        f"--faces {args.faces} --steps {args.steps}`.",
        "",
        "## Supervised methods: one axis per feature",
        "",
        "| method | fit time | held-out fit (at fitting) | diagonal, mean | leak, mean | worst leak "
        "| locked: diagonal | locked: leak, mean | locked: worst leak | monotonicity | faces kept |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, r in sup.items():
        free, locked = r["eval"]["summary"]["free"], r["eval"]["summary"]["locked"] or {}
        metric, value = stored_quality(r["axes"])
        lines.append(
            f"| {method} | {r['fit_seconds']:.2f} s | {metric} {fmt(value)} | {fmt(free['diagonal_mean'])} "
            f"| {fmt(free['leak_mean'])} | {leak_text(free['leak_max'])} | {fmt(locked.get('diagonal_mean'))} "
            f"| {fmt(locked.get('leak_mean'))} | {leak_text(locked.get('leak_max'))} "
            f"| {fmt(free['monotonicity_mean'])} | {fmt(free['faces_kept_mean'])} |")
    lines += [
        "",
        "*diagonal*: mean over the axes of the change of the axis' own feature; *leak*: for each axis the largest "
        "change of any other feature, averaged (mean) or the largest over all axes (worst); *locked*: the same "
        "with the other 19 axes locked (TL-GAN) or conditioned on (InterFaceGAN's n' = p − Cᵀ(CCᵀ)⁻¹Cp, for "
        "svm and logistic; the same subspace); *monotonicity*: mean Spearman correlation of the feature with the "
        "knob along the sweep; *faces kept*: fraction of faces whose face probability stays ≥ 0.5 over the whole "
        "sweep. Fit time is the time to read the samples and fit all axes.",
        "",
        "### Diagonal per feature (free / locked)",
        "",
        "| feature | " + " | ".join(sup) + " | cos(tlgan, svm) |",
        "|---|" + "---|" * (len(sup) + 1),
    ]
    by_method = {m: {a["name"]: a for a in r["eval"]["axes"]} for m, r in sup.items()}
    t_axes, s_axes = sup["tlgan"]["axes"], sup["svm"]["axes"]
    for name in features:
        cells = []
        for m in sup:
            a = by_method[m].get(name)
            lk = (a or {}).get("locked") or {}
            cells.append("–" if a is None else f"{fmt(a['diagonal'])} / {fmt(lk.get('diagonal'))}")
        cos = float(t_axes.axes[t_axes.index(name)].double() @ s_axes.axes[s_axes.index(name)].double())
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cos:.2f} |")

    lines += ["", "## Unsupervised methods: what each axis moves", "",
              "| axis | moves most | worst other | monotonicity | faces kept |", "|---|---|---|---|---|"]
    for method in UNSUPERVISED:
        r = results[method]
        for a in r["eval"]["axes"]:
            mm, wl = a["moves_most"], a["worst_leak"]
            lines.append(f"| {a['name']} | {mm['feature']} {fmt(mm['effect'], signed=True)} "
                         f"| {wl['feature']} {fmt(wl['effect'], signed=True)} | {fmt(a['monotonicity'])} "
                         f"| {fmt(a['faces_kept'])} |")
    lines += ["", f"Fit time: sefa {results['sefa']['fit_seconds']:.2f} s (closed form), "
              f"pca {results['pca']['fit_seconds']:.2f} s (5,000 latents, layer "
              f"`{results['pca']['axes'].params['layer']}`); labelling each set by the extractors took a few "
              "seconds more. *worst other*: the largest change of any feature but the one it moves most.", ""]
    lines += verdict(results)
    return "\n".join(lines) + "\n"


def verdict(results: dict) -> list[str]:
    """The paragraph on the default, written from the numbers (so that it stays true when they change)."""
    s = {m: results[m]["eval"]["summary"] for m in SUPERVISED}
    diag = {m: s[m]["free"]["diagonal_mean"] for m in SUPERVISED}
    leak = {m: s[m]["free"]["leak_mean"] for m in SUPERVISED}
    ratio = {m: diag[m] / leak[m] if leak[m] else math.inf for m in SUPERVISED}
    fit = {m: results[m]["fit_seconds"] for m in SUPERVISED}
    best_ratio = max(ratio, key=ratio.get)
    best_diag = max(diag, key=diag.get)
    t = "tlgan"
    out = ["## Which method the default uses, and why", ""]
    out.append(
        f"`tlgan build` uses **tlgan** (least squares in logit/arctanh space) by default. On these numbers its axes "
        f"move their own feature by {fmt(diag[t])} SD per σ on average against {fmt(leak[t])} for the worst other "
        f"feature (ratio {fmt(ratio[t])}); the best diagonal is {best_diag}'s ({fmt(diag[best_diag])}) and the "
        f"best diagonal-to-leak ratio is {best_ratio}'s ({fmt(ratio[best_ratio])}).")
    close = ratio[t] >= 0.9 * ratio[best_ratio] and diag[t] >= 0.9 * diag[best_diag]
    if close:
        out.append(
            f"So the methods are within 10% of each other on what the knobs do, and tlgan wins on the rest: it fits "
            f"in {fit[t]:.2f} s against {fit['svm']:.2f} s for svm and {fit['logistic']:.2f} s for logistic, "
            "streams over any number of samples in constant memory (svm and logistic need their samples in memory), "
            "uses every sample rather than the top and bottom 2%, has no threshold or percentage to choose, and "
            "records a held-out R² that says how well each feature is explained by the latent.")
    else:
        better = [m for m in SUPERVISED if ratio[m] > ratio[t] * 1.1 or diag[m] > diag[t] * 1.1]
        out.append(
            f"Here {', '.join(better)} did measurably better than tlgan on the knobs' effect, at a fit time of "
            + ", ".join(f"{fit[m]:.2f} s ({m})" for m in better) + f" against {fit[t]:.2f} s. tlgan stays the default "
            "because it streams over any number of samples in constant memory and has no threshold or percentage "
            f"to tune; use `tlgan build --method {better[0]}` where these numbers matter more.")
    locked_leak = {m: (s[m]["locked"] or {}).get("leak_mean") for m in SUPERVISED}
    if locked_leak[t] is not None:
        out.append(
            f"Locking the other axes changes tlgan's mean leak from {fmt(leak[t])} to {fmt(locked_leak[t])} "
            f"(the locked features themselves no longer move; what remains leaks into features of the "
            f"extractors that are not perfectly linear in z), with mean diagonal "
            f"{fmt(s[t]['locked']['diagonal_mean'])} and {fmt(s[t]['locked']['faces_kept_mean'])} of faces kept.")
    out.append("")
    out.append("Unsupervised axes (sefa, pca) need no extractor to find, but each mixes several features: use them to "
               "discover what the generator varies, then `tlgan rename` the ones worth keeping.")
    return out


if __name__ == "__main__":
    main()
