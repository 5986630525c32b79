"""A generator and an extractor whose features are known functions of z: planted truths for the math."""

from __future__ import annotations

import torch

from tlgan.models.extractors import Extractor, Feature
from tlgan.models.generators import Generator


class PlantedGenerator(Generator):
    """Writes z/8 into the first D pixels of a (3, 8, 8) image (D <= 192); the rest is 0."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.latent_dim, self.resolution, self.name, self.identity = dim, 8, "planted", f"planted:{dim}"
        self.scale = torch.nn.Parameter(torch.tensor(8.0), requires_grad=False)

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        flat = torch.zeros(z.shape[0], 3 * 8 * 8, dtype=z.dtype, device=z.device)
        flat[:, : self.latent_dim] = z / self.scale
        return flat.view(-1, 3, 8, 8)


class PlantedExtractor(Extractor):
    """Reads z back from a PlantedGenerator image and returns known functions of it.

    Features: ``lin`` = z·w0 (real), ``prob`` = sigmoid(2 z·w1) (probability),
    ``score`` = tanh(z·w2) (tanh), ``noisy`` = z·w3 + noise (real).
    """

    def __init__(self, dim: int = 16, seed: int = 0, noise: float = 0.5) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.truth = torch.nn.functional.normalize(torch.randn(4, dim, generator=gen), dim=1)
        self.dim, self.noise = dim, noise
        self.name, self.identity = "planted", f"planted-ext:{seed}"
        self.features = (Feature("lin", "real", "pose"), Feature("prob", "probability", "expression"),
                         Feature("score", "tanh", "other"), Feature("noisy", "real", "lighting and colour"))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = images.reshape(images.shape[0], -1)[:, : self.dim].double() * 8
        t = z @ self.truth.T.double()
        # deterministic "noise" from z itself, so results do not depend on batching
        noise = torch.sin(z.sum(1) * 13.7) * self.noise
        return torch.stack([t[:, 0], torch.sigmoid(2 * t[:, 1]), torch.tanh(t[:, 2]), t[:, 3] + noise], 1).float()
