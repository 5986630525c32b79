"""The original TL-GAN feature CNN: 40 CelebA attributes as tanh scores.

``model_20180927_032934.h5`` is a Keras model: MobileNet v1 (alpha 1,
128x128 input, ImageNet weights, frozen) + global average pooling +
Dense(256, ReLU) 'fc1_dense' + Dense(40, tanh) 'fc2_dense', trained with MSE
on +-1 CelebA labels of 128x128 crops, input x/127.5 - 1.

TL-GAN labelled its 1024x1024 GAN images by taking every 8th pixel
(``[4::8, 4::8]``) of the 8-bit image. ``resample='subsample'`` (the default,
registry name ``celeba-cnn``) does exactly that (generalised to any size as
nearest pixel centres); ``resample='antialias'`` (``celeba-cnn-antialias``)
uses proper anti-aliased resizing instead, which aliases less but labels
differently from the original.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from tlgan.assets import file_hash
from tlgan.errors import TlganError
from tlgan.models.formats.keras_h5 import read_keras_h5

from .base import Extractor, Feature, resize
from .celeba_attributes import CELEBA_ATTRIBUTES, group_of
from .mobilenet import MobileNetV1, alpha_from_keras

Resample = Literal["subsample", "antialias"]


def subsample_indices(size: int, out: int) -> torch.Tensor:
    """Nearest-pixel-centre indices taking ``out`` of ``size`` pixels: 1024 -> 128 gives 4, 12, ..., 1020 (= [4::8])."""
    return ((torch.arange(out, dtype=torch.float64) + 0.5) * size / out).floor().long()


class CelebaCNN(Extractor):
    """MobileNet v1 + GAP + Dense(hidden, ReLU) + Dense(40, tanh): images (N, 3, H, W) in [-1, 1] -> (N, 40) in [-1, 1]."""

    name = "celeba-cnn"

    def __init__(self, alpha: float = 1.0, hidden: int = 256, outputs: int = 40, input_size: int = 128,
                 resample: Resample = "subsample") -> None:
        super().__init__()
        if resample not in ("subsample", "antialias"):
            raise TlganError(f"resample must be 'subsample' or 'antialias', got {resample!r}")
        self.backbone = MobileNetV1(alpha)
        self.fc1 = nn.Linear(self.backbone.out_channels, hidden)
        self.fc2 = nn.Linear(hidden, outputs)
        self.input_size, self.resample = input_size, resample
        self.features = tuple(
            Feature(n, "tanh", group_of(n), f"CelebA attribute '{n}' (TL-GAN feature CNN, tanh score)")
            for n in CELEBA_ATTRIBUTES
        )

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 3, S, S) as the network saw its inputs (S = input_size)."""
        size = self.input_size
        if self.resample == "antialias":
            return resize(images.clamp(-1, 1), size)
        # The original went through an 8-bit image: rint((x + 1) * 127.5), then x / 127.5 - 1.
        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round()
        rows = subsample_indices(images.shape[2], size).to(images.device)
        cols = subsample_indices(images.shape[3], size).to(images.device)
        return pixels[:, :, rows][:, :, :, cols] / 127.5 - 1

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Network on preprocessed input (N, 3, S, S) -> (N, outputs) tanh scores."""
        h = self.backbone(x).mean(dim=(2, 3))
        return torch.tanh(self.fc2(torch.relu(self.fc1(h))))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise TlganError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
        return self.scores(self.preprocess(images.to(self.fc1.weight.dtype))).float()


def load_celeba_cnn_file(path: str | Path, resample: Resample = "subsample") -> CelebaCNN:
    """Build the CNN from a Keras HDF5 file (full model or weights only), in eval mode without grads."""
    path = Path(path)
    keras = read_keras_h5(path)
    fc1 = keras.get("fc1_dense/kernel")
    fc2 = keras.get("fc2_dense/kernel")
    if fc2.ndim != 2 or fc2.shape[1] != len(CELEBA_ATTRIBUTES):
        raise TlganError(f"{path}: the output layer has shape {fc2.shape}; the TL-GAN CNN has 40 CelebA outputs")
    input_shape = keras.input_shape()
    input_size = int(input_shape[0]) if input_shape and input_shape[0] else 128
    model = CelebaCNN(alpha=alpha_from_keras(keras), hidden=fc1.shape[1], outputs=fc2.shape[1],
                      input_size=input_size, resample=resample)
    model.backbone.load_keras(keras)
    with torch.no_grad():
        model.fc1.weight.copy_(torch.from_numpy(keras.get("fc1_dense/kernel", (model.backbone.out_channels, fc1.shape[1]))).T)
        model.fc1.bias.copy_(torch.from_numpy(keras.get("fc1_dense/bias", (fc1.shape[1],))))
        model.fc2.weight.copy_(torch.from_numpy(fc2).T)
        model.fc2.bias.copy_(torch.from_numpy(keras.get("fc2_dense/bias", (fc2.shape[1],))))
    model.identity = f"celeba-cnn:{file_hash(path)}" + (":antialias" if resample == "antialias" else "")
    if resample == "antialias":
        model.name = "celeba-cnn-antialias"
    return model.eval().requires_grad_(False)


def load_celeba_cnn(path: str | None, device: torch.device | str = "cpu") -> CelebaCNN:
    """Registry loader for ``celeba-cnn:FILE.h5`` (original [4::8, 4::8]-style subsampling)."""
    if not path:
        raise TlganError("celeba-cnn needs the Keras file: celeba-cnn:model_20180927_032934.h5")
    return load_celeba_cnn_file(path, "subsample").to(device)


def load_celeba_cnn_antialias(path: str | None, device: torch.device | str = "cpu") -> CelebaCNN:
    """Registry loader for ``celeba-cnn-antialias:FILE.h5`` (anti-aliased resizing to 128x128)."""
    if not path:
        raise TlganError("celeba-cnn-antialias needs the Keras file: celeba-cnn-antialias:model_20180927_032934.h5")
    return load_celeba_cnn_file(path, "antialias").to(device)
