"""Planted models whose every output is a known linear map of z: truths for SeFa, PCA and the re-scoring matrix."""

from __future__ import annotations

import torch
from torch import nn

from tlgan.models.extractors import Extractor, Feature
from tlgan.models.generators import Generator


class LinearGenerator(Generator):
    """h = A z through ``first`` (nn.Linear, no bias), then ``act`` (ReLU); the image holds h/8 (before ``act``) in
    its first pixels, so that an extractor can read h back exactly. A: (M, D), M <= 192."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        m, d = weight.shape
        self.latent_dim, self.resolution, self.name, self.identity = d, 8, "linear", f"linear:{m}x{d}"
        self.first = nn.Linear(d, m, bias=False)
        self.first.weight.data.copy_(weight)
        self.act = nn.ReLU()

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        h = self.first(z)
        self.act(h)  # a nonlinearity in the module tree, for activation hooks; the picture shows h itself
        flat = torch.zeros(z.shape[0], 3 * 8 * 8, dtype=z.dtype, device=z.device)
        flat[:, : h.shape[1]] = h / 8
        return flat.view(-1, 3, 8, 8)

    def first_layer_weight(self) -> torch.Tensor:
        return self.first.weight


class LinearFeatures(Extractor):
    """Reads the first D pixels × 8 back (x, D) and returns x @ Wᵀ (F features named c0, c1, ...).

    With ``face_direction`` u, adds a last feature face_prob = sigmoid(4 x·u).
    """

    def __init__(self, weights: torch.Tensor, face_direction: torch.Tensor | None = None) -> None:
        super().__init__()
        self.w = weights.to(torch.float64)
        self.u = None if face_direction is None else face_direction.to(torch.float64)
        self.dim = weights.shape[1]
        self.name, self.identity = "linear", "linear-ext:1"
        feats = [Feature(f"c{j}", "real", "other") for j in range(weights.shape[0])]
        if self.u is not None:
            feats.append(Feature("face_prob", "probability", "other"))
        self.features = tuple(feats)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.reshape(images.shape[0], -1)[:, : self.dim].double() * 8
        out = x @ self.w.T
        if self.u is not None:
            out = torch.cat([out, torch.sigmoid(4 * x @ self.u)[:, None]], 1)
        return out.float()
