"""Extractors trained by ``tlgan train-extractor``: one .safetensors file with a JSON config header.

Tensors: the network's state dict under ``net.``. Header (metadata key
``tlgan``): format, version, network config (rebuilds the architecture, see
tlgan.training.nets), input size, features (name, kind, group, description)
and a training record (data, settings, per-attribute accuracies). Registry
name ``tlgan-cnn:FILE``. Images are resized (anti-aliased) to the input size;
outputs are probabilities (sigmoid of the logits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlgan.assets import file_hash
from tlgan.atomic import atomic_path
from tlgan.errors import TlganError
from tlgan.safefile import read_tlgan_file

from .base import Extractor, Feature, resize

FORMAT = "tlgan.extractor"
VERSION = 1


class TrainedCNN(Extractor):
    """A trained attribute CNN: images (N, 3, H, W) in [-1, 1] -> (N, K) probabilities."""

    name = "tlgan-cnn"

    def __init__(self, net: nn.Module, input_size: int, features: tuple[Feature, ...]) -> None:
        super().__init__()
        self.net, self.input_size, self.features = net, input_size, features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise TlganError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
        x = resize(images.to(next(self.net.parameters()).dtype), self.input_size)
        return torch.sigmoid(self.net(x)).float()


def save_extractor_file(path: str | Path, net: nn.Module, network: dict[str, Any], input_size: int,
                        features: list[Feature], training: dict[str, Any]) -> None:
    """Write a trained extractor atomically (format in the module docstring)."""
    from safetensors.torch import save_file

    header = {"format": FORMAT, "version": VERSION, "network": network, "input_size": input_size,
              "features": [{"name": f.name, "kind": f.kind, "group": f.group, "description": f.description}
                           for f in features], "training": training}
    tensors = {f"net.{k}": v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"tlgan": json.dumps(header)})


def read_extractor_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict of the network, header) of a tlgan extractor file."""
    tensors, header = read_tlgan_file(path, FORMAT, VERSION, "extractor file")
    state = {k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")}
    return state, header


def load_trained_file(path: str | Path) -> TrainedCNN:
    """Rebuild the network from the header and load its weights; eval mode, no grads."""
    from .nets import build_net

    path = Path(path)
    state, header = read_extractor_file(path)
    try:
        features = tuple(Feature(f["name"], f.get("kind", "probability"), f.get("group", "other"), f.get("description", ""))
                         for f in header["features"])
        net = build_net(header["network"], len(features))
        net.load_state_dict(state)
        input_size = int(header["input_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TlganError(f"{path}: header or weights do not describe a network tlgan can build: {exc}") from None
    except RuntimeError as exc:
        raise TlganError(f"{path}: weights do not fit the network in its header: {str(exc).splitlines()[0]}") from None
    model = TrainedCNN(net, input_size, features)
    model.identity = f"tlgan-cnn:{file_hash(path)}"
    model.training_record = header.get("training", {})
    return model.eval().requires_grad_(False)


def load_trained_cnn(path: str | None, device: torch.device | str = "cpu") -> TrainedCNN:
    """Registry loader for ``tlgan-cnn:FILE.safetensors``."""
    if not path:
        raise TlganError("tlgan-cnn needs an extractor file: tlgan-cnn:attributes.safetensors")
    return load_trained_file(path).to(device)
