"""Closed loop of exact mode on the real default models (slow: real generator and extractors, with gradients)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_happy_moves_while_yaw_and_brightness_readings_hold(digiface):
    from exact_closed_loop import FIRST_SEED, closed_loop

    from tlgan.axes.defaults import load_default_axes
    from tlgan.models.extractors import load_extractor

    axes = load_default_axes()
    assert axes.reading_mean is not None  # the shipped set carries its reading stats
    ext = load_extractor(axes.extractor_spec(), "cpu")
    r = closed_loop(digiface, ext, axes, range(FIRST_SEED, FIRST_SEED + 3))
    assert sum(r["delta"]) / len(r["delta"]) >= 0.5
    for moves in r["lock_moves"].values():
        assert max(moves) <= 0.05
    # One of the six 4-SD moves may stop short: with the shipped set's reading stats from 1,024 faces, face
    # 1000002's −2 → +2 stops at +1.07 ("stopped getting closer"; no lock in the way). It is reported, not hidden.
    assert r["converged"] >= r["edits"] - 1
