"""What the sample-based classifiers share: reading a sample folder in one or two passes, and packing an AxisSet."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from tlgan.axes.store import AxisSet
from tlgan.errors import TlganError
from tlgan.models.extractors import Feature
from tlgan.sampling.pipeline import Manifest, iter_shards


def read_features(samples: str | Path, n: int | None, cols: Sequence[int]) -> torch.Tensor:
    """Readings (N, len(cols)) float64 of the first ``n`` samples (all by default), without keeping latents."""
    parts = [f[:, list(cols)].to(torch.float64) for _, _, f in iter_shards(samples, n)]
    if not parts:
        raise TlganError(f"{samples} holds no samples")
    return torch.cat(parts)


def gather_latents(samples: str | Path, n: int | None, index: torch.Tensor) -> torch.Tensor:
    """Latents (M, D) float64 of the samples at sorted unique positions ``index`` (M,), streamed shard by shard."""
    out = []
    for start, z, _ in iter_shards(samples, n):
        inside = index[(index >= start) & (index < start + z.shape[0])]
        if inside.numel():
            out.append(z[inside - start].to(torch.float64))
    return torch.cat(out) if out else torch.empty(0, 0, dtype=torch.float64)


def read_all(samples: str | Path, n: int | None, cols: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents (N, D) and readings (N, len(cols)), float64, all in memory."""
    zs, ys = [], []
    for _, z, f in iter_shards(samples, n):
        zs.append(z.to(torch.float64))
        ys.append(f[:, list(cols)].to(torch.float64))
    if not zs:
        raise TlganError(f"{samples} holds no samples")
    return torch.cat(zs), torch.cat(ys)


def pack_axes(
    manifest: Manifest,
    features: Sequence[Feature],
    coef: torch.Tensor,
    intercepts: torch.Tensor,
    readings: torch.Tensor,
    method: str,
    params: dict[str, Any],
    quality: dict[str, dict[str, float]],
    used: int,
) -> AxisSet:
    """An AxisSet from classifier weights ``coef`` (K, D) and ``intercepts`` (K,) fitted on ``readings`` (N, K)."""
    names = [f.name for f in features]
    norms = coef.norm(dim=1)
    flat = [name for name, nrm in zip(names, norms) if float(nrm) < 1e-12]
    if flat:
        raise TlganError(f"{method} found no direction for: {', '.join(flat)} (the feature does not depend on the latent)")
    return AxisSet(
        names=names, axes=(coef / norms[:, None]).float(), kinds=[f.kind for f in features],
        groups=[f.group for f in features], generator=manifest.generator, latent_dim=manifest.latent_dim,
        method=method, extractor=manifest.extractor, params=params, samples=used, seed=manifest.seed,
        quality=quality, descriptions={f.name: f.description for f in features if f.description},
        weights=coef.T.float().contiguous(), intercepts=intercepts.float(),
        feature_mean=readings.mean(0).float(), feature_std=readings.std(0, unbiased=False).float(),
    )
