"""The re-scoring protocol on exact paths, on the planted non-linear model."""

from __future__ import annotations

import torch
from planted_nonlinear import BentExtractor, BentGenerator, bent_axes

from tlgan.editing.exact import ExactSweeper, with_reading_stats
from tlgan.evaluation.evaluate import evaluate


def test_exact_evaluation_holds_what_linear_locks_let_drift():
    gen, ext = BentGenerator(), BentExtractor()
    axes = with_reading_stats(bent_axes(gen, ext), gen, ext, n=2000)
    sweep = (-1.0, 0.0, 1.0)
    linear = evaluate(gen, ext, axes, n=6, seed=9, sweep=sweep, strip_faces=0, progress=False)
    exact = evaluate(gen, ext, axes, n=6, seed=9, sweep=sweep, strip_faces=1, progress=False,
                     exact=ExactSweeper(gen, ext, axes))
    _lin, ex = linear.to_dict(), exact.to_dict()
    assert ex["mode"] == "exact" and ex["settings"]["lock_mode"] == "exact"
    tilt = ex["axes"][0]
    assert tilt["reachable"] == 1.0 and tilt["locked"]["reachable"] > 0.5
    # bend's reading leaks when tilt moves with linear locks, much less with exact ones
    bend = linear.features.index("bend")
    assert abs(float(linear.matrix_locked[0, bend])) > 3 * abs(float(exact.matrix_locked[0, bend]))
    assert ex["summary"]["locked"]["reachable_mean"] > 0.5
    assert len(exact.strips["tilt"]) == 2 and len(exact.strips["tilt"][0]) == 3
    assert torch.isfinite(exact.matrix[:, :]).all()
