"""The cost of distribution: labelled samples/s of the local pipeline against a Ray build with 1 and 2 workers.

All three run in the same process, one after another, on the same samples
(the same seed, N, shard size, extractors, batch size), each writing its
shards to a temporary folder: ``run_samples`` with this machine's CPU
threads, then ``sample_on_cluster`` on a Ray cluster started here (``--ray
local``: one actor per CPU) with 1 and with 2 workers. Rounds alternate the
three so that load from other processes hits them alike; the workers' start-up
(loading torch and the models, once per build) is timed apart from the rate.
A ratio near 1 for 2 workers on 2 cores means the distribution itself costs
little; a 1-worker run on 2 cores has half the cores of the local pipeline.

    python benchmarks/distributed_speed.py                    # 2,048 samples a round, 3 rounds
    python benchmarks/distributed_speed.py --n 8192 --rounds 2 --extractor emotion,landmarks,imagestats
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import setup, summary

from tlgan import load_extractor, load_generator
from tlgan.models.extractors import DEFAULT_EXTRACTORS
from tlgan.sampling.distributed import Cluster, WorkerPool, sample_on_cluster
from tlgan.sampling.fused import LabelOptions, cpu_budget
from tlgan.sampling.pipeline import run_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="samples per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--extractor", default=DEFAULT_EXTRACTORS)
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to time")
    args = parser.parse_args()

    device = setup("cpu", None)
    generator = load_generator("digiface", device)
    extractor = load_extractor(args.extractor, device)
    counts = [int(w) for w in args.workers.split(",")]
    print(f"# {args.n:,} samples a round in shards of {args.shard_size}, extractors {extractor.name}, "
          f"{cpu_budget()} CPUs, Ray worker counts {counts}")

    def local(seed: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_samples(generator, extractor, args.n, seed, tmp, shard_size=args.shard_size, progress=False)
            return args.n / (time.perf_counter() - start)

    local(10**6)  # warm-up
    rates: dict[str, list[float]] = {"local pipeline": []}
    # Logical CPUs for every pool at once (only one runs at a time), so each keeps its models loaded.
    with Cluster("local", local_cpus=sum(counts)) as cluster:
        pools = {}
        for count in counts:
            start = time.perf_counter()
            pools[count] = WorkerPool(cluster, "digiface", args.extractor, "cpu", LabelOptions(), workers=count)
            print(f"# {count} Ray worker(s) started (torch + models loaded) in {time.perf_counter() - start:.1f} s")
            rates[f"ray, {count} worker(s)"] = []

        def on_ray(count: int, seed: int) -> float:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                sample_on_cluster(pools[count], args.n, seed, tmp, args.shard_size, progress=False)
                return args.n / (time.perf_counter() - start)

        for count in counts:
            on_ray(count, 10**6 + count)  # warm-up
        for r in range(args.rounds):
            rates["local pipeline"].append(local(r))
            for count in counts:
                rates[f"ray, {count} worker(s)"].append(on_ray(count, r))
        for pool in pools.values():
            pool.close()
    base_best, base_median = max(rates["local pipeline"]), statistics.median(rates["local pipeline"])
    for name, values in rates.items():
        print(f"{name:<22} {summary(values)} samples/s   ratio to local: best {max(values) / base_best:.2f}, "
              f"median {statistics.median(values) / base_median:.2f}")


if __name__ == "__main__":
    main()
