"""Compare tlgan's direction-finding methods on the default generator and write docs/comparison.md.

Every supervised method (tlgan, ridge, svm, logistic) is fitted on the same labelled samples; the unsupervised
ones (sefa, pca) are computed from the generator. All are then evaluated with ``tlgan.evaluation.evaluate`` on the same
fresh faces (same evaluation seed, same sweep): diagonal strength, worst off-diagonal leak (free and with the
other axes locked), monotonicity, faces kept, identity drift per σ (dlib's descriptor, on the first
--identity-faces faces; 0 skips it) and fit time. Rerunning reuses the cached samples.

    python benchmarks/compare_methods.py [--samples 6000] [--faces 32] [--steps 5] [--identity-faces 8]
    python benchmarks/compare_methods.py --modes [--faces 32] [--locked-faces 8] [--range 2] [--steps 5]
    python benchmarks/compare_methods.py --modes --identity-only --identity-faces 4 [--mode exact-free ...]
    python benchmarks/compare_methods.py --modes --mode exact-identity --held-faces 4 --identity-faces 4 \
        --range 1 --steps 3

``--modes`` compares linear-free, linear-locked, exact-free, exact-locked and exact-identity (exact, identity
held) edits of the shipped axes instead (see compare_modes.py; its MODES list takes more) and rewrites only that section of the page; with
``--identity-only`` it measures only identity, on --identity-faces faces per mode, and adds it to the results
already published in docs/comparison-modes.json (or cached), which keep their own face counts.

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

from tlgan import timing
from tlgan.atomic import write_text_atomic
from tlgan.axes.defaults import DEFAULT_GENERATOR
from tlgan.axes.fit import fit_axes
from tlgan.axes.methods.discover import discover_axes
from tlgan.evaluation.evaluate import DEFAULT_SEED, evaluate
from tlgan.models.extractors import DEFAULT_EXTRACTORS, load_extractor
from tlgan.models.extractors.identity import load_identity
from tlgan.models.generators import load_generator
from tlgan.sampling.pipeline import run_samples, set_cpu_threads

ROOT = Path(__file__).resolve().parent.parent
SUPERVISED = ("tlgan", "ridge", "svm", "logistic")
UNSUPERVISED = ("sefa", "pca")


def fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def seconds(value: float) -> str:
    return "< 0.01 s" if value < 0.01 else f"{value:.2f} s"


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
    parser.add_argument("--modes", action="store_true",
                        help="instead: linear/exact × free/locked edits of the shipped axes (compare_modes.py)")
    parser.add_argument("--locked-faces", type=int, default=None, help="faces for exact-locked (--modes)")
    parser.add_argument("--free-faces", type=int, default=None, help="faces for exact-free (--modes)")
    parser.add_argument("--held-faces", type=int, default=None,
                        help="faces for exact-identity (--modes) [default: exact-free's]")
    from compare_modes import MODE_NAMES

    parser.add_argument("--mode", action="append", choices=MODE_NAMES,
                        help="modes to run (--modes; default all; results are cached, so they can run apart)")
    parser.add_argument("--identity-faces", type=int, default=None,
                        help="faces read for identity drift (default 8; 16 with --modes; 0: none)")
    parser.add_argument("--identity-only", action="store_true",
                        help="--modes: measure only identity and add it to the published (or cached) results")
    parser.add_argument("--render-only", action="store_true",
                        help="--modes: run nothing; rewrite the section from the cached (or published) results")
    args = parser.parse_args()
    if args.modes:
        from compare_modes import run_modes

        set_cpu_threads(1)
        run_modes(args.faces, args.locked_faces or args.faces, args.span, args.steps, args.device,
                  args.eval_seed, Path(args.out), tuple(args.mode or MODE_NAMES),
                  Path(args.cache).with_name("compare-modes"), args.free_faces,
                  16 if args.identity_faces is None else args.identity_faces, args.identity_only, args.render_only,
                  args.held_faces)
        return
    identity_faces = 8 if args.identity_faces is None else args.identity_faces
    set_cpu_threads()
    t_start = time.perf_counter()
    gen = load_generator(DEFAULT_GENERATOR, args.device)
    ext = load_extractor(DEFAULT_EXTRACTORS, args.device)
    identity = load_identity(args.device) if identity_faces > 0 else None
    sweep = sorted({round(-args.span + 2 * args.span * i / (args.steps - 1), 6) for i in range(args.steps)} | {0.0})

    t0 = time.perf_counter()
    run_samples(gen, ext, args.samples, args.seed, args.cache, progress=True)
    sample_seconds = time.perf_counter() - t0

    results: dict[str, dict] = {}
    for method in SUPERVISED + UNSUPERVISED:
        if method in SUPERVISED:
            # fit time: the best of three runs (the first also warms the file cache), as the axes' params record it
            fits = []
            for _ in range(3):
                fits.append((fit_axes(args.cache, method=method), timing.last("fit_seconds")))
            axis_set, fit_seconds = min(fits, key=lambda pair: pair[1])
        else:
            axis_set = discover_axes(gen, method, args.components, ext, seed=args.seed)
            fit_seconds = timing.last("fit_seconds")
        ev = evaluate(gen, ext, axis_set, n=args.faces, seed=args.eval_seed, sweep=sweep, strip_faces=0,
                      progress=False, identity=identity, identity_faces=max(identity_faces, 1))
        results[method] = {"axes": axis_set, "eval": ev.to_dict(), "fit_seconds": fit_seconds}
        print(f"{method}: fit {fit_seconds:.2f} s, evaluated ({time.perf_counter() - t_start:.0f} s)",
              flush=True)

    total = time.perf_counter() - t_start
    args.identity_faces = identity_faces
    text = render(results, args, sweep, sample_seconds, total, [f.name for f in ext.features])
    from compare_modes import BEGIN, END

    old = Path(args.out).read_text() if Path(args.out).exists() else ""
    if BEGIN in old and END in old:  # keep the edit-modes section (compare_methods.py --modes writes it)
        text = text.rstrip("\n") + "\n\n" + old[old.index(BEGIN): old.index(END) + len(END)] + "\n"
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
        f"samples (seed {args.seed}, 10% held out; "
        + (f"sampling and labelling took {sample_seconds:.0f} s" if sample_seconds >= 1 else "reused from the cache")
        + "); sefa and pca "
        f"({args.components} axes each) were computed from the generator (pca from 5,000 sampled latents) and "
        f"labelled by the extractors. Every method was then evaluated on the same {args.faces} fresh faces "
        f"(evaluation seed {args.eval_seed}), each moved by {', '.join(f'{t:+g}' if t else '0' for t in sweep)} σ along every "
        "axis and re-read (see [evaluate.md](evaluate.md)). Effects are in feature standard deviations per σ of "
        "the knob.",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, device `{args.device}`; the whole run "
        f"took {total / 60:.1f} minutes. Command: `python benchmarks/compare_methods.py --samples {args.samples} "
        f"--faces {args.faces} --steps {args.steps} --identity-faces {args.identity_faces}`.",
        "",
        "## Supervised methods: one axis per feature",
        "",
        "| method | fit time | held-out fit (at fitting) | diagonal, mean | leak, mean | worst leak "
        "| locked: diagonal | locked: leak, mean | locked: worst leak | monotonicity | faces kept "
        "| identity / σ (free / locked) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, r in sup.items():
        free, locked = r["eval"]["summary"]["free"], r["eval"]["summary"]["locked"] or {}
        metric, value = stored_quality(r["axes"])
        lines.append(
            f"| {method} | {seconds(r['fit_seconds'])} | {metric} {fmt(value)} | {fmt(free['diagonal_mean'])} "
            f"| {fmt(free['leak_mean'])} | {leak_text(free['leak_max'])} | {fmt(locked.get('diagonal_mean'))} "
            f"| {fmt(locked.get('leak_mean'))} | {leak_text(locked.get('leak_max'))} "
            f"| {fmt(free['monotonicity_mean'])} | {fmt(free['faces_kept_mean'])} "
            f"| {fmt(free.get('identity_per_sigma_mean'), 3)} / {fmt(locked.get('identity_per_sigma_mean'), 3)} |")
    lines += [
        "",
        "*diagonal*: mean over the axes of the change of the axis' own feature; *leak*: for each axis the largest "
        "change of any other feature, averaged (mean) or the largest over all axes (worst); *locked*: the same "
        f"with the other {len(features) - 1} axes locked (TL-GAN) or conditioned on (InterFaceGAN's "
        "n' = p − Cᵀ(CCᵀ)⁻¹Cp, for svm and logistic; the same subspace); *monotonicity*: mean Spearman correlation of the feature with the "
        "knob along the sweep; *faces kept*: fraction of faces whose face probability stays ≥ 0.5 over the whole "
        "sweep; *identity / σ*: mean over the axes of the identity drift, the mean over faces of the distance "
        "between dlib's face descriptors of the moved and the unmoved face divided by |offset| (the literature's ID "
        f"metric; the first {args.identity_faces} faces, those whose landmarks are not found left out; dlib calls "
        "faces under 0.6 apart the same person, and two different faces of this generator are a median 0.71 apart). "
        f"Fit time is the time to read the samples and fit all {len(features)} axes (best of three runs; on a shared machine these vary by a few times between runs, so only their order of magnitude "
        "matters).",
        "",
        "### Diagonal per feature (free / locked)",
        "",
        "| feature | " + " | ".join(sup) + " | cos(tlgan, svm) | tlgan identity / σ (free / locked) |",
        "|---|" + "---|" * (len(sup) + 2),
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
        t = by_method["tlgan"].get(name) or {}
        ident = f"{fmt((t.get('identity') or {}).get('per_sigma'), 3)} / " \
                f"{fmt(((t.get('locked') or {}).get('identity') or {}).get('per_sigma'), 3)}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cos:.2f} | {ident} |")

    lines += ["", "## Unsupervised methods: what each axis moves", "",
              "| axis | moves most | worst other | monotonicity | faces kept | identity / σ |",
              "|---|---|---|---|---|---|"]
    for method in UNSUPERVISED:
        r = results[method]
        for a in r["eval"]["axes"]:
            mm, wl = a["moves_most"], a["worst_leak"]
            lines.append(f"| {a['name']} | {mm['feature']} {fmt(mm['effect'], signed=True)} "
                         f"| {wl['feature']} {fmt(wl['effect'], signed=True)} | {fmt(a['monotonicity'])} "
                         f"| {fmt(a['faces_kept'])} | {fmt((a.get('identity') or {}).get('per_sigma'), 3)} |")
    lines += ["", f"Fit time: sefa {seconds(results['sefa']['fit_seconds'])} (closed form), "
              f"pca {seconds(results['pca']['fit_seconds'])} (5,000 latents, layer "
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
    best = lambda d: " and ".join(m for m in SUPERVISED if d[m] >= max(d.values()) - 0.005)  # noqa: E731
    t = "tlgan"
    out = ["## Which method the default uses, and why", ""]
    out.append(
        f"`tlgan build` fits with **tlgan** (least squares in logit/arctanh space) unless told otherwise. Here its "
        f"axes move their own feature by {fmt(diag[t])} SD per σ on average, against {fmt(leak[t])} for the "
        f"largest other feature (ratio {fmt(ratio[t])}). The best mean diagonal is {best(diag)}'s "
        f"({fmt(max(diag.values()))}); the best diagonal-to-leak ratio is {best(ratio)}'s ({fmt(max(ratio.values()))}).")
    svm_axes = results["svm"]["axes"]
    per_class = math.ceil(svm_axes.params["percent"] / 100 * svm_axes.samples * (1 - svm_axes.params["val_fraction"]))
    if diag["svm"] < diag[t]:
        out.append(
            f"svm fits each boundary to only {2 * per_class} samples (the top and bottom "
            f"{svm_axes.params['percent']:g}%), which likely explains its lower diagonal ({fmt(diag['svm'])}) at this "
            "N; InterFaceGAN's authors used 500,000 samples or more.")
    close = ratio[t] >= 0.9 * max(ratio.values()) and diag[t] >= 0.9 * max(diag.values())
    if close:
        out.append(
            f"tlgan is within 10% of the best on both counts, and wins on the rest: it fits in {seconds(fit[t])} "
            f"against {seconds(fit['svm'])} for svm and {seconds(fit['logistic'])} for logistic, streams over any number "
            "of samples in constant memory (svm and logistic hold their samples in memory), uses every sample, has "
            "no threshold or percentage to choose, and reports a held-out R² that says how much of each feature "
            "the latent explains linearly.")
    else:
        better = [m for m in SUPERVISED if ratio[m] > ratio[t] * 1.1 or diag[m] > diag[t] * 1.1]
        out.append(
            f"Here {', '.join(better)} did measurably better than tlgan on the knobs' effect, at a fit time of "
            + ", ".join(f"{fit[m]:.2f} s ({m})" for m in better) + f" against {fit[t]:.2f} s. tlgan stays the "
            "default because it streams over any number of samples in constant memory and has no threshold or "
            f"percentage to tune; use `tlgan build --method {better[0]}` where these numbers matter more.")
    a, r = results[t]["axes"], results["ridge"]["axes"]
    cos = min(float(a.axes[i].double() @ r.axes[r.index(name)].double()) for i, name in enumerate(a.names))
    out.append(f"ridge (penalty {r.params['ridge']:g}) is tlgan with shrinkage; at this N its axes match tlgan's "
               f"(smallest cosine between the two axes of a feature: {cos:.4f}), hence the identical rows.")
    locked = s[t]["locked"]
    if locked:
        gains = [a["locked"]["gain"] for a in results[t]["eval"]["axes"] if a["locked"]]
        out.append(
            f"Locking the {len(results[t]['axes']) - 1} other axes changes tlgan's mean leak from {fmt(leak[t])} to {fmt(locked['leak_mean'])} "
            f"and its mean diagonal from {fmt(diag[t])} to {fmt(locked['diagonal_mean'])}, with "
            f"{fmt(locked['faces_kept_mean'])} of faces kept (free: {fmt(s[t]['free']['faces_kept_mean'])}). A locked "
            f"knob keeps its value exactly, but the readings are not linear in z, and the locked direction keeps "
            f"only {fmt(sum(gains) / len(gains))} of its axis on average (lowest {fmt(min(gains))}), so a 1σ knob "
            "move travels further in latent space; lock the few features that matter rather than all of them.")
    out.append("")
    out.append("Unsupervised axes (sefa, pca) need no extractor to be found, but each moves several features: use "
               "them to see what the generator varies, then `tlgan rename` the ones worth keeping.")
    return out


if __name__ == "__main__":
    main()
