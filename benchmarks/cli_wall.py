"""Wall-clock time of `tlgan edit` started from the shell (a fresh process each time), with its floor.

Runs each command --runs times in a new process and prints min / median seconds:
``import torch`` alone (the floor every tlgan command pays), the same with the garbage
collector off during the import and the result frozen (as ``tlgan`` imports it), ``tlgan --help``,
a linear ``tlgan edit`` (target from issue 24: ≤ 1.5 s) and, with --exact, an exact edit
with two locks. The machine's load average is printed too: on a shared 2-core machine
the figures move with it.

    python benchmarks/cli_wall.py [--runs 5] [--exact] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_load

TLGAN = str(Path(sys.executable).with_name("tlgan"))


def wall(cmd: list[str], runs: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--exact", action="store_true", help="also time an exact edit with two locks")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = str(Path(tempfile.mkdtemp()) / "face.png")
    frozen = "import gc; gc.disable(); import torch; gc.freeze(); gc.enable()"  # as the tlgan command imports it
    cases = [("import torch (floor)", [sys.executable, "-c", "import torch"]),
             ("import torch, collector frozen", [sys.executable, "-c", frozen]),
             ("tlgan --help", [TLGAN, "--help"]),
             ("tlgan edit (linear)", [TLGAN, "edit", "--seed", "3", "--set", "happy=1", "--out", out])]
    if args.exact:
        cases.append(("tlgan edit --exact, 2 locks", [TLGAN, "edit", "--exact", "--seed", "3", "--set", "happy=1",
                                                      "--lock", "yaw", "--lock", "brightness", "--out", out]))
    print(f"# {machine_load()}; OMP_NUM_THREADS={args.threads}; {args.runs} runs each")
    for name, cmd in cases:
        times = wall(cmd, args.runs, env)
        print(f"{name:<30} min {min(times):.2f} s, median {statistics.median(times):.2f} s")


if __name__ == "__main__":
    main()
