"""Candidate pools: numbered, fixed sets of faces (seeds and their latents) to ask a labeller about."""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
import torch

from tlgan.errors import TlganError
from tlgan.models.generators import Generator
from tlgan.sampling.spaces import seed_latents

POOL_SIZE = 2000        # candidate faces per pool
MAX_POOL = 2**31 - 1

_pool_lock = threading.Lock()


@lru_cache(maxsize=8)
def _pool(pool: int, size: int, latent_dim: int, generator: Generator | None) -> tuple[np.ndarray, torch.Tensor]:
    seeds = np.random.default_rng(pool).choice(MAX_POOL, size=size, replace=False).astype(np.int64)
    return seeds, seed_latents(seeds.tolist(), latent_dim, generator).double()


def candidate_pool(pool: int, latent_dim: int, size: int = POOL_SIZE,
                   generator: Generator | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """Pool number ``pool``'s candidate faces: seeds (size,) int64 and their latents (size, D) float64 (in
    ``generator``'s space when given)."""
    if not 0 <= pool <= MAX_POOL:
        raise TlganError(f"pool must be within 0 … {MAX_POOL}, got {pool}")
    with _pool_lock:
        return _pool(pool, size, latent_dim, generator)


__all__ = ["POOL_SIZE", "MAX_POOL", "candidate_pool"]
