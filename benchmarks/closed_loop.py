"""Closed-loop check of the default knob set: does moving a knob change what the extractors read?

200 fresh seeded faces are set to −3σ and +3σ along one axis (default: happy); the script prints the change in
the mean reading of that feature, the same for three random unit directions (the null baseline), and, with
other knobs locked (default: yaw and brightness), how much each locked feature's reading moved, as a fraction of
its standard deviation across the faces.

    python benchmarks/closed_loop.py [--axis happy] [--lock yaw,brightness] [--faces 200] [--axes FILE]
"""

from __future__ import annotations

import argparse

import torch

from tlgan import Editor, load_axes, load_extractor, load_generator
from tlgan.axes.defaults import DEFAULT_GENERATOR, load_default_axes

FIRST_SEED = 1_000_000  # far from any seed used to fit


@torch.inference_mode()
def readings_at(gen, ext, axes, seeds, axis, value, locks=()) -> torch.Tensor:
    """Extractor readings (len(seeds), F) of each face with ``axis`` set to ``value`` under ``locks``."""
    zs = []
    for seed in seeds:
        editor = Editor(gen, axes, seed)
        editor.set_locks(locks)
        editor.set(axis, value)
        zs.append(editor.latent())
    return ext(gen(torch.stack(zs))).float()


@torch.inference_mode()
def random_direction_change(gen, ext, seeds, col, dim, span, trials=3) -> list[float]:
    from tlgan.sampling.latents import latent_for_seed

    z = torch.stack([latent_for_seed(s, dim) for s in seeds])
    out = []
    for t in range(trials):
        d = torch.nn.functional.normalize(torch.randn(dim, generator=torch.Generator().manual_seed(t)), dim=0)
        lo = z + (-span - z @ d)[:, None] * d
        hi = z + (span - z @ d)[:, None] * d
        out.append(float(ext(gen(hi))[:, col].mean() - ext(gen(lo))[:, col].mean()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--axis", default="happy")
    parser.add_argument("--lock", default="yaw,brightness")
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--span", type=float, default=3.0)
    parser.add_argument("--axes", default=None)
    args = parser.parse_args()
    axes = load_axes(args.axes) if args.axes else load_default_axes()
    gen = load_generator(DEFAULT_GENERATOR, "cpu")
    ext = load_extractor(axes.extractor_spec(), "cpu")
    names = ext.feature_names
    col = names.index(args.axis)
    locks = [l for l in args.lock.split(",") if l]
    seeds = range(FIRST_SEED, FIRST_SEED + args.faces)

    lo = readings_at(gen, ext, axes, seeds, args.axis, -args.span)
    hi = readings_at(gen, ext, axes, seeds, args.axis, args.span)
    print(f"{args.faces} faces, '{args.axis}' {-args.span:+.0f}σ -> {args.span:+.0f}σ, no locks:")
    print(f"  mean {args.axis}: {lo[:, col].mean():.3f} -> {hi[:, col].mean():.3f}  (change {hi[:, col].mean() - lo[:, col].mean():+.3f})")
    rnd = random_direction_change(gen, ext, seeds, col, gen.latent_dim, args.span)
    print(f"  random unit directions, same move: changes {', '.join(f'{r:+.3f}' for r in rnd)}")

    base = ext(gen(torch.stack([Editor(gen, axes, s).latent() for s in seeds]))).float()
    spread = base.std(0)
    def leak(a, b):
        return {n: float((b[:, names.index(n)] - a[:, names.index(n)]).mean() / spread[names.index(n)]) for n in locks}
    print(f"  unlocked drift of {', '.join(locks)} (mean change / std across faces): "
          + ", ".join(f"{n} {v:+.3f}" for n, v in leak(lo, hi).items()))
    llo = readings_at(gen, ext, axes, seeds, args.axis, -args.span, locks)
    lhi = readings_at(gen, ext, axes, seeds, args.axis, args.span, locks)
    print(f"with {', '.join(locks)} locked:")
    print(f"  mean {args.axis}: {llo[:, col].mean():.3f} -> {lhi[:, col].mean():.3f}  (change {lhi[:, col].mean() - llo[:, col].mean():+.3f})")
    print("  locked drift (mean change / std across faces): " + ", ".join(f"{n} {v:+.3f}" for n, v in leak(llo, lhi).items()))


if __name__ == "__main__":
    main()
