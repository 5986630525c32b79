"""A tiny differentiable generator + extractor whose features are planted NON-linear functions of z.

Linear locks fail on it by construction: ``bend`` = z·u1 + 0.4 (z·u0)² has a
linear axis close to u1, so moving ``tilt`` (≈ z·u0) with bend's axis locked
keeps z·u1 fixed while bend's reading changes by 0.4 Δ((z·u0)²).
"""

from __future__ import annotations

import torch

from tlgan.axes.fit import fit_linear, make_axis_set
from tlgan.axes.store import AxisSet
from tlgan.models.extractors import Extractor, Feature
from tlgan.models.generators import Generator
from tlgan.sampling.latents import sample_latents

DIM = 12


class BentGenerator(Generator):
    """Writes z/8 into the first D pixels of a (3, 8, 8) image through a smooth invertible map (differentiable)."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.latent_dim, self.resolution, self.name, self.identity = dim, 8, "bent", f"bent:{dim}"
        self.scale = torch.nn.Parameter(torch.tensor(8.0), requires_grad=False)

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        flat = torch.zeros(z.shape[0], 3 * 8 * 8, dtype=z.dtype, device=z.device)
        flat = torch.cat([z / self.scale, flat[:, self.latent_dim:]], dim=1)
        return flat.view(-1, 3, 8, 8)


class BentExtractor(Extractor):
    """Reads z back from a BentGenerator image; features are known non-linear functions of it.

    tilt = z·u0 + 0.3 sin(2 z·u1) (real); bend = z·u1 + 0.4 (z·u0)² (real);
    smile = sigmoid(z·u2 + 0.5 (z·u0)(z·u3)) (probability); glow = tanh(0.5 z·u3 + 0.2 (z·u2)²) (tanh).
    Its pixels are codes, not a picture: exact edits read it without image jitter.
    """

    jitter = False

    def __init__(self, dim: int = DIM, seed: int = 3) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, 4, generator=gen, dtype=torch.float64))
        self.register_buffer("u", q.T.contiguous().float())  # (4, D) orthonormal
        self.dim = dim
        self.name, self.identity = "bent", f"bent-ext:{seed}"
        self.features = (Feature("tilt", "real", "pose"), Feature("bend", "real", "pose"),
                         Feature("smile", "probability", "expression"), Feature("glow", "tanh", "other"))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = images.reshape(images.shape[0], -1)[:, : self.dim] * 8
        t = z @ self.u.T
        return torch.stack([t[:, 0] + 0.3 * torch.sin(2 * t[:, 1]), t[:, 1] + 0.4 * t[:, 0] ** 2,
                            torch.sigmoid(t[:, 2] + 0.5 * t[:, 0] * t[:, 3]),
                            torch.tanh(0.5 * t[:, 3] + 0.2 * t[:, 2] ** 2)], dim=1)


def bent_axes(generator: BentGenerator, extractor: BentExtractor, n: int = 4000) -> AxisSet:
    """Least-squares axes of the planted features on n samples (what ``tlgan build`` would fit)."""
    z = sample_latents(5, 0, n, generator.latent_dim)
    with torch.no_grad():
        y = extractor(generator.synthesize(z))
    out = fit_linear([(0, z, y)], extractor.features, generator.latent_dim)
    return make_axis_set(out, extractor.features, generator=generator.identity, extractor=extractor.identity,
                         latent_dim=generator.latent_dim, method="tlgan", params={}, samples=n, seed=5)


def bent_generator(device=None) -> BentGenerator:
    """Entry point for ``--generator entrypoint:tests/planted_nonlinear.py:bent_generator``."""
    return BentGenerator().to(device or "cpu")


def bent_extractor(device=None) -> BentExtractor:
    """Entry point for ``--extractor entrypoint:tests/planted_nonlinear.py:bent_extractor``."""
    return BentExtractor().to(device or "cpu")
