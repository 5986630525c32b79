"""InterFaceGAN's boundary: a linear SVM separating the top and bottom p% of each feature.

Per feature, the training samples (see ``math.validation_mask``) are ranked by
their reading; the top ⌈p% of N⌉ are labelled 1 and the bottom as many 0, and a
linear SVM on z separates them. Its unit normal, pointing towards the top, is
the axis. Held-out samples beyond the same two cut values measure accuracy.
Readings are read in a first pass; only the latents of the chosen samples are
kept in memory (second pass).
"""

from __future__ import annotations

import math
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

from .common import gather_latents, pack_axes, read_features

DEFAULT_PERCENT = 2.0
DEFAULT_C = 1.0
MIN_PER_CLASS = 5


def extremes(values: torch.Tensor, train: torch.Tensor, percent: float) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Indices (into ``values`` (N,)) of the bottom and top ``percent``% of the training rows, and the two cut values.

    Exactly k = ⌈percent/100 · N_train⌉ rows each, ranked with a stable sort, so
    ties do not change the class sizes. Returns (low_idx (k,), high_idx (k,), low_cut, high_cut).
    """
    if not 0 < percent < 50:
        raise TlganError(f"percent must be in (0, 50), got {percent}")
    idx = torch.nonzero(train).flatten()
    k = math.ceil(percent / 100 * idx.numel())
    if k < MIN_PER_CLASS:
        raise TlganError(f"top/bottom {percent:g}% of {idx.numel()} training samples is {k} per class; "
                         f"need at least {MIN_PER_CLASS}: sample more or raise --percent")
    order = idx[torch.argsort(values[idx], stable=True)]
    low, high = order[:k], order[-k:]
    low_cut, high_cut = float(values[low[-1]]), float(values[high[0]])
    if not low_cut < high_cut:
        raise TlganError("the top and bottom of the feature have the same value (constant or saturated feature)")
    return low, high, low_cut, high_cut


def svm_boundary(z: np.ndarray, labels: np.ndarray, c: float = DEFAULT_C) -> tuple[np.ndarray, float]:
    """Linear SVM on latents (M, D) with 0/1 labels (M,): the normal (D,) (towards class 1, not normalised) and intercept."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    model = LinearSVC(C=c, dual=bool(z.shape[0] < z.shape[1]), max_iter=20000, tol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(z, labels)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def fit_svm(
    samples: str | Path,
    features: Sequence[Feature],
    cols: Sequence[int],
    n: int | None,
    percent: float = DEFAULT_PERCENT,
    c: float = DEFAULT_C,
    val_fraction: float = 0.1,
) -> AxisSet:
    """Fit one SVM axis per feature (columns ``cols`` of the folder's readings) from the first ``n`` samples."""
    t0 = time.perf_counter()
    manifest = read_manifest(samples)
    y = read_features(samples, n, cols)
    val = validation_mask(0, y.shape[0], val_fraction)
    train = ~val
    plans, wanted = [], []
    for j, feature in enumerate(features):
        try:
            low, high, lo_cut, hi_cut = extremes(y[:, j], train, percent)
        except TlganError as exc:
            raise TlganError(f"svm on '{feature.name}': {exc}") from None
        vidx = torch.nonzero(val & ((y[:, j] <= lo_cut) | (y[:, j] >= hi_cut))).flatten()
        plans.append((low, high, lo_cut, hi_cut, vidx))
        wanted += [low, high, vidx]
    index = torch.unique(torch.cat(wanted))  # sorted
    z_sel = gather_latents(samples, n, index)
    row = {int(i): r for r, i in enumerate(index.tolist())}
    pick = lambda ids: z_sel[[row[int(i)] for i in ids]].numpy()  # noqa: E731

    coefs, intercepts, quality, cuts = [], [], {}, {}
    for j, (feature, (low, high, lo_cut, hi_cut, vidx)) in enumerate(zip(features, plans)):
        zt = np.concatenate([pick(low), pick(high)])
        lt = np.concatenate([np.zeros(len(low)), np.ones(len(high))])
        w, b = svm_boundary(zt, lt, c)
        train_acc = float(((zt @ w + b > 0) == (lt > 0)).mean())
        q = {"train_accuracy": train_acc, "val_samples": float(vidx.numel())}
        if vidx.numel():
            zv, yv = pick(vidx), y[vidx, j].numpy()
            q["accuracy"] = float(((zv @ w + b > 0) == (yv >= hi_cut)).mean())
        else:
            q["accuracy"] = float("nan")
        quality[feature.name] = q
        cuts[feature.name] = [lo_cut, hi_cut]
        coefs.append(torch.from_numpy(w))
        intercepts.append(b)
    timing.record("fit_seconds", time.perf_counter() - t0)
    params = {"percent": percent, "C": c, "val_fraction": val_fraction, "thresholds": cuts}
    return pack_axes(manifest, features, torch.stack(coefs), torch.tensor(intercepts, dtype=torch.float64), y,
                     "svm", params, quality, y.shape[0])
