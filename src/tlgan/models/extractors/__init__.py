"""Extractor registry: ``load_extractor("emotion,landmarks,imagestats,facelight,agegender")``.

Each comma-separated item is ``name`` or ``name:ARG`` (ARG usually a file).
Loaders are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch

from tlgan.devices import resolve_device
from tlgan.errors import TlganError

from .base import GROUPS, KINDS, CombinedExtractor, Extractor, Feature

DEFAULT_EXTRACTORS = "emotion,landmarks,imagestats,facelight,agegender"

# name -> "module:function"; the function takes (arg: str | None, device) and returns an Extractor.
_LOADERS: dict[str, str | Callable[..., Extractor]] = {
    "emotion": "tlgan.models.extractors.emotion:load_emotion",
    "landmarks": "tlgan.models.extractors.landmarks:load_landmarks",
    "imagestats": "tlgan.models.extractors.imagestats:load_imagestats",
    "facelight": "tlgan.models.extractors.facelight:load_facelight",
    "agegender": "tlgan.models.extractors.agegender:load_agegender",
    "facemesh": "tlgan.models.extractors.facemesh:load_facemesh",
    "celeba-cnn": "tlgan.models.extractors.celeba_cnn:load_celeba_cnn",
    "celeba-cnn-antialias": "tlgan.models.extractors.celeba_cnn:load_celeba_cnn_antialias",
    "tlgan-cnn": "tlgan.models.extractors.trained:load_trained_cnn",
    "entrypoint": "tlgan.models.user:load_entrypoint_extractor",
    "torchscript": "tlgan.models.user:load_torchscript_extractor",
    "onnx": "tlgan.models.user:load_onnx_extractor",
}


def register(name: str, loader: str | Callable[..., Extractor]) -> None:
    """Make ``load_extractor(f"{name}:ARG")`` call ``loader(ARG, device)``."""
    _LOADERS[name] = loader


def available() -> list[str]:
    return sorted(_LOADERS)


def load_one(spec: str, device: torch.device) -> Extractor:
    name, _, arg = spec.strip().partition(":")
    if name not in _LOADERS:
        raise TlganError(f"unknown extractor '{name}'; available: {', '.join(available())}")
    loader = _LOADERS[name]
    if isinstance(loader, str):
        module, _, func = loader.partition(":")
        loader = getattr(importlib.import_module(module), func)
    return loader(arg or None, device)


def load_extractor(spec: str = DEFAULT_EXTRACTORS, device: str | torch.device | None = "auto") -> Extractor:
    """Load one or several (comma-separated) extractors as one Extractor, in eval mode without grads."""
    device = resolve_device(device)
    items = [s for s in spec.split(",") if s.strip()]
    if not items:
        raise TlganError("no extractor named; e.g. --extractor emotion,landmarks,imagestats,facelight,agegender")
    parts = [load_one(s, device) for s in items]
    extractor = parts[0] if len(parts) == 1 else CombinedExtractor(parts)
    return extractor.eval().requires_grad_(False).to(device)


__all__ = ["Extractor", "Feature", "CombinedExtractor", "load_extractor", "register", "available",
           "DEFAULT_EXTRACTORS", "KINDS", "GROUPS"]
