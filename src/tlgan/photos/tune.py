"""Pivotal tuning (Roich et al. 2021, PTI): after inversion, tune a copy of the generator around the photo's latent.

A generator trained on other faces cannot draw every real face from a latent
alone. Pivotal tuning keeps the latent found by inversion (the *pivot*) and
changes the generator a little, so that G'(pivot) matches the photo's aligned
crop; edits then move the latent in G' as in G. Here the change is small and
stored: every weight matrix W (a convolution's kernel reshaped to
(shape[0], rest)) gets a low-rank update

    W' = W + s_W · A B,   A (rows, r) starting at 0, B (r, cols) seeded,  s_W = std(W)

and every vector parameter (biases, normalisation scales) a full delta. The
objective, minimised with Adam over A, B and the vector deltas:

    weighted pixel MSE(G'(pivot), crop) + w_perc · perceptual + w_id · identity distance
    + w_loc · mean MSE(G'(z_k), G(z_k)) over seeded random latents z_k (the locality regulariser)

so that faces away from the pivot barely change. The mapping network (StyleGAN)
is never tuned: latents mean the same in G and G'. Everything is seeded; the
tuned weights are computed once (``apply_delta``), so a tuned generator renders
as fast as the base one.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator
from tlgan.sampling.latents import check_seed, sample_latents

from .invert import Perceptual, _ramp, psnr, render

# An identity term: images (N, 3, R, R) in [-1, 1] -> descriptors (N, D), differentiable.
Descriptor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TuneSettings:
    """How a photo is tuned; stored in the tuning file's header."""

    steps: int = 200
    rank: int = 4                 # of each weight matrix's update
    lr: float = 0.02              # Adam's step on A, B (in units of std(W)) and on the vector deltas
    perceptual_weight: float = 0.01
    identity_weight: float = 0.0  # 0: no identity term (or none available)
    locality_weight: float = 1.0
    locality_batch: int = 4       # random faces per step in the locality term
    locality_bank: int = 64       # seeded random faces the locality term draws from
    seed: int = 0

    def check(self) -> None:
        if not (0 <= self.steps <= 20000 and 1 <= self.rank <= 256 and self.lr > 0 and self.locality_batch >= 0
                and self.locality_bank >= self.locality_batch and min(self.perceptual_weight, self.identity_weight,
                                                                       self.locality_weight) >= 0):
            raise TlganError(f"bad tuning settings: {self}")
        check_seed(self.seed)

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class Delta:
    """A generator's change: low-rank factors (A (rows, r), B (r, cols), with s_W folded into A) per weight matrix
    and full deltas per vector parameter, keyed by parameter name."""

    low_rank: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    full: dict[str, torch.Tensor] = field(default_factory=dict)

    def numel(self) -> int:
        return sum(a.numel() + b.numel() for a, b in self.low_rank.values()) + sum(d.numel() for d in self.full.values())

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name -> tensor (float32, contiguous, CPU) for a safetensors file."""
        out = {}
        for name, (a, b) in self.low_rank.items():
            out[f"{name}::a"], out[f"{name}::b"] = a.float().contiguous().cpu(), b.float().contiguous().cpu()
        for name, d in self.full.items():
            out[f"{name}::delta"] = d.float().contiguous().cpu()
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], label: str = "tuning file") -> Delta:
        delta = cls()
        for key in sorted(tensors):
            name, _, kind = key.rpartition("::")
            if kind == "delta":
                delta.full[name] = tensors[key]
            elif kind == "a":
                if f"{name}::b" not in tensors:
                    raise TlganError(f"{label}: {name} has a factor A but no B")
                delta.low_rank[name] = (tensors[key], tensors[f"{name}::b"])
            elif kind != "b" or f"{name}::a" not in tensors:
                raise TlganError(f"{label}: unexpected tensor '{key}'")
        return delta


def tunable_parameters(generator: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters pivotal tuning changes: all but the mapping network's, in a fixed (name) order."""
    return sorted(((n, p) for n, p in generator.named_parameters() if "mapping" not in n.split(".")),
                  key=lambda item: item[0])


def weights_hash(generator: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of the tunable parameters' names, shapes and float32 values."""
    digest = hashlib.sha256()
    for name, param in tunable_parameters(generator):
        digest.update(f"{name}:{tuple(param.shape)};".encode())
        digest.update(param.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def delta_numel(generator: nn.Module, rank: int) -> int:
    """How many numbers a rank-``rank`` delta of ``generator`` holds (the file stores them as float32)."""
    total = 0
    for _, param in tunable_parameters(generator):
        if param.ndim >= 2:
            rows, cols = param.shape[0], param[0].numel()
            total += min(rank, rows, cols) * (rows + cols)
        else:
            total += param.numel()
    return total


def apply_delta(generator: Generator, delta: Delta) -> Generator:
    """A copy of ``generator`` with ``delta`` added to its weights, computed once (so it renders as fast).

    Checks that every entry names a tunable parameter of matching shape (TlganError otherwise).
    """
    params = dict(tunable_parameters(generator))
    for name in [*delta.low_rank, *delta.full]:
        if name not in params:
            raise TlganError(f"tuning does not fit this generator: it has no parameter '{name}'")
    tuned = copy.deepcopy(generator)
    new = dict(tunable_parameters(tuned))
    with torch.no_grad():
        for name, (a, b) in delta.low_rank.items():
            p = new[name]
            if p.ndim < 2 or a.shape != (p.shape[0], a.shape[1]) or b.shape != (a.shape[1], p[0].numel()):
                raise TlganError(f"tuning does not fit this generator: {name} has shape {tuple(p.shape)}")
            p.add_((a.to(p.device, torch.float32) @ b.to(p.device, torch.float32)).reshape(p.shape).to(p.dtype))
        for name, d in delta.full.items():
            p = new[name]
            if d.shape != p.shape:
                raise TlganError(f"tuning does not fit this generator: {name} has shape {tuple(p.shape)}")
            p.add_(d.to(p.device, p.dtype))
    for p in tuned.parameters():
        if not torch.isfinite(p).all():
            raise TlganError("tuning makes the generator's weights non-finite")
    tuned.eval().requires_grad_(False)
    return tuned


class _LowRank(nn.Module):
    """Parametrization W -> W + A B (reshaped), A (rows, r) zeros, B (r, cols) seeded, both scaled by std(W)."""

    def __init__(self, weight: torch.Tensor, rank: int, gen: torch.Generator) -> None:
        super().__init__()
        rows, cols = weight.shape[0], weight[0].numel()
        rank = min(rank, rows, cols)
        self.scale = float(weight.detach().float().std()) or 1.0
        self.a = nn.Parameter(torch.zeros(rows, rank, device=weight.device))
        b = torch.randn(rank, cols, generator=gen) / math.sqrt(rank)
        self.b = nn.Parameter(b.to(weight.device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.scale * (self.a @ self.b)).reshape(weight.shape).to(weight.dtype)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.scale * self.a).detach().float().cpu(), self.b.detach().float().cpu()


class _Shift(nn.Module):
    """Parametrization v -> v + d, d a full delta starting at 0, in units of std(v) (or 1)."""

    def __init__(self, vector: torch.Tensor) -> None:
        super().__init__()
        std = float(vector.detach().float().std()) if vector.numel() > 1 else 0.0
        self.scale = std if std > 0 else 1.0
        self.d = nn.Parameter(torch.zeros_like(vector, dtype=torch.float32))

    def forward(self, vector: torch.Tensor) -> torch.Tensor:
        return vector + (self.scale * self.d).to(vector.dtype)

    def value(self) -> torch.Tensor:
        return (self.scale * self.d).detach().float().cpu()


@dataclass
class Tuning:
    """What ``tune`` found: the delta, the tuned generator (weights computed once) and how well it fits."""

    delta: Delta
    generator: Generator
    psnr_before: float            # G(pivot) vs the target, weighted like the loss
    psnr_after: float             # G'(pivot) vs the target
    locality_psnr: float          # mean PSNR of G'(z) vs G(z) over held-out random faces
    seconds: float
    settings: TuneSettings
    identity_before: float | None = None   # the identity term's distance, when one was given
    identity_after: float | None = None
    history: list[float] = field(default_factory=list)

    def quality(self) -> dict[str, float | None]:
        r = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
        return {"psnr_before_db": r(self.psnr_before), "psnr_after_db": r(self.psnr_after),
                "locality_psnr_db": r(self.locality_psnr), "identity_before": r(self.identity_before),
                "identity_after": r(self.identity_after)}


def _bank(generator: Generator, space: str, seed: int, start: int, count: int, device: torch.device) -> torch.Tensor:
    """Seeded random latents (count, ...) in ``space``."""
    z = sample_latents(seed, start, count, generator.latent_dim).to(device)
    if space == "z":
        return z
    w = generator.mapping(z)  # type: ignore[attr-defined]
    return w[:, None].repeat(1, int(getattr(generator, "num_ws")), 1) if space == "w+" else w


@torch.no_grad()
def locality(base: Generator, tuned: Generator, space: str = "z", n: int = 64, seed: int = 1_000_003,
             batch: int = 32) -> list[float]:
    """PSNR (dB) of G'(z) against G(z) for ``n`` seeded random faces (not those tuning saw)."""
    device = next(base.parameters(), torch.empty(0)).device
    out = []
    for start in range(0, n, batch):
        lat = _bank(base, space, seed, start, min(batch, n - start), device)
        a, b = render(base, lat, space).float(), render(tuned, lat, space).float()
        out.extend(psnr(x, y) for x, y in zip(a, b))
    return out


def tune(generator: Generator, pivot: torch.Tensor, target: torch.Tensor, *, space: str = "z",
         settings: TuneSettings = TuneSettings(), weight: torch.Tensor | None = None, extractor: Extractor | None = None,
         identity: Descriptor | None = None, identity_target: torch.Tensor | None = None,
         progress: bool | Callable[[int, int, float], None] = False) -> Tuning:
    """Tune a copy of ``generator`` so that its rendering of ``pivot`` (a latent in ``space``) matches ``target``
    (3, R, R) in [-1, 1]; ``weight`` (R, R) weights the pixel loss. ``identity`` (with ``identity_target`` (D,),
    default: the target's own descriptor) adds the identity distance when ``settings.identity_weight`` > 0.
    The base generator is not changed. See the module docstring for the method.
    """
    import time

    settings.check()
    start_time = time.perf_counter()
    res = generator.resolution
    if target.shape != (3, res, res):
        raise TlganError(f"target must have shape (3, {res}, {res}), got {tuple(target.shape)}")
    device = next(generator.parameters(), torch.empty(0)).device
    target = target.to(device, torch.float32)
    pivot = pivot.to(device, torch.float32)[None]
    w = (weight if weight is not None else torch.ones(res, res)).to(device, torch.float32)[None, None]
    w = w / w.mean()
    use_identity = identity is not None and settings.identity_weight > 0

    work = copy.deepcopy(generator).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(settings.seed)
    low_rank, shifts = {}, {}
    for name, param in tunable_parameters(work):
        owner_name, _, attr = name.rpartition(".")
        owner = work.get_submodule(owner_name)
        if param.ndim >= 2:
            low_rank[name] = _LowRank(param, settings.rank, gen)
            parametrize.register_parametrization(owner, attr, low_rank[name], unsafe=True)
        else:
            shifts[name] = _Shift(param)
            parametrize.register_parametrization(owner, attr, shifts[name], unsafe=True)
    trainable = [p for m in [*low_rank.values(), *shifts.values()] for p in m.parameters()]
    for p in trainable:
        p.requires_grad_(True)

    perceptual = Perceptual(extractor) if extractor is not None and settings.perceptual_weight > 0 else None
    history: list[float] = []
    try:
        with torch.no_grad():
            bank = _bank(generator, space, settings.seed, 0, settings.locality_bank, device)
            bank_images = render(generator, bank, space).float() if settings.locality_batch else None
            before = render(generator, pivot, space).float()[0]
            target_feats = None
            if perceptual is not None:
                perceptual.calibrate(render(generator, bank[:32], space).float())
                target_feats = perceptual.features(target[None])
                target_feats = ([t.detach() for t in target_feats[0]], target_feats[1].detach())
            id_target = None
            if use_identity:
                id_target = (identity_target if identity_target is not None else identity(target[None])[0]).to(device).float()
        id_before = float((identity(before[None]).float()[0] - id_target).norm()) if use_identity else None

        order = torch.Generator().manual_seed(settings.seed + 1)
        optimiser = torch.optim.Adam(trainable, lr=settings.lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: _ramp(i / max(1, settings.steps)))
        bar = None
        if progress is True:
            from tqdm import tqdm

            bar = tqdm(total=settings.steps, desc="tuning", unit="step", leave=False)
        for i in range(settings.steps):
            optimiser.zero_grad(set_to_none=True)
            image = render(work, pivot, space).float()
            loss = (((image[0] - target) ** 2) * w[0]).mean()
            if perceptual is not None:
                loss = loss + settings.perceptual_weight * perceptual.distance(perceptual.features(image), target_feats)[0]
            if use_identity:
                loss = loss + settings.identity_weight * (identity(image).float()[0] - id_target).norm()
            if settings.locality_batch:
                pick = torch.randperm(settings.locality_bank, generator=order)[:settings.locality_batch].to(device)
                loss = loss + settings.locality_weight * ((render(work, bank[pick], space).float()
                                                           - bank_images[pick]) ** 2).mean()
            loss.backward()
            optimiser.step()
            schedule.step()
            if i % 10 == 0 or i == settings.steps - 1:
                value = psnr(image.detach()[0], target, w[0, 0])
                history.append(value)
                if bar is not None:
                    bar.set_postfix(psnr=f"{value:.2f} dB")
                elif callable(progress):
                    progress(i + 1, settings.steps, value)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        delta = Delta({n: m.factors() for n, m in low_rank.items()}, {n: m.value() for n, m in shifts.items()})
    finally:
        if perceptual is not None:
            perceptual.remove()
    del work
    tuned = apply_delta(generator, delta)
    with torch.no_grad():
        after = render(tuned, pivot, space).float()[0]
        id_after = float((identity(after[None]).float()[0] - id_target).norm()) if use_identity else None
    near = locality(generator, tuned, space)
    return Tuning(delta, tuned, psnr(before, target, w[0, 0]), psnr(after, target, w[0, 0]),
                  sum(near) / len(near), time.perf_counter() - start_time, settings, id_before, id_after, history)
