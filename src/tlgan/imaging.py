"""Turning generator output into pictures: PIL images, PNG/WebP bytes, strips and grids."""

from __future__ import annotations

import io
from typing import Sequence

import torch
from PIL import Image

from .errors import TlganError

FORMATS = {"png": "PNG", "webp": "WEBP"}


def to_pil(image: torch.Tensor, size: int | None = None) -> Image.Image:
    """(3, H, W) RGB in [-1, 1] -> PIL RGB image, optionally scaled to ``size`` px square (bicubic)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise TlganError(f"image must have shape (3, H, W), got {tuple(image.shape)}")
    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pil = Image.fromarray(pixels.permute(1, 2, 0).numpy(), "RGB")
    if size and size != pil.width:
        pil = pil.resize((size, size), Image.Resampling.BICUBIC)
    return pil


def encode(pil: Image.Image, fmt: str = "png") -> bytes:
    """PNG or WebP (lossless) bytes of a PIL image."""
    if fmt not in FORMATS:
        raise TlganError(f"image format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    buffer = io.BytesIO()
    options = {"lossless": True, "quality": 80, "method": 0} if fmt == "webp" else {"compress_level": 1}
    pil.save(buffer, FORMATS[fmt], **options)
    return buffer.getvalue()


def grid(images: Sequence[torch.Tensor], columns: int | None = None, size: int | None = None, pad: int = 2) -> Image.Image:
    """Tile images (each (3, H, W) in [-1, 1]) into one picture, row-major, ``columns`` per row."""
    if not images:
        raise TlganError("no images to tile")
    tiles = [to_pil(im, size) for im in images]
    columns = columns or len(tiles)
    rows = (len(tiles) + columns - 1) // columns
    w, h = tiles[0].size
    canvas = Image.new("RGB", (columns * (w + pad) - pad, rows * (h + pad) - pad), "white")
    for i, tile in enumerate(tiles):
        canvas.paste(tile, ((i % columns) * (w + pad), (i // columns) * (h + pad)))
    return canvas


def save_image(pil: Image.Image, path: str) -> None:
    """Save atomically; the format follows the extension (.png, .webp, .jpg)."""
    from pathlib import Path

    from .atomic import atomic_path

    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"png": "PNG", "webp": "WEBP", "jpg": "JPEG", "jpeg": "JPEG"}.get(suffix)
    if fmt is None:
        raise TlganError(f"output must end in .png, .webp or .jpg: {path}")
    with atomic_path(path) as tmp:
        pil.save(tmp, fmt)
