"""Measuring what each axis does: the re-scoring matrix, fit quality on fresh faces, monotonicity, face survival.

Fresh faces z (n, D) are drawn with ``latents.sample_latents(seed, 0, n, D)`` (mapped to w for StyleGAN axes in w)
under an evaluation seed that differs from the fit's. Every face is moved
along every axis by each offset t of a sweep (default −3…+3 σ of the knob),
rendered and re-read by the extractor. For axis k and feature j the
re-scoring entry is the mean over faces of the least-squares slope of
reading j against t, divided by the standard deviation of reading j over the
unmoved faces: "feature SDs per σ of the knob". A good axis has a large entry
for its own feature (the diagonal) and small ones elsewhere (leaks).

The same is measured with every other supervised axis locked (TL-GAN) or
conditioned on (InterFaceGAN, for svm/logistic sets): both move along the
axis' component orthogonal to the others, so the locked knobs stay put. As in
the Editor, the knob still moves by t σ: the latent moves t / gain along the
locked direction, where gain = direction · axis.

With an ``exact`` sweeper (``tlgan.editing.exact.ExactSweeper``, passed in by
the caller since editing is not below evaluation), each axis that reads a
feature is instead moved along per-face exact paths: offset t sets the knob's
standardised reading to its start + t, free or with the other supervised
axes' readings held; the same matrices, curves and face counts are computed
from the faces those paths reach, and per axis the share of moves that
reached their goal is reported ("reachable").

With an ``identity`` model (``tlgan.load_identity``, passed in by the caller), the first ``identity_faces``
faces of every sweep (free and locked, linear or exact) are also read for identity: per axis, the descriptor
distance of each moved face from its unmoved self, summarised as distance per σ moved (see
``tlgan.evaluation.identity``); faces whose landmarks are not found are left out and counted.

``Evaluation.to_dict`` is the stable JSON documented in docs/evaluate.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from tqdm.auto import tqdm

from tlgan.axes.math import conditional_direction, link, lock_direction
from tlgan.axes.methods import CLASSIFIERS, LINEAR, SUPERVISED
from tlgan.axes.spaces import match_space
from tlgan.axes.store import AxisSet
from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator
from tlgan.sampling.latents import check_seed
from tlgan.sampling.spaces import draw_latents
from tlgan.sampling.sweeps import effect_row, read_faces, read_sweeps, strip_images

from .identity import IdentityReader, linear_latents, read_identity, summarize_identity, sweep_identity

FORMAT = "tlgan.evaluation"
VERSION = 1
DEFAULT_SWEEP = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
DEFAULT_SEED = 424242
DEFAULT_IDENTITY_FACES = 16
FACE_FEATURE = "face_prob"
FACE_THRESHOLD = 0.5


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks (P, n) from 1 of each column of (P, n), ties given their average rank (as Spearman's ρ needs)."""
    return torch.from_numpy(rankdata(values.cpu().numpy(), axis=0)).to(torch.float64)


def monotonicity(curves: torch.Tensor, offsets: torch.Tensor) -> float:
    """Mean over faces of the Spearman correlation between offset and reading, for curves (P, n); 1 = always rising.

    A face whose reading does not change at all counts as 0.
    """
    ranks = average_ranks(curves.to(torch.float64))
    t = average_ranks(offsets.to(torch.float64)[:, None])[:, 0]
    rc, tc = ranks - ranks.mean(0), (t - t.mean())[:, None]
    denom = (rc.pow(2).sum(0) * tc.pow(2).sum()).sqrt()
    rho = torch.where(denom > 1e-12, (rc * tc).sum(0) / denom.clamp_min(1e-12), torch.zeros_like(denom))
    return float(rho.mean())


def worst_off(row: torch.Tensor, exclude: int | None) -> tuple[int | None, float]:
    """(index, value) of the largest |entry| of ``row`` (F,) other than ``exclude``; NaN entries ignored."""
    r = row.clone()
    if exclude is not None:
        r[exclude] = math.nan
    mag = torch.nan_to_num(r.abs(), nan=-1.0)
    j = int(mag.argmax())
    return (None, math.nan) if mag[j] < 0 else (j, float(row[j]))


def taught_axes(axis_set: AxisSet) -> set[str]:
    """Names of the axes added by ``tlgan teach`` (few-shot, from user labels)."""
    return set(axis_set.params.get("taught", {}))


def supervised_axes(axis_set: AxisSet) -> list[bool]:
    """Per axis: was it fitted to a target (an extractor feature or user labels)? These are the ones locked."""
    taught = taught_axes(axis_set)
    return [axis_set.method in SUPERVISED or name in taught for name in axis_set.names]


def axis_targets(axis_set: AxisSet, feature_names: Sequence[str]) -> list[str | None]:
    """The extractor feature each axis was fitted to, or None (unsupervised or taught axes).

    A supervised axis targets the feature of its own name, or the one recorded
    in params['targets'] when it was renamed.
    """
    renamed = axis_set.params.get("targets", {})
    taught = taught_axes(axis_set)
    out: list[str | None] = []
    for name in axis_set.names:
        target = renamed.get(name, name) if axis_set.method in SUPERVISED and name not in taught else None
        out.append(target if target in feature_names else None)
    return out


def lock_mode(axis_set: AxisSet) -> str:
    """'condition' (InterFaceGAN's n' = p − Cᵀ(CCᵀ)⁻¹Cp) for classifier sets, else 'lock' (TL-GAN)."""
    return "condition" if axis_set.method in CLASSIFIERS else "lock"


def fresh_quality(axis_set: AxisSet, k: int, target: str | None, kind: str, z0: torch.Tensor,
                  y0: torch.Tensor) -> tuple[str | None, float | None]:
    """(metric, value) of axis k's own fit on fresh faces: link-space R² (tlgan, ridge) or accuracy (svm, logistic).

    y0 (n,) are the fresh readings of the target feature. None when the axis has no
    target or the set lacks the regression weights.
    """
    name = axis_set.names[k]
    if target is None or axis_set.weights is None or axis_set.intercepts is None:
        return None, None
    pred = z0.to(torch.float64) @ axis_set.weights[:, k].to(torch.float64) + float(axis_set.intercepts[k])
    y = y0.to(torch.float64)
    if axis_set.method in LINEAR:
        t = link(y[:, None], [kind])[:, 0]
        ss_tot = float(((t - t.mean()) ** 2).sum())
        return "r2", (1 - float(((t - pred) ** 2).sum()) / ss_tot) if ss_tot > 0 else None
    cut = axis_set.params.get("thresholds", {}).get(name)
    if cut is None:
        return "accuracy", None
    if axis_set.method == "svm":
        lo, hi = cut
        keep = (y <= lo) | (y >= hi)
        if not bool(keep.any()):
            return "accuracy", None
        return "accuracy", float(((pred[keep] > 0) == (y[keep] >= hi)).double().mean())
    return "accuracy", float(((pred > 0) == (y > cut)).double().mean())


# ---- the evaluation --------------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """Everything ``evaluate`` measured; ``to_dict`` gives the documented JSON, ``strips`` the pictures.

    matrix / matrix_locked: (K, F) re-scoring matrices (locked is None when the set
    has fewer than two supervised axes); cosine: (K, K); axes: per-axis results.
    """

    header: dict[str, Any]
    features: list[str]
    feature_mean: list[float]
    feature_std: list[float]
    axis_names: list[str]
    matrix: torch.Tensor
    matrix_locked: torch.Tensor | None
    cosine: torch.Tensor
    axes: list[dict[str, Any]]
    summary: dict[str, Any]
    strips: dict[str, list[list[torch.Tensor]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def matrix(m: torch.Tensor | None) -> dict[str, Any] | None:
            return None if m is None else {"rows": self.axis_names, "columns": self.features, "values": _rows(m)}

        return _clean({
            **self.header,
            "features": self.features, "feature_mean": self.feature_mean, "feature_std": self.feature_std,
            "axes": self.axes,
            "rescoring": matrix(self.matrix),
            "rescoring_locked": matrix(self.matrix_locked),
            "cosine": {"rows": self.axis_names, "columns": self.axis_names, "values": _rows(self.cosine)},
            "summary": self.summary,
        })


def _rows(m: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in m]


def _clean(value: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN); floats rounded to 6 significant digits so files diff well."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _sweep_stats(readings: torch.Tensor, offsets: torch.Tensor, spread: torch.Tensor, target: int | None,
                 face: int | None) -> dict[str, Any]:
    """Per-axis numbers from one sweep's readings (P, n, F): effects, diagonal, worst leak, monotonicity, faces kept."""
    row = effect_row(readings, offsets, spread)
    top, top_val = worst_off(row, None)
    anchor = target if target is not None else top
    leak, leak_val = worst_off(row, anchor)
    stats: dict[str, Any] = {"effects": row, "moves_most": (top, top_val), "worst_leak": (leak, leak_val),
                             "diagonal": float(row[target]) if target is not None else math.nan}
    if anchor is not None:
        sign = 1.0 if target is not None or top_val >= 0 else -1.0
        stats["monotonicity"] = monotonicity(sign * readings[:, :, anchor], offsets)
        stats["curve"] = readings[:, :, anchor].mean(1).tolist()
    else:
        stats["monotonicity"], stats["curve"] = math.nan, []
    if face is not None:
        is_face = readings[:, :, face] >= FACE_THRESHOLD
        stats["face_fraction"] = is_face.double().mean(1).tolist()
        start = is_face[int(torch.argmin(offsets.abs()))]
        stats["faces_kept"] = float(is_face[:, start].all(0).double().mean()) if bool(start.any()) else math.nan
    else:
        stats["face_fraction"], stats["faces_kept"] = None, math.nan
    return stats


def _named(features: Sequence[str], pair: tuple[int | None, float]) -> dict[str, Any] | None:
    j, v = pair
    return None if j is None else {"feature": features[j], "effect": v}


def evaluate(
    generator: Generator,
    extractor: Extractor,
    axis_set: AxisSet,
    n: int = 500,
    seed: int = DEFAULT_SEED,
    sweep: Sequence[float] = DEFAULT_SWEEP,
    locked: bool = True,
    batch_size: int = 256,
    strip_faces: int = 2,
    progress: bool = True,
    reader: Callable[[torch.Tensor], torch.Tensor] | None = None,
    exact: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
    spread: torch.Tensor | None = None,
    identity: IdentityReader | None = None,
    identity_faces: int = DEFAULT_IDENTITY_FACES,
) -> Evaluation:
    """Evaluate every axis of ``axis_set`` on ``n`` fresh faces of evaluation ``seed`` (see module docstring).

    ``reader`` (latents (M, D) float32 on the CPU -> readings (M, F) float32 on
    the CPU) renders and reads the faces elsewhere, e.g. on a Ray cluster
    (``tlgan evaluate --ray``); strips are still rendered here. ``identity`` (an identity model, see the
    module docstring) adds each axis' identity drift, read here on the first ``identity_faces`` faces.
    Raises TlganError for a seed equal to the fit's (those would not be fresh
    faces), a sweep without 0 or with fewer than 3 points, or n < 2.
    """
    axis_set.check_generator(generator)
    generator, axis_set = match_space(generator, axis_set)  # StyleGAN: evaluate in the set's space (w, w+)
    check_seed(seed)
    if axis_set.seed is not None and seed == axis_set.seed:
        raise TlganError(f"evaluation seed {seed} is the seed the axes were fitted on; pick another --seed")
    if not isinstance(n, int) or n < 2:
        raise TlganError(f"evaluation needs at least 2 faces, got {n}")
    offsets = torch.tensor(sorted(float(t) for t in sweep), dtype=torch.float64)
    if len(offsets) < 3 or not bool((offsets == 0).any()) or len(set(offsets.tolist())) != len(offsets):
        raise TlganError("the sweep needs at least 3 distinct offsets including 0")
    if identity is not None and (not isinstance(identity_faces, int) or identity_faces < 1):
        raise TlganError(f"identity needs at least 1 face, got {identity_faces}")
    features = [f.name for f in extractor.features]
    kinds = [f.kind for f in extractor.features]
    face = features.index(FACE_FEATURE) if FACE_FEATURE in features else None
    targets = axis_targets(axis_set, features)
    supervised = supervised_axes(axis_set)
    mode = lock_mode(axis_set)
    axes64 = axis_set.axes.to(torch.float64)
    K, D = axes64.shape

    z0 = draw_latents(generator, seed, 0, n)
    # Knob σ in units of each axis' stored spread (w); 1 in z.
    unit = axis_set.spread.to(torch.float64) if axis_set.spread is not None else torch.ones(K, dtype=torch.float64)
    y0 = reader(z0) if reader is not None else read_faces(generator, extractor, z0, batch_size)
    # each feature's spread over the fresh faces (or one given, so that runs on few faces share a yardstick)
    spread = y0.to(torch.float64).std(0) if spread is None else spread.to(torch.float64)
    can_lock = locked and sum(supervised) >= 2
    ident = None
    if identity is not None:
        m = min(identity_faces, n)
        bar = tqdm(unit="face", desc="identity", disable=not progress, dynamic_ncols=True)
        ident = _Identity(generator, identity, z0[:m], offsets, read_identity(generator, identity, z0[:m]), bar)
    if exact is not None:
        return _evaluate_exact(generator, extractor, axis_set, exact, z0, y0, offsets, targets, supervised, features,
                               kinds, face, can_lock, batch_size, strip_faces, seed, n, spread, ident)
    matrix = torch.full((K, len(features)), math.nan, dtype=torch.float64)
    matrix_locked = torch.full_like(matrix, math.nan) if can_lock else None
    # every move first (free, then locked where possible), so that all renders share full batches
    moves: list[tuple[torch.Tensor, float]] = []
    slots: list[tuple[int, int | None]] = []  # per axis: (index of its free move, index of its locked move)
    for k in range(K):
        free_at = len(moves)
        moves.append((axes64[k], 1.0 / float(unit[k])))
        locked_at = None
        if can_lock and supervised[k]:
            others = axes64[[i for i in range(K) if i != k and supervised[i]]]
            try:
                d = conditional_direction(axes64[k], others) if mode == "condition" else lock_direction(axes64[k], others)
            except TlganError:  # the axis lies in the span of the others: nothing left to move
                d = None
            if d is not None:
                locked_at = len(moves)
                moves.append((d, float(d @ axes64[k]) / float(unit[k])))
        slots.append((free_at, locked_at))
    readings = read_sweeps(generator, extractor, z0, moves, offsets, y0, batch_size, progress, reader)

    results: list[dict[str, Any]] = []
    strips: dict[str, list[list[torch.Tensor]]] = {}
    for k, name in enumerate(axis_set.names):
        tgt = features.index(targets[k]) if targets[k] is not None else None
        free_at, locked_at = slots[k]
        free = _sweep_stats(readings[free_at], offsets, spread, tgt, face)
        matrix[k] = free["effects"]
        metric, fresh = fresh_quality(axis_set, k, targets[k], kinds[tgt] if tgt is not None else "real",
                                      z0, y0[:, tgt] if tgt is not None else y0[:, :0])
        stored_metric = metric or next((m for m in ("r2", "accuracy") if m in axis_set.quality.get(name, {})), None)
        entry: dict[str, Any] = {
            "name": name, "target": targets[k], "supervised": supervised[k],
            "fit_quality": {"metric": stored_metric, "fresh": fresh,
                            "stored": axis_set.quality.get(name, {}).get(stored_metric) if stored_metric else None},
            "moves_most": _named(features, free["moves_most"]), "diagonal": free["diagonal"],
            "worst_leak": _named(features, free["worst_leak"]), "monotonicity": free["monotonicity"],
            "target_curve": free["curve"], "face_fraction": free["face_fraction"], "faces_kept": free["faces_kept"],
            "identity": ident.linear(*moves[free_at]) if ident else None,
            "locked": None,
        }
        rows = [strip_images(generator, z0[:strip_faces], axes64[k], offsets, 1.0 / float(unit[k]))] if strip_faces else []
        if locked_at is not None:
            d, gain = moves[locked_at]
            held = _sweep_stats(readings[locked_at], offsets, spread, tgt, face)
            matrix_locked[k] = held["effects"]
            entry["locked"] = {
                "gain": gain, "diagonal": held["diagonal"], "moves_most": _named(features, held["moves_most"]),
                "worst_leak": _named(features, held["worst_leak"]), "monotonicity": held["monotonicity"],
                "target_curve": held["curve"], "face_fraction": held["face_fraction"],
                "faces_kept": held["faces_kept"], "identity": ident.linear(d, gain) if ident else None,
            }
            if strip_faces:
                rows.append(strip_images(generator, z0[:strip_faces], d, offsets, gain))
        if rows:
            strips[name] = rows
        results.append(entry)

    header = {
        "format": FORMAT, "version": VERSION,
        "generator": axis_set.generator, "extractor": extractor.identity, "method": axis_set.method,
        "latent_space": axis_set.latent_space, "latent_dim": D,
        "axes_extractor": axis_set.extractor, "axes_samples": axis_set.samples, "axes_seed": axis_set.seed,
        "settings": {"n": n, "seed": seed, "sweep": offsets.tolist(), "lock_mode": mode if can_lock else None,
                     "face_feature": FACE_FEATURE if face is not None else None, "face_threshold": FACE_THRESHOLD,
                     "latents": "tlgan.latents.sample_latents(seed, 0, n, latent_dim)",
                     "identity": ident.settings() if ident else None},
    }
    axes_n = axis_set.axes.to(torch.float64)
    return Evaluation(
        header=header, features=features, feature_mean=y0.to(torch.float64).mean(0).tolist(),
        feature_std=spread.tolist(), axis_names=list(axis_set.names), matrix=matrix, matrix_locked=matrix_locked,
        cosine=axes_n @ axes_n.T, axes=results, summary=summarize(results), strips=strips,
    )


def _evaluate_exact(generator: Generator, extractor: Extractor, axis_set: AxisSet, sweeper: Callable[..., Any],
                    z0: torch.Tensor, y0: torch.Tensor, offsets: torch.Tensor, targets: list[str | None],
                    supervised: list[bool], features: list[str], kinds: list[str], face: int | None, can_lock: bool,
                    batch_size: int, strip_faces: int, seed: int, n: int, spread: torch.Tensor,
                    ident: _Identity | None = None) -> Evaluation:
    """The re-scoring protocol on exact paths (module docstring): ``sweeper(z0, k, offsets, locked_axes)`` returns
    latents (P, n, D) and converged (P, n)."""
    K, D = axis_set.axes.shape
    matrix = torch.full((K, len(features)), math.nan, dtype=torch.float64)
    matrix_locked = torch.full_like(matrix, math.nan) if can_lock else None
    moving = offsets != 0
    results: list[dict[str, Any]] = []
    strips: dict[str, list[list[torch.Tensor]]] = {}

    def run(k: int, locks: list[int]) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
        latents, ok = sweeper(z0, k, offsets.tolist(), locks)
        readings = read_faces(generator, extractor, latents.reshape(-1, D), batch_size).reshape(len(offsets), n, -1)
        readings[~moving] = y0.float()
        tgt = features.index(targets[k])
        stats = _sweep_stats(readings, offsets, spread, tgt, face)
        stats["reachable"] = float(ok[moving].double().mean())
        stats["identity"] = ident.exact(latents) if ident else None
        return stats, latents, ok

    for k, name in enumerate(axis_set.names):
        entry: dict[str, Any] = {"name": name, "target": targets[k], "supervised": supervised[k], "locked": None,
                                 "fit_quality": {"metric": None, "fresh": None, "stored": None},
                                 "moves_most": None, "diagonal": None, "worst_leak": None, "monotonicity": None,
                                 "target_curve": [], "face_fraction": None, "faces_kept": None, "reachable": None,
                                 "identity": None}
        if targets[k] is None:
            results.append(entry)
            continue
        free, lat_free, _ = run(k, [])
        matrix[k] = free["effects"]
        entry.update({"moves_most": _named(features, free["moves_most"]), "diagonal": free["diagonal"],
                      "worst_leak": _named(features, free["worst_leak"]), "monotonicity": free["monotonicity"],
                      "target_curve": free["curve"], "face_fraction": free["face_fraction"],
                      "faces_kept": free["faces_kept"], "reachable": free["reachable"], "identity": free["identity"]})
        rows = [list(_render(generator, lat_free[:, :strip_faces]))] if strip_faces else []
        others = [i for i in range(K) if i != k and supervised[i] and targets[i] is not None]
        if can_lock and others:
            held, lat_held, _ = run(k, others)
            matrix_locked[k] = held["effects"]
            entry["locked"] = {"gain": None, "diagonal": held["diagonal"], "moves_most": _named(features, held["moves_most"]),
                               "worst_leak": _named(features, held["worst_leak"]), "monotonicity": held["monotonicity"],
                               "target_curve": held["curve"], "face_fraction": held["face_fraction"],
                               "faces_kept": held["faces_kept"], "reachable": held["reachable"],
                               "identity": held["identity"]}
            if strip_faces:
                rows.append(list(_render(generator, lat_held[:, :strip_faces])))
        if rows:
            strips[name] = rows
        results.append(entry)
    header = {
        "format": FORMAT, "version": VERSION, "mode": "exact",
        "generator": axis_set.generator, "extractor": extractor.identity, "method": axis_set.method,
        "latent_space": axis_set.latent_space, "latent_dim": D,
        "axes_extractor": axis_set.extractor, "axes_samples": axis_set.samples, "axes_seed": axis_set.seed,
        "settings": {"n": n, "seed": seed, "sweep": offsets.tolist(), "lock_mode": "exact" if can_lock else None,
                     "face_feature": FACE_FEATURE if face is not None else None, "face_threshold": FACE_THRESHOLD,
                     "latents": "tlgan.latents.sample_latents(seed, 0, n, latent_dim)",
                     "offsets": "standardised reading of the knob's feature, relative to the face's own",
                     "identity": ident.settings() if ident else None},
    }
    axes_n = axis_set.axes.to(torch.float64)
    return Evaluation(
        header=header, features=features, feature_mean=y0.to(torch.float64).mean(0).tolist(),
        feature_std=spread.tolist(), axis_names=list(axis_set.names), matrix=matrix, matrix_locked=matrix_locked,
        cosine=axes_n @ axes_n.T, axes=results, summary=summarize(results), strips=strips,
    )


@dataclass
class _Identity:
    """The identity measurement of one evaluation: the model, its faces z (m, D), the sweep's offsets (P,) and
    the unmoved faces' reading (descriptors (m, E), found (m,))."""

    generator: Generator
    model: IdentityReader
    z: torch.Tensor
    offsets: torch.Tensor
    base: tuple[torch.Tensor, torch.Tensor]
    bar: Any = None  # a tqdm bar counting the faces read (closed by ``settings``)

    def linear(self, direction: torch.Tensor, gain: float) -> dict[str, Any]:
        return sweep_identity(self.generator, self.model, linear_latents(self.z, direction, self.offsets, gain),
                              self.offsets, self.base, progress=self.bar.update if self.bar is not None else None)

    def exact(self, latents: torch.Tensor) -> dict[str, Any]:
        """From an exact sweep's latents (P, n, D): its first m faces."""
        return sweep_identity(self.generator, self.model, latents[:, : self.z.shape[0]], self.offsets, self.base,
                              progress=self.bar.update if self.bar is not None else None)

    def settings(self) -> dict[str, Any]:
        """The JSON's settings.identity; called once all is read, it closes the progress bar."""
        if self.bar is not None:
            self.bar.close()
        return {"model": getattr(self.model, "identity", type(self.model).__name__), "faces": int(self.z.shape[0]),
                "start_not_found": int((~self.base[1]).sum())}


@torch.inference_mode()
def _render(generator: Generator, latents: torch.Tensor) -> list[torch.Tensor]:
    """Images (3, H, W) on CPU, row-major by face, of latents (P, s, D) (offsets along each row)."""
    z = latents.transpose(0, 1).reshape(-1, latents.shape[-1])
    device = next(generator.parameters(), torch.empty(0)).device
    return list(generator(z.float().to(device)).float().cpu())


def summarize(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Set-level numbers over the axes that have a target feature (free and locked):

    diagonal_mean, leak_mean (mean of each axis' worst |off-diagonal|), leak_max
    (with axis and feature), monotonicity_mean, faces_kept_mean, fit_quality_mean; with an identity reading
    also identity_per_sigma_mean, identity_max, identity_by_size, identity_not_found.
    """
    def block(entries: list[dict[str, Any]]) -> dict[str, Any]:
        if not entries:
            return {"axes": 0}
        leaks = [(abs(e["worst_leak"]["effect"]), e) for e in entries if e.get("worst_leak")]
        worst = max(leaks, key=lambda p: p[0], default=None)
        mean = lambda xs: float(np.nanmean(xs)) if len(xs) and not np.all(np.isnan(xs)) else math.nan
        out = {
            "axes": len(entries),
            "diagonal_mean": mean([e["diagonal"] for e in entries]),
            "leak_mean": mean([p[0] for p in leaks]),
            "leak_max": None if worst is None else {"axis": worst[1]["name"], "feature": worst[1]["worst_leak"]["feature"],
                                                     "effect": worst[1]["worst_leak"]["effect"]},
            "monotonicity_mean": mean([e["monotonicity"] for e in entries]),
            "faces_kept_mean": mean([e["faces_kept"] for e in entries]),
        }
        reach = [e["reachable"] for e in entries if e.get("reachable") is not None]
        if reach:
            out["reachable_mean"] = mean(reach)
        out.update(summarize_identity(entries))
        return out

    targeted = [r for r in results if r["target"] is not None]
    free = block(targeted)
    qualities = [r["fit_quality"]["fresh"] for r in targeted if r["fit_quality"]["fresh"] is not None]
    free["fit_quality_mean"] = float(np.mean(qualities)) if qualities else math.nan
    locked = [dict(r["locked"], name=r["name"]) for r in targeted if r["locked"] is not None]
    return {"free": free, "locked": block(locked) if locked else None}
