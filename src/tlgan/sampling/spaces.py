"""Latent spaces: a generator seen through one of the spaces it offers (``z``, ``w``, ``w+``).

Everything downstream of a Generator (sampling pipeline, fitting, Editor, evaluation, web app)
works with "the latent" (N, latent_dim). ``SpaceView`` makes that latent a point of a chosen
space of a StyleGAN-like generator (one with ``mapping``, ``synthesize_w`` and ``w_avg``):

- ``z``: the generator's own z (only useful with NVlabs' seed convention).
- ``w``: w - w_avg (N, w_dim), where w = mapping(z, truncation=psi) for seeded z; centred, so a
  unit axis a gives a position (w - w_avg)·a relative to the mean w.
- ``w+``: ws - w_avg flattened (N, num_ws * w_dim), one w per synthesis layer input; a face
  drawn from a seed has the same w in every layer.

Seeded latents are drawn in z (``sample_latents`` / ``latent_for_seed``, or NVlabs' convention
``np.random.RandomState(seed).randn(1, z_dim)``) and mapped, so the same seed gives the same face
in every space. The view's identity is the generator's plus the space and psi
(``stylegan2:ab12@w,psi=0.7``), so axes and sample folders made in one space are never used in another.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tlgan.errors import TlganError
from tlgan.models.generators import Generator

from .latents import check_seed, latent_for_seed, sample_latents

SEED_CONVENTIONS = ("tlgan", "nvlabs")


def nvlabs_latent(seed: int, dim: int) -> torch.Tensor:
    """z (dim,) float32 as NVlabs' scripts draw it for ``--seeds``: ``np.random.RandomState(seed).randn(1, dim)``."""
    check_seed(seed)
    if seed >= 2**32:
        raise TlganError(f"NVlabs' seed convention takes seeds below 2^32, got {seed}")
    return torch.from_numpy(np.random.RandomState(seed).randn(1, dim)[0]).to(torch.float32)


def space_identity(identity: str, space: str, truncation: float = 1.0) -> str:
    """The identity of ``identity``'s generator seen in ``space`` at ``truncation``."""
    if space == "z" and truncation == 1:
        return identity
    return f"{identity}@{space}" + (f",psi={truncation:g}" if truncation != 1 else "")


def offers(generator: Generator, space: str) -> bool:
    return space in getattr(generator, "spaces", ("z",))


class SpaceView(Generator):
    """``base`` seen in ``space``; ``synthesize(latent)`` renders latents of that space to images in [-1, 1].

    truncation: psi of the w that seeded faces and samples start from (w_avg + psi (w - w_avg)).
    seeds: 'tlgan' (``latent_for_seed``) or 'nvlabs' for the face of a seed.
    layers: (first, last) w inputs whose style weights SeFa analyses (``first_layer_weight``); all by default.
    """

    def __init__(self, base: Generator, space: str, truncation: float = 1.0, seeds: str = "tlgan",
                 layers: tuple[int, int] | None = None) -> None:
        super().__init__()
        if not offers(base, space):
            raise TlganError(f"generator '{base.name}' offers latent spaces {', '.join(getattr(base, 'spaces', ('z',)))}; "
                             f"not '{space}'")
        if space == "z" and truncation != 1:
            raise TlganError("truncation needs --space w or w+")
        if not (0.0 <= float(truncation) <= 2.0):
            raise TlganError(f"truncation psi must be within [0, 2], got {truncation}")
        if seeds not in SEED_CONVENTIONS:
            raise TlganError(f"seed convention must be one of {', '.join(SEED_CONVENTIONS)}, got '{seeds}'")
        self.base = base
        self.latent_space, self.truncation, self.seeds, self.layers = space, float(truncation), seeds, layers
        self.name, self.resolution = base.name, base.resolution
        self.spaces = (space,)
        self.identity = space_identity(base.identity, space, self.truncation)
        if space == "z":
            self.latent_dim = base.latent_dim
        elif space == "w":
            self.latent_dim = base.w_dim
        else:
            self.latent_dim = base.num_ws * base.w_dim

    # --- seeded latents ---------------------------------------------------------------------------
    @torch.no_grad()
    def from_z(self, z: torch.Tensor) -> torch.Tensor:
        """Latents of this space (N, latent_dim) float32 on the CPU for z (N, z_dim)."""
        if self.latent_space == "z":
            return z.to(torch.float32)
        device = self.base.w_avg.device
        w = self.base.mapping(z.to(device, torch.float32), truncation=self.truncation) - self.base.w_avg
        if self.latent_space == "w+":
            w = w.unsqueeze(1).repeat(1, self.base.num_ws, 1).flatten(1)
        return w.to("cpu", torch.float32)

    def draw_latents(self, seed: int, start: int, count: int) -> torch.Tensor:
        """Latents for sample indices [start, start + count) of run ``seed`` (mapped ``sample_latents``)."""
        return self.from_z(sample_latents(seed, start, count, self.base.latent_dim))

    def face_latent(self, seed: int) -> torch.Tensor:
        """The latent (latent_dim,) of the face called ``seed`` under this view's seed convention."""
        z = nvlabs_latent(seed, self.base.latent_dim) if self.seeds == "nvlabs" else latent_for_seed(seed, self.base.latent_dim)
        return self.from_z(z[None])[0]

    # --- rendering ----------------------------------------------------------------------------------
    def to_w(self, latent: torch.Tensor) -> torch.Tensor:
        """w (N, w_dim) or ws (N, num_ws, w_dim) for latents of this space (w and w+ only)."""
        w_avg = self.base.w_avg.to(latent.device, torch.float32)
        if self.latent_space == "w":
            return latent.to(torch.float32) + w_avg
        return latent.to(torch.float32).reshape(-1, self.base.num_ws, self.base.w_dim) + w_avg

    def synthesize(self, latent: torch.Tensor) -> torch.Tensor:
        if self.latent_space == "z":
            return self.base.synthesize(latent)
        return self.base.synthesize_w(self.to_w(latent))

    def first_layer_weight(self) -> torch.Tensor | None:
        # SeFa's native setting: in w, the concatenated style-affine weights of every layer.
        if self.latent_space == "w":
            return self.base.style_weights(None if self.layers is None else range(self.layers[0], self.layers[1] + 1))
        return self.base.first_layer_weight() if self.latent_space == "z" else None


def space_view(generator: Generator, space: str | None = None, truncation: float = 1.0,
               seeds: str = "tlgan", layers: tuple[int, int] | None = None) -> Generator:
    """``generator`` seen in ``space`` (default: w where offered, else z); the generator itself for plain z."""
    if isinstance(generator, SpaceView):
        generator = generator.base
    space = space or ("w" if offers(generator, "w") else "z")
    if space == "z" and truncation == 1 and seeds == "tlgan":
        return generator
    return SpaceView(generator, space, truncation, seeds, layers)


def draw_latents(generator: Generator, seed: int, start: int, count: int) -> torch.Tensor:
    """Seeded latents (count, latent_dim) of ``generator``'s space: its own draw_latents, else sample_latents."""
    draw = getattr(generator, "draw_latents", None)
    return draw(seed, start, count) if draw else sample_latents(seed, start, count, generator.latent_dim)


def face_latent(generator: Generator, seed: int) -> torch.Tensor:
    """The latent (latent_dim,) of the face called ``seed`` in ``generator``'s space."""
    face = getattr(generator, "face_latent", None)
    return face(seed) if face else latent_for_seed(seed, generator.latent_dim)


def seed_latents(seeds: Sequence[int], latent_dim: int, generator: Generator | None = None) -> torch.Tensor:
    """The latents (N, latent_dim) float32 of the faces called ``seeds``: in ``generator``'s space (a StyleGAN
    seen in w maps each seed's z), or ``latent_for_seed`` without a generator."""
    if not len(seeds):
        return torch.empty(0, latent_dim)
    if generator is None:
        return torch.stack([latent_for_seed(int(s), latent_dim) for s in seeds])
    with torch.no_grad():
        return torch.stack([face_latent(generator, int(s)).float() for s in seeds])
