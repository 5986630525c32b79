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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from tlgan.errors import TlganError
from tlgan.models.extractors import CombinedExtractor, Extractor
from tlgan.models.generators import Generator

if TYPE_CHECKING:
    from tlgan.axes.store import AxisSet

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


class ReadingModel:
    """Standardised exact readings of chosen features of G(z), and their gradients.

    Args:
        generator, extractor: the models (on the same device).
        mean, std: (F,) per extractor feature, in ``exact_link`` space; a reading
            r becomes (r − mean) / std. NaN entries mark features without stats.
    """

    def __init__(self, generator: Generator, extractor: Extractor, mean: torch.Tensor, std: torch.Tensor) -> None:
        check_differentiable(extractor)
        self.generator, self.extractor = generator, extractor
        self.kinds = [f.kind for f in extractor.features]
        self.names = [f.name for f in extractor.features]
        if mean.shape != (len(self.kinds),) or std.shape != (len(self.kinds),):
            raise TlganError(f"reading stats must have shape ({len(self.kinds)},)")
        self.mean, self.std = mean.to(torch.float64), std.to(torch.float64)
        self.device = next(generator.parameters(), torch.empty(0)).device
        # feature index -> (part, column in that part's output)
        parts = list(extractor.parts) if isinstance(extractor, CombinedExtractor) else [extractor]
        self._where: list[tuple[int, int]] = [(p, c) for p, part in enumerate(parts) for c in range(len(part.features))]
        self._parts = parts
        self.reads = 0       # forward-only evaluations (one image each)
        self.gradients = 0   # Jacobian evaluations (m images, forward + backward)

    def _readings(self, images: torch.Tensor, idx: Sequence[int], rows: Sequence[int]) -> torch.Tensor:
        """Standardised readings (len(rows),) float64: feature idx[r] of image rows[r] of images (M, 3, H, W)."""
        out: list[torch.Tensor | None] = [None] * len(idx)
        for p, part in enumerate(self._parts):
            mine = [k for k, f in enumerate(idx) if self._where[f][0] == p]
            if not mine:
                continue
            y = part(images[[rows[k] for k in mine]])
            cols = torch.tensor([self._where[idx[k]][1] for k in mine], device=y.device)
            picked = y.gather(1, cols[:, None])[:, 0]
            for j, k in enumerate(mine):
                out[k] = picked[j]
        y = torch.stack(out)  # type: ignore[arg-type]
        kinds = [self.kinds[f] for f in idx]
        linked = torch.stack([exact_link(y[k:k + 1, None], [kinds[k]])[0, 0] for k in range(len(idx))])
        ix = torch.tensor(list(idx))
        return (linked - self.mean[ix].to(linked.device)) / self.std[ix].to(linked.device)

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


def predictor_step(g: torch.Tensor, c: torch.Tensor, dt: float, c_res: torch.Tensor, axis: torch.Tensor | None,
                   radius: float, min_cos: float = 0.2) -> tuple[torch.Tensor, float]:
    """One predictor step Δz (D,) and the target change it plans (≤ |dt|, less when the trust region bites).

    g (D,): gradient of the moved reading; c (k, D): gradients of the held
    quantities, c_res (k,): how much each must change (corrections); axis (D,):
    the knob's global axis, the preferred direction. Δz = u + A⁺(b − A u) with
    A = [g; c], b = [dt; c_res], u = dt·axis/(g·axis) when |cos(g, axis)| ≥ min_cos
    else 0; ‖Δz‖ ≤ radius by shrinking the target change first.
    """
    a = torch.cat([g[None], c])

    def solve(t: float) -> torch.Tensor:
        u = torch.zeros_like(g)
        if axis is not None and t != 0:
            ga = float(g @ axis)
            if abs(ga) >= min_cos * float(g.norm()) * float(axis.norm()):
                u = axis * (t / ga)
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
class ExactSettings:
    """Tolerances and limits of an exact move (readings in SD of each feature's spread over faces)."""

    step: float = 1.0            # largest planned change of the moved reading per step
    min_step: float = 0.03       # below this the path gives up
    lock_tol: float = 0.02       # every locked reading stays within this of its value before the edit
    goal_tol: float = 0.05       # the goal counts as reached within this
    radius: float = 2.0          # trust region: largest latent move per step (latent units)
    max_steps: int = 60          # predictor steps at most
    max_corrections: int = 3     # corrector iterations per step
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

    def to_dict(self) -> dict:
        return {"goal": self.goal, "start": self.start, "reached": self.reached, "converged": self.converged,
                "steps": self.steps, "gradient_evaluations": self.gradient_evaluations, "reads": self.reads,
                "blocked_by": self.blocked_by, "lock_errors": self.lock_errors, "message": self.message}


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


def exact_move(model: ReadingModel, z0: torch.Tensor, target: int, goal: float, locks: Sequence[int] = (),
               lock_names: Sequence[str] = (), linear_locks: torch.Tensor | None = None,
               linear_names: Sequence[str] = (), axis: torch.Tensor | None = None, target_name: str = "knob",
               settings: ExactSettings = ExactSettings(), hold: torch.Tensor | None = None) -> ExactResult:
    """Move latent z0 (D,) until standardised reading ``target`` equals ``goal``, holding the ``locks`` readings.

    locks: feature indices held at their values in z0 (names in ``lock_names``);
    linear_locks (L, D): directions whose latent projections are held (knobs
    without a reading); axis (D,): the knob's global axis, the first direction
    tried; hold (L,): the values to hold the locked readings at (default: theirs in z0).
    Returns an ExactResult; when the goal is not reached it says how far
    the path got and which constraint stopped it (never raises for that).
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
    step = s.step
    steps, history = 0, [abs(goal - start)]
    blocked: str | None = None
    why = ""

    def constraints(at: torch.Tensor, jl: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Rows (k, D) and wanted changes (k,) of what is held; the last row, ‖z‖, only near or outside the band."""
        n = float(at.norm())
        c, res = torch.cat([jl, lin]), torch.cat([held - v[1:], lin_held - lin @ at])
        prior_res = 0.0
        if n > hi * 0.99 or n < lo * 1.01:
            prior_res = min(max(n, lo), hi) - n
            c = torch.cat([c, (at / n)[None]])
            res = torch.cat([res, torch.tensor([prior_res], dtype=torch.float64)])
        return c, res, prior_res

    def groups(jl: torch.Tensor, at: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        out = [(name, jl[i:i + 1]) for i, name in enumerate(lock_names)]
        out += [(name, lin[i:i + 1]) for i, name in enumerate(linear_names)]
        n = float(at.norm())
        if n > hi * 0.99 or n < lo * 1.01:
            out.append(("the prior (‖z‖ kept where faces are typical)", (at / n)[None]))
        return out

    gain = 1.0  # observed / planned change of the moved reading on the last step: a secant correction of the gradient
    converged = False
    while True:
        gap = goal - float(values[0])
        lock_err = (values[1:] - held).abs()
        if abs(gap) <= s.goal_tol and (lock_err.numel() == 0 or float(lock_err.max()) <= s.lock_tol):
            converged = True
            break
        if steps >= s.max_steps:
            why = f"stopped after {steps} steps"
            blocked = _blocker(jac[0], groups(jac[1:], z))
            break
        g = jac[0]
        c, res, _ = constraints(z, jac[1:], values)
        if free_rate(g, c) < s.min_rate:
            blocked = _blocker(g, groups(jac[1:], z))
            why = "the held readings leave the moved one no room" if blocked else "the reading no longer responds"
            break
        want = max(-step, min(step, gap))
        dz, planned = predictor_step(g, c, want / gain, res, axis, s.radius)
        trial = z + dz
        v = model.read(trial, idx)
        reached_now = float(v[0])
        jc = jac
        for i in range(s.max_corrections):
            if i == 1:  # the step's Jacobian (chord) did not restore the locks in one go: Gauss–Newton with a fresh one
                v, jc = model.jacobian(trial, idx)
            ct, rt, prior_res = constraints(trial, jc[1:], v)
            if (not rt.numel() or float(rt.abs().max()) <= 0.75 * s.lock_tol) and abs(prior_res) <= 1e-3:
                break
            # restore what is held, keep the target where the predictor got it
            a = torch.cat([jc[0][None], ct])
            b = torch.cat([torch.tensor([reached_now - float(v[0])], dtype=torch.float64), rt])
            trial = trial + min_norm_solve(a, b)
            v = model.read(trial, idx)
        ok_locks = not len(locks) or float((v[1:] - held).abs().max()) <= s.lock_tol
        ok_lin = not lin.shape[0] or float((lin @ trial - lin_held).abs().max()) <= 1e-6
        norm, was = float(trial.norm()), float(z.norm())
        ok_prior = lo - 1e-2 <= norm <= hi + 1e-2 or abs(norm - min(max(norm, lo), hi)) < abs(was - min(max(was, lo), hi))
        better = abs(goal - float(v[0])) < abs(gap) - 1e-9
        if not (ok_locks and ok_lin and ok_prior and better):
            step /= 2
            if step < s.min_step:
                blocked = _blocker(g, groups(jac[1:], z))
                why = ("the held readings could not be kept within tolerance any further" if not (ok_locks and ok_lin)
                       else "the reading stopped getting closer to the goal")
                break
            continue
        if planned != 0:
            gain = min(max((float(v[0]) - float(values[0])) / planned, 0.25), 1.5)
        z = trial
        steps += 1
        history.append(abs(goal - float(v[0])))
        if abs(goal - float(v[0])) <= s.goal_tol:  # ok_locks holds: done, no new Jacobian needed
            values = v
            continue
        values, jac = model.jacobian(z, idx)
        if len(history) > 4 and history[-5] - history[-1] < 0.02:
            blocked = _blocker(jac[0], groups(jac[1:], z))
            why = "the reading stopped getting closer to the goal"
            break
        step = min(step * 1.5, s.step)

    reached = float(values[0])
    names = list(lock_names)
    errors = {n: float(values[1 + i] - held[i]) for i, n in enumerate(names)}
    result = ExactResult(z=z, goal=goal, start=start, reached=reached, converged=converged, steps=steps,
                         gradient_evaluations=model.gradients - g0, reads=model.reads - r0,
                         blocked_by=None if converged else blocked, lock_errors=errors)
    if not converged:
        way = f"; '{blocked}' is in the way (unlock it to go further)" if blocked and not blocked.startswith("the prior") \
            else (f"; {blocked} is in the way" if blocked else "")
        result.message = (f"'{target_name}' reached {reached:+.2f} of its goal {goal:+.2f} "
                          f"(from {start:+.2f}): {why}{way}")
    return result


def exact_sweep(model: ReadingModel, z0: torch.Tensor, target: int, offsets: Sequence[float],
                locks: Sequence[int] = (), lock_names: Sequence[str] = (), axis: torch.Tensor | None = None,
                target_name: str = "knob", settings: ExactSettings = ExactSettings()
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each face of z0 (n, D) moved to reading start + t for every offset t (P,), holding ``locks`` at the face's own values.

    The path runs outward from 0 (each point continues from the previous one),
    as a user dragging the knob would. Returns latents (P, n, D) float32,
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
                             target_name=target_name, settings=settings, hold=held)
            last[t > 0] = res.z
            out[p, i], ok[p, i], reached[p, i] = res.z.float(), res.converged, res.reached - v0
    return out, ok, reached


# ---- standardisation stats ------------------------------------------------------------------------------------------
STATS_SEED = 271828
STATS_SAMPLES = 4096


def reading_stats(generator: Generator, extractor: Extractor, n: int = STATS_SAMPLES, seed: int = STATS_SEED,
                  batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and SD (F,) float64 of every extractor feature in ``exact_link`` space over n sampled faces.

    Faces are ``sample_latents(seed, 0, n, D)``: deterministic, so derived stats are reproducible.
    """
    from tlgan.sampling.latents import sample_latents
    from tlgan.sampling.sweeps import read_faces

    if n < 2:
        raise TlganError(f"reading stats need at least 2 faces, got {n}")
    z = sample_latents(seed, 0, n, generator.latent_dim)
    y = read_faces(generator, extractor, z, batch_size)
    linked = exact_link(y, [f.kind for f in extractor.features])
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
    key = (generator.identity, extractor.identity, n, seed)
    if key not in _DERIVED:
        _DERIVED[key] = reading_stats(generator, extractor, n, seed)
    mean_f, std_f = _DERIVED[key]
    feats = knob_features(axis_set, names)
    pick = lambda t: torch.tensor([float(t[names.index(f)]) if f else math.nan for f in feats]).float()
    return pick(mean_f), pick(std_f), {"space": "exact_link", "samples": n, "seed": seed,
                                        "extractor": extractor.identity}


def with_reading_stats(axis_set: AxisSet, generator: Generator, extractor: Extractor,
                       n: int = STATS_SAMPLES, seed: int = STATS_SEED) -> AxisSet:
    """A copy of ``axis_set`` with reading_mean/reading_std (and their header note) derived from n faces."""
    from dataclasses import replace

    mean, std, info = axis_reading_stats(axis_set, generator, extractor, n, seed)
    return replace(axis_set, reading_mean=mean, reading_std=std, reading_stats=info)


def feature_stats(axis_set: AxisSet, generator: Generator, extractor: Extractor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and SD (F,) per extractor feature for a ReadingModel: the axis set's stored stats where it has them
    (float32, as stored), else derived from sampled faces and rounded to float32 the same way."""
    names = [f.name for f in extractor.features]
    feats = knob_features(axis_set, names)
    if axis_set.reading_mean is not None and axis_set.reading_std is not None:
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
    """

    def __init__(self, generator: Generator, extractor: Extractor, axis_set: AxisSet,
                 settings: ExactSettings = ExactSettings(), progress: bool = False) -> None:
        mean, std = feature_stats(axis_set, generator, extractor)
        self.model = ReadingModel(generator, extractor, mean, std)
        self.axis_set, self.settings, self.progress = axis_set, settings, progress
        self.feats = knob_features(axis_set, self.model.names)
        self.log: list[dict] = []

    def __call__(self, z0: torch.Tensor, k: int, offsets: Sequence[float],
                 locked_axes: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        import time

        names = self.model.names
        if self.feats[k] is None:
            raise TlganError(f"axis '{self.axis_set.names[k]}' reads no feature; exact mode cannot move it")
        locks = [i for i in locked_axes if self.feats[i] is not None]
        t0, g0 = time.perf_counter(), self.model.gradients
        latents, ok, _ = exact_sweep(self.model, z0, names.index(self.feats[k]), offsets,
                                     [names.index(self.feats[i]) for i in locks],
                                     [self.axis_set.names[i] for i in locks],
                                     axis=self.axis_set.axes[k].to(torch.float64), target_name=self.axis_set.names[k],
                                     settings=self.settings)
        moving = torch.tensor([float(t) != 0 for t in offsets])
        entry = {"axis": self.axis_set.names[k], "locks": len(locks), "reachable": float(ok[moving].double().mean()),
                 "seconds": time.perf_counter() - t0, "gradient_evaluations": self.model.gradients - g0}
        self.log.append(entry)
        if self.progress:
            print(f"exact {entry['axis']:<22} locks {entry['locks']:>2}  reachable {entry['reachable']:.2f}  "
                  f"{entry['seconds']:.0f} s", flush=True)
        return latents, ok
