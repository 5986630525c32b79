"""Fitting axes on a Ray cluster: each shard's normal-equation sums come back from the workers, added in shard order.

A linear fit (tlgan, ridge) needs only the training and held-out normal
equations and the readings' moments (``LinearFitter.state``), a few hundred
kilobytes per shard whatever its size. The workers compute them for each
shard exactly as a local fit does (one thread, float64, the same held-out
split by sample index), and the driver merges them in shard order, so the
axis file is the same bits as ``tlgan build`` with the same seed, N and
options on the same kind of device and CPU. Across device types (GPU workers
against a CPU build) the readings themselves differ in float32 rounding, and
the axes agree to that tolerance, not bit for bit.

Classifier methods (svm, logistic) need every sample at once: their samples
are stored by the workers and fitted on the driver from the folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch

from tlgan import timing
from tlgan.errors import TlganError
from tlgan.models.extractors import Feature
from tlgan.sampling.distributed import WorkerPool
from tlgan.sampling.folder import SampleFolder
from tlgan.sampling.latents import check_seed
from tlgan.sampling.pipeline import SHARD_SIZE, check_sample_count, prepare_folder

from .fit import LINEAR_METHODS, LinearFitter, fit_axes, make_axis_set, resolve_method
from .store import AxisSet


@dataclass(frozen=True)
class ShardSums:
    """Run on a worker: ``(start, z (B, D), readings (B, F))`` of one shard -> its ``LinearFitter.state()``.

    on_device: take the tensors on the labelling device (as ``fit_streaming``
    does) rather than their CPU copies (as ``fit_axes`` on stored samples does).
    """

    features: tuple[Feature, ...]
    latent_dim: int
    val_fraction: float
    on_device: bool = False

    def __call__(self, start: int, z: torch.Tensor, y: torch.Tensor) -> dict:
        fitter = LinearFitter(self.features, self.latent_dim, self.val_fraction, z.device)
        fitter.update(start, z, y)
        return fitter.state()


def build_on_cluster(
    pool: WorkerPool,
    n: int,
    seed: int,
    method: str = "tlgan",
    ridge: float | None = None,
    val_fraction: float = 0.1,
    samples: str | None = None,
    shard_size: int = SHARD_SIZE,
    percent: float | None = None,
    c: float | None = None,
    progress: bool = True,
) -> AxisSet:
    """``tlgan build`` on the cluster of ``pool``: sample, label and fit N latents of run ``seed``.

    With ``samples`` (a folder every node reaches, path or URI) the shards are
    stored there and a rerun resumes from them, and the result equals
    ``run_samples`` + ``fit_axes``; without, nothing is stored (shards of
    SHARD_SIZE) and the result equals ``fit_streaming``.
    """
    check_sample_count(n)
    check_seed(seed)
    features = [Feature(**f) for f in pool.info["features"]]
    dim = pool.latent_dim
    folder = None
    if samples is not None:
        folder = SampleFolder(samples)
        prepare_folder(folder, pool.manifest(seed, n, shard_size))
    elif method not in LINEAR_METHODS:
        raise TlganError(f"method '{method}' needs every sample at once: store them (drop --no-store-samples)")
    else:
        shard_size = SHARD_SIZE
    if method not in LINEAR_METHODS:
        pool.label_shards(n, seed, shard_size, folder, None, lambda *_: None, progress)
        return fit_axes(samples, method=method, ridge=ridge, percent=percent, c=c, val_fraction=val_fraction)

    lam = resolve_method(method, ridge)
    fitter = LinearFitter(features, dim, val_fraction, "cpu")
    summarize = ShardSums(tuple(features), dim, val_fraction, on_device=folder is None)
    merge_seconds = 0.0
    t0 = time.perf_counter()

    def consume(start: int, count: int, state: dict) -> None:
        nonlocal merge_seconds
        t = time.perf_counter()
        fitter.merge(state)
        merge_seconds += time.perf_counter() - t

    pool.label_shards(n, seed, shard_size, folder, summarize, consume, progress)
    t = time.perf_counter()
    out = fitter.result(lam)
    solve_seconds = time.perf_counter() - t
    # The same params as the local commands write (fit_axes for stored samples, fit_streaming otherwise);
    # durations are recorded for the CLI to print, never stored in the file.
    params: dict = {"ridge": lam, "val_fraction": val_fraction}
    if folder is not None:
        timing.record("fit_seconds", merge_seconds + solve_seconds)
    else:
        timing.record("build_seconds", time.perf_counter() - t0)
    if pool.options.dtype != "float32":
        params["dtype"] = pool.options.dtype
    return make_axis_set(out, features, generator=pool.info["generator"], extractor=pool.info["extractor"],
                         latent_dim=dim, method=method, params=params, samples=n, seed=seed)


__all__: Sequence[str] = ["ShardSums", "build_on_cluster"]
