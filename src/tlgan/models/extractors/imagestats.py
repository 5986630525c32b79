"""Global brightness, contrast and colour statistics of an image: no weights, nearly free.

All values use pixel intensities in [0, 1] (the [-1, 1] image mapped by (x + 1)/2)
and ITU-R 601 luma. Regions: the *border* is the band within 1/8 of the image
size from any edge (mostly background on centred faces); the *centre* is the
middle square from 1/4 to 3/4 of each side (mostly face).
"""

from __future__ import annotations

import torch

from tlgan.errors import TlganError

from .base import Extractor, Feature, check_images, to_gray

_GROUP = "lighting and colour"
FEATURES = (
    Feature("brightness", "real", _GROUP, "mean luma of the whole image, 0 (black) to 1 (white)"),
    Feature("contrast", "real", _GROUP, "standard deviation of luma over the whole image"),
    Feature("saturation", "real", _GROUP, "mean chroma: per-pixel max minus min of R, G, B, averaged"),
    Feature("warmth", "real", _GROUP, "mean red minus mean blue; positive for warm (orange) light, negative for cool"),
    Feature("centre_vs_background", "real", _GROUP,
            "mean luma of the central square minus mean luma of the border band (face lit brighter than surroundings)"),
    Feature("background", "real", _GROUP, "mean luma of the border band (within 1/8 of the size from the edges)"),
)


def regions(height: int, width: int) -> tuple[slice, slice, slice, slice]:
    """(centre rows, centre cols, inner rows, inner cols): the border band is everything outside 'inner'."""
    bh, bw = max(1, height // 8), max(1, width // 8)
    ch0, cw0 = height // 4, width // 4
    return (slice(ch0, height - ch0), slice(cw0, width - cw0), slice(bh, height - bh), slice(bw, width - bw))


def image_stats(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 6) statistics in FEATURES order (float32)."""
    x = (images.float() + 1) * 0.5
    n, _, height, width = x.shape
    luma = to_gray(x)[:, 0]                                   # (N, H, W)
    brightness = luma.mean(dim=(1, 2))
    contrast = luma.std(dim=(1, 2), unbiased=False)
    chroma = x.amax(dim=1) - x.amin(dim=1)
    saturation = chroma.mean(dim=(1, 2))
    warmth = (x[:, 0] - x[:, 2]).mean(dim=(1, 2))
    rows, cols, inner_rows, inner_cols = regions(height, width)
    centre = luma[:, rows, cols].mean(dim=(1, 2))
    inner = luma[:, inner_rows, inner_cols]
    border_count = height * width - inner.shape[1] * inner.shape[2]
    if border_count > 0:
        background = (luma.sum(dim=(1, 2)) - inner.sum(dim=(1, 2))) / border_count
    else:  # images too small for a border band: the whole image is the background
        background = brightness
    return torch.stack([brightness, contrast, saturation, warmth, centre - background, background], dim=1)


class ImageStats(Extractor):
    """images (N, 3, H, W) in [-1, 1] -> (N, 6) global image statistics."""

    name = "imagestats"
    identity = "imagestats:v1"
    features = FEATURES
    jitter = False  # global pixel statistics: no pattern to fool, and exact edits save the extra passes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        return image_stats(images)


def load_imagestats(arg: str | None = None, device: torch.device | str = "cpu") -> ImageStats:
    """The image-statistics extractor; it has no weights, so ``arg`` must be empty."""
    if arg:
        raise TlganError(f"imagestats takes no argument (got '{arg}')")
    return ImageStats().eval().to(device)
