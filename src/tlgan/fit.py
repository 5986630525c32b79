"""Fitting feature axes from labelled samples: TL-GAN's least squares and ridge, streamed.

``fit_axes`` turns a sample folder (see pipeline.py) into an AxisSet. Samples
whose index i satisfies i % k == k − 1 (k = round(1 / val_fraction)) are held
out for R², so the split never depends on batch or shard size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .axes import NormalEquations, link, normalize_rows
from .errors import TlganError
from .extractors import Feature
from .pipeline import iter_shards, read_manifest
from .store import AxisSet

LINEAR_METHODS = {"tlgan": 0.0, "ridge": None}  # method -> fixed ridge (None: user's --ridge)
DEFAULT_RIDGE = 100.0


def validation_mask(start: int, count: int, val_fraction: float) -> torch.Tensor:
    """Boolean (count,) marking held-out samples among indices [start, start + count)."""
    if not 0 < val_fraction < 0.5:
        raise TlganError(f"validation fraction must be in (0, 0.5), got {val_fraction}")
    k = max(2, round(1 / val_fraction))
    return (torch.arange(start, start + count) % k) == k - 1


class RunningMoments:
    """Mean and standard deviation (K,) of streamed rows (N, K), in float64."""

    def __init__(self, k: int) -> None:
        self.n, self.s, self.ss = 0, torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)

    def update(self, y: torch.Tensor) -> None:
        y = y.to(torch.float64)
        self.n += y.shape[0]
        self.s += y.sum(0)
        self.ss += (y * y).sum(0)

    def mean(self) -> torch.Tensor:
        return self.s / max(self.n, 1)

    def std(self) -> torch.Tensor:
        return (self.ss / max(self.n, 1) - self.mean() ** 2).clamp_min(0).sqrt()


def fit_linear(
    batches: Iterable[tuple[int, torch.Tensor, torch.Tensor]],
    features: Sequence[Feature],
    latent_dim: int,
    ridge: float = 0.0,
    val_fraction: float = 0.1,
) -> dict[str, torch.Tensor]:
    """Least squares (ridge ≥ 0) of link-space targets on z, streamed over (start, z, readings) batches.

    Returns tensors: axes (K, D) unit rows, weights (D, K), intercepts (K,),
    r2 (K,) on the held-out samples, feature_mean/feature_std (K,) of raw readings.
    """
    kinds = [f.kind for f in features]
    train, val = NormalEquations(latent_dim, len(kinds)), NormalEquations(latent_dim, len(kinds))
    moments = RunningMoments(len(kinds))
    for start, z, y in batches:
        held = validation_mask(start, z.shape[0], val_fraction)
        target = link(y, kinds)
        train.update(z[~held], target[~held])
        val.update(z[held], target[held])
        moments.update(y)
    w, b = train.solve(ridge)
    r2 = val.r2(w, b) if val.n >= 2 else torch.full((len(kinds),), float("nan"), dtype=torch.float64)
    return {"axes": normalize_rows(w.T), "weights": w, "intercepts": b, "r2": r2,
            "feature_mean": moments.mean(), "feature_std": moments.std()}


def fit_axes(
    samples: str | Path,
    method: str = "tlgan",
    ridge: float | None = None,
    val_fraction: float = 0.1,
    n: int | None = None,
    features: Sequence[str] | None = None,
) -> AxisSet:
    """Fit one axis per feature from a sample folder; ``features`` picks a subset (default all)."""
    if method not in LINEAR_METHODS:
        raise TlganError(f"unknown method '{method}'; available: {', '.join(LINEAR_METHODS)}")
    manifest = read_manifest(samples)
    all_features = manifest.feature_list
    names = [f.name for f in all_features]
    chosen = list(features) if features else names
    for name in chosen:
        if name not in names:
            raise TlganError(f"unknown feature '{name}'; valid names: {', '.join(names)}")
    cols = [names.index(c) for c in chosen]
    lam = LINEAR_METHODS[method]
    lam = (DEFAULT_RIDGE if ridge is None else ridge) if lam is None else lam
    t0 = time.perf_counter()
    batches = ((s, z, y[:, cols]) for s, z, y in iter_shards(samples, n))
    picked = [all_features[c] for c in cols]
    out = fit_linear(batches, picked, manifest.latent_dim, ridge=lam, val_fraction=val_fraction)
    used = n or manifest.n
    return AxisSet(
        names=chosen, axes=out["axes"].float(), kinds=[f.kind for f in picked], groups=[f.group for f in picked],
        generator=manifest.generator, latent_dim=manifest.latent_dim, method=method, extractor=manifest.extractor,
        params={"ridge": lam, "val_fraction": val_fraction, "fit_seconds": round(time.perf_counter() - t0, 4)},
        samples=used, seed=manifest.seed,
        quality={name: {"r2": float(r)} for name, r in zip(chosen, out["r2"])},
        descriptions={f.name: f.description for f in picked if f.description},
        weights=out["weights"].float(), intercepts=out["intercepts"].float(),
        feature_mean=out["feature_mean"].float(), feature_std=out["feature_std"].float(),
    )
