"""Fitting feature axes from labelled samples: TL-GAN's least squares and ridge, streamed; SVM and logistic.

``fit_axes`` turns a sample folder (see pipeline.py) into an AxisSet; the
classifier methods live in ``tlgan.methods`` and are dispatched to from here;
``fit_streaming`` samples, labels and fits in one pass without storing
samples (for very large N, sums kept on the GPU). Samples
whose index i satisfies i % k == k − 1 (k = round(1 / val_fraction)) are held
out for R², so the split never depends on batch or shard size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Sequence

import torch

from tlgan import timing
from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor, Feature
from tlgan.models.generators import Generator
from tlgan.sampling.fused import Labeller, LabelOptions, single_threaded
from tlgan.sampling.latents import check_seed
from tlgan.sampling.pipeline import (
    SHARD_SIZE,
    LabelledUnit,
    check_sample_count,
    group_ranges,
    iter_shards,
    label_ranges,
    read_manifest,
    shard_ranges,
)

from .math import (
    NormalEquations,
    held_out_count,
    holdout_period,
    link,
    normalize_rows,
    validation_mask,
)
from .store import AxisSet

LINEAR_METHODS = {"tlgan": 0.0, "ridge": None}  # method -> fixed ridge (None: user's --ridge)
DEFAULT_RIDGE = 100.0


class RunningMoments:
    """Mean and standard deviation (K,) of streamed rows (N, K), in float64 on ``device``."""

    def __init__(self, k: int, device: torch.device | str = "cpu") -> None:
        f64 = torch.float64
        self.n = 0
        self.s = torch.zeros(k, dtype=f64, device=device)
        self.ss = torch.zeros(k, dtype=f64, device=device)

    def update(self, y: torch.Tensor) -> None:
        y = y.to(self.s.device, torch.float64)
        self.n += y.shape[0]
        self.s += y.sum(0)
        self.ss += (y * y).sum(0)

    def state(self) -> dict[str, torch.Tensor | int]:
        return {"n": self.n, "s": self.s.cpu(), "ss": self.ss.cpu()}

    def merge(self, state: dict[str, torch.Tensor | int]) -> None:
        """Add another instance's ``state()`` (exactly as ``update`` with its rows would, when it started empty)."""
        self.n += int(state["n"])
        self.s += state["s"].to(self.s.device, torch.float64)
        self.ss += state["ss"].to(self.ss.device, torch.float64)

    def mean(self) -> torch.Tensor:
        return self.s / max(self.n, 1)

    def std(self) -> torch.Tensor:
        return (self.ss / max(self.n, 1) - self.mean() ** 2).clamp_min(0).sqrt()


class LinearFitter:
    """Streaming least squares of link-space targets on z, with a fixed held-out split.

    ``update(start, z (B, D), readings (B, K))`` adds the samples with indices
    [start, start + B); they may arrive in any batch sizes and order. The sums
    live on ``device`` (default: that of the first batch), so a GPU run never
    sends latents back to the host. ``result(ridge)`` solves.
    """

    def __init__(self, features: Sequence[Feature], latent_dim: int, val_fraction: float = 0.1,
                 device: torch.device | str | None = None) -> None:
        holdout_period(val_fraction)  # fail early on a bad fraction
        self.kinds = [f.kind for f in features]
        self.latent_dim, self.val_fraction = latent_dim, val_fraction
        self._device = None if device is None else torch.device(device)
        self._train = self._val = self._moments = None

    def _start(self, device: torch.device) -> None:
        self._device = self._device or device
        k = len(self.kinds)
        self._train = NormalEquations(self.latent_dim, k, device=self._device)
        self._val = NormalEquations(self.latent_dim, k, device=self._device)
        self._moments = RunningMoments(k, self._device)

    def update(self, start: int, z: torch.Tensor, y: torch.Tensor) -> None:
        if self._train is None:
            self._start(z.device)
        if self._device.type == "cpu":
            # One thread: a float64 matmul's bits depend on the thread count (MKL splits the work), and a
            # shard's sums must come out the same in a Ray worker as in a local fit (distributed.py).
            with single_threaded():
                self._update(start, z, y)
        else:
            self._update(start, z, y)

    def _update(self, start: int, z: torch.Tensor, y: torch.Tensor) -> None:
        z, y = z.to(self._device), y.to(self._device)
        count = z.shape[0]
        held = validation_mask(start, count, self.val_fraction, self._device)
        n_held = held_out_count(start, count, self.val_fraction)
        target = link(y, self.kinds)
        self._train.update(z, target, ~held, count - n_held)
        self._val.update(z, target, held, n_held)
        self._moments.update(y)

    @property
    def n(self) -> int:
        return 0 if self._train is None else self._train.n + self._val.n

    def state(self) -> dict[str, dict]:
        """What the fit and the held-out R² need, as CPU tensors: the training and held-out normal equations and
        the readings' moments. Small ((D + K)² floats), whatever the number of samples."""
        if self._train is None:
            raise TlganError("no samples to fit")
        return {"train": self._train.state(), "val": self._val.state(), "moments": self._moments.state()}

    def merge(self, state: dict[str, dict]) -> None:
        """Add another fitter's ``state()``. Merging per-shard states in shard order gives the same bits as one
        fitter updated with those shards in that order."""
        if self._train is None:
            self._start(self._device or torch.device("cpu"))
        self._train.merge(state["train"])
        self._val.merge(state["val"])
        self._moments.merge(state["moments"])

    def result(self, ridge: float = 0.0) -> dict[str, torch.Tensor]:
        """Tensors on the CPU: axes (K, D) unit rows, weights (D, K), intercepts (K,),
        r2 (K,) on the held-out samples, feature_mean/feature_std (K,) of raw readings."""
        if self._train is None:
            raise TlganError("no samples to fit")
        w, b = self._train.solve(ridge)
        r2 = self._val.r2(w, b) if self._val.n >= 2 else torch.full((len(self.kinds),), float("nan"), dtype=torch.float64)
        cpu = lambda t: t.to("cpu", torch.float64)  # noqa: E731
        return {"axes": normalize_rows(cpu(w).T), "weights": cpu(w), "intercepts": cpu(b), "r2": cpu(r2),
                "feature_mean": cpu(self._moments.mean()), "feature_std": cpu(self._moments.std())}


def fit_linear(
    batches: Iterable[tuple[int, torch.Tensor, torch.Tensor]],
    features: Sequence[Feature],
    latent_dim: int,
    ridge: float = 0.0,
    val_fraction: float = 0.1,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Least squares (ridge ≥ 0) of link-space targets on z, streamed over (start, z, readings) batches.

    Returns CPU tensors: axes (K, D) unit rows, weights (D, K), intercepts (K,),
    r2 (K,) on the held-out samples, feature_mean/feature_std (K,) of raw readings.
    The sums are kept on ``device`` (default: that of the first batch).
    """
    fitter = LinearFitter(features, latent_dim, val_fraction, device)
    for start, z, y in batches:
        fitter.update(start, z, y)
    return fitter.result(ridge)


def resolve_method(method: str, ridge: float | None) -> float:
    """The ridge penalty a fitting method uses (TlganError for unknown methods)."""
    if method not in LINEAR_METHODS:
        raise TlganError(f"method '{method}' cannot be fitted from streamed sums; linear methods: "
                         f"{', '.join(LINEAR_METHODS)}")
    lam = LINEAR_METHODS[method]
    return (DEFAULT_RIDGE if ridge is None else ridge) if lam is None else lam


def make_axis_set(out: dict[str, torch.Tensor], features: Sequence[Feature], *, generator: str, extractor: str,
                  latent_dim: int, method: str, params: dict, samples: int, seed: int) -> AxisSet:
    """An AxisSet from ``fit_linear``'s output for ``features`` and what produced the samples."""
    names = [f.name for f in features]
    return AxisSet(
        names=names, axes=out["axes"].float(), kinds=[f.kind for f in features], groups=[f.group for f in features],
        generator=generator, latent_dim=latent_dim, method=method, extractor=extractor, params=params,
        samples=samples, seed=seed, quality={name: {"r2": float(r)} for name, r in zip(names, out["r2"])},
        descriptions={f.name: f.description for f in features if f.description},
        weights=out["weights"].float(), intercepts=out["intercepts"].float(),
        feature_mean=out["feature_mean"].float(), feature_std=out["feature_std"].float(),
    )


def _pick_features(all_features: Sequence[Feature], features: Sequence[str] | None) -> list[int]:
    names = [f.name for f in all_features]
    chosen = list(features) if features else names
    for name in chosen:
        if name not in names:
            raise TlganError(f"unknown feature '{name}'; valid names: {', '.join(names)}")
    return [names.index(c) for c in chosen]


def fit_axes(
    samples: str | Path,
    method: str = "tlgan",
    ridge: float | None = None,
    val_fraction: float = 0.1,
    n: int | None = None,
    features: Sequence[str] | None = None,
    percent: float | None = None,
    c: float | None = None,
    device: torch.device | str | None = None,
) -> AxisSet:
    """Fit one axis per feature from a sample folder; ``features`` picks a subset (default all).

    method: tlgan, ridge (``ridge`` penalty), svm (top/bottom ``percent``%,
    penalty ``c``) or logistic (penalty ``c``); see tlgan.methods. The linear
    methods read shards one at a time, so memory does not grow with the
    sample count; ``device`` (default CPU) is where their sums are accumulated.
    """
    from .methods import CLASSIFIERS, UNSUPERVISED, check_method

    check_method(method)
    if method in UNSUPERVISED:
        raise TlganError(f"method '{method}' finds directions from the generator, not from samples: "
                         f"use `tlgan discover --method {method}` (or `tlgan build --method {method}`)")
    manifest = read_manifest(samples)
    cols = _pick_features(manifest.feature_list, features)
    picked = [manifest.feature_list[c] for c in cols]
    if method in CLASSIFIERS:
        return _fit_classifier(samples, method, picked, cols, n, val_fraction, percent, c)
    lam = resolve_method(method, ridge)
    t0 = time.perf_counter()
    batches = ((s, z, y[:, cols]) for s, z, y in iter_shards(samples, n))
    out = fit_linear(batches, picked, manifest.latent_dim, ridge=lam, val_fraction=val_fraction,
                     device=device or "cpu")
    timing.record("fit_seconds", time.perf_counter() - t0)
    params = {"ridge": lam, "val_fraction": val_fraction}
    if manifest.dtype != "float32":
        params["dtype"] = manifest.dtype
    return make_axis_set(out, picked, generator=manifest.generator, extractor=manifest.extractor,
                         latent_dim=manifest.latent_dim, method=method, params=params,
                         samples=n or manifest.n, seed=manifest.seed)


def _fit_classifier(samples: str | Path, method: str, picked: Sequence[Feature], cols: Sequence[int], n: int | None,
                    val_fraction: float, percent: float | None, c: float | None) -> AxisSet:
    from .methods import logistic, svm

    if c is not None and not c > 0:
        raise TlganError(f"C must be positive, got {c}")
    if method == "svm":
        return svm.fit_svm(samples, picked, cols, n, percent=svm.DEFAULT_PERCENT if percent is None else percent,
                           c=svm.DEFAULT_C if c is None else c, val_fraction=val_fraction)
    return logistic.fit_logistic(samples, picked, cols, n, c=logistic.DEFAULT_C if c is None else c,
                                 val_fraction=val_fraction)


def fit_streaming(
    generator: Generator,
    extractor: Extractor,
    n: int,
    seed: int,
    method: str = "tlgan",
    ridge: float | None = None,
    val_fraction: float = 0.1,
    features: Sequence[str] | None = None,
    batch_size: int | None = None,
    dtype: str = "float32",
    compile: bool = False,
    progress: bool = True,
) -> AxisSet:
    """Sample, render, label and fit in one pass, keeping no samples: memory stays flat whatever ``n`` is.

    Gives the same axes as ``run_samples`` followed by ``fit_axes`` with the
    same seed and options (up to float64 summation order), but is not
    resumable: an interrupted run starts over. On a GPU the latents, readings
    and sums stay on the device; only the small readings come back, to be
    checked. ``batch_size``, ``dtype`` and ``compile`` are as in ``run_samples``.
    """
    lam = resolve_method(method, ridge)
    check_sample_count(n)
    check_seed(seed)
    cols = _pick_features(extractor.features, features)
    picked = [extractor.features[c] for c in cols]
    labeller = Labeller(generator, extractor, LabelOptions(batch_size, dtype, compile))
    fitter = LinearFitter(picked, generator.latent_dim, val_fraction, labeller.device)
    col_index = torch.tensor(cols, device=labeller.device)
    t0 = time.perf_counter()

    def consume(unit: LabelledUnit) -> None:
        for start, lo, hi in unit.spans:
            fitter.update(start, unit.z_device[lo:hi], unit.features_device[lo:hi].index_select(1, col_index))

    units = group_ranges(shard_ranges(n, SHARD_SIZE), labeller.options.batch_size)
    try:
        label_ranges(labeller, seed, units, consume, progress=progress, total=n)
    finally:
        labeller.close()
    out = fitter.result(lam)
    timing.record("build_seconds", time.perf_counter() - t0)
    params = {"ridge": lam, "val_fraction": val_fraction}
    if labeller.options.dtype != "float32":
        params["dtype"] = labeller.options.dtype
    return make_axis_set(out, picked, generator=generator.identity, extractor=extractor.identity,
                         latent_dim=generator.latent_dim, method=method, params=params, samples=n, seed=seed)
