"""What tlgan needs from a feature extractor, and how several combine into one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tlgan.errors import TlganError

Kind = Literal["probability", "tanh", "real"]
KINDS: tuple[str, ...] = ("probability", "tanh", "real")
# person: who the face looks like (age, gender); taught: knobs from user labels
GROUPS: tuple[str, ...] = ("person", "expression", "pose", "lighting and colour", "other", "taught")


@dataclass(frozen=True)
class Feature:
    """One scalar an extractor reads off an image.

    kind: 'probability' (in [0, 1]; fitted in logit space), 'tanh' (in [-1, 1];
    fitted in arctanh space) or 'real' (fitted as is).
    group: where the web app shows the knob (one of GROUPS).
    """

    name: str
    kind: Kind = "real"
    group: str = "other"
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature kind must be one of {KINDS}, got {self.kind!r}")


class Extractor(nn.Module):
    """F: images (N, 3, H, W) RGB in [-1, 1] -> features (N, len(features)) float32.

    Subclasses set ``name``, ``identity`` (name plus weights hash) and
    ``features``, and implement ``forward``. An extractor resizes its input
    itself when it needs a fixed size. ``autocast_dtypes`` lists the reduced
    precisions its readings tolerate (the pipeline runs it in float32 under
    any other). ``differentiable`` is False for extractors that give no
    gradients (ONNX): exact edits refuse them with a clear message.
    ``softmax_groups`` lists feature columns that are classes of one softmax
    (they sum to 1); ``scores`` gives their pre-softmax scores, which exact
    edits read so that classes of one softmax can be held together.
    ``jitter``: exact edits read this extractor as the mean over small seeded
    image jitters (shift, scale, blur, noise), so that a path cannot satisfy
    it with a pattern that fools only the network; False for extractors whose
    readings are pixel statistics (nothing to fool) or exact pixel codes, and
    for the age/gender network (too heavy to read four times per step).
    ``heavy``
    marks an extractor that costs far more per image than the others (the
    age/gender WideResNet: ~6 GMAC per face): per-step perceptual terms (photo
    inversion) leave it out when lighter parts remain (``without_heavy``).
    """

    name: str = "extractor"
    identity: str = ""
    features: tuple[Feature, ...] = ()
    autocast_dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)
    differentiable: bool = True
    softmax_groups: tuple[tuple[int, ...], ...] = ()
    jitter: bool = True
    heavy: bool = False

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """(N, F) like ``forward``, but the columns of each softmax group hold the pre-softmax scores.

        Default: ``forward`` (an extractor without softmax groups, or one that cannot give its scores).
        """
        return self(images)


class CombinedExtractor(Extractor):
    """Several extractors run on the same images, outputs concatenated in order."""

    def __init__(self, parts: Sequence[Extractor]) -> None:
        super().__init__()
        if not parts:
            raise TlganError("no extractors given")
        self.parts = nn.ModuleList(parts)
        self.name = ",".join(p.name for p in parts)
        self.identity = ",".join(p.identity for p in parts)
        self.features = tuple(f for p in parts for f in p.features)
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise TlganError(f"extractors give the same feature name twice: {', '.join(dupes)}")
        offsets = [sum(len(q.features) for q in parts[:i]) for i in range(len(parts))]
        self.softmax_groups = tuple(tuple(o + c for c in group) for p, o in zip(parts, offsets)
                                    for group in p.softmax_groups)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([p(images) for p in self.parts], dim=1)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([p.scores(images) for p in self.parts], dim=1)


def without_heavy(extractor: Extractor) -> Extractor:
    """``extractor`` less its parts marked ``heavy``, if any lighter part remains (else ``extractor`` itself)."""
    parts = list(extractor.parts) if isinstance(extractor, CombinedExtractor) else [extractor]
    light = [p for p in parts if not p.heavy]
    if not light or len(light) == len(parts):
        return extractor
    return light[0] if len(light) == 1 else CombinedExtractor(light)


def resize(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize (N, C, H, W) to ``size`` with anti-aliased bilinear filtering; no-op if already that size."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luma with ITU-R 601 weights (what fer's model was trained on)."""
    r, g, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def check_images(images: torch.Tensor) -> None:
    """Raise TlganError unless ``images`` is a floating-point (N, 3, H, W) tensor (values are not checked)."""
    if not isinstance(images, torch.Tensor):
        raise TlganError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise TlganError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TlganError(f"images must be floating point in [-1, 1], got {images.dtype}")
