"""Seeded latents: the same (seed, index) gives the same z on every machine and batch size."""

from __future__ import annotations

import torch

from tlgan.errors import TlganError

# Latents are drawn in fixed chunks, each from its own seeded stream, so that
# any range [start, start + count) can be drawn without drawing what precedes it.
CHUNK = 1024
MAX_SEED = 2**63 - 1


def check_seed(seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise TlganError(f"seed must be an integer in [0, 2^63 - 1], got {seed!r}")
    return seed


def _chunk(seed: int, chunk: int, dim: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed((seed * 1_000_003 + chunk * 7_919 + 12345) % (2**63))
    return torch.randn(CHUNK, dim, generator=gen, dtype=torch.float32)


def sample_latents(seed: int, start: int, count: int, dim: int) -> torch.Tensor:
    """Latents (count, dim) float32 ~ N(0, I) for sample indices [start, start + count) of run ``seed``."""
    check_seed(seed)
    if start < 0 or count < 0:
        raise TlganError("sample range must be non-negative")
    if count == 0:
        return torch.empty(0, dim)
    first, last = start // CHUNK, (start + count - 1) // CHUNK
    block = torch.cat([_chunk(seed, c, dim) for c in range(first, last + 1)])
    offset = start - first * CHUNK
    return block[offset: offset + count].clone()


def latent_for_seed(seed: int, dim: int) -> torch.Tensor:
    """The face called ``seed``: latent (dim,) float32 ~ N(0, I), from its own seeded stream."""
    gen = torch.Generator().manual_seed(check_seed(seed))
    return torch.randn(dim, generator=gen, dtype=torch.float32)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latents a and b (D,), t in [0, 1], in float64.

    Gaussian latents live near a sphere: a straight line between two of them
    passes through short, atypical latents (washed-out faces), the arc does
    not. The length is interpolated linearly between the two norms.
    """
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    na, nb = a64.norm(), b64.norm()
    ua, ub = a64 / na, b64 / nb
    omega = torch.arccos(torch.clamp(ua @ ub, -1.0, 1.0))
    if float(omega) < 1e-6:
        direction = ua
    else:
        direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / torch.sin(omega)
    return direction * ((1 - t) * na + t * nb)
