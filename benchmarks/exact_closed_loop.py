"""Closed loop of exact mode on the shipped default: happy −2 → +2 with yaw and brightness held.

For each face (seeds from 1,000,000), exact mode sets happy to −2 and then to +2 (standardised readings) with the
locked knobs held; printed: the mean change of p(happy) between the two states, the largest change of each
locked reading (in SD of its spread over faces) and how many edits reached their goal. Target from issue 12:
Δp(happy) ≥ 0.5 while yaw and brightness move ≤ 0.05 of their spread. tests/test_exact_default.py runs the same
on 3 faces.

    python benchmarks/exact_closed_loop.py [--faces 10] [--axis happy] [--lock yaw --lock brightness]
"""

from __future__ import annotations

import argparse
import time

from common import setup

from tlgan import Editor, load_generator
from tlgan.axes.defaults import load_default_axes
from tlgan.models.extractors import load_extractor

FIRST_SEED = 1_000_000


def closed_loop(gen, ext, axes, seeds, axis: str = "happy", locks=("yaw", "brightness"), low=-2.0, high=2.0) -> dict:
    """Per face: raw reading of ``axis`` at low and high, each lock's standardised change, and convergence."""
    out = {"delta": [], "lock_moves": {k: [] for k in locks}, "converged": 0, "edits": 0}
    for seed in seeds:
        ed = Editor(gen, axes, seed, extractor=ext, exact=True)
        ed.set_locks(locks)
        ed.set(axis, low)
        a = ed.readings()
        ed.set(axis, high)
        b = ed.readings()
        out["converged"] += sum(r["converged"] for r in ed.reports)
        out["edits"] += len(ed.reports)
        out["delta"].append(b[axis]["raw"] - a[axis]["raw"])
        for k in locks:
            out["lock_moves"][k].append(abs(b[k]["value"] - a[k]["value"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=10)
    parser.add_argument("--axis", default="happy")
    parser.add_argument("--lock", action="append", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    locks = tuple(args.lock or ["yaw", "brightness"])
    device = setup(args.device, args.threads)
    gen, axes = load_generator("digiface", device), load_default_axes()
    ext = load_extractor(axes.extractor_spec(), device)
    t = time.perf_counter()
    r = closed_loop(gen, ext, axes, range(FIRST_SEED, FIRST_SEED + args.faces), args.axis, locks)
    mean = sum(r["delta"]) / len(r["delta"])
    print(f"{args.faces} faces, exact {args.axis} -2 -> +2 with {', '.join(locks)} held: mean change of the raw "
          f"{args.axis} reading {mean:+.3f} (smallest {min(r['delta']):+.3f}); {r['converged']}/{r['edits']} edits "
          f"reached their goal; {time.perf_counter() - t:.0f} s")
    for k, moves in r["lock_moves"].items():
        print(f"  {k}: largest move {max(moves):.4f} SD of its spread, mean {sum(moves) / len(moves):.4f}")


if __name__ == "__main__":
    main()
