"""Exact edits: knobs on what the extractor reads, moved along a per-face path that holds the locked readings.

A knob's *exact value* is the extractor's reading of the current image in its
fitting space (``exact_link``: logit for probabilities, arctanh for tanh
outputs, as is for real ones), standardised by that feature's mean and spread
over faces: +2 reads like a face about 2 SD above the average face.

Moving a knob is a predictor–corrector path in latent space (``exact_move``):

* predictor: the step closest to the knob's global axis move among those that
  change the moved reading by at most ``step`` SD toward its goal while, to first
  order, keeping every locked reading and ‖z‖ where they were
  (Δz = u + A⁺(b − A u), A = [∇target; ∇locked; z/‖z‖], u = the axis move that
  alone would make the target change, or 0 when the axis is locally useless);
  with u = 0 this is the minimum-norm step in the null space of the locks;
* corrector: Gauss–Newton (chord) iterations on the locked readings and ‖z‖
  with the step's Jacobian, until each locked reading is within ``lock_tol`` SD
  of its value before the edit; a step whose locks cannot be restored, or that
  does not get closer to the goal, is retried at half the size;
* prior: ‖z‖ is kept inside the central 99% of its chi distribution (held at
  the band's edge when the path reaches it, pulled back when it starts
  outside), so the path stays where N(0, I) puts faces.

The path stops when the goal is reached (within ``goal_tol``), or when it
cannot go on; then the result says how far it got and which constraint is in
the way (the one whose release would free the most room for the target).
Everything is deterministic: the same latent and edit give the same bits on
the same device and dtype.

Gradients come from autograd through generator and extractor; only the
extractor parts whose features are involved are run. Shapes: latents are (D,)
float64 here; Jacobians (m, D) float64 in standardised units per latent unit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from tlgan.errors import TlganError
from tlgan.models.extractors import CombinedExtractor, Extractor
from tlgan.models.generators import Generator

if TYPE_CHECKING:
    from tlgan.axes.store import AxisSet

    from .identity import IdentityWatch

# Wider than the fitting clip (axes.math.link clips logits at ±6 for robust fits): readings
# stay differentiable up to p = 1e-7 from 0 or 1, which only broken images go beyond.
PROB_EPS = 1e-7
TANH_EPS = 1e-7
NOT_DIFFERENTIABLE = ("exact edits need gradients, and {what} is not differentiable{why}; use a PyTorch "
                      "extractor instead (torchscript:FILE, entrypoint:module:factory, tlgan-cnn:FILE, "
                      "celeba-cnn:FILE, or the built-in emotion, landmarks, imagestats), or linear mode")


def exact_link(y: torch.Tensor, kinds: Sequence[str]) -> torch.Tensor:
    """Differentiable link of readings (N, K) per column kind, in float64: the space exact knobs live in.

    probability -> logit(clamp(p, 1e-7, 1 − 1e-7)), tanh -> atanh(clamp), real -> y.
    """
    if y.shape[-1] != len(kinds):
        raise TlganError(f"{y.shape[-1]} feature columns but {len(kinds)} kinds")
    y = y.to(torch.float64)
    cols = []
    for j, kind in enumerate(kinds):
        c = y[..., j]
        if kind == "probability":
            c = torch.logit(c.clamp(PROB_EPS, 1 - PROB_EPS))
        elif kind == "tanh":
            c = torch.atanh(c.clamp(-1 + TANH_EPS, 1 - TANH_EPS))
        elif kind != "real":
            raise TlganError(f"unknown feature kind '{kind}'")
        cols.append(c)
    return torch.stack(cols, dim=-1)


# ---- the prior: how typical is a latent? ------------------------------------------------------------------------------
def chi_cdf(x: float, dim: int) -> float:
    """P(‖z‖ ≤ x) for z ~ N(0, I_dim): the regularised lower gamma function P(dim/2, x²/2)."""
    return float(torch.special.gammainc(torch.tensor(dim / 2, dtype=torch.float64),
                                        torch.tensor(max(x, 0.0) ** 2 / 2, dtype=torch.float64)))


def chi_quantile(p: float, dim: int) -> float:
    """The p-quantile of ‖z‖ for z ~ N(0, I_dim) (chi distribution, dim degrees of freedom), by bisection."""
    lo, hi = 0.0, math.sqrt(dim) + 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi_cdf(mid, dim) < p else (lo, mid)
    return (lo + hi) / 2


def chi_mean_sd(dim: int) -> tuple[float, float]:
    """Mean √2·Γ((k+1)/2)/Γ(k/2) and SD √(k − mean²) of the chi distribution with k = dim."""
    mean = math.sqrt(2) * math.exp(math.lgamma((dim + 1) / 2) - math.lgamma(dim / 2))
    return mean, math.sqrt(max(dim - mean * mean, 0.0))


def typicality(z: torch.Tensor, warn_at: float = 0.999) -> dict[str, float | bool | str]:
    """How typical latent z (D,) is under N(0, I): ‖z‖, the chi distribution's mean and SD, ‖z‖'s quantile.

    ``warn`` is True when the quantile is above ``warn_at`` or below 1 − warn_at:
    far from where the generator was trained, faces tend to break.
    """
    dim = int(z.numel())
    norm = float(z.to(torch.float64).norm())
    q = chi_cdf(norm, dim)
    mean, sd = chi_mean_sd(dim)
    out: dict[str, float | bool | str] = {"norm": norm, "expected": mean, "sd": sd, "quantile": q,
                                          "warn": bool(q > warn_at or q < 1 - warn_at)}
    if out["warn"]:
        out["message"] = (f"latent norm {norm:.1f} is outside the range of typical faces "
                          f"({chi_quantile(1 - warn_at, dim):.1f}..{chi_quantile(warn_at, dim):.1f}); the face may "
                          "break. Exact mode keeps edited faces typical.")
    return out


# ---- readings and their gradients -------------------------------------------------------------------------------------
def check_differentiable(extractor: Extractor) -> None:
    """Raise the TlganError naming the alternatives for an extractor known not to have gradients (ONNX)."""
    parts = list(extractor.parts) if isinstance(extractor, CombinedExtractor) else [extractor]
    for part in parts:
        if not getattr(part, "differentiable", True):
            raise TlganError(NOT_DIFFERENTIABLE.format(what=f"'{part.identity or part.name}'",
                                                       why=" (ONNX models run outside PyTorch)"))


@dataclass(frozen=True)
class Jitter:
    """``count`` small seeded image changes under which exact edits average an extractor's readings.

    Each is a shift (up to ``shift`` px each way), a scale (1 ± ``scale``), a
    Gaussian blur (σ up to ``blur`` px) and a fixed noise pattern (SD ``noise``
    in [-1, 1] units), drawn once from ``seed``. A change of the picture that
    moves a reading only by fooling the network rarely survives all of them; a
    real change of the face does (docs/exact.md, "Readings that follow the look").
    """

    count: int = 4
    shift: float = 1.0
    scale: float = 0.04
    blur: float = 0.7
    noise: float = 0.03
    seed: int = 1_2024

    def describe(self) -> str:
        return (f"{self.count} jitters (shift {self.shift:g} px, scale {self.scale:g}, blur {self.blur:g} px, "
                f"noise {self.noise:g}, seed {self.seed})") if self.count else "no jitter"

    def _params(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        u = torch.rand(self.count, 4, generator=gen, dtype=torch.float64) * 2 - 1
        sigma = torch.rand(self.count, generator=gen, dtype=torch.float64) * self.blur
        noise = torch.randn(self.count, 3, h, w, generator=gen) * self.noise
        scale = 1 + self.scale * u[:, 2]
        theta = torch.zeros(self.count, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
        theta[:, 0, 2], theta[:, 1, 2] = u[:, 0] * self.shift * 2 / w, u[:, 1] * self.shift * 2 / h
        return theta.float(), sigma, noise

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """images (M, 3, H, W) -> (M·count, 3, H, W): every image under every jitter, image-major."""
        import torch.nn.functional as F

        m, c, h, w = images.shape
        theta, sigma, noise = self._params(h, w)
        x = images.repeat_interleave(self.count, 0)
        grid = F.affine_grid(theta.repeat(m, 1, 1).to(x.device, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        radius = max(1, math.ceil(3 * self.blur))
        offs = torch.arange(-radius, radius + 1, dtype=torch.float64)
        kern = torch.exp(-offs[None] ** 2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
        kern = (kern / kern.sum(1, keepdim=True)).float().to(x.device, x.dtype)  # (count, 2r+1)
        k = kern.repeat(m, 1).repeat_interleave(c, 0)  # (M·count·3, 2r+1): one filter per channel of each image
        flat = x.reshape(1, -1, h, w)
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), k[:, None, None, :], groups=k.shape[0])
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), k[:, None, :, None], groups=k.shape[0])
        return flat.reshape(x.shape) + noise.repeat(m, 1, 1, 1).to(x.device, x.dtype)


NO_JITTER = Jitter(count=0)



def exact_kinds(extractor: Extractor) -> list[str]:
    """Per feature, the kind exact_link treats it as: 'real' for classes of a softmax (read as pre-softmax scores)."""
    kinds = [f.kind for f in extractor.features]
    for group in getattr(extractor, "softmax_groups", ()):
        for j in group:
            kinds[j] = "real"
    return kinds


def exact_space(extractor: Extractor, jitter: Jitter) -> str:
    """Names how exact readings of ``extractor`` are made (stored with their stats; stats of another space are
    derived afresh)."""
    parts = list(extractor.parts) if isinstance(extractor, CombinedExtractor) else [extractor]
    jittered = [p.name for p in parts if p.jitter and jitter.count]
    scores = [p.name for p in parts if p.softmax_groups]
    return ("exact_link/v2: softmax classes as pre-softmax scores" + (f" ({', '.join(scores)})" if scores else "")
            + "; " + (f"{jitter.describe()} on {', '.join(jittered)}" if jittered else "no jitter"))


def exact_outputs(part: Extractor, images: torch.Tensor, jitter: Jitter) -> torch.Tensor:
    """Unstandardised exact readings (M, F_part) float64 of one extractor for images (M, 3, H, W).

    Classes of a softmax come as pre-softmax scores, the rest through ``exact_link``; a ``jitter``-able
    extractor is read as the mean over the jittered copies of each image.
    """
    kinds = exact_kinds(part)
    if part.jitter and jitter.count:
        y = exact_link(part.scores(jitter.apply(images)), kinds)
        return y.view(images.shape[0], jitter.count, -1).mean(1)
    return exact_link(part.scores(images), kinds)


class ReadingModel:
    """Standardised exact readings of chosen features of G(z), and their gradients.

    Args:
        generator, extractor: the models (on the same device).
        mean, std: (F,) per extractor feature, in exact space (``exact_outputs``);
            a reading r becomes (r − mean) / std. NaN entries mark features without stats.
        jitter: the image jitters readings are averaged over (extractors with ``jitter`` True).

    Readings beyond the extractor's features can be added with ``add_reading``
    or, several computed together, ``add_readings`` (any differentiable function
    of the images, e.g. coordinates of a face descriptor): they get indices
    F, F+1, ... and can be held as locks.
    """

    def __init__(self, generator: Generator, extractor: Extractor, mean: torch.Tensor, std: torch.Tensor,
                 jitter: Jitter | None = None) -> None:
        check_differentiable(extractor)
        self.generator, self.extractor = generator, extractor
        self.jitter = Jitter() if jitter is None else jitter
        self.kinds = exact_kinds(extractor)
        self.names = [f.name for f in extractor.features]
        if mean.shape != (len(self.kinds),) or std.shape != (len(self.kinds),):
            raise TlganError(f"reading stats must have shape ({len(self.kinds)},)")
        self.mean, self.std = mean.to(torch.float64), std.to(torch.float64)
        self.device = next(generator.parameters(), torch.empty(0)).device
        # feature index -> (part, column in that part's output)
        parts = list(extractor.parts) if isinstance(extractor, CombinedExtractor) else [extractor]
        self._where: list[tuple[int, int]] = [(p, c) for p, part in enumerate(parts) for c in range(len(part.features))]
        self._parts = parts
        self._extra: list[tuple[Callable[[torch.Tensor], torch.Tensor], int]] = []  # (function, its column)
        self.softmax_groups: tuple[tuple[int, ...], ...] = tuple(getattr(extractor, "softmax_groups", ()))
        self.reads = 0       # forward-only evaluations (one image each)
        self.gradients = 0   # Jacobian evaluations (m images, forward + backward)

    @property
    def space(self) -> str:
        return exact_space(self.extractor, self.jitter)

    def add_reading(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> int:
        """Add a reading: ``fn`` maps images (M, 3, H, W) to standardised readings (M,) (differentiable).

        Returns its index, usable as a lock (or target) in ``exact_move``.
        """
        return self.add_readings(name, lambda images: fn(images)[:, None], 1)[0]

    def add_readings(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor], count: int) -> list[int]:
        """Add ``count`` readings computed together: ``fn`` maps images (M, 3, H, W) to (M, count) standardised
        readings (differentiable). Rows of a Jacobian that need several of them, or the same image, share one
        call. Returns their indices."""
        first = len(self.names)
        for column in range(count):
            self._extra.append((fn, column))
            self.names.append(name)
            self.kinds.append("real")
        return list(range(first, first + count))

    def readings(self, images: torch.Tensor, idx: Sequence[int], rows: Sequence[int] | None = None) -> torch.Tensor:
        """Standardised readings (len(idx),) float64 of features ``idx`` of images (M, 3, H, W): feature idx[r] of
        image rows[r] (default: all of image 0). Differentiable."""
        return self._readings(images, idx, [0] * len(idx) if rows is None else rows)

    def _readings(self, images: torch.Tensor, idx: Sequence[int], rows: Sequence[int]) -> torch.Tensor:
        """Standardised readings (len(rows),) float64: feature idx[r] of image rows[r] of images (M, 3, H, W)."""
        out: list[torch.Tensor | None] = [None] * len(idx)
        nf = len(self._where)
        for p, part in enumerate(self._parts):
            mine = [k for k, f in enumerate(idx) if f < nf and self._where[f][0] == p]
            if not mine:
                continue
            y = exact_outputs(part, images[[rows[k] for k in mine]], self.jitter)
            cols = torch.tensor([self._where[idx[k]][1] for k in mine], device=y.device)
            picked = y.gather(1, cols[:, None])[:, 0]
            ix = torch.tensor([idx[k] for k in mine])
            picked = (picked - self.mean[ix].to(y.device)) / self.std[ix].to(y.device)
            for j, k in enumerate(mine):
                out[k] = picked[j]
        calls: dict[int, list[int]] = {}  # one call per added function, on the distinct images its readings need
        for k, f in enumerate(idx):
            if f >= nf:
                calls.setdefault(id(self._extra[f - nf][0]), []).append(k)
        for ks in calls.values():
            fn = self._extra[idx[ks[0]] - nf][0]
            distinct = sorted({rows[k] for k in ks})
            values = fn(images[distinct]).to(torch.float64)
            for k in ks:
                out[k] = values[distinct.index(rows[k]), self._extra[idx[k] - nf][1]]
        return torch.stack(out)  # type: ignore[arg-type]

    def read(self, z: torch.Tensor, idx: Sequence[int]) -> torch.Tensor:
        """Standardised readings (m,) float64 of features ``idx`` for latent z (D,)."""
        with torch.no_grad():
            images = self.generator.synthesize(z.to(self.device, torch.float32)[None])
            self.reads += 1
            return self._readings(images, idx, [0] * len(idx)).cpu()

    def jacobian(self, z: torch.Tensor, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(readings (m,), Jacobian (m, D)) float64 of features ``idx`` at latent z (D,).

        One batched forward/backward: row r of the batch is a copy of z whose
        image is read only for feature idx[r], so the gradient of the sum gives
        every row of the Jacobian at once (the models have no cross-batch terms
        in eval mode).
        """
        m = len(idx)
        with torch.enable_grad():
            zr = z.to(self.device, torch.float32)[None].repeat(m, 1).requires_grad_(True)
            images = self.generator.synthesize(zr)
            r = self._readings(images, idx, list(range(m)))
            if not r.requires_grad:
                raise TlganError(NOT_DIFFERENTIABLE.format(
                    what=f"'{self.extractor.identity or self.extractor.name}' (or the generator)",
                    why=": its readings carry no gradient"))
            (grad,) = torch.autograd.grad(r.sum(), zr)
        self.gradients += 1
        jac = grad.to(torch.float64).cpu()
        if not bool(torch.isfinite(jac).all()) or not bool(torch.isfinite(r).all()):
            raise TlganError("a reading or its gradient is not finite on this face; exact edits cannot follow it")
        return r.detach().cpu(), jac


def softmax_ratio_readings(model: ReadingModel, target: int, others: Sequence[int]) -> tuple[int, list[int]]:
    """Readings for moving one class of a softmax while every other class of it is held (added once per choice).

    Pre-softmax scores have a freedom the probabilities do not see: adding one number to every class's score
    changes nothing. Holding each of the other classes' scores also holds that common shift, an extra constraint
    that is no part of "nothing else changes in the classifier's eyes" (on default faces with every knob held it
    roughly halved the share of happy's gradient left free: 0.19 against 0.33). So the others are held *among
    themselves*: each one's score against the first's, (s_o − s_first) / SD(o), len(others) − 1 readings; and the
    target is moved as its score against their mean, (s_t − mean s_o) / SD(t), in the target's own SD, i.e. its
    odds against the others' geometric mean. All classes must be columns of one extractor part.
    Returns (the target-against-others reading's index, the indices of the held ratios).
    """
    name = f"{model.names[target]} against " + ", ".join(model.names[o] for o in others)
    if name not in model.names:
        part = model._where[target][0]
        if any(model._where[o][0] != part for o in others):
            raise TlganError("classes of one softmax must come from one extractor")
        extractor, column = model._parts[part], model._where[target][1]
        columns = [model._where[o][1] for o in others]
        scale = model.std[[target, *others[1:]]]

        def ratios(images: torch.Tensor) -> torch.Tensor:
            scores = exact_outputs(extractor, images, model.jitter)
            held = scores[:, columns]
            moved = scores[:, column] - held.mean(1)
            return torch.cat([moved[:, None], held[:, 1:] - held[:, :1]], dim=1) / scale.to(scores.device)

        model.add_readings(name, ratios, len(others))
    first = model.names.index(name)
    return first, list(range(first + 1, first + len(others)))


# ---- the linear algebra of one step -----------------------------------------------------------------------------------
def min_norm_solve(a: torch.Tensor, b: torch.Tensor, damping: float = 1e-9) -> torch.Tensor:
    """The minimum-norm x (D,) with a x ≈ b for a (c, D), b (c,): aᵀ(aaᵀ + λI)⁻¹b, λ = damping·tr(aaᵀ)/c."""
    if a.shape[0] == 0:
        return a.new_zeros(a.shape[1])
    gram = a @ a.T
    lam = damping * float(gram.diagonal().mean()) + 1e-300
    return a.T @ torch.linalg.solve(gram + lam * torch.eye(a.shape[0], dtype=a.dtype), b)


def free_rate(g: torch.Tensor, c: torch.Tensor) -> float:
    """‖g projected off span(rows of c)‖ / ‖g‖ for g (D,), c (k, D): the share of the target's gradient left free."""
    gn = float(g.norm())
    if gn == 0:
        return 0.0
    if c.shape[0] == 0:
        return 1.0
    rest = g - c.T @ torch.linalg.lstsq(c.T, g[:, None]).solution[:, 0]
    return float(rest.norm()) / gn


def axis_weight(cos: float, lo: float = 0.1, hi: float = 0.3) -> float:
    """How much of the knob's global axis move the predictor starts from: 0 below |cos| = lo, 1 above hi,
    smooth (cubic) between, so that no decision flips on a rounding difference."""
    t = min(max((abs(cos) - lo) / (hi - lo), 0.0), 1.0)
    return t * t * (3 - 2 * t)


def predictor_step(g: torch.Tensor, c: torch.Tensor, dt: float, c_res: torch.Tensor, axis: torch.Tensor | None,
                   radius: float) -> tuple[torch.Tensor, float]:
    """One predictor step Δz (D,) and the target change it plans (≤ |dt|, less when the trust region bites).

    g (D,): gradient of the moved reading; c (k, D): gradients of the held
    quantities, c_res (k,): how much each must change (corrections); axis (D,):
    the knob's global axis, the preferred direction. Δz = u + A⁺(b − A u) with
    A = [g; c], b = [dt; c_res], u = w·dt·axis/(g·axis), w = ``axis_weight`` of
    cos(g, axis) (0 where the axis is locally useless); ‖Δz‖ ≤ radius by
    shrinking the target change first. Continuous in every input.
    """
    a = torch.cat([g[None], c])
    w, ga = 0.0, 0.0
    if axis is not None:
        ga = float(g @ axis)
        denom = float(g.norm()) * float(axis.norm())
        w = axis_weight(ga / denom) if denom > 0 else 0.0

    def solve(t: float) -> torch.Tensor:
        u = axis * (w * t / ga) if (axis is not None and w > 0 and t != 0) else torch.zeros_like(g)
        b = torch.cat([torch.tensor([t], dtype=g.dtype), c_res])
        return u + min_norm_solve(a, b - a @ u)

    v0 = solve(0.0)
    full = solve(dt)
    if float(full.norm()) <= radius:
        return full, dt
    if float(v0.norm()) >= radius:
        return v0 * (radius / float(v0.norm())), 0.0
    # Δz(t) is affine in t (u ∝ t): find the largest share s of dt with ‖v0 + s(full − v0)‖ = radius.
    v1 = full - v0
    qa, qb, qc = float(v1 @ v1), 2 * float(v0 @ v1), float(v0 @ v0) - radius**2
    s = (-qb + math.sqrt(max(qb * qb - 4 * qa * qc, 0.0))) / (2 * qa)
    s = min(max(s, 0.0), 1.0)
    return v0 + s * v1, s * dt


# ---- the path ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Guard:
    """A bound the whole path must respect, checked at every point (not steered by): ``measure`` maps a latent (D,)
    float64 to a number that must stay ≤ ``limit``. The path stops before the first point beyond it and reports
    ``name`` as what is in the way. (A lock holds what it can differentiate cheaply; a guard checks what the lock
    stands for, e.g. the whole identity distance behind a few held descriptor coordinates.)"""

    name: str
    measure: Callable[[torch.Tensor], float]
    limit: float


@dataclass(frozen=True)
class ExactSettings:
    """Tolerances and limits of an exact move (readings in SD of each feature's spread over faces)."""

    step: float = 0.5            # the moved reading is planned to advance by at most this per step
    min_stride: float = 0.05     # ... and by at least this (while the locks hold)
    chords: int = 2              # corrections per step with the step's own Jacobian (reads only, no gradients)
    patience: int = 12           # steps without getting 0.02 closer to the goal (locks held) before giving up
    lock_tol: float = 0.02       # every locked reading stays within this of its value before the edit
    follow_tol: float = 0.1      # a reading moved with the target stays within this of where it is led
    goal_tol: float = 0.05       # the goal counts as reached within this
    radius: float = 1.5          # trust region: largest latent move per step (latent units)
    max_steps: int = 60          # path steps (one Jacobian each) at most
    prior_band: float = 0.99     # ‖z‖ is held inside this central share of its chi distribution
    min_rate: float = 0.02       # below this free share of the target's gradient, the locks block it


@dataclass
class ExactResult:
    """What an exact move did. Readings are standardised (SD over faces)."""

    z: torch.Tensor                       # (D,) float64, the latent reached
    goal: float
    start: float
    reached: float
    converged: bool
    steps: int = 0
    gradient_evaluations: int = 0
    reads: int = 0
    blocked_by: str | None = None
    lock_errors: dict[str, float] = field(default_factory=dict)
    message: str = ""
    refused: bool = False                 # the locks leave the moved reading no room at the start: nothing moved

    def to_dict(self) -> dict:
        return {"goal": self.goal, "start": self.start, "reached": self.reached, "converged": self.converged,
                "steps": self.steps, "gradient_evaluations": self.gradient_evaluations, "reads": self.reads,
                "blocked_by": self.blocked_by, "lock_errors": self.lock_errors, "message": self.message,
                "refused": self.refused}


def prior_band(dim: int, band: float) -> tuple[float, float]:
    """The central ``band`` share (lo, hi) of ‖z‖'s chi distribution for z ~ N(0, I_dim)."""
    return chi_quantile((1 - band) / 2, dim), chi_quantile((1 + band) / 2, dim)


def _blocker(g: torch.Tensor, groups: list[tuple[str, torch.Tensor]]) -> str | None:
    """The constraint group whose release frees the largest share of the target's gradient; None if none helps."""
    if not groups:
        return None
    allc = torch.cat([c for _, c in groups])
    base = free_rate(g, allc)
    best, gain = None, 0.0
    for name, _ in groups:
        others = [c for n, c in groups if n != name]
        rest = torch.cat(others) if others else g.new_zeros(0, g.numel())
        freed = free_rate(g, rest) - base
        if freed > gain:
            best, gain = name, freed
    return best if gain > 0.05 else None


# Knobs whose name promises a change of geometry that their classifier can be moved without: in exact mode an
# unlocked companion moves with the knob, led to where linear mode takes it (``Editor._followers``; docs/exact.md,
# "Readings that follow the look"). 'happy' promises a smile; the landmarks' mouth width is the smile's geometry.
COMPANIONS: dict[str, tuple[str, ...]] = {"happy": ("mouth_width",)}
# Readings of a knob's look that no knob holds, from MediaPipe's face mesh (models/extractors/facemesh.py): every exact
# move of the knob carries them along, locks or not, at the rate linear mode moves them on the face being edited.
# With the mouth's width held, a smile can only come from its corners lifting, which MTCNN's five points cannot see.
LOOKS: dict[str, tuple[str, ...]] = {"happy": ("mouth_lift",)}

EXACT_THREADS = 2   # CPU threads of every exact computation, whatever torch's setting


@contextmanager
def fixed_cpu_threads(device: torch.device) -> Iterator[None]:
    """Run torch on EXACT_THREADS CPU threads inside (restored after). CPU kernels split their sums by thread, so
    float results depend on the thread count, not on the cores: with the count fixed, an exact path is the same
    bits at any OMP_NUM_THREADS (one core runs the two threads in turn)."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == EXACT_THREADS:
        yield
        return
    torch.set_num_threads(EXACT_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def exact_move(model: ReadingModel, z0: torch.Tensor, target: int, goal: float, locks: Sequence[int] = (),
               lock_names: Sequence[str] = (), linear_locks: torch.Tensor | None = None,
               linear_names: Sequence[str] = (), axis: torch.Tensor | None = None, target_name: str = "knob",
               settings: ExactSettings = ExactSettings(), hold: torch.Tensor | None = None,
               guard: Guard | None = None, follow: Sequence[tuple[int, float]] = (), shown: float = 0.0
               ) -> ExactResult:
    """Move latent z0 (D,) until standardised reading ``target`` equals ``goal``, holding the ``locks`` readings.

    Computed on EXACT_THREADS CPU threads (``fixed_cpu_threads``): the same bits at any thread count. See ``_exact_move``.
    """
    with fixed_cpu_threads(model.device):
        return _exact_move(model, z0, target, goal, locks, lock_names, linear_locks, linear_names, axis,
                           target_name, settings, hold, guard, follow, shown)


def _exact_move(model: ReadingModel, z0: torch.Tensor, target: int, goal: float, locks: Sequence[int] = (),
                lock_names: Sequence[str] = (), linear_locks: torch.Tensor | None = None,
                linear_names: Sequence[str] = (), axis: torch.Tensor | None = None, target_name: str = "knob",
                settings: ExactSettings = ExactSettings(), hold: torch.Tensor | None = None,
                guard: Guard | None = None, follow: Sequence[tuple[int, float]] = (), shown: float = 0.0
                ) -> ExactResult:
    """Move latent z0 (D,) until standardised reading ``target`` equals ``goal``, holding the ``locks`` readings.

    shown: added to the moved reading wherever the result reports it (start, goal, reached, messages), for a
    path that moves a stand-in offset from the knob's own reading (``softmax_ratio_readings``).
    guard: a bound checked at every point; the path ends at the last point within it (see ``Guard``).
    follow: (position in ``locks``, slope) pairs: those readings are not held still but moved with the target,
    by ``slope`` of its change (held at their start + slope × (target's planned reading − its start)); read at
    every step's end, predicted from the step's Jacobian in its chord corrections.
    locks: reading indices held at their values in z0 (names in ``lock_names``);
    linear_locks (L, D): directions whose latent projections are held (knobs
    without a reading); axis (D,): the knob's global axis, the first direction
    tried; hold (L,): the values to hold the locked readings at (default: theirs in z0).

    Every step is a Gauss–Newton step from the Jacobian at the current point
    (the knob's axis preferred, ‖Δz‖ ≤ radius) that plans to move the target by
    up to ``stride`` toward the goal and to bring every held quantity back to its
    held value. No step is accepted or rejected: the planned advance shrinks
    smoothly with the current lock error (full while locks hold, none from three
    tolerances: then the step only corrects), and the stride adapts smoothly
    to the lock error the last step caused. So the path is a continuous
    function of the readings, and a rounding difference (another thread count)
    cannot send it elsewhere. It ends once everything is within half its
    tolerance, or when it stops getting closer to the goal.
    Returns an ExactResult; when the goal is not reached it says how far the
    path got and which constraint stopped it, and its latent is the point
    closest to the goal on which every lock held (never raises for that).
    """
    s = settings
    idx = [target, *locks]
    z = z0.to(torch.float64).clone()
    lin = (linear_locks.to(torch.float64) if linear_locks is not None and linear_locks.numel()
           else torch.zeros(0, z.numel(), dtype=torch.float64))
    lin_held = lin @ z
    axis = None if axis is None else axis.to(torch.float64)
    lo, hi = prior_band(z.numel(), s.prior_band)
    g0, r0 = model.gradients, model.reads
    values, jac = model.jacobian(z, idx)
    held = values[1:].clone() if hold is None else hold.to(torch.float64).clone()
    start = float(values[0])
    followed = {i: float(held[i]) for i, _ in follow}
    # errors are measured in lock tolerances: a follower's is wider (it goes along with the target, not to 0.02 SD)
    tol_share = torch.ones(len(locks), dtype=torch.float64)
    for i, _ in follow:
        tol_share[i] = s.follow_tol / s.lock_tol

    def constraints(at: torch.Tensor, jl: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows (k, D) and wanted changes (k,) of what is held: locked readings and linear locks."""
        return torch.cat([jl, lin]), torch.cat([held - v[1:], lin_held - lin @ at])

    # the prior: ‖z‖ is kept in the band (widened to the start's norm, so a start outside it is never pulled in at
    # once) by scaling z radially after each update, a continuous clamp
    n0 = float(z.norm())
    band_lo, band_hi = min(lo, n0), max(hi, n0)

    def into_band(at: torch.Tensor) -> torch.Tensor:
        n = float(at.norm())
        return at * (min(max(n, band_lo), band_hi) / n) if n > 0 else at

    def groups(jl: torch.Tensor, at: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        out = [(name, jl[i:i + 1]) for i, name in enumerate(lock_names)]
        out += [(name, lin[i:i + 1]) for i, name in enumerate(linear_names)]
        n = float(at.norm())
        if n >= band_hi * 0.995 or n <= band_lo * 1.005:  # at the band's edge (for the report only)
            out.append(("the prior (‖z‖ kept where faces are typical)", (at / n)[None]))
        return out

    def errors(at: torch.Tensor, v: torch.Tensor) -> tuple[float, float]:
        """(largest locked-reading error in SD, a follower's scaled to the locks' tolerance; largest linear-lock
        error) at a point."""
        lock_err = float(((v[1:] - held).abs() / tol_share).max()) if len(locks) else 0.0
        lin_err = float((lin @ at - lin_held).abs().max()) if lin.shape[0] else 0.0
        return lock_err, lin_err

    # a chord reads the target and the locks; the followers, whose tolerance is five times wider, are taken from
    # the step's Jacobian (they are read for real at every step's end): a follower may be a costly network
    read_pos = [0] + [1 + i for i in range(len(locks)) if i not in followed]

    def chord_read(at: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        """Readings (len(idx),) at ``at``: read, or for followers predicted from the Jacobian taken at ``origin``."""
        if len(read_pos) == len(idx):
            return model.read(at, idx)
        v = values + jac @ (at - origin)
        v[read_pos] = model.read(at, [idx[j] for j in read_pos])
        return v

    def holds(at: torch.Tensor, v: torch.Tensor, share: float = 1.0) -> bool:
        lock_err, lin_err = errors(at, v)
        return lock_err <= share * s.lock_tol and lin_err <= 1e-6 * share

    inside = guard.measure(z) if guard is not None else 0.0   # the guard's value at the last point within it
    if guard is not None and inside > guard.limit:
        msg = (f"'{target_name}' cannot move (from {start + shown:+.2f} toward {goal + shown:+.2f}): "
               f"'{guard.name}' is already {inside:.3f} from where it is held, beyond its tolerance {guard.limit:.3f}")
        return replace(_refusal(model, z, goal + shown, start + shown, values, values[1:], lock_names, target_name,
                                guard.name, g0, r0), message=msg)
    c, res = constraints(z, jac[1:], values)
    if free_rate(jac[0], c) < s.min_rate:  # contradictory locks: say so before moving
        blocked = _blocker(jac[0], groups(jac[1:], z))
        return _refusal(model, z, goal + shown, start + shown, values, held, lock_names, target_name, blocked, g0, r0)

    total = goal - start
    best = (abs(total), z, values) if holds(z, values) else None  # (distance to goal, latent, readings)
    steps, blocked, why = 0, None, ""
    stride = cap = s.step     # the target advance planned per step; adapts smoothly to how non-linear the locks are
    converged = abs(total) <= s.goal_tol and holds(z, values)
    gaps, lock_errs, held_once = [abs(total)], [], False
    while not converged:
        if steps >= s.max_steps:
            why = f"stopped after {steps} steps"
            break
        g = jac[0]
        if free_rate(g, c) < s.min_rate:
            why = "the held readings leave the moved one no room"
            break
        lock_err = errors(z, values)[0] / s.lock_tol
        advance = min(max((6.0 - lock_err) / 3.0, 0.0), 1.0)  # 1 up to 3 tolerances, 0 from 6: only correct
        gap_now = goal - float(values[0])
        want = advance * max(-stride, min(stride, gap_now))
        aim = float(values[0]) + want
        if follow:  # the followers' held values go where the target is planned to be after this step
            for i, slope in follow:
                held[i] = followed[i] + slope * (aim - start)
            c, res = constraints(z, jac[1:], values)
        dz, _ = predictor_step(g, c, want, res, axis, s.radius)
        before = (z, values, jac)
        z = into_band(z + dz)
        for _ in range(s.chords):  # chord corrections: a fixed number, with this step's Jacobian (``chord_read``)
            v = chord_read(z, before[0])
            ct, rt = constraints(z, jac[1:], v)
            a = torch.cat([jac[0][None], ct])
            z = into_band(z + min_norm_solve(a, torch.cat([torch.tensor([aim - float(v[0])], dtype=torch.float64), rt])))
        values, jac = model.jacobian(z, idx)
        steps += 1
        if guard is not None and (beyond := guard.measure(z)) > guard.limit:
            # back to the last point within the bound, aiming the next stride at 90% of the way to where a straight
            # line between the two guard values crosses it (at most half the last stride: bounds curve), and never
            # longer again; a crossing closer than the shortest stride ends the path
            shorter = stride * min(0.5, 0.9 * (guard.limit - inside) / (beyond - inside))
            if shorter >= s.min_stride:
                z, values, jac = before
                c, res = constraints(z, jac[1:], values)
                stride = cap = shorter
                continue
            why = f"'{guard.name}' would go beyond its tolerance ({beyond:.3f} > {guard.limit:.3f})"
            blocked = guard.name
            break
        if guard is not None:
            rise, inside = beyond - inside, beyond
        gap = abs(goal - float(values[0]))
        new_err = errors(z, values)[0]
        if holds(z, values) and (best is None or gap < best[0]):
            best = (gap, z, values)
        if abs(want) > 1e-6 and new_err > 0:  # aim for a lock error of about two tolerances after a step's chords
            stride = min(max(stride * min(max(math.sqrt(2 * s.lock_tol / new_err), 0.5), 1.5), s.min_stride), cap)
        c, res = constraints(z, jac[1:], values)
        converged = gap <= s.goal_tol / 2 and holds(z, values, 0.5)
        if guard is not None and not converged and rise > 0:
            # plan the next stride to end at 90% of the room left under the bound, at the rate the guard rose per
            # unit of the moved reading on this step, so the path rarely has to step back (each retry is a step)
            moved = abs(float(values[0]) - float(before[1][0]))
            room = stride if moved < 1e-9 else 0.9 * (guard.limit - inside) * moved / rise
            if room < s.min_stride and holds(z, values):
                why = (f"'{guard.name}' would go beyond its tolerance within the shortest step "
                       f"({inside:.3f} of {guard.limit:.3f})")
                blocked = guard.name
                break
            stride = max(min(stride, room), s.min_stride)
        gaps.append(best[0] if best is not None else abs(total))
        lock_errs.append(new_err)
        held_once = held_once or holds(z, values)
        if not held_once:  # no point since the start has held every lock: go on while the locks are coming back
            if len(lock_errs) > s.patience and lock_errs[-1] > 0.5 * lock_errs[-1 - s.patience]:
                why = "the held readings stopped coming back"
                break
        elif len(gaps) > s.patience and gaps[-1 - s.patience] - gaps[-1] < 0.02:
            why = "the reading stopped getting closer to the goal"
            break
        if not all(bool(torch.isfinite(t).all()) for t in (z, values)):
            raise TlganError("the exact path left the range where the readings are finite")
    if not converged and best is not None and best[0] <= s.goal_tol and holds(best[1], best[2]):
        converged = True  # a point on the way met every tolerance (just not half of them)
    if converged:
        final_z, final_v = z, values
        if not (abs(goal - float(values[0])) <= s.goal_tol and holds(z, values)) and best is not None:
            final_z, final_v = best[1], best[2]
    else:
        final_z, final_v = (best[1], best[2]) if best is not None else (z0.to(torch.float64).clone(), None)
        if final_v is None:
            final_v = model.read(final_z, idx)
        if blocked is None:
            blocked = _blocker(jac[0], groups(jac[1:], z))
        if not why:
            why = "the reading stopped getting closer to the goal"
        if best is None or best[0] >= abs(total) - 1e-9:
            why += "; no point on the way held every lock, so nothing moved"
    reached = float(final_v[0]) + shown
    start, goal = start + shown, goal + shown
    followers = {lock_names[i] for i, _ in follow}
    errs = {nm: float(final_v[1 + i] - held[i]) for i, nm in enumerate(lock_names) if nm not in followers}
    result = ExactResult(z=final_z, goal=goal, start=start, reached=reached, converged=converged, steps=steps,
                         gradient_evaluations=model.gradients - g0, reads=model.reads - r0,
                         blocked_by=None if converged else blocked, lock_errors=errs)
    if not converged:
        if blocked in followers:
            way = f"; '{blocked}', which moves with '{target_name}', cannot keep up"
        elif blocked and not blocked.startswith("the prior"):
            way = f"; '{blocked}' is in the way (unlock it to go further)"
        else:
            way = f"; {blocked} is in the way" if blocked else ""
        result.message = (f"'{target_name}' reached {reached:+.2f} of its goal {goal:+.2f} "
                          f"(from {start:+.2f}): {why}{way}")
    return result


def _refusal(model: ReadingModel, z: torch.Tensor, goal: float, start: float, values: torch.Tensor,
             held: torch.Tensor, lock_names: Sequence[str], target_name: str, blocked: str | None,
             g0: int, r0: int) -> ExactResult:
    """The result of a move refused before it started: the locks leave the target's reading no room at all."""
    errs = {nm: float(values[1 + i] - held[i]) for i, nm in enumerate(lock_names)}
    if blocked and not blocked.startswith("the prior"):
        hint = f"unlock '{blocked}'"
    elif blocked:
        hint = f"{blocked} is in the way"
    else:
        hint = "unlock some of the held knobs (together they fix this reading)"
    msg = (f"'{target_name}' cannot move (from {start:+.2f} toward {goal:+.2f}) with these locks: they hold every "
           f"direction its reading could change in; {hint}")
    return ExactResult(z=z, goal=goal, start=start, reached=start, converged=abs(goal - start) <= 0, steps=0,
                       gradient_evaluations=model.gradients - g0, reads=model.reads - r0, blocked_by=blocked,
                       lock_errors=errs, message=msg, refused=True)


def exact_sweep(model: ReadingModel, z0: torch.Tensor, target: int, offsets: Sequence[float],
                locks: Sequence[int] = (), lock_names: Sequence[str] = (), axis: torch.Tensor | None = None,
                target_name: str = "knob", settings: ExactSettings = ExactSettings(), guard: Guard | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each face of z0 (n, D) moved to reading start + t for every offset t (P,), holding ``locks`` at the face's own values.

    The path runs outward from 0 (each point continues from the previous one),
    as a user dragging the knob would. ``guard`` bounds every move's path (``exact_move``; it is the same for all
    faces, so a per-face bound is swept one face at a time). Returns latents (P, n, D) float32,
    converged (P, n) bool and reached (P, n) float64 (standardised readings).
    """
    offs = [float(t) for t in offsets]
    n, dim = z0.shape
    out = torch.empty(len(offs), n, dim)
    ok = torch.zeros(len(offs), n, dtype=torch.bool)
    reached = torch.zeros(len(offs), n, dtype=torch.float64)
    order = sorted(range(len(offs)), key=lambda p: (offs[p] < 0, abs(offs[p])))
    for i in range(n):
        zi = z0[i].to(torch.float64)
        start = model.read(zi, [target, *locks])
        held, v0 = start[1:], float(start[0])
        last = {True: zi, False: zi}  # the path's end so far, on each side of 0
        for p in order:
            t = offs[p]
            if t == 0:
                out[p, i], ok[p, i], reached[p, i] = zi.float(), True, 0.0
                continue
            res = exact_move(model, last[t > 0], target, v0 + t, locks, lock_names, axis=axis,
                             target_name=target_name, settings=settings, hold=held, guard=guard)
            last[t > 0] = res.z
            out[p, i], ok[p, i], reached[p, i] = res.z.float(), res.converged, res.reached - v0
    return out, ok, reached


# ---- standardisation stats ------------------------------------------------------------------------------------------
STATS_SEED = 271828
STATS_SAMPLES = 4096


def reading_stats(generator: Generator, extractor: Extractor, n: int = STATS_SAMPLES, seed: int = STATS_SEED,
                  batch_size: int = 128, jitter: Jitter | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and SD (F,) float64 of every extractor feature in exact space (``exact_outputs``) over n sampled faces.

    Faces are ``sample_latents(seed, 0, n, D)``: deterministic, so derived stats are reproducible.
    """
    from tlgan.sampling.latents import sample_latents

    if n < 2:
        raise TlganError(f"reading stats need at least 2 faces, got {n}")
    jitter = Jitter() if jitter is None else jitter
    device = next(generator.parameters(), torch.empty(0)).device
    parts = list(extractor.parts) if isinstance(extractor, CombinedExtractor) else [extractor]
    z = sample_latents(seed, 0, n, generator.latent_dim)
    rows = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            images = generator.synthesize(z[i:i + batch_size].to(device))
            rows.append(torch.cat([exact_outputs(p, images, jitter) for p in parts], 1).cpu())
    linked = torch.cat(rows)
    return linked.mean(0), linked.std(0).clamp_min(1e-12)


def knob_features(axis_set: AxisSet, feature_names: Sequence[str]) -> list[str | None]:
    """Per axis, the extractor feature it reads (the one it was fitted to), or None (unsupervised/taught axes)."""
    from tlgan.axes.methods import SUPERVISED

    renamed = axis_set.params.get("targets", {})
    taught = set(axis_set.params.get("taught", {}))
    out: list[str | None] = []
    for name in axis_set.names:
        target = renamed.get(name, name) if axis_set.method in SUPERVISED and name not in taught else None
        out.append(target if target in feature_names else None)
    return out


_DERIVED: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def axis_reading_stats(axis_set: AxisSet, generator: Generator, extractor: Extractor,
                       n: int = STATS_SAMPLES, seed: int = STATS_SEED) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(mean (K,), std (K,), description) of each axis' reading, float32, NaN for axes without a reading.

    Derived from n sampled faces (``reading_stats``), which ``tlgan exact-stats`` stores in the file.
    """
    names = [f.name for f in extractor.features]
    jitter = Jitter()
    key = (generator.identity, extractor.identity, n, seed, exact_space(extractor, jitter))
    if key not in _DERIVED:
        _DERIVED[key] = reading_stats(generator, extractor, n, seed, jitter=jitter)
    mean_f, std_f = _DERIVED[key]
    feats = knob_features(axis_set, names)
    pick = lambda t: torch.tensor([float(t[names.index(f)]) if f else math.nan for f in feats]).float()
    return pick(mean_f), pick(std_f), {"space": exact_space(extractor, jitter), "samples": n, "seed": seed,
                                        "extractor": extractor.identity}


def with_reading_stats(axis_set: AxisSet, generator: Generator, extractor: Extractor,
                       n: int = STATS_SAMPLES, seed: int = STATS_SEED) -> AxisSet:
    """A copy of ``axis_set`` with reading_mean/reading_std (and their header note) derived from n faces."""
    from dataclasses import replace

    mean, std, info = axis_reading_stats(axis_set, generator, extractor, n, seed)
    return replace(axis_set, reading_mean=mean, reading_std=std, reading_stats=info)


def stored_stats_fit(axis_set: AxisSet, extractor: Extractor) -> bool:
    """Whether the axis set's stored reading stats were made the way exact readings are made now (same space)."""
    info = axis_set.reading_stats or {}
    return (axis_set.reading_mean is not None and axis_set.reading_std is not None
            and info.get("space") == exact_space(extractor, Jitter())
            and info.get("extractor", extractor.identity) == extractor.identity)


def feature_stats(axis_set: AxisSet, generator: Generator, extractor: Extractor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and SD (F,) per extractor feature for a ReadingModel: the axis set's stored stats where they were made
    in today's exact space (float32, as stored), else derived from sampled faces and rounded to float32 the same
    way (``tlgan exact-stats`` stores them)."""
    names = [f.name for f in extractor.features]
    feats = knob_features(axis_set, names)
    if stored_stats_fit(axis_set, extractor):
        mean_k, std_k = axis_set.reading_mean.float(), axis_set.reading_std.float()
    else:
        mean_k, std_k, _ = axis_reading_stats(axis_set, generator, extractor)
    mean = torch.full((len(names),), math.nan, dtype=torch.float64)
    std = torch.full((len(names),), math.nan, dtype=torch.float64)
    for k, f in enumerate(feats):
        if f is not None:
            mean[names.index(f)], std[names.index(f)] = float(mean_k[k]), float(std_k[k])
    return mean, std


class ExactSweeper:
    """``evaluate(..., exact=ExactSweeper(...))``: per-face exact paths for the re-scoring protocol.

    Called as ``sweeper(z0 (n, D), k, offsets (P,), locked_axes)``; returns latents (P, n, D) float32 and
    converged (P, n) bool. ``log`` (k, locked, converged share) is kept for reports.

    ``identity`` (an IdentityWatch): every move also holds the face's identity as the Editor's identity lock does
    (``Editor._identity_readings``): the K descriptor coordinates of ``identity_lock_readings`` are held, read
    against the face's own start descriptor with the chip cut at the face's start landmarks (for all of its
    moves: a sweep's later points continue from earlier ones, where the Editor would find the landmarks anew), and
    each path is guarded by the whole descriptor distance from the start face (``IdentityWatch.distance_at``,
    ≤ its tolerance). A face whose start landmarks are not found cannot have its identity held: as the Editor
    refuses it, none of its moves is made (its latents stay at the start, counted as not reached);
    ``log`` entries count such faces under "identity_not_found".
    """

    def __init__(self, generator: Generator, extractor: Extractor, axis_set: AxisSet,
                 settings: ExactSettings = ExactSettings(), progress: bool = False,
                 identity: IdentityWatch | None = None) -> None:
        mean, std = feature_stats(axis_set, generator, extractor)
        self.model = ReadingModel(generator, extractor, mean, std)
        self.axis_set, self.settings, self.progress = axis_set, settings, progress
        self.feats = knob_features(axis_set, self.model.names)
        self.log: list[dict] = []
        self.identity = identity
        self._identity_idx: list[int] = []
        self._faces: dict[bytes, tuple[torch.Tensor, torch.Tensor] | None] = {}  # start latent -> (reference, points)
        if identity is not None:
            from .identity import IDENTITY

            self._identity_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
            # added once; the function reads the face being swept (set in _hold_face), as the Editor's does
            self._identity_idx = self.model.add_readings(IDENTITY, lambda images: self._identity_fn(images),
                                                         len(identity.basis))

    def _start(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(reference descriptor (128,), landmarks (5, 2)) of the face of latent z (D,), or None when not found."""
        key = z.to(torch.float64).cpu().numpy().tobytes()
        if key not in self._faces:  # read once per face, not once per knob swept
            with fixed_cpu_threads(self.model.device):
                self._faces[key] = self.identity.face(z.to(torch.float64))
        return self._faces[key]

    def _hold_face(self, z: torch.Tensor) -> Guard | None:
        """Point the identity readings at the face of latent z (D,); its guard, or None when it has no landmarks."""
        from .identity import IDENTITY, identity_lock_readings

        start = self._start(z)
        if start is None:
            return None
        reference, points = start
        watch = self.identity
        self._identity_fn = identity_lock_readings(watch.model, reference, points, watch.basis, watch.tolerance,
                                                   self.settings.lock_tol)
        return Guard(IDENTITY, lambda zz: watch.distance_at(zz, reference, points), watch.tolerance)

    def __call__(self, z0: torch.Tensor, k: int, offsets: Sequence[float],
                 locked_axes: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        import time

        names = self.model.names
        if self.feats[k] is None:
            raise TlganError(f"axis '{self.axis_set.names[k]}' reads no feature; exact mode cannot move it")
        locks = [i for i in locked_axes if self.feats[i] is not None]
        t0, g0 = time.perf_counter(), self.model.gradients
        lock_idx = [names.index(self.feats[i]) for i in locks]
        lock_names = [self.axis_set.names[i] for i in locks]
        def sweep(z: torch.Tensor, idx: list[int], held: list[str], guard: Guard | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return exact_sweep(self.model, z, names.index(self.feats[k]), offsets, idx, held,
                               axis=self.axis_set.axes[k].to(torch.float64), target_name=self.axis_set.names[k],
                               settings=self.settings, guard=guard)

        missing = 0
        if self.identity is None:
            latents, ok, _ = sweep(z0, lock_idx, lock_names)
        else:
            latents = z0.float()[None].repeat(len(offsets), 1, 1)
            ok = torch.zeros(len(offsets), len(z0), dtype=torch.bool)
            ok[torch.tensor([float(t) == 0 for t in offsets])] = True
            held_names = [*lock_names, *[names[j] for j in self._identity_idx]]
            for i in range(len(z0)):  # one face at a time: its own reference, landmarks and guard
                guard = self._hold_face(z0[i])
                if guard is None:
                    missing += 1
                    continue
                latents[:, i:i + 1], ok[:, i:i + 1], _ = sweep(z0[i:i + 1], [*lock_idx, *self._identity_idx],
                                                              held_names, guard)
        moving = torch.tensor([float(t) != 0 for t in offsets])
        entry = {"axis": self.axis_set.names[k], "locks": len(locks), "reachable": float(ok[moving].double().mean()),
                 "seconds": time.perf_counter() - t0, "gradient_evaluations": self.model.gradients - g0}
        if self.identity is not None:
            entry["identity_not_found"] = missing
        self.log.append(entry)
        if self.progress:
            print(f"exact {entry['axis']:<22} locks {entry['locks']:>2}{' + identity' if self.identity else ''}  "
                  f"reachable {entry['reachable']:.2f}  {entry['seconds']:.0f} s", flush=True)
        return latents, ok
