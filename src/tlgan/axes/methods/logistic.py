"""Logistic regression of a yes/no version of each feature on z.

Each feature is cut at a threshold — 0.5 for probabilities, 0 for tanh
scores, the training median for real values — and a logistic regression on z
predicts which side a sample is on. When the cut leaves fewer than
``MIN_CLASS_FRACTION`` of the training samples on one side (a rare expression,
say), the training median is used instead and the rule says so in the axis
set's params. The unit weight vector, pointing towards "yes", is the axis.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from tlgan import timing
from tlgan.axes.math import validation_mask
from tlgan.axes.store import AxisSet
from tlgan.errors import TlganError
from tlgan.models.extractors import Feature
from tlgan.sampling.pipeline import read_manifest

from .common import pack_axes, read_all

DEFAULT_C = 1.0
MIN_CLASS_FRACTION = 0.01
KIND_THRESHOLDS = {"probability": 0.5, "tanh": 0.0}


def choose_threshold(values: torch.Tensor, kind: str) -> tuple[float, str]:
    """The cut for readings ``values`` (N,) of a feature of ``kind``, and the rule that chose it."""
    median = float(values.median())
    if kind not in KIND_THRESHOLDS:
        return median, "median"
    cut = KIND_THRESHOLDS[kind]
    above = float((values > cut).double().mean())
    if min(above, 1 - above) < MIN_CLASS_FRACTION:
        return median, f"median (fewer than {MIN_CLASS_FRACTION:.0%} of samples on one side of {cut:g})"
    return cut, f"{cut:g}"


def logistic_direction(z: np.ndarray, labels: np.ndarray, c: float = DEFAULT_C) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression on latents (M, D) with 0/1 labels (M,): weights (D,) and intercept."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(labels)) < 2:
        raise TlganError("logistic regression needs examples of both classes")
    model = LogisticRegression(C=c, max_iter=5000, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(z, labels)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def fit_logistic(
    samples: str | Path,
    features: Sequence[Feature],
    cols: Sequence[int],
    n: int | None,
    c: float = DEFAULT_C,
    val_fraction: float = 0.1,
) -> AxisSet:
    """Fit one logistic-regression axis per feature (columns ``cols`` of the folder's readings)."""
    t0 = time.perf_counter()
    manifest = read_manifest(samples)
    z, y = read_all(samples, n, cols)
    val = validation_mask(0, y.shape[0], val_fraction)
    zt, zv = z[~val].numpy(), z[val].numpy()
    coefs, intercepts, quality, cuts, rules = [], [], {}, {}, {}
    for j, feature in enumerate(features):
        cut, rule = choose_threshold(y[~val, j], feature.kind)
        yes = (y[:, j] > cut).numpy()
        if yes[~val.numpy()].all() or not yes[~val.numpy()].any():
            raise TlganError(f"logistic on '{feature.name}': every training sample is on one side of {cut:g}")
        w, b = logistic_direction(zt, yes[~val.numpy()].astype(np.int64), c)
        q = {"train_accuracy": float(((zt @ w + b > 0) == yes[~val.numpy()]).mean()),
             "balance": float(yes[~val.numpy()].mean())}
        q["accuracy"] = float(((zv @ w + b > 0) == yes[val.numpy()]).mean()) if len(zv) else float("nan")
        quality[feature.name], cuts[feature.name], rules[feature.name] = q, cut, rule
        coefs.append(torch.from_numpy(w))
        intercepts.append(b)
    timing.record("fit_seconds", time.perf_counter() - t0)
    params = {"C": c, "val_fraction": val_fraction, "thresholds": cuts, "threshold_rules": rules}
    return pack_axes(manifest, features, torch.stack(coefs), torch.tensor(intercepts, dtype=torch.float64), y,
                     "logistic", params, quality, y.shape[0])
