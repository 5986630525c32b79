"""Throughput of each default extractor (and of generator + all three) on default-generator faces.

Prints images/s per extractor at a fixed batch size, best of a few timed
repeats after one warm-up, and with --stats the mean and standard deviation of
every feature over the faces rendered.

    python benchmarks/extractor_speed.py [--batch 256] [--repeats 5] [--device cpu] [--stats 1000]
"""

from __future__ import annotations

import argparse
import time

import torch

from tlgan import load_extractor, load_generator


def images_per_second(fn, batch: int, repeats: int, device: torch.device) -> float:
    """Best-of-``repeats`` throughput of ``fn()``, which processes ``batch`` images."""
    fn()  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return batch / best


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stats", type=int, default=0, help="also print feature mean/std over this many faces")
    args = parser.parse_args()

    generator = load_generator("digiface", args.device)
    device = next(generator.parameters()).device
    seed = torch.Generator().manual_seed(0)
    z = torch.randn(args.batch, generator.latent_dim, generator=seed).to(device)
    images = generator(z)
    print(f"device {device}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"{'generator':<28} {images_per_second(lambda: generator(z), args.batch, args.repeats, device):9.0f} images/s")
    for name in ("emotion", "landmarks", "imagestats", "emotion,landmarks,imagestats"):
        extractor = load_extractor(name, device)
        rate = images_per_second(lambda: extractor(images), args.batch, args.repeats, device)
        print(f"{name:<28} {rate:9.0f} images/s  ({1000 / rate:.3f} ms/image)")
    everything = load_extractor("emotion,landmarks,imagestats", device)
    rate = images_per_second(lambda: everything(generator(z)), args.batch, args.repeats, device)
    print(f"{'generator + all three':<28} {rate:9.0f} images/s")

    if args.stats:
        features = torch.cat([everything(generator(torch.randn(len(c), generator.latent_dim, generator=seed).to(device)))
                              for c in torch.arange(args.stats).split(args.batch)]).cpu()
        print(f"\nfeatures over {args.stats} faces:  {'mean':>8} {'std':>8} {'min':>8} {'max':>8}")
        for i, feature in enumerate(everything.features):
            col = features[:, i]
            print(f"  {feature.name:<22} {col.mean():8.3f} {col.std():8.3f} {col.min():8.3f} {col.max():8.3f}")


if __name__ == "__main__":
    main()
