"""What tlgan needs from a generator, whatever its family."""

from __future__ import annotations

import torch
from torch import nn

from tlgan.errors import TlganError


class Generator(nn.Module):
    """A pretrained image generator G: z (N, latent_dim) -> images (N, 3, H, W) in [-1, 1].

    Subclasses set ``name`` (registry name), ``latent_dim``, ``resolution`` and
    ``identity`` (name plus a hash of the weights, stored in axis sets so that
    axes are never used with a generator they were not fitted on), and
    implement ``synthesize``. ``forward`` validates the latent first.
    ``spaces`` names the latent spaces the generator offers: ``z`` for all;
    StyleGAN adds ``w`` (N, w_dim) and ``w+`` (N, num_ws, w_dim) with
    ``mapping``/``synthesize_w``.
    """

    name: str = "generator"
    spaces: tuple[str, ...] = ("z",)
    latent_dim: int = 0
    resolution: int = 0
    identity: str = ""

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        """Render (N, latent_dim) latents to (N, 3, H, W) RGB in [-1, 1]; no input checks."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_latent(z, self.latent_dim)
        return self.synthesize(z)

    def first_layer_weight(self) -> torch.Tensor | None:
        """The weight A (out_features, latent_dim) of the first latent-to-feature map, for SeFa; None if unknown."""
        return None


def check_latent(z: torch.Tensor, latent_dim: int) -> None:
    """Raise TlganError unless z is a finite float tensor of shape (N, latent_dim)."""
    if not isinstance(z, torch.Tensor):
        raise TlganError(f"latent must be a torch.Tensor, got {type(z).__name__}")
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise TlganError(f"latent must have shape (N, {latent_dim}), got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise TlganError(f"latent must be floating point, got {z.dtype}")
    if not bool(torch.isfinite(z).all()):
        raise TlganError("latent contains NaN or infinite values")
