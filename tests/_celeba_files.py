"""Test helper: a tiny CelebA-format folder with planted attributes.

178 x 218 JPEGs in img_align_celeba/, list_attr_celeba.txt (count line, names
line, ``file +-1 ...``) and list_eval_partition.txt, as in the real download.
Each attribute is an independent coin flip drawn inside the original crop
region (128 x 128 centred at (89, 121)) on a random smooth background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ATTRIBUTES = ("Red_Patch", "Bright_Top", "Stripes", "Blue_Tint")
LEFT, TOP, SIDE = 25, 57, 128  # the original crop box


def planted_image(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """One 218 x 178 x 3 uint8 image with the attributes ``labels`` (+-1 per ATTRIBUTES entry) planted."""
    coarse = rng.uniform(70, 170, (4, 4, 3))
    image = np.kron(coarse, np.ones((55, 45, 1)))[:218, :178] + rng.normal(0, 10, (218, 178, 3))
    crop = image[TOP:TOP + SIDE, LEFT:LEFT + SIDE]  # a view: drawing on it draws on the image
    if labels[0] > 0:
        y, x = rng.integers(8, SIDE - 40, 2)
        crop[y:y + 32, x:x + 32] = (230, 30, 30)
    if labels[1] > 0:
        crop[: SIDE // 2] += 60
    if labels[2] > 0:
        rows = np.arange(SIDE)
        crop += (40 * np.sign(np.sin(2 * np.pi * rows / 16)))[:, None, None]
    if labels[3] > 0:
        image[..., 2] += 50
        image[..., 0] -= 20
    return np.clip(image, 0, 255).astype(np.uint8)


def make_celeba(root: Path, count: int = 900, seed: int = 0, splits: tuple[int, int] = (700, 800)) -> np.ndarray:
    """Write the folder; returns the labels (count, 4) in {-1, 1}. Rows < splits[0] train, < splits[1] val, rest test."""
    rng = np.random.default_rng(seed)
    images = root / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    labels = np.where(rng.random((count, len(ATTRIBUTES))) < 0.5, 1, -1)
    names = [f"{i + 1:06d}.jpg" for i in range(count)]
    for name, row in zip(names, labels):
        Image.fromarray(planted_image(rng, row)).save(images / name, quality=90)
    lines = [str(count), " ".join(ATTRIBUTES)] + [f"{n} " + " ".join(f"{v:2d}" for v in row) for n, row in zip(names, labels)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    partition = [0 if i < splits[0] else 1 if i < splits[1] else 2 for i in range(count)]
    (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partition)))
    return labels
