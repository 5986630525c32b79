"""Label efficiency of teaching a knob by clicking faces: active (margin) selection against random selection.

A simulated labeller answers from a hidden rule: an image statistic that is *not* one of the default knob set's
features, thresholded at its median over the reference faces, with a share of answers flipped (default 10%).
Rules (pixel statistics of the rendered 64x64 face; none is among the 20 shipped knobs):
  top_vs_bottom   mean luma of the top third minus the bottom third (light from above, hair vs chin)
  left_vs_right   mean luma of the left half minus the right half (side lighting)
  green_tint      mean green minus the mean of red and blue (a tint orthogonal to warmth)
  sharpness       mean absolute Laplacian of luma (fine detail vs blur)
For each rule the *reference axis* is the logistic fit on the reference faces (default 20,000), all labelled
without noise. The learner starts from one page of random faces, then asks for pages chosen by
``tlgan.editing.active.suggest`` (the faces nearest its current boundary, plus a random quarter) or, for the
baseline, pages of random faces from the same candidate pool; after each page the knob is refitted (without the
cross-validation, which does not change the axis) by each teacher: a plain logistic regression on z, the same under
the generator-sensitivity prior (``tlgan.editing.prior``, "+prior"), and learning from the pictures
(``tlgan.editing.looks``, "+looks": what the web app and ``tlgan teach`` use), and the cosine between its axis and
the reference axis is recorded.

Prints, per rule and label count, the median cosine over repeats for each teacher with active and random selection,
and the labels from which each median curve stays at or above --target (default 0.9).

    python benchmarks/teach_efficiency.py [--reference 20000] [--repeats 5] [--page 10] [--max-labels 300]

The renders and statistics are cached in --cache (default benchmarks/.cache/teach_features.pt).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tlgan.axes.defaults import DEFAULT_GENERATOR, load_default_axes
from tlgan.editing.active import POOL_SIZE, candidate_pool, quick_fit, suggest
from tlgan.editing.looks import Looks, looks_for
from tlgan.models.generators import load_generator
from tlgan.sampling.latents import latent_for_seed, sample_latents

RULES = ("top_vs_bottom", "left_vs_right", "green_tint", "sharpness")
REFERENCE_RUN = 777  # sample_latents run of the reference faces (not the shipped set's run 0)
POOLS = (0, 1, 2)


def statistics_of(images: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] -> the rules' statistics (N, len(RULES)) float64."""
    x = (images.double() + 1) / 2
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    h, w = luma.shape[1:]
    top, bottom = luma[:, : h // 3].mean((1, 2)), luma[:, -(h // 3):].mean((1, 2))
    left, right = luma[:, :, : w // 2].mean((1, 2)), luma[:, :, w // 2:].mean((1, 2))
    tint = (g - (r + b) / 2).mean((1, 2))
    lap = (4 * luma[:, 1:-1, 1:-1] - luma[:, :-2, 1:-1] - luma[:, 2:, 1:-1] - luma[:, 1:-1, :-2] - luma[:, 1:-1, 2:])
    return torch.stack([top - bottom, left - right, tint, lap.abs().mean((1, 2))], 1)


@torch.inference_mode()
def render_statistics(gen, z: torch.Tensor, batch: int = 250) -> torch.Tensor:
    out = []
    for start in range(0, len(z), batch):
        out.append(statistics_of(gen(z[start: start + batch])))
    return torch.cat(out)


def features(cache: Path, n_reference: int) -> dict:
    """Statistics of the reference faces and of the candidate pools' faces (rendered once, then cached)."""
    if cache.is_file():
        data = torch.load(cache, weights_only=True)
        if data["n_reference"] == n_reference:
            return data
    gen = load_generator(DEFAULT_GENERATOR, "cpu")
    start = time.perf_counter()
    z_ref = sample_latents(REFERENCE_RUN, 0, n_reference, gen.latent_dim)
    ref = render_statistics(gen, z_ref)
    pools = {}
    for pool in POOLS:
        _, z = candidate_pool(pool, gen.latent_dim)
        pools[pool] = render_statistics(gen, z.float())
    print(f"# rendered {n_reference + POOL_SIZE * len(POOLS):,} faces in {time.perf_counter() - start:.0f} s")
    data = {"n_reference": n_reference, "z_ref": z_ref, "ref": ref, **{f"pool{p}": v for p, v in pools.items()}}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def learn(rule_labels: np.ndarray, pool_seeds: np.ndarray, reference: torch.Tensor, pool: int, active: bool,
          page: int, max_labels: int, rng: np.random.Generator, scale: torch.Tensor | None = None,
          looks: Looks | None = None) -> dict[int, float]:
    """Cosine to the reference axis after each page of labels (label count -> cosine)."""
    answer = dict(zip(pool_seeds.tolist(), rule_labels.tolist()))
    examples: list[tuple[int, int]] = []
    curve = {}
    order = rng.permutation(len(pool_seeds))   # the random baseline's (and the first page's) order
    taken = 0
    dim = reference.numel()
    while len(examples) < max_labels:
        ones = sum(y for _, y in examples)
        if active and examples and min(ones, len(examples) - ones) >= 2:
            seeds = suggest(examples, dim, page, pool, scale=scale, looks=looks).seeds
        else:
            labelled = {s for s, _ in examples}
            seeds = []
            while len(seeds) < page:
                s = int(pool_seeds[order[taken]])
                taken += 1
                if s not in labelled:
                    seeds.append(s)
        examples += [(s, answer[s]) for s in seeds]
        ones = sum(y for _, y in examples)
        if min(ones, len(examples) - ones) >= 2:
            z = torch.stack([latent_for_seed(s, dim) for s, _ in examples]).double()
            y = torch.tensor([y for _, y in examples])
            w = looks.knob(looks.features(z), y)[0] if looks is not None else quick_fit(z, y, scale=scale)[0]
            curve[len(examples)] = cosine(w, reference)
    return curve


def needed(curve: dict[int, float], target: float) -> int | None:
    """The first label count from which the cosine stays at or above ``target``."""
    counts = sorted(curve)
    for i, n in enumerate(counts):
        if all(curve[m] >= target for m in counts[i:]):
            return n
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=int, default=20_000, help="fully labelled reference faces")
    parser.add_argument("--repeats", type=int, default=5, help="learners per rule and strategy (different pools)")
    parser.add_argument("--page", type=int, default=10, help="faces per page")
    parser.add_argument("--max-labels", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.10, help="share of answers flipped")
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--lower", type=float, default=0.7, help="a second, lower bar to compare strategies at")
    parser.add_argument("--prior", action=argparse.BooleanOptionalAction, default=True,
                        help="also run with the generator-sensitivity prior (--teacher sensitivity)")
    parser.add_argument("--power", type=float, default=1.0, help="prior covariance S^power")
    parser.add_argument("--looks", action=argparse.BooleanOptionalAction, default=True,
                        help="also run learning from the pictures (tlgan.editing.looks, what the web app uses)")
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated subset of the rules")
    parser.add_argument("--strategies", default="", help="comma-separated subset of the strategies (default: all)")
    parser.add_argument("--cache", type=Path, default=Path(__file__).parent / ".cache" / "teach_features.pt")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    axes = load_default_axes()
    strategies = ["active", "random"]
    scale = None
    if args.prior:
        from tlgan.editing.prior import cached_sensitivity, prior_scale

        start = time.perf_counter()
        scale = prior_scale(cached_sensitivity(load_generator(DEFAULT_GENERATOR, "cpu")), args.power)
        print(f"# sensitivity prior (power {args.power}) ready in {time.perf_counter() - start:.1f} s")
        strategies += ["active+prior", "random+prior"]
    looks = None
    if args.looks:
        start = time.perf_counter()
        looks = looks_for(load_generator(DEFAULT_GENERATOR, "cpu"))
        print(f"# picture-space transfer pool ready in {time.perf_counter() - start:.1f} s")
        strategies += ["active+looks", "random+looks"]
    if args.strategies:
        strategies = [s for s in strategies if s in args.strategies.split(",")]
    assert not set(RULES) & set(axes.names), "a rule is one of the knob set's features"
    data = features(args.cache, args.reference)
    dim = axes.latent_dim
    print(f"# default model {axes.generator}; reference axes from {args.reference:,} faces; pages of {args.page}; "
          f"{args.noise:.0%} of answers flipped; {args.repeats} repeats (median shown)")
    checkpoints = [n for n in (20, 40, 60, 80, 100, 150, 200, 300) if n <= args.max_labels]
    summary = []
    for r, rule in enumerate(RULES):
        if rule not in args.rules.split(","):
            continue
        threshold = float(data["ref"][:, r].median())
        y_ref = (data["ref"][:, r] > threshold).long()
        reference, _ = quick_fit(data["z_ref"].double(), y_ref)
        # how well a linear knob can follow the rule at all: the reference fit's own accuracy
        acc = float((((data["z_ref"].double() @ reference) > 0).long() == y_ref).double().mean())
        curves: dict[str, list[dict[int, float]]] = {s: [] for s in strategies}
        for k in range(args.repeats):
            pool = POOLS[k % len(POOLS)]
            seeds, _ = candidate_pool(pool, dim)
            rng = np.random.default_rng([r, k])
            clean = (data[f"pool{pool}"][:, r] > threshold).numpy().astype(np.int64)
            flip = rng.random(len(clean)) < args.noise
            noisy = np.where(flip, 1 - clean, clean)
            for strategy in curves:
                curves[strategy].append(learn(noisy, seeds, reference, pool, strategy.startswith("active"), args.page,
                                              args.max_labels, np.random.default_rng([r, k, 1]),
                                              scale if strategy.endswith("+prior") else None,
                                              looks if strategy.endswith("+looks") else None))
        print(f"\n{rule}: the reference axis classifies its own faces with accuracy {acc:.2f}")
        print("  labels  " + "".join(f"{n:>7}" for n in checkpoints))
        for strategy, runs in curves.items():
            row = [statistics.median(c.get(n, float("nan")) for c in runs) for n in checkpoints]
            print(f"  {strategy:<8}" + "".join(f"{v:>7.3f}" for v in row))
        medians = {s: {n: statistics.median(c[n] for c in runs if n in c) for n in runs[0]} for s, runs in curves.items()}
        need = {s: needed(m, args.target) for s, m in medians.items()}
        shown = {s: (str(v) if v is not None else f">{args.max_labels}") for s, v in need.items()}
        lower = {s: needed(m, args.lower) for s, m in medians.items()}
        print(f"  labels to reach cosine {args.lower}: " + ", ".join(
            f"{k} {v if v is not None else '>' + str(args.max_labels)}" for k, v in lower.items()))
        print(f"  labels to reach cosine {args.target}: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
        summary.append((rule, shown))
    print("\nsummary (labels from which the median cosine stays >= %.2f; target: active <= 60 and <= half of "
          "random):" % args.target)
    print(f"  {'rule':<16}" + "".join(f"{k:>15}" for k in strategies))
    for rule, shown in summary:
        print(f"  {rule:<16}" + "".join(f"{shown[k]:>15}" for k in strategies))


if __name__ == "__main__":
    main()
