"""The math of feature axes: targets, streaming least squares, normalisation, locking, projections.

Conventions: latents z are rows (N, D); an axis set is a matrix A (K, D) with
unit rows; a knob's value is z @ a, in standard deviations when z ~ N(0, I).
Everything here is a plain function of tensors (float64 where precision
matters) so that it can be tested against planted truths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from tlgan.errors import TlganError

# Targets are clipped before the link function so that saturated readings do
# not dominate the fit: TL-GAN clipped tanh scores to tanh(±3); we clip
# probabilities to the same range in logit space (2·atanh(2p−1) = logit p).
TANH_CLIP = 3.0
LOGIT_CLIP = 6.0


def link(y: torch.Tensor, kinds: Sequence[str]) -> torch.Tensor:
    """Map readings (N, K) to the space they are regressed in, per column kind.

    probability -> logit(clip(p)), tanh -> atanh(clip(y)), real -> y.
    """
    if y.shape[-1] != len(kinds):
        raise TlganError(f"{y.shape[-1]} feature columns but {len(kinds)} kinds")
    out = y.to(torch.float64).clone()
    for j, kind in enumerate(kinds):
        if kind == "probability":
            edge = 1 / (1 + math.exp(LOGIT_CLIP))
            out[..., j] = torch.logit(out[..., j].clamp(edge, 1 - edge))
        elif kind == "tanh":
            edge = math.tanh(TANH_CLIP)
            out[..., j] = torch.atanh(out[..., j].clamp(-edge, edge))
        elif kind != "real":
            raise TlganError(f"unknown feature kind '{kind}'")
    return out


# ---- the held-out split: every k-th sample index, k = round(1 / val_fraction) --------------------------------------
def holdout_period(val_fraction: float) -> int:
    if not 0 < val_fraction < 0.5:
        raise TlganError(f"validation fraction must be in (0, 0.5), got {val_fraction}")
    return max(2, round(1 / val_fraction))


def validation_mask(start: int, count: int, val_fraction: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean (count,) marking held-out samples among indices [start, start + count)."""
    k = holdout_period(val_fraction)
    return (torch.arange(start, start + count, device=device) % k) == k - 1


def held_out_count(start: int, count: int, val_fraction: float) -> int:
    """How many of the indices [start, start + count) are held out (the number of multiples of k in (start, start + count])."""
    k = holdout_period(val_fraction)
    return (start + count) // k - start // k


@dataclass
class NormalEquations:
    """Sufficient statistics of a linear regression y ~ z W + b, accumulated batch by batch.

    Holds n, Σz (D), Σy (K), ZᵀZ (D, D), Zᵀy (D, K) and Σy² (K) in float64 on
    ``device``, so that fitting and held-out R² need one pass over the samples
    and memory independent of N. On an accelerator the sums stay there: an
    update is a few matrix products queued on the device, with no host round
    trip (non-finite input is then reported by ``solve``/``r2`` rather than by
    ``update``).
    """

    dim: int
    targets: int
    n: int = 0
    device: torch.device | str = "cpu"
    sz: torch.Tensor = field(init=False)
    sy: torch.Tensor = field(init=False)
    zz: torch.Tensor = field(init=False)
    zy: torch.Tensor = field(init=False)
    yy: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        f64, self.device = torch.float64, torch.device(self.device)
        self.sz = torch.zeros(self.dim, dtype=f64, device=self.device)
        self.sy = torch.zeros(self.targets, dtype=f64, device=self.device)
        self.zz = torch.zeros(self.dim, self.dim, dtype=f64, device=self.device)
        self.zy = torch.zeros(self.dim, self.targets, dtype=f64, device=self.device)
        self.yy = torch.zeros(self.targets, dtype=f64, device=self.device)
        self._nonfinite = torch.zeros((), dtype=torch.int64, device=self.device)

    def update(self, z: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
               count: int | None = None) -> None:
        """Add samples z (N, D) with targets y (N, K) (already in link space).

        ``mask`` (N,) bool picks the rows to add without a data-dependent
        selection (which would stall an accelerator); ``count`` is how many
        rows it picks, when the caller knows it (else it is counted).
        """
        if z.ndim != 2 or y.ndim != 2 or z.shape[0] != y.shape[0] or z.shape[1] != self.dim or y.shape[1] != self.targets:
            raise TlganError(f"expected z (N, {self.dim}) and y (N, {self.targets}), got {tuple(z.shape)} and {tuple(y.shape)}")
        z = z.to(self.device, torch.float64)
        y = y.to(self.device, torch.float64)
        bad = (~torch.isfinite(z)).sum() + (~torch.isfinite(y)).sum()
        if self.device.type == "cpu":
            if bool(bad):
                raise TlganError("samples contain NaN or infinite values")
        else:
            self._nonfinite += bad
        if mask is not None:
            if mask.shape != (z.shape[0],):
                raise TlganError(f"mask must have shape ({z.shape[0]},), got {tuple(mask.shape)}")
            weight = mask.to(self.device, torch.float64)[:, None]
            self.n += int(mask.sum()) if count is None else count
            zw, yw = z * weight, y * weight
        else:
            self.n += z.shape[0]
            zw, yw = z, y
        self.sz += zw.sum(0)
        self.sy += yw.sum(0)
        self.zz += zw.T @ z
        self.zy += zw.T @ y
        self.yy += (yw * y).sum(0)

    _SUMS = ("sz", "sy", "zz", "zy", "yy")

    def state(self) -> dict[str, torch.Tensor | int]:
        """The sums as CPU tensors (and n), e.g. to send one shard's contribution to another process."""
        self._check_finite()
        return {"n": self.n, **{name: getattr(self, name).cpu() for name in self._SUMS}}

    def merge(self, state: dict[str, torch.Tensor | int]) -> None:
        """Add another accumulator's ``state()``. Adding shards' states in shard order gives the same bits as
        updating one accumulator with the same shards in that order (each shard's sums start from zero)."""
        for name in self._SUMS:
            part = state[name]
            if part.shape != getattr(self, name).shape:
                raise TlganError(f"cannot merge sums of shape {tuple(part.shape)} into {tuple(getattr(self, name).shape)}")
            getattr(self, name).add_(part.to(self.device, torch.float64))
        self.n += int(state["n"])

    def _check_finite(self) -> None:
        if self.device.type != "cpu" and int(self._nonfinite):
            raise TlganError("samples contain NaN or infinite values")

    def solve(self, ridge: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Least squares with intercept (ridge penalty on W only): returns W (D, K), b (K,)."""
        if self.n <= self.dim:
            raise TlganError(f"need more samples than latent dimensions to fit ({self.n} <= {self.dim})")
        if ridge < 0:
            raise TlganError(f"ridge must be >= 0, got {ridge}")
        self._check_finite()
        mz, my = self.sz / self.n, self.sy / self.n
        czz = self.zz - self.n * torch.outer(mz, mz)
        czy = self.zy - self.n * torch.outer(mz, my)
        w = torch.linalg.solve(czz + ridge * torch.eye(self.dim, dtype=torch.float64, device=self.device), czy)
        return w, my - mz @ w

    def r2(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Coefficient of determination (K,) of predictions z W + b on the samples held here."""
        if self.n < 2:
            raise TlganError("need at least 2 held-out samples for R²")
        self._check_finite()
        w, b = w.to(self.device, torch.float64), b.to(self.device, torch.float64)
        pred_sq = (w * (self.zz @ w)).sum(0) + 2 * b * (self.sz @ w) + self.n * b * b
        cross = (w * self.zy).sum(0) + b * self.sy
        ss_res = self.yy - 2 * cross + pred_sq
        ss_tot = self.yy - self.sy**2 / self.n
        return 1 - ss_res / ss_tot.clamp_min(1e-12)


def normalize_rows(w: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit-normalise each row of (K, D); a zero row is an error (no direction)."""
    norms = w.norm(dim=-1, keepdim=True)
    if bool((norms < eps).any()):
        raise TlganError("cannot normalise a zero direction (the feature does not depend on the latent)")
    return w / norms


def gram_schmidt(vectors: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
    """Orthonormal basis (r, D) of the span of rows (L, D), built in row order; dependent rows are skipped."""
    basis: list[torch.Tensor] = []
    for v in vectors.to(torch.float64):
        for q in basis:
            v = v - (v @ q) * q
        norm = v.norm()
        if norm > tol:
            basis.append(v / norm)
    if not basis:
        return vectors.new_zeros((0, vectors.shape[-1]), dtype=torch.float64)
    return torch.stack(basis)


def lock_direction(axis: torch.Tensor, locked: torch.Tensor, min_norm: float = 1e-3) -> torch.Tensor:
    """TL-GAN's lock: remove from ``axis`` (D,) its components along the locked axes (L, D), renormalise.

    The locked axes are Gram–Schmidt-ed in order first. Moving z along the
    result leaves every locked knob's value unchanged. Raises TlganError when
    the axis lies (almost) in the locked span, so there is nothing left to move.
    """
    axis = axis.to(torch.float64)
    if locked.numel() == 0:
        return axis / axis.norm()
    q = gram_schmidt(locked)
    rest = axis - q.T @ (q @ axis)
    if rest.norm() < min_norm * axis.norm():
        raise TlganError("this axis lies in the span of the locked axes: unlock some to move it")
    return rest / rest.norm()


def lock_all(axes: torch.Tensor, locked_idx: Sequence[int]) -> torch.Tensor:
    """TL-GAN's whole-set lock: every unlocked axis (rows of (K, D)) made orthogonal to the locked ones.

    Locked rows are returned unchanged. Returns float64 (K, D).
    """
    out = axes.to(torch.float64).clone()
    if not locked_idx:
        return out
    locked = out[list(locked_idx)]
    for k in range(out.shape[0]):
        if k not in locked_idx:
            out[k] = lock_direction(out[k], locked)
    return out


def conditional_direction(primal: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """InterFaceGAN's conditional edit n' = p − Cᵀ(CCᵀ)⁻¹Cp for p (D,) and conditions C (L, D), unit-normalised.

    Spans the same direction as ``lock_direction`` (both project p onto the
    orthogonal complement of span(C)); provided under its published name.
    """
    p = primal.to(torch.float64)
    c = conditions.to(torch.float64)
    if c.numel() == 0:
        return p / p.norm()
    rest = p - c.T @ torch.linalg.lstsq(c @ c.T, c @ p).solution
    if rest.norm() < 1e-3 * p.norm():
        raise TlganError("the primal direction lies in the span of the conditions")
    return rest / rest.norm()


def knob_values(z: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """Knob values (N, K) of latents (N, D) on unit axes (K, D): positions along each axis in σ."""
    return z.to(axes.dtype) @ axes.T


def move_to_value(z: torch.Tensor, axis: torch.Tensor, direction: torch.Tensor, value: float) -> torch.Tensor:
    """Move latent z (D,) along ``direction`` (D,) until its knob on ``axis`` (D,) equals ``value``.

    direction is the (possibly lock-adjusted) unit vector actually moved along;
    the step length is (value − z·axis) / (direction·axis).
    """
    z64, axis64, dir64 = z.to(torch.float64), axis.to(torch.float64), direction.to(torch.float64)
    gain = float(dir64 @ axis64)
    if abs(gain) < 1e-3:
        raise TlganError("the locked axes leave this knob almost no room to move; unlock some")
    t = (value - float(z64 @ axis64)) / gain
    return (z64 + t * dir64).to(z.dtype)
