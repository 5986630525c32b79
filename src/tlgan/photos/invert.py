"""Inverting a generator: the latent whose rendering best matches a target image (an aligned photo crop).

Method: render many seeded latents and start from the ``starts`` closest ones
(pixel error), then optimise them together, as one batch, with Adam (step
ramped up, then down), keeping the better half of the starts at a few
checkpoints until one is left (successive halving: the objective has many
local minima, and which basin a start falls into matters more than the steps
spent in it), on

    weighted pixel MSE + w_perc · perceptual distance + w_prior · prior,

where the perceptual distance compares the extractors' intermediate
activations (every convolution's output, normalised by the target's energy)
and their readings (standardised by the readings' spread over the starting
candidates), the only perceptual signal available offline, and the prior keeps
the latent typical: its distance from the centre (0 in z, the mean w in w and
w+) is free inside the central 99% of the candidates' distances and
penalised, squared and relative to the typical distance, outside it (a pull
towards the average norm would bias every face's knob values). Everything is
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
from tlgan.models.extractors.base import without_heavy
from tlgan.models.generators import Generator
from tlgan.sampling.latents import check_seed, sample_latents

from tlgan.editing.exact import chi_mean_sd, prior_band


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
        self._per_image: list[bool] | None = None

    def calibrate(self, sample: torch.Tensor) -> None:
        """Set the readings' spread from sample images (N, 3, R, R), N ≥ 2, and keep only the layers that see each
        image once (a detector stage runs on however many boxes it finds, which cannot be compared image by image)."""
        self._taps = []
        readings = self.extractor(sample)
        self._per_image = [t.shape[0] == len(sample) for t in self._taps]
        self._taps = []
        self.layers = sum(self._per_image)
        self.spread = readings.float().std(0).clamp_min(1e-3)

    def features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(activations, one per tapped layer, each (N, C, h, w); readings (N, F)) of images (N, 3, R, R)."""
        self._taps = []
        readings = self.extractor(images)
        taps, self._taps = self._taps, []
        if self._per_image is not None:
            taps = [t for t, keep in zip(taps, self._per_image) if keep]
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


WARP_LR = 0.003     # Adam step of the alignment warp's parameters (shifts in half-frames: 1 px of 64 is 0.03)
WARP_PRIOR = 0.01   # weight of the warp's squared parameters in the objective


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
    warp_params: torch.Tensor | None = None              # (4,) the fitted warp (``refine_alignment``), else None
    identity: float | None = None                        # descriptor distance to the target's, when the term was on

    def quality(self) -> dict[str, float | int]:
        out = {"psnr_db": round(self.psnr, 3), "start_psnr_db": round(self.start_psnr, 3),
               "perceptual": round(self.perceptual, 5), "steps": self.steps, "candidates": self.candidates,
               "seed": self.seed}
        if self.identity is not None:
            out["identity"] = round(self.identity, 4)
        return out


def invert(generator: Generator, target: torch.Tensor, *, space: str = "z", steps: int = 500, seed: int = 0,
           candidates: int = 1024, extractor: Extractor | None = None, weight: torch.Tensor | None = None,
           lr: float = 0.2, perceptual_weight: float = 0.01, prior_weight: float = 0.1, batch: int = 128,
           progress: bool | Callable[[int, int, float], None] = False, init: torch.Tensor | None = None,
           starts: int = 8, refine_alignment: bool = False, init_warp: torch.Tensor | None = None,
           identity: Callable[[torch.Tensor], torch.Tensor] | None = None, identity_target: torch.Tensor | None = None,
           identity_weight: float = 0.0) -> Inversion:
    """Find the latent whose rendering best matches ``target`` (3, R, R) in [-1, 1].

    ``weight`` (R, R) weights the pixel loss (e.g. more on the face than the
    background). ``progress``: True for a bar on stderr, or a callback
    (step, steps, psnr). ``init``: a latent in ``space`` to start from instead of the best candidates.
    ``starts``: candidates optimised together (halved at 10%, 20%, ... of the steps until one is left).
    ``refine_alignment``: also fit a small similarity warp of the rendering onto the target (``Inversion.warp_params``),
    for targets whose alignment is only approximately the generator's own framing (photo crops).
    In w+ the first half of the steps run in w (one w for every layer), the rest in w+ from there.
    ``identity`` (images (K, 3, R, R) -> descriptors (K, D)) with ``identity_target`` (D,) adds
    ``identity_weight`` x the descriptors' distance once one start is left (it is the costliest term).
    See the module docstring for the method.
    """
    check_seed(seed)
    res = generator.resolution
    if target.shape != (3, res, res):
        raise TlganError(f"target must have shape (3, {res}, {res}), got {tuple(target.shape)}")
    if space not in latent_spaces(generator):
        raise TlganError(f"space '{space}' is not offered by this generator; choose from {', '.join(latent_spaces(generator))}")
    if steps < 0 or candidates < 1 or not 1 <= starts <= 64:
        raise TlganError("steps must be >= 0, candidates >= 1 and starts within 1 … 64")
    if space == "w+" and init is None and steps >= 2:
        # w first (a well-conditioned start), then every layer's w free.
        first = invert(generator, target, space="w", steps=steps // 2, seed=seed, candidates=candidates,
                       extractor=extractor, weight=weight, lr=lr, perceptual_weight=perceptual_weight,
                       prior_weight=prior_weight, batch=batch, progress=progress, starts=starts,
                       refine_alignment=refine_alignment, identity=identity, identity_target=identity_target,
                       identity_weight=identity_weight)
        num_ws = int(getattr(generator, "num_ws"))
        second = invert(generator, target, space="w+", steps=steps - steps // 2, seed=seed, candidates=candidates,
                        extractor=extractor, weight=weight, lr=lr, perceptual_weight=perceptual_weight,
                        prior_weight=prior_weight, batch=batch, progress=progress,
                        init=first.latent[None].repeat(num_ws, 1), refine_alignment=refine_alignment,
                        init_warp=first.warp_params, identity=identity, identity_target=identity_target,
                        identity_weight=identity_weight)
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
    ranked = torch.argsort(torch.cat(losses), stable=True)
    picked = ranked[:1 if init is not None else min(starts, candidates)]
    with torch.no_grad():
        start_image = generator.synthesize(zs[picked[:1]]).float()[0]

    # 2. The starting latents (K, ...) and the prior in the chosen space.
    with torch.no_grad():
        if space == "z":
            centre, latent0 = torch.zeros_like(zs[0]), zs[picked]
            band, typical = prior_band(generator.latent_dim, 0.99), chi_mean_sd(generator.latent_dim)[0]
        else:
            mapping = generator.mapping  # type: ignore[attr-defined]
            ref = mapping(sample_latents(seed, candidates, 1000, generator.latent_dim).to(device))
            centre, latent0 = ref.mean(0), mapping(zs[picked])
            dist = (ref - centre).norm(dim=1)
            band, typical = (float(dist.quantile(0.005)), float(dist.quantile(0.995))), float(dist.mean())
        if space == "w+":
            latent0 = latent0[:, None].repeat(1, int(getattr(generator, "num_ws")), 1)
        if init is not None:
            if init.shape != latent0.shape[1:]:
                raise TlganError(f"init latent must have shape {tuple(latent0.shape[1:])} in space {space}")
            latent0 = init.to(device, torch.float32)[None]
        step_scale = typical / math.sqrt(latent0.shape[-1])

    # A heavy extractor (the age/gender network) would multiply every step's cost: lighter parts suffice here.
    perceptual = Perceptual(without_heavy(extractor)) if extractor is not None and perceptual_weight > 0 else None
    use_identity = identity is not None and identity_weight > 0
    id_target = None
    if use_identity:
        with torch.no_grad():
            id_target = (identity_target if identity_target is not None else identity(target[None])[0]).to(device).float()
    try:
        if perceptual is not None:
            with torch.no_grad():
                perceptual.calibrate(generator.synthesize(sample_latents(seed, candidates, 32, generator.latent_dim)
                                                          .to(device)).float())
                target_feats = perceptual.features(target[None])
                target_feats = ([t.detach() for t in target_feats[0]], target_feats[1].detach())

        def objective(latents: torch.Tensor, warps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Per-start objective (K,) and (warped) renderings (K, 3, R, R) of latents (K, ...), warps (K, 4)."""
            images = render(generator, latents, space).float()
            if refine_alignment:
                images = warp_images(images, warps)
            loss = pixel_loss(images)
            if perceptual is not None:
                feats = ([t.expand(len(images), *t.shape[1:]) for t in target_feats[0]],
                         target_feats[1].expand(len(images), -1))
                loss = loss + perceptual_weight * perceptual.distance(perceptual.features(images), feats)
            d = (latents - centre).norm(dim=-1)
            prior = (((band[0] - d).clamp_min(0) + (d - band[1]).clamp_min(0)) / typical) ** 2
            loss = loss + prior_weight * prior.reshape(len(prior), -1).mean(1)
            if refine_alignment:  # a weak pull to the detector's alignment: the warp fixes what it got slightly wrong
                loss = loss + WARP_PRIOR * (warps ** 2).sum(1)
            if use_identity and len(images) == 1:
                loss = loss + identity_weight * (identity(images).float() - id_target).norm(dim=1)
            return loss, images

        # 3. Adam on the latents, halving the starts at 10%, 20%, ... of the steps.
        latent = latent0.detach().clone().requires_grad_(True)
        warp = (init_warp.to(device, torch.float32)[None].repeat(len(latent0), 1) if init_warp is not None
                else torch.zeros(len(latent0), 4, device=device)).requires_grad_(True)
        optimiser = torch.optim.Adam([{"params": [latent], "lr": lr * step_scale},
                                      {"params": [warp], "lr": WARP_LR if refine_alignment else 0.0}])
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda i: _ramp(i / max(1, steps)))
        halvings = max(0, math.ceil(math.log2(len(latent0))))
        prune_at = {max(1, round(steps * 0.1 * (h + 1))): h for h in range(halvings)}
        history: list[float] = []
        bar = None
        if progress is True:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc="inverting", unit="step", leave=False)
        best_loss, best = math.inf, (latent0[0].detach().clone(), warp[0].detach().clone())
        identity_on = False
        for i in range(steps):
            if i in prune_at and len(latent) > 1:
                with torch.no_grad():
                    keep = torch.argsort(objective(latent, warp)[0], stable=True)[:max(1, len(latent) // 2)]
                latent, warp = _keep_rows(optimiser, keep)
            if use_identity and len(latent) == 1 and not identity_on:
                # From here on the objective has the identity term: earlier losses are not comparable.
                identity_on, best_loss = True, math.inf
            optimiser.zero_grad(set_to_none=True)
            loss, images = objective(latent, warp)
            lead = int(torch.argmin(loss.detach()))
            if float(loss[lead].detach()) < best_loss:  # the latent this loss belongs to, before the step
                best_loss, best = float(loss[lead].detach()), (latent[lead].detach().clone(), warp[lead].detach().clone())
            loss.sum().backward()  # the starts are independent: each row's gradient is its own loss's
            optimiser.step()
            schedule.step()
            if i % 10 == 0 or i == steps - 1:
                value = psnr(images.detach()[lead], target, w[0, 0])
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
            final_losses = objective(latent.detach(), warp.detach())[0]
            lead = int(torch.argmin(final_losses))
            final, final_warp = latent.detach()[lead], warp.detach()[lead]
            if steps and float(final_losses[lead]) > best_loss:
                final, final_warp = best
            image = render(generator, final[None], space).float()[0]
            seen = warp_images(image[None], final_warp[None])[0] if refine_alignment else image
            perc = float(perceptual.distance(perceptual.features(seen[None]), target_feats)[0]) if perceptual else 0.0
            ident = float((identity(seen[None]).float()[0] - id_target).norm()) if use_identity else None
    finally:
        if perceptual is not None:
            perceptual.remove()
    return Inversion(final.float().cpu(), space, image.cpu(), psnr(seen, target, w[0, 0]),
                     psnr(start_image, target, w[0, 0]), perc, seed, steps, candidates, history,
                     final_warp.float().cpu() if refine_alignment else None, ident)


def _keep_rows(optimiser: torch.optim.Adam, keep: torch.Tensor) -> list[torch.Tensor]:
    """Rows ``keep`` of each parameter (K, ...) of ``optimiser``: new leaves swapped in with their Adam moments."""
    out = []
    for group in optimiser.param_groups:
        (param,) = group["params"]
        kept = param.detach()[keep].clone().requires_grad_(True)
        state = optimiser.state.pop(param, {})
        group["params"] = [kept]
        if state:
            optimiser.state[kept] = {k: (v[keep].clone() if torch.is_tensor(v) and v.ndim == param.ndim else v)
                                     for k, v in state.items()}
        out.append(kept)
    return out


def warp_matrix(params: torch.Tensor, resolution: int) -> torch.Tensor:
    """The similarity (2, 3) float64, in pixel coordinates of the R x R frame, that ``warp_images`` samples through.

    params (4,): log scale, angle (radians), shift x, y (in half-frames). A target pixel at q shows the
    rendering at matrix · (q, 1): compose it after a photo alignment M (photo → frame) to get the
    alignment of the rendering itself."""
    ls, angle, tx, ty = (float(v) for v in params)
    a = math.exp(ls) * torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]],
                                    dtype=torch.float64)
    half = resolution / 2
    shift = half * (torch.tensor([tx, ty], dtype=torch.float64) + 1 - a.sum(1))
    return torch.cat([a, shift[:, None]], 1)


def warp_images(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Images (K, 3, R, R) resampled through small similarity warps params (K, 4) (see ``warp_matrix``);
    differentiable in both. Outside the frame the edge repeats."""
    ls, angle, tx, ty = params.unbind(1)
    scale = ls.exp()
    cos, sin = scale * angle.cos(), scale * angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
