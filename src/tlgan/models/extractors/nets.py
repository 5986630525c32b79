"""Attribute CNNs that tlgan trains: a small CNN, or MobileNet v1 (from scratch or a backbone file).

A network is rebuilt from its config dict (``build_net``): {"arch": "small",
"width": 32, "depth": 4} or {"arch": "mobilenet", "alpha": 1.0, "hidden": 256}.
Both map images (N, 3, S, S) in [-1, 1] to K logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlgan.errors import TlganError

from .mobilenet import MobileNetV1

ARCHS = ("small", "mobilenet")


class SmallCNN(nn.Module):
    """``depth`` blocks of (3x3 conv stride 2, BN, ReLU, 3x3 conv, BN, ReLU), widths width * 2^i; GAP; linear -> K logits."""

    def __init__(self, outputs: int, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i in range(depth):
            cout = width * 2 ** i
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Linear(cin, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean(dim=(2, 3)))


class MobileNetClassifier(nn.Module):
    """MobileNet v1 backbone + GAP + Dense(hidden, ReLU) + Dense(K): the TL-GAN CNN's shape, with logits out."""

    def __init__(self, outputs: int, alpha: float = 1.0, hidden: int = 256) -> None:
        super().__init__()
        self.backbone = MobileNetV1(alpha)
        self.fc1 = nn.Linear(self.backbone.out_channels, hidden)
        self.fc2 = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(self.backbone(x).mean(dim=(2, 3)))))


def build_net(config: dict[str, Any], outputs: int) -> nn.Module:
    """A fresh network from its config (see module docstring)."""
    arch = config.get("arch")
    if arch == "small":
        return SmallCNN(outputs, int(config.get("width", 32)), int(config.get("depth", 4)))
    if arch == "mobilenet":
        return MobileNetClassifier(outputs, float(config.get("alpha", 1.0)), int(config.get("hidden", 256)))
    raise TlganError(f"unknown network architecture {arch!r}; use one of {', '.join(ARCHS)}")


def load_backbone(net: nn.Module, path: str | Path) -> int:
    """Initialise ``net.backbone`` from a weight file; returns the number of tensors loaded.

    .h5: Keras MobileNet weights (a full model such as the TL-GAN CNN, or a
    keras.applications weights file) for arch 'mobilenet'. .safetensors:
    tensors named as ``net.backbone``'s state dict, with or without a
    'backbone.' prefix (e.g. a tlgan extractor file of the same architecture).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise TlganError(f"backbone weight file not found: {path}")
    if path.suffix.lower() in (".h5", ".hdf5"):
        if not isinstance(getattr(net, "backbone", None), MobileNetV1):
            raise TlganError("a Keras .h5 backbone needs --arch mobilenet")
        from tlgan.models.formats.keras_h5 import read_keras_h5

        net.backbone.load_keras(read_keras_h5(path))
        return len(net.backbone.state_dict())
    if path.suffix.lower() != ".safetensors":
        raise TlganError(f"backbone weights must be .safetensors or a Keras .h5, got {path.name}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise TlganError(f"{path} is not a readable safetensors file: {exc}") from None
    stripped = {k.removeprefix("net.").removeprefix("backbone."): v for k, v in tensors.items()
                if k.removeprefix("net.").startswith("backbone.") or not k.startswith(("net.", "head.", "fc"))}
    own = net.backbone.state_dict()
    wanted = {k: stripped[k] for k in own if k in stripped}
    if not wanted:
        raise TlganError(f"{path} holds no tensors of this backbone (names like {next(iter(own))!r})")
    missing = sorted(set(own) - set(wanted))
    if missing:
        raise TlganError(f"{path} lacks {len(missing)} backbone tensors, e.g. {missing[0]!r}; is it the same architecture?")
    for key, value in wanted.items():
        if value.shape != own[key].shape:
            raise TlganError(f"{path}: backbone tensor {key!r} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}")
    net.backbone.load_state_dict(wanted)
    return len(wanted)
