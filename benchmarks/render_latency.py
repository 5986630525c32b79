"""Single-face latency of the interactive path: a knob move plus ``Editor.render``, p50/p95, against the bare generator.

Each timed call moves one knob of the shipped set to a random value (with a
lock, as the web app does) and renders the face to a CPU tensor. The bound is
``generator.synthesize`` of one latent already on the device, timed in the
same run, interleaved call by call. Every CPU thread count from 1 to the
machine's is measured, since on a small shared machine one thread can beat
two (a thread waiting for a descheduled peer stalls the whole call).

    python benchmarks/render_latency.py [--device cpu] [--calls 300]
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from common import percentile, setup, sync

from tlgan import Editor, load_generator
from tlgan.axes.defaults import load_default_axes
from tlgan.sampling.fused import cpu_budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="*", default=None, help="thread counts [default: 1..all]")
    args = parser.parse_args()

    device = setup(args.device, None)
    generator = load_generator("digiface", device)
    axes = load_default_axes()
    editor = Editor(generator, axes, seed=0)
    z = editor.latent()[None].to(device)
    rng = random.Random(0)
    counts = args.threads or list(range(1, cpu_budget() + 1))
    for threads in counts:
        torch.set_num_threads(threads)
        for _ in range(20):  # warm-up
            editor.render()
            generator.synthesize(z)
        render, bare, move = [], [], []
        with torch.inference_mode():
            for _ in range(args.calls):
                editor.set_locks(["brightness"])
                start = time.perf_counter()
                editor.set(rng.choice(["happy", "yaw", "mouth_width", "warmth"]), rng.uniform(-2, 2))
                moved = time.perf_counter()
                editor.render()
                done = time.perf_counter()
                move.append(moved - start)
                render.append(done - moved)
                sync(device)
                start = time.perf_counter()
                generator.synthesize(z)
                sync(device)
                bare.append(time.perf_counter() - start)
        ms = lambda xs, q: 1000 * percentile(xs, q)  # noqa: E731
        total = [a + b for a, b in zip(move, render)]
        print(f"threads {threads}: knob move + render p50 {ms(total, 50):.2f} ms, p95 {ms(total, 95):.2f} ms | "
              f"render p50 {ms(render, 50):.2f}, p95 {ms(render, 95):.2f} | "
              f"bare generator p50 {ms(bare, 50):.2f}, p95 {ms(bare, 95):.2f} | "
              f"ratio p50 {percentile(total, 50) / percentile(bare, 50):.2f}, "
              f"p95 {percentile(total, 95) / percentile(bare, 95):.2f}")


if __name__ == "__main__":
    main()
