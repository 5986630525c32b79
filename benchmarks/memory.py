"""Peak host memory of ``tlgan build`` as N grows, against the smallest build's (the floor: interpreter, torch, models).

Each build runs in its own child process and its peak resident set comes from
wait4, so nothing one run allocated can hide another's. Memory should be flat
in N: images live one batch at a time, stored samples go to disk shard by
shard, and fitting keeps only the normal equations.

    python benchmarks/memory.py                                   # CPU, N = 256 (floor), 2k, 8k, 32k
    python benchmarks/memory.py --device cuda --ns 256,100000,1000000 --dtype float16
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import machine_load, run_child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ns", default="256,2000,8000,32000", help="sample counts; the first is the floor")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--extractor", default=None, help="extractors [default: the three defaults]")
    parser.add_argument("--modes", default="store,stream")
    args = parser.parse_args()
    ns = [int(n) for n in args.ns.split(",")]
    print(f"# device {args.device}, dtype {args.dtype}, {machine_load()}")
    for mode in args.modes.split(","):
        floor = None
        for n in ns:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = ["build", "--n", str(n), "--device", args.device, "--dtype", args.dtype,
                       "--out", str(Path(tmp) / "axes.safetensors")]
                cmd += ["--extractor", args.extractor] if args.extractor else []
                cmd += ["--no-store-samples"] if mode == "stream" else []
                wall, peak, _ = run_child(cmd)
            floor = floor or peak
            label = "fit while sampling" if mode == "stream" else "stored samples + fit"
            print(f"{label:<22} N {n:>10,}: peak {peak:7,.0f} MiB  ratio to floor {peak / floor:.2f}  ({wall:.1f} s)")


if __name__ == "__main__":
    main()
