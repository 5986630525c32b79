"""Sampling: seeded latents, the fused render+label step, the resumable sample pipeline, and sweeps
(moving faces along directions and reading them).

It may use ``tlgan.models`` and the package helpers; it knows nothing of axis sets.
"""
