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
from tlgan.axes.fit import fit_streaming
from tlgan.models.extractors import DEFAULT_EXTRACTORS
from tlgan.sampling.fused import Labeller, LabelOptions
from tlgan.sampling.pipeline import run_samples


def conv_transpose_flops(generator: torch.nn.Module, batch: int = 1) -> int:
    """Multiply-adds x 2 of a generator's transposed convolutions for one image (the DCGAN's compute)."""
    total, size = 0, 1
    for module in generator.modules():
        if isinstance(module, torch.nn.ConvTranspose2d):
            total += 2 * module.in_channels * module.out_channels * module.kernel_size[0] * module.kernel_size[1] * size * size
            size = (size - 1) * module.stride[0] - 2 * module.padding[0] + module.kernel_size[0]
    return total * batch


def matmul_flops_per_second(device: torch.device, threads: int) -> float:
    """This machine's float32 matrix-multiply rate with ``threads`` threads (best of 5, 1024^3)."""
    a = torch.randn(1024, 1024, device=device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a @ a
        best = min(timed(lambda: a @ a, device) for _ in range(5))
    finally:
        torch.set_num_threads(before)
    return 2 * 1024**3 / best


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
    if device.type == "cpu" and args.dtype == "float32":
        # How close the models come to the hardware: the generator's arithmetic rate in the
        # bound, against a large float32 matmul on the same cores (per worker thread).
        workers = labeller.options.workers
        cores = workers if workers > 1 else torch.get_num_threads()
        gen_only = Labeller(generator, load_extractor("imagestats", device), LabelOptions(batch, args.dtype))
        gen_rate = max(args.n / timed(lambda: gen_only.label(z), device) for _ in range(3))
        achieved = gen_rate * conv_transpose_flops(generator)
        peak = matmul_flops_per_second(device, 1) * workers if workers > 1 else matmul_flops_per_second(device, cores)
        print(f"{'generator (+ imagestats)':<26} {gen_rate:,.0f} samples/s = {achieved / 1e9:,.0f} GFLOP/s, "
              f"{achieved / peak:.0%} of a 1024^3 float32 matmul on the same {cores} core(s) ({peak / 1e9:,.0f} GFLOP/s)")
    for name in ("run_samples", "fit_streaming"):
        ratio_best = max(rates[name]) / max(rates["bound"])
        ratio_median = statistics.median(rates[name]) / statistics.median(rates["bound"])
        print(f"{name:<26} {summary(rates[name])} samples/s   ratio to bound: best {ratio_best:.2f}, "
              f"median {ratio_median:.2f}")


if __name__ == "__main__":
    main()
