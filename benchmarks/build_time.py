"""End-to-end build time (``tlgan build``: start, load, sample, render, label, fit, save) against its bound.

Runs the real command in a child process, with stored samples (resumable,
the default) and with ``--no-store-samples`` (fitted while sampling). The
bound is N divided by the bare generator + emotion model throughput measured
in this process just before (same device, batch size and dtype): the time the
two models alone would need. The ratio bound/actual is the share of the
wall time spent in them.

    python benchmarks/build_time.py                          # CPU, N = 20,000
    python benchmarks/build_time.py --device cuda --n 1000000 --dtype float16 [--compile]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import torch
from common import run_child, setup, timed

from tlgan import load_extractor, load_generator
from tlgan.sampling.fused import Labeller, LabelOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--modes", default="store,stream", help="store, stream or both (comma-separated)")
    parser.add_argument("--bound-n", type=int, default=None, help="samples for the bound [default: N/10, at least 1,024]")
    args = parser.parse_args()

    device = setup(args.device, None)
    generator = load_generator("digiface", device)
    bound = Labeller(generator, load_extractor("emotion", device), LabelOptions(args.batch, args.dtype, args.compile))
    bound_n = args.bound_n or max(1024, args.n // 10)
    z = torch.randn(bound_n, generator.latent_dim, generator=torch.Generator().manual_seed(0)).to(device)
    bound.label(z[: 2 * bound.options.batch_size])  # warm-up
    rate = max(bound_n / timed(lambda: bound.label(z), device) for _ in range(3))
    bound_seconds = args.n / rate
    print(f"# N {args.n:,}, batch {bound.options.batch_size}, dtype {args.dtype}, compile {args.compile}")
    print(f"bound: bare generator + emotion {rate:,.0f} samples/s -> {bound_seconds:.1f} s for N")
    del z, bound

    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "axes.safetensors"
            cmd = ["build", "--n", str(args.n), "--device", str(device), "--dtype", args.dtype, "--out", str(out)]
            cmd += ["--batch-size", str(args.batch)] if args.batch else []
            cmd += ["--compile"] if args.compile else []
            cmd += ["--no-store-samples"] if mode == "stream" else []
            wall, peak, err = run_child(cmd)
        # The command prints "wrote K axes to OUT (build 12.34 s)" or "(fit 0.53 s)"; timings are not in the file.
        found = re.search(r"\((?:build|fit) ([0-9.]+) s\)", err)
        inner = float(found.group(1)) if found else float("nan")
        label = "fit while sampling" if mode == "stream" else "stored samples + fit"
        print(f"tlgan build ({label}): {wall:.1f} s end to end, peak host memory {peak:,.0f} MiB, "
              f"{args.n / wall:,.0f} samples/s; ratio bound/actual {bound_seconds / wall:.2f}"
              + (f" (sampling+fit inside the command {inner:.1f} s)" if mode == "stream" else
                 f" (fit alone {inner:.2f} s)"))


if __name__ == "__main__":
    main()
