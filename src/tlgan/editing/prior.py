"""A prior for taught knobs: directions the generator's pictures are sensitive to.

A handful of labels cannot pin down a direction in a 100-d latent space
(each answer is at most one bit; cosine 0.9 to a fixed direction is a
~10⁻³⁶ share of the sphere's directions). But a knob that changes what a
person sees must change the picture, and a generator's pictures respond to
some latent directions far more than to others. The *sensitivity* matrix

    S = E_z[ J(z)ᵀ J(z) ]   (D, D),   J = ∂G(z)/∂z   (pixels × D),

estimated with random smooth pixel weightings v (E_v[Jᵀv vᵀJ] = JᵀJ), says
how much the picture moves along each latent direction. Teaching then fits
the logistic regression with the Gaussian prior w ~ N(0, S^power) instead
of N(0, I): the fit runs on x = z·A with A = S^(power/2) and w = A·v. With
many labels the data outweighs the prior; with few, the fitted direction is
pulled towards directions that visibly change faces. S is computed once per
generator and cached (it depends only on the weights).
"""

from __future__ import annotations

import hashlib

import torch

from tlgan.cache import cache_dir
from tlgan.errors import TlganError
from tlgan.sampling.latents import sample_latents

PRIOR_RUN = 4242       # sample_latents run of the faces S is averaged over
PRIOR_FACES = 128
PRIOR_ROUNDS = 4
POWER = 1.0            # prior covariance S^POWER
SHRINK = 0.02          # S is mixed with this share of the identity, so that no direction is ruled out


def sensitivity(generator: torch.nn.Module, faces: int = PRIOR_FACES, rounds: int = PRIOR_ROUNDS,
                batch: int = 32) -> torch.Tensor:
    """S (D, D) float64 = E[Jᵀ J] over ``faces`` latents, with trace D (only its shape matters).

    Each round draws one smooth random pixel weighting per face (8×8 noise
    upsampled to the image), and the gradient of ⟨G(z), v⟩ is Jᵀv.
    """
    latent_dim = generator.latent_dim
    z_all = sample_latents(PRIOR_RUN, 0, faces, latent_dim)
    device = next(generator.parameters(), torch.empty(0)).device
    rng = torch.Generator().manual_seed(0)
    s = torch.zeros(latent_dim, latent_dim, dtype=torch.float64)
    requires = [p.requires_grad for p in generator.parameters()]
    generator.requires_grad_(False)
    try:
        for _ in range(rounds):
            for start in range(0, faces, batch):
                z = z_all[start: start + batch].to(device).requires_grad_(True)
                with torch.enable_grad():
                    out = generator(z)
                    v = torch.randn(len(z), out.shape[1], 8, 8, generator=rng)
                    v = torch.nn.functional.interpolate(v, size=out.shape[-2:], mode="bilinear").to(out)
                    (g,) = torch.autograd.grad((out * v).sum(), z)
                g = g.detach().to("cpu", torch.float64)
                s += g.T @ g
    finally:
        for p, r in zip(generator.parameters(), requires):
            p.requires_grad_(r)
    if not bool(torch.isfinite(s).all()) or float(s.trace()) <= 0:
        raise TlganError("the generator's sensitivity could not be measured (no gradient reaches the latent)")
    return s * (latent_dim / s.trace())


def prior_scale(s: torch.Tensor, power: float = POWER, shrink: float = SHRINK) -> torch.Tensor:
    """A (D, D) float64 with A·Aᵀ = ((1 − shrink)·S + shrink·I)^power (S with trace D); fit on z·A, then w = A·v."""
    d = s.shape[0]
    mixed = (1 - shrink) * s.double() + shrink * torch.eye(d, dtype=torch.float64)
    values, vectors = torch.linalg.eigh((mixed + mixed.T) / 2)
    return (vectors * values.clamp_min(1e-12).pow(power / 2)) @ vectors.T


def cached_sensitivity(generator: torch.nn.Module) -> torch.Tensor:
    """``sensitivity(generator)``, read from / written to <cache>/priors/<identity hash>.safetensors."""
    from safetensors.torch import load_file, save_file

    from tlgan.atomic import atomic_path

    identity = getattr(generator, "identity", "") or ""
    key = hashlib.sha256(f"{identity}|{PRIOR_RUN}|{PRIOR_FACES}|{PRIOR_ROUNDS}".encode()).hexdigest()[:24]
    path = cache_dir() / "priors" / f"{key}.safetensors"
    if identity and path.is_file():
        try:
            s = load_file(str(path))["sensitivity"].double()
            if s.shape == (generator.latent_dim, generator.latent_dim):
                return s
        except Exception:  # a damaged cache file is recomputed
            pass
    s = sensitivity(generator)
    if identity:
        try:
            with atomic_path(path) as tmp:
                save_file({"sensitivity": s.float().contiguous()}, str(tmp), metadata={"generator": identity})
        except OSError:
            pass  # no writable cache: recompute next time
    return s.float().double()


__all__ = ["sensitivity", "prior_scale", "cached_sensitivity", "POWER", "SHRINK"]
