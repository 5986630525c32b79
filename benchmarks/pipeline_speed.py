"""Pipeline throughput against its bound: labelled samples/s vs the bare generator + emotion model forward.

The bound runs ``emotion(generator.synthesize(z))`` on latents already on the
device: same modules, batch size, device and dtype as the pipeline, nothing
else. The pipeline is the real thing: ``run_samples`` (latents drawn on the
CPU, default extractors, readings checked, shards written to a temporary
folder) and ``fit_streaming`` (the same, fitted while sampling, nothing
stored). The ratio is the share of the bound the pipeline keeps; what it
loses is everything else (the other extractors included). Rounds alternate
bound and pipeline so that load from other processes hits both alike; the
ratio is of the best round of each, and the medians are printed too.

    python benchmarks/pipeline_speed.py                     # CPU, 1,024 samples a round, 5 rounds
    python benchmarks/pipeline_speed.py --device cuda --n 262144 --dtype float16 [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from common import setup, summary, timed
from tlgan import load_extractor, load_generator
from tlgan.extractors import DEFAULT_EXTRACTORS
from tlgan.fit import fit_streaming
from tlgan.fused import LabelOptions, Labeller
from tlgan.pipeline import run_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=1024, help="samples per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=None, help="batch size [default: the pipeline's choice]")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--extractor", default=DEFAULT_EXTRACTORS)
    args = parser.parse_args()

    device = setup(args.device, args.threads)
    generator = load_generator("digiface", device)
    extractor = load_extractor(args.extractor, device)
    options = LabelOptions(args.batch, args.dtype, args.compile)
    labeller = Labeller(generator, extractor, options)
    batch = labeller.options.batch_size
    # The bound: the same fused step with the emotion model as the only extractor.
    bound = Labeller(generator, load_extractor("emotion", device), LabelOptions(batch, args.dtype, args.compile))
    z = torch.randn(args.n, generator.latent_dim, generator=torch.Generator().manual_seed(0)).to(device)
    print(f"# batch {batch}, dtype {args.dtype}, compile {args.compile}, {args.n:,} samples a round, "
          f"extractors {extractor.name}")

    def run_pipeline(folder: str, seed: int) -> None:
        run_samples(generator, extractor, args.n, seed, folder, batch_size=batch, dtype=args.dtype,
                    compile=args.compile, progress=False)

    def run_stream(seed: int) -> None:
        fit_streaming(generator, extractor, args.n, seed, batch_size=batch, dtype=args.dtype, compile=args.compile,
                      progress=False)

    # Warm-up (kernel selection, compilation, first allocations) outside the timed rounds.
    bound.label(z[: 2 * batch])
    with tempfile.TemporaryDirectory() as tmp:
        run_samples(generator, extractor, min(args.n, 2 * batch), 10**6, tmp, batch_size=batch, dtype=args.dtype,
                    compile=args.compile, progress=False)
    rates: dict[str, list[float]] = {"bound": [], "run_samples": [], "fit_streaming": []}
    for r in range(args.rounds):
        rates["bound"].append(args.n / timed(lambda: bound.label(z), device))
        with tempfile.TemporaryDirectory() as tmp:
            rates["run_samples"].append(args.n / timed(lambda: run_pipeline(tmp, r), device))
        rates["fit_streaming"].append(args.n / timed(lambda: run_stream(r), device))
    print(f"{'bare generator + emotion':<26} {summary(rates['bound'])} samples/s")
    for name in ("run_samples", "fit_streaming"):
        ratio_best = max(rates[name]) / max(rates["bound"])
        ratio_median = statistics.median(rates[name]) / statistics.median(rates["bound"])
        print(f"{name:<26} {summary(rates[name])} samples/s   ratio to bound: best {ratio_best:.2f}, "
              f"median {ratio_median:.2f}")


if __name__ == "__main__":
    main()
