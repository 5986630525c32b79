"""Evaluation: what each axis does to fresh faces (re-scoring matrix, fit quality, monotonicity, faces kept)
and its HTML report.

It may use ``tlgan.axes``, ``tlgan.sampling``, ``tlgan.models`` and the package helpers (not ``tlgan.editing``).
"""
