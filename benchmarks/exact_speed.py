"""Speed of one exact edit: a 1σ move of one knob with 2 locks on one face, p50/p95 over faces.

Each face (seeds F..F+N-1, F = ``--first-seed``, 0 by default) gets ``step(knob, +1)`` in exact mode with the locked
knobs held (default: happy, with yaw and brightness locked). Printed: p50/p95
seconds per edit, steps taken, gradient evaluations (one batched
forward+backward each) and reads (one forward of one face each), and whether
every edit converged. Targets: p95 ≤ 1 s on the 2-core CPU (issue 12); with
``--lock identity`` too (the face's identity held), p95 ≤ 2 s (issue 25).

    python benchmarks/exact_speed.py [--faces 20] [--first-seed 0] [--knob happy] [--lock yaw --lock brightness]
        [--device cpu]
    python benchmarks/exact_speed.py --lock yaw --lock brightness --lock identity
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import machine_load, percentile, setup, sync

from tlgan import Editor, TlganError, load_generator
from tlgan.axes.defaults import load_default_axes
from tlgan.models.extractors import load_extractor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--faces", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--knob", default="happy")
    parser.add_argument("--lock", action="append", default=None)
    parser.add_argument("--delta", type=float, default=1.0)
    args = parser.parse_args()
    locks = args.lock or ["yaw", "brightness"]
    device = setup(args.device, args.threads)
    gen, axes = load_generator("digiface", device), load_default_axes()
    ext = load_extractor(axes.extractor_spec(), device)
    warm = Editor(gen, axes, 10_001, extractor=ext, exact=True)
    warm.set_locks(locks)
    warm.step(args.knob, 0.5)  # builds the reader, loads the identity network if held, warms the kernels
    watch = warm.identity_watch if "identity" in locks else None  # one identity network for every face, as a server has
    times, steps, grads, reads, converged, lock_err, skipped = [], [], [], [], 0, [], 0
    for seed in range(args.first_seed, args.first_seed + args.faces):
        ed = Editor(gen, axes, seed, extractor=ext, exact=True, identity=watch)
        ed.reader()
        ed.set_locks(locks)
        sync(device)
        t0 = time.perf_counter()
        try:
            ed.step(args.knob, args.delta)
        except TlganError as exc:  # e.g. identity held on a face the landmarks miss: a one-line refusal
            print(f"# seed {seed}: {exc}")
            skipped += 1
            continue
        sync(device)
        times.append(time.perf_counter() - t0)
        r = ed.last_report()
        steps.append(r["steps"])
        grads.append(r["gradient_evaluations"])
        reads.append(r["reads"])
        converged += r["converged"]
        lock_err.append(max(abs(v) for v in r["lock_errors"].values()))
        if not r["converged"]:
            print(f"# seed {seed}: {r['message']}")
    print(f"exact {args.knob} {args.delta:+g}σ with {', '.join(locks)} locked, {len(times)} faces from seed "
          f"{args.first_seed} ({skipped} refused): "
          f"p50 {percentile(times, 50):.3f} s, p95 {percentile(times, 95):.3f} s, max {max(times):.3f} s; {machine_load()}")
    print(f"steps mean {statistics.mean(steps):.1f} (max {max(steps)}), gradient evaluations mean "
          f"{statistics.mean(grads):.1f} (max {max(grads)}), reads mean {statistics.mean(reads):.1f}; "
          f"converged {converged}/{len(times)}; largest locked-reading error {max(lock_err):.4f} SD")


if __name__ == "__main__":
    main()
