"""Generator registry: a spec string -> a loaded Generator.

Specs: ``digiface`` (default), ``dcgan:FILE``, ``pggan:FILE``, ``stylegan:FILE`` (StyleGAN2/3), and ``family:ARG`` for families
registered with ``register``. Loaders are imported lazily so that one
family's dependencies never slow down another's.
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch

from tlgan.devices import resolve_device
from tlgan.errors import TlganError

from .base import Generator, check_latent

# name -> "module:function"; the function takes (arg: str | None, device) and returns a Generator.
_LOADERS: dict[str, str] = {
    "digiface": "tlgan.models.generators.dcgan:load_digiface",
    "dcgan": "tlgan.models.generators.dcgan:load_digiface",
    "pggan": "tlgan.models.generators.pggan:load_pggan",
    "stylegan": "tlgan.models.generators.stylegan_files:load_stylegan",
    "entrypoint": "tlgan.models.user:load_entrypoint_generator",
    "torchscript": "tlgan.models.user:load_torchscript_generator",
    "onnx": "tlgan.models.user:load_onnx_generator",
}


def register(name: str, loader: str | Callable[..., Generator]) -> None:
    """Make ``load_generator(f"{name}:ARG")`` call ``loader(ARG, device)``."""
    _LOADERS[name] = loader  # type: ignore[assignment]


def available() -> list[str]:
    return sorted(_LOADERS)


def load_generator(spec: str = "digiface", device: str | torch.device | None = "auto") -> Generator:
    """Load a generator by spec (see module docstring) onto ``device``, in eval mode without grads."""
    device = resolve_device(device)
    name, _, arg = spec.partition(":")
    if name not in _LOADERS:
        raise TlganError(f"unknown generator '{name}'; available: {', '.join(available())}")
    loader = _LOADERS[name]
    if isinstance(loader, str):
        module, _, func = loader.partition(":")
        loader = getattr(importlib.import_module(module), func)
    generator = loader(arg or None, device)
    return generator.eval().requires_grad_(False).to(device)


__all__ = ["Generator", "check_latent", "load_generator", "register", "available"]
