"""Turning CelebA-format image files into training tensors: crop, resize, cache.

Crop policy: images already cropped by ``ingest_celeba`` are used whole;
aligned CelebA images (178 x 218) get the original TL-GAN crop, 128 x 128
centred at (89, 121); any other size gets its central square. The crop is
then resized (anti-aliased) to the network's input size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from tlgan.errors import TlganError

from .celeba import CelebaIndex

ALIGNED_SIZE = (178, 218)  # width, height of img_align_celeba
ORIGINAL_CROP = (89, 121, 128)  # centre x, centre y, side: what TL-GAN trained its CNN on


def crop_box(width: int, height: int, already_cropped: bool) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the region to use (crop policy in the module docstring)."""
    if already_cropped:
        return 0, 0, width, height
    if (width, height) == ALIGNED_SIZE:
        cx, cy, side = ORIGINAL_CROP
        return cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def load_image(path: Path, size: int, already_cropped: bool) -> np.ndarray:
    """One image as uint8 (3, size, size) RGB after crop and anti-aliased resize."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            region = image.crop(crop_box(image.width, image.height, already_cropped))
            if region.size != (size, size):
                region = region.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
            return np.asarray(region, dtype=np.uint8).transpose(2, 0, 1).copy()
    except (OSError, UnidentifiedImageError) as exc:
        raise TlganError(f"cannot read image {path}: {exc}") from None


def to_model_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float (N, 3, H, W) in [-1, 1], tlgan's image convention."""
    return pixels.float() / 127.5 - 1.0


class ImageSet(torch.utils.data.Dataset):
    """Rows ``rows`` of a CelebaIndex as (uint8 image (3, S, S), labels (K,) float 0/1)."""

    def __init__(self, index: CelebaIndex, rows: np.ndarray, size: int) -> None:
        self.index, self.rows, self.size = index, np.asarray(rows), size
        self.cropped = bool(index.manifest.get("cropped", False))
        self.targets = torch.from_numpy((index.labels[self.rows] > 0).astype(np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = load_image(self.index.path(int(self.rows[i])), self.size, self.cropped)
        return torch.from_numpy(image), self.targets[i]


def cache_images(dataset: ImageSet, workers: int = 0, progress: bool = False) -> torch.Tensor:
    """All images of ``dataset`` decoded once into uint8 (N, 3, S, S)."""
    from tqdm import tqdm

    out = torch.empty(len(dataset), 3, dataset.size, dataset.size, dtype=torch.uint8)
    loader = torch.utils.data.DataLoader(dataset, batch_size=256, num_workers=workers)
    start = 0
    for images, _ in tqdm(loader, desc="decoding images", unit="batch", disable=not progress, leave=False):
        out[start:start + len(images)] = images
        start += len(images)
    return out
