"""Reduced precision: how far readings and axes move from float32, and what it buys in speed.

For each dtype the same N latents (same seed) are labelled and fitted with
``fit_streaming``; the float32 run is the reference and the bound. Printed
per dtype: throughput and its ratio to float32, the largest change of any
reading in units of that feature's spread (over the first 1,024 faces), and
per axis the cosine with the float32 axis (axes with held-out R² under 0.2
are noisy at small N; their cosines are listed apart).

    python benchmarks/precision.py                                   # CPU: bfloat16 vs float32, N = 4,000
    python benchmarks/precision.py --device cuda --n 200000 --dtypes float16,bfloat16
(float16 is emulated on most CPUs and very slow there.)
"""

from __future__ import annotations

import argparse
import time

import torch
from common import setup, sync

from tlgan import load_extractor, load_generator
from tlgan.axes.fit import fit_streaming
from tlgan.sampling.fused import Labeller, LabelOptions
from tlgan.sampling.latents import sample_latents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--dtypes", default="bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = setup(args.device, None)
    generator = load_generator("digiface", device)
    extractor = load_extractor("emotion,landmarks,imagestats", device)
    names = extractor.feature_names
    z = sample_latents(args.seed, 0, min(1024, args.n), generator.latent_dim).to(device)

    def build(dtype: str):
        fit_streaming(generator, extractor, 512, args.seed + 1, dtype=dtype, progress=False)  # warm-up
        sync(device)
        start = time.perf_counter()
        axes = fit_streaming(generator, extractor, args.n, args.seed, dtype=dtype, progress=False)
        sync(device)
        return axes, args.n / (time.perf_counter() - start)

    ref_axes, ref_rate = build("float32")
    ref_readings = Labeller(generator, extractor).label(z).cpu()
    spread = ref_readings.std(0).clamp_min(1e-6)
    print(f"float32: {ref_rate:,.0f} samples/s (reference), N {args.n:,}")
    for dtype in args.dtypes.split(","):
        axes, rate = build(dtype)
        readings = Labeller(generator, extractor, LabelOptions(dtype=dtype)).label(z).cpu()
        change = ((readings - ref_readings).abs() / spread)
        worst = change.amax(0)
        cos = (axes.axes.double() * ref_axes.axes.double()).sum(1)
        good = [i for i, n in enumerate(names) if ref_axes.r2(n) >= 0.2]
        weak = [i for i in range(len(names)) if i not in good]
        print(f"{dtype}: {rate:,.0f} samples/s, ratio to float32 {rate / ref_rate:.2f}")
        print(f"  readings: largest change {float(worst.max()):.3f} spreads ({names[int(worst.argmax())]}), "
              f"mean change {float(change.mean()):.4f} spreads")
        print(f"  axes with R2 >= 0.2: min cosine to float32 {float(cos[good].min()):.5f} "
              f"({names[good[int(cos[good].argmin())]]})")
        if weak:
            print("  axes with R2 < 0.2: " + ", ".join(f"{names[i]} {float(cos[i]):.4f}" for i in weak))


if __name__ == "__main__":
    main()
