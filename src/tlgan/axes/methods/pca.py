"""GANSpace: principal components of an intermediate activation, mapped back to latent directions.

Sample latents z (N, D), record a layer's activation h(z) (N, P), take the
top-k principal components of h, and project each sample onto them: x (N, k).
The latent direction of component i is the least-squares regression of z on
x, u = argmin ‖x U − (z − z̄)‖², row i of U (k, D), unit-normalised. For a
layer that is linear in z this recovers the latent direction behind each
component.
"""

from __future__ import annotations

import numpy as np
import torch

from tlgan.errors import TlganError
from tlgan.sampling.spaces import draw_latents

from .activations import default_layer, layer_activations
from .sefa import orient


def pca_to_latent(z: torch.Tensor, acts: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent directions (k, D) float64 of the top-k principal components of ``acts`` (N, P) sampled at ``z`` (N, D).

    Also returns each component's fraction of the activation's variance (k,).
    """
    from sklearn.decomposition import PCA

    n, d = z.shape
    if acts.shape[0] != n:
        raise TlganError(f"{n} latents but {acts.shape[0]} activations")
    if not 1 <= k <= min(d, acts.shape[1]):
        raise TlganError(f"number of components must be between 1 and {min(d, acts.shape[1])}, got {k}")
    if n <= max(k, d):
        raise TlganError(f"PCA needs more samples than latent dimensions ({n} <= {max(k, d)}); raise --n")
    pca = PCA(n_components=k, svd_solver="auto", random_state=seed)
    x = pca.fit_transform(acts.to(torch.float32).numpy())  # (N, k), centred
    z64 = z.to(torch.float64).numpy()
    u, *_ = np.linalg.lstsq(x.astype(np.float64), z64 - z64.mean(0), rcond=None)  # (k, D)
    u = torch.from_numpy(u)
    norms = u.norm(dim=1, keepdim=True)
    if bool((norms < 1e-12).any()):
        raise TlganError("a principal component does not depend on the latent; use another --layer")
    return orient(u / norms), torch.from_numpy(pca.explained_variance_ratio_.astype(np.float64))


def generator_pca(generator: torch.nn.Module, k: int, n: int = 5000, seed: int = 0, layer: str | None = None,
                  batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor, str]:
    """GANSpace on a Generator: (directions (k, D), explained variance ratios (k,), layer used)."""
    z = draw_latents(generator, seed, 0, n)  # mapped w for a StyleGAN seen in w
    if getattr(generator, "latent_space", "z") in ("w", "w+") and layer in (None, "w"):
        # GANSpace in its native setting: PCA of the sampled w themselves.
        directions, ratios = pca_to_latent(z, z, k, seed)
        return directions, ratios, "w"
    layer = layer or default_layer(generator)
    device = next(generator.parameters(), torch.empty(0)).device
    acts = torch.cat([layer_activations(generator, z[i: i + batch_size].to(device), layer)
                      for i in range(0, n, batch_size)])
    directions, ratios = pca_to_latent(z, acts, k, seed)
    return directions, ratios, layer
