"""Choosing the torch device: automatic, or what the user asked for."""

from __future__ import annotations

import torch

from .errors import TlganError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn 'auto', 'cpu', 'cuda', 'cuda:1', 'mps' or None into a usable torch.device.

    'auto'/None picks CUDA when available, else CPU. An unknown or unavailable
    device raises TlganError.
    """
    if isinstance(spec, torch.device):
        return spec
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise TlganError(f"unknown device '{spec}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TlganError(f"device '{spec}' asked for but CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TlganError(f"device '{spec}' does not exist; {torch.cuda.device_count()} CUDA device(s) found")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise TlganError(f"device '{spec}' is not available here; use --device cpu")
    elif device.type != "cpu":
        raise TlganError(f"unsupported device '{spec}'; use auto, cpu, cuda or cuda:N")
    return device
