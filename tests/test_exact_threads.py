"""The same `tlgan edit --exact` command gives the same picture at 1, 2 and 4 torch threads (real default models).

Thread counts change float summation orders, so readings differ in their last bits; the exact path is a
continuous function of its readings (no accept/reject decision to flip), so the pictures agree to far under
one grey level (issue 24, part 4). Slow: real generator and extractors, with gradients, three times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TLGAN = str(Path(sys.executable).with_name("tlgan"))


def edit_at(threads: int, out: Path, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([TLGAN, "edit", "--exact", "--device", "cpu", "--out", str(out), "--size", "64", "--json",
                           *args], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_exact_edit_gives_the_same_picture_at_1_2_and_4_threads(tmp_path):
    args = ("--seed", "7", "--set", "happy=1.5", "--lock", "yaw", "--lock", "brightness", "--lock", "mouth_width")
    pictures, reports = {}, {}
    for threads in (1, 2, 4):
        out = tmp_path / f"t{threads}.png"
        reports[threads] = edit_at(threads, out, *args)
        pictures[threads] = np.asarray(Image.open(out).convert("RGB"), dtype=np.float64)
    for threads in (2, 4):
        diff = np.abs(pictures[threads] - pictures[1])
        print(f"threads {threads} vs 1: mean |Δ| {diff.mean():.4f}/255, max {diff.max():.0f}/255, "
              f"bitwise {'same' if not diff.any() else 'different'}")
        assert diff.mean() <= 1.0
        assert reports[threads]["converged"] == reports[1]["converged"]
        assert abs(reports[threads]["exact_after"]["happy"] - reports[1]["exact_after"]["happy"]) <= 0.01
