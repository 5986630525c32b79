"""Inverting a generator: the latent whose rendering best matches a target image (an aligned photo crop).

Method: render many seeded latents and start from the closest one (pixel
error), then optimise the latent with Adam (step ramped up, then down) on

    weighted pixel MSE + w_perc · perceptual distance + w_prior · prior,

where the perceptual distance compares the extractors' intermediate
activations (every convolution's output, normalised by the target's energy)
and their readings (standardised by the readings' spread over the starting
candidates), the only perceptual signal available offline, and the prior keeps
the latent's norm typical: (‖z‖/√D − 1)² in z; in w and w+ the distance from
the mean w over the candidates relative to its typical value. Everything is
seeded: the same target, generator, seed and settings give the same latent.

Spaces: 'z' always; 'w' and 'w+' (w for the first half of the steps, then w+) when the generator offers ``mapping(z) -> w
(N, w_dim)`` and ``synthesize_w(w)`` taking (N, w_dim) or (N, num_ws, w_dim).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator
from tlgan.sampling.latents import check_seed, sample_latents


def latent_spaces(generator: Generator) -> list[str]:
    """The spaces ``invert`` can search for this generator."""
    if callable(getattr(generator, "mapping", None)) and callable(getattr(generator, "synthesize_w", None)):
        return ["z", "w", "w+"]
    return ["z"]


def render(generator: Generator, latent: torch.Tensor, space: str) -> torch.Tensor:
    """Images (N, 3, R, R) in [-1, 1] of latents in ``space``: z (N, D), w (N, w_dim) or w+ (N, num_ws, w_dim)."""
    if space == "z":
        return generator.synthesize(latent)
    if space in ("w", "w+"):
        return generator.synthesize_w(latent)  # type: ignore[attr-defined]
    raise TlganError(f"unknown latent space '{space}'")


def psnr(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB of two images in [-1, 1] (peak = the [0, 1] range), optionally weighted."""
    err = ((a.float() - b.float()) / 2) ** 2
    mse = float((err * weight).sum() / (weight.sum() * err.shape[-3])) if weight is not None else float(err.mean())
    return 10 * math.log10(1 / max(mse, 1e-12))


class Perceptual(nn.Module):
    """A perceptual distance from an extractor: its convolutions' activations and its readings.

    Args:
        extractor: any Extractor (gradients flow through it; its weights stay frozen).
        max_layers: convolutions used, spread evenly over the network's depth.
    """

    def __init__(self, extractor: Extractor, max_layers: int = 8) -> None:
        super().__init__()
        self.extractor = extractor
        convs = [m for m in extractor.modules()
                 if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim == 4 and not list(m.children())]
        if len(convs) > max_layers:
            convs = [convs[round(i * (len(convs) - 1) / (max_layers - 1))] for i in range(max_layers)]
        self._taps: list[torch.Tensor] = []
        self._handles = [m.register_forward_hook(lambda _m, _i, out: self._taps.append(out)) for m in convs]
        self.layers = len(convs)
        self.spread: torch.Tensor | None = None

    def features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(activations, one per tapped layer, each (N, C, h, w); readings (N, F)) of images (N, 3, R, R)."""
        self._taps = []
        readings = self.extractor(images)
        taps, self._taps = self._taps, []
        return [t.float() for t in taps], readings.float()

    def distance(self, a: tuple[list[torch.Tensor], torch.Tensor], b: tuple[list[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Mean over layers of ‖a − b‖² / ‖b‖², plus the readings' standardised squared difference; shape (N,)."""
        total = torch.zeros(a[1].shape[0], device=a[1].device)
        for x, y in zip(a[0], b[0]):
            total = total + ((x - y) ** 2).flatten(1).sum(1) / (y ** 2).flatten(1).sum(1).clamp_min(1e-8)
        total = total / max(1, len(a[0]))
        spread = self.spread if self.spread is not None else torch.ones_like(a[1][0])
        return total + (((a[1] - b[1]) / spread) ** 2).mean(1)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _ramp(t: float, up: float = 0.05, down: float = 0.25) -> float:
    """Learning-rate factor at progress t in [0, 1]: StyleGAN's projector schedule (cosine ramp up over the
    first 5%, linear ramp down over the last 25%); Adam's first full-size steps would throw the start away."""
    return min(1.0, (1 - t) / down) * 0.5 * (1 - math.cos(math.pi * min(1.0, (t + 1e-9) / up)))


@dataclass
class Inversion:
    """What ``invert`` found: the latent in ``space`` ((D,) for z and w, (num_ws, w_dim) for w+) and how well it fits."""

    latent: torch.Tensor
    space: str
    image: torch.Tensor            # (3, R, R) its rendering
    psnr: float                    # dB against the target (weighted like the loss when a weight was given)
    start_psnr: float              # of the best sampled candidate
    perceptual: float
    seed: int
    steps: int
    candidates: int
    history: list[float] = field(default_factory=list)   # PSNR every 10 steps

    def quality(self) -> dict[str, float | int]:
        return {"psnr_db": round(self.psnr, 3), "start_psnr_db": round(self.start_psnr, 3),
                "perceptual": round(self.perceptual, 5), "steps": self.steps, "candidates": self.candidates,
                "seed": self.seed}


def invert(generator: Generator, target: torch.Tensor, *, space: str = "z", steps: int = 300, seed: int = 0,
           candidates: int = 1024, extractor: Extractor | None = None, weight: torch.Tensor | None = None,
           lr: float = 0.2, perceptual_weight: float = 0.01, prior_weight: float = 0.1, batch: int = 128,
           progress: bool | Callable[[int, int, float], None] = False, init: torch.Tensor | None = None) -> Inversion:
    """Find the latent whose rendering best matches ``target`` (3, R, R) in [-1, 1].

    ``weight`` (R, R) weights the pixel loss (e.g. more on the face than the
    background). ``progress``: True for a bar on stderr, or a callback
    (step, steps, psnr). ``init``: a latent in ``space`` to start from instead of the best candidate.
    In w+ the first half of the steps run in w (one w for every layer), the rest in w+ from there.
    See the module docstring for the method.
    """
    check_seed(seed)
    res = generator.resolution
    if target.shape != (3, res, res):
        raise TlganError(f"target must have shape (3, {res}, {res}), got {tuple(target.shape)}")
    if space not in latent_spaces(generator):
        raise TlganError(f"space '{space}' is not offered by this generator; choose from {', '.join(latent_spaces(generator))}")
    if steps < 0 or candidates < 1:
        raise TlganError("steps must be >= 0 and candidates >= 1")
    if space == "w+" and init is None and steps >= 2:
        # w first (a well-conditioned start), then every layer's w free.
        first = invert(generator, target, space="w", steps=steps // 2, seed=seed, candidates=candidates,
                       extractor=extractor, weight=weight, lr=lr, perceptual_weight=perceptual_weight,
                       prior_weight=prior_weight, batch=batch, progress=progress)
        num_ws = int(getattr(generator, "num_ws"))
        second = invert(generator, target, space="w+", steps=steps - steps // 2, seed=seed, candidates=candidates,
                        extractor=extractor, weight=weight, lr=lr, perceptual_weight=perceptual_weight,
                        prior_weight=prior_weight, batch=batch, progress=progress,
                        init=first.latent[None].repeat(num_ws, 1))
        second.start_psnr, second.steps, second.history = first.start_psnr, steps, first.history + second.history
        return second
    device = next(generator.parameters(), torch.empty(0)).device
    target = target.to(device, torch.float32)
    w = (weight if weight is not None else torch.ones(res, res)).to(device, torch.float32)[None, None]
    w = w / w.mean()

    def pixel_loss(images: torch.Tensor) -> torch.Tensor:
        return (((images - target) ** 2) * w).mean(dim=(1, 2, 3))

    # 1. The best of many seeded candidates.
    zs = sample_latents(seed, 0, candidates, generator.latent_dim).to(device)
    losses = []
    with torch.no_grad():
        for start in range(0, candidates, batch):
            losses.append(pixel_loss(generator.synthesize(zs[start:start + batch]).float()))
    best = int(torch.argmin(torch.cat(losses)))
    with torch.no_grad():
        start_image = generator.synthesize(zs[best:best + 1]).float()[0]

    # 2. The starting latent and the prior in the chosen space.
    with torch.no_grad():
        if space == "z":
            latent0, centre, typical = zs[best], torch.zeros_like(zs[best]), math.sqrt(generator.latent_dim)
        else:
            ws = torch.cat([generator.mapping(zs[s:s + batch]) for s in range(0, candidates, batch)])  # type: ignore[attr-defined]
            centre = ws.mean(0)
            typical = float((ws - centre).norm(dim=1).mean())
            latent0 = ws[best]
            if space == "w+":
                latent0 = latent0[None].repeat(int(getattr(generator, "num_ws")), 1)
        if init is not None:
            if init.shape != latent0.shape:
                raise TlganError(f"init latent must have shape {tuple(latent0.shape)} in space {space}")
            latent0 = init.to(device, torch.float32)
        step_scale = typical / math.sqrt(latent0.shape[-1])

    perceptual = Perceptual(extractor) if extractor is not None and perceptual_weight > 0 else None
    try:
        if perceptual is not None:
            with torch.no_grad():
                sample = generator.synthesize(zs[:min(batch, candidates)]).float()
                perceptual.spread = perceptual.features(sample)[1].std(0).clamp_min(1e-3) if len(sample) > 1 else None
                target_feats = perceptual.features(target[None])
                target_feats = ([t.detach() for t in target_feats[0]], target_feats[1].detach())

        def objective(latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            image = render(generator, latent[None], space).float()
            loss = pixel_loss(image)[0]
            perc = perceptual.distance(perceptual.features(image), target_feats)[0] if perceptual else image.new_zeros(())
            prior = (((latent - centre).norm(dim=-1) / typical - 1) ** 2).mean()
            return loss + perceptual_weight * perc + prior_weight * prior, image, perc

        # 3. Adam on the latent.
        latent = latent0.detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([latent], lr=lr * step_scale)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: _ramp(i / max(1, steps)))
        history: list[float] = []
        bar = None
        if progress is True:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc="inverting", unit="step", leave=False)
        best_loss, best = math.inf, latent0.detach().clone()
        for i in range(steps):
            optimiser.zero_grad(set_to_none=True)
            loss, image, _ = objective(latent)
            if float(loss.detach()) < best_loss:  # the latent this loss belongs to, before the step
                best_loss, best = float(loss.detach()), latent.detach().clone()
            loss.backward()
            optimiser.step()
            schedule.step()
            if i % 10 == 0 or i == steps - 1:
                value = psnr(image.detach()[0], target, w[0, 0])
                history.append(value)
                if bar is not None:
                    bar.set_postfix(psnr=f"{value:.2f} dB")
                elif callable(progress):
                    progress(i + 1, steps, value)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        with torch.no_grad():
            # The answer is the lowest objective seen (Adam does not decrease it monotonically).
            final = latent.detach()
            if steps and float(objective(final)[0]) > best_loss:
                final = best
            image = render(generator, final[None], space).float()[0]
            perc = float(perceptual.distance(perceptual.features(image[None]), target_feats)[0]) if perceptual else 0.0
    finally:
        if perceptual is not None:
            perceptual.remove()
    return Inversion(final.float().cpu(), space, image.cpu(), psnr(image, target, w[0, 0]),
                     psnr(start_image, target, w[0, 0]), perc, seed, steps, candidates, history)
