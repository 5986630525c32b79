"""SeFa (closed-form factorisation): the directions the generator's first latent-to-feature map stretches most.

For the first layer's weight A (M, D), moving z by a changes that layer's
output by A a, of squared size aᵀAᵀA a; the unit directions that maximise it
are the eigenvectors of AᵀA, sorted by eigenvalue. No sampling, no labels.
"""

from __future__ import annotations

import torch

from tlgan.errors import TlganError


def orient(vectors: torch.Tensor) -> torch.Tensor:
    """Fix the arbitrary sign of each row (K, D): its largest-magnitude entry becomes positive."""
    idx = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors.gather(1, idx[:, None]))
    return vectors * torch.where(signs == 0, torch.ones_like(signs), signs)


def sefa_directions(weight: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` eigenvectors (k, D) float64 of AᵀA for A = ``weight`` (M, D), and their eigenvalues (k,), descending."""
    if weight.ndim != 2:
        raise TlganError(f"SeFa needs a 2-d weight (out_features, latent_dim), got shape {tuple(weight.shape)}")
    d = weight.shape[1]
    if not 1 <= k <= d:
        raise TlganError(f"number of components must be between 1 and the latent size {d}, got {k}")
    a = weight.detach().to("cpu", torch.float64)
    values, vectors = torch.linalg.eigh(a.T @ a)  # ascending, orthonormal columns
    order = torch.argsort(values, descending=True)[:k]
    return orient(vectors[:, order].T.contiguous()), values[order]


def generator_sefa(generator: torch.nn.Module, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa on a tlgan Generator through its ``first_layer_weight()``; TlganError if it does not expose one."""
    getter = getattr(generator, "first_layer_weight", None)
    weight = getter() if callable(getter) else None
    if weight is None:
        raise TlganError(f"generator '{getattr(generator, 'name', '?')}' does not expose its first latent-to-feature "
                         "weight (first_layer_weight), which SeFa needs; use --method pca")
    return sefa_directions(weight, k)
