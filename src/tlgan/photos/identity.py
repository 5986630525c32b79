"""Who the photo shows, as a loss: dlib's face descriptor of the reconstruction against the photo's.

Both sides are cut from the generator's frame with the layout's five points (the
alignment put the photo's landmarks there), so no landmark finder runs inside
the loss. The photo's descriptor comes from the aligned crop sampled at
``TARGET_SCALE`` times the generator's resolution (its real detail, not the 64 px
crop); the reconstruction's from the rendering. dlib calls two faces the same
person below 0.6; the best a 64 px image of a real face can reach is about 0.16.
"""

from __future__ import annotations

from typing import Callable

import torch
from PIL import Image

from tlgan.models.extractors.identity import IdentityModel

from .align import Layout, warp_face

TARGET_SCALE = 4   # the photo's chip is cut from an aligned crop at 4x the generator's resolution


def frame_descriptor(model: IdentityModel, layout: Layout) -> Callable[[torch.Tensor], torch.Tensor]:
    """Images (N, 3, R, R) in [-1, 1] in the generator's frame -> descriptors (N, 128), differentiable."""
    points = layout.tensor().float()

    def describe(images: torch.Tensor) -> torch.Tensor:
        return model.read(images, points[None].expand(len(images), -1, -1)).descriptors

    return describe


@torch.no_grad()
def photo_descriptor(model: IdentityModel, photo: Image.Image, m: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The photo's descriptor (128,): its face aligned by ``m`` (photo -> generator pixels), at TARGET_SCALE x."""
    scale = torch.tensor([[TARGET_SCALE, 0, 0], [0, TARGET_SCALE, 0]], dtype=torch.float64)
    crop = warp_face(photo, scale @ torch.cat([m.double(), torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)]),
                     layout.resolution * TARGET_SCALE)
    points = (layout.tensor() * TARGET_SCALE).float()
    return model.read(crop[None].to(model.device), points[None]).descriptors[0]
