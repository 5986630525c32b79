"""A photo end to end: find the face, align it, invert it into a latent file, and paste an edited face back.

The front ends (``tlgan invert`` / ``tlgan edit --paste-into``, the web app's
photo panel) call these two functions; all the work is in the stage modules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.extractors.mtcnn import MTCNN, Face
from tlgan.models.generators import Generator

from .align import Layout, alignment, compose, face_layout, warp_face
from .detect import find_faces, pick_face
from .invert import Inversion, invert, psnr, warp_matrix
from .latentfile import LatentFile
from .paste import face_mask, paste_back
from .photofile import Photo

FACE_WEIGHT = 0.8   # share of the pixel loss on the face mask (the rest on the whole crop, background included)


@dataclass
class PhotoInversion:
    """The result of inverting a photo: the latent file, the aligned crop (3, R, R) and the inversion itself."""

    latent_file: LatentFile
    crop: torch.Tensor
    inversion: Inversion
    face: Face
    faces: int


def pixel_hash(image: Image.Image) -> str:
    """Short SHA-256 of an RGB image's size and pixels: which photo a latent file belongs to."""
    digest = hashlib.sha256(f"{image.width}x{image.height}".encode())
    digest.update(np.asarray(image.convert("RGB")).tobytes())
    return digest.hexdigest()[:16]


def loss_weight(layout: Layout) -> torch.Tensor:
    """(R, R) pixel-loss weights: mostly on the face (the soft paste mask), some on everything."""
    res = layout.resolution
    centres = torch.arange(res, dtype=torch.float64) + 0.5
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    mask = face_mask(torch.stack([u, v], dim=-1), layout).float()
    return (1 - FACE_WEIGHT) + FACE_WEIGHT * mask


def invert_photo(photo: Photo, generator: Generator, detector: MTCNN, extractor: Extractor | None, *,
                 face: int | None = None, space: str = "z", steps: int = 500, seed: int = 0, candidates: int = 1024,
                 starts: int = 8, layout: Layout | None = None,
                 progress: bool | Callable[[int, int, float], None] = False) -> PhotoInversion:
    """Detect (largest face, or ``face``-th largest), align onto the generator's layout, and invert
    (``starts`` candidates searched together; the alignment refined with the latent)."""
    faces = find_faces(photo.image, detector)
    chosen = pick_face(faces, face, photo.name)
    layout = layout or face_layout(generator, detector)
    if layout.resolution != generator.resolution:
        raise TlganError(f"layout is for {layout.resolution} px but the generator renders {generator.resolution} px")
    m = alignment(chosen, layout)
    crop = warp_face(photo.image, m, generator.resolution)
    weight = loss_weight(layout)
    result = invert(generator, crop, space=space, steps=steps, seed=seed, candidates=candidates, extractor=extractor,
                    weight=weight, progress=progress, starts=starts, refine_alignment=True)
    if result.warp_params is not None:
        # The five landmarks place a face only roughly where the generator would: the inversion also fitted the
        # small similarity that maps the crop onto the rendering. Folding it into the alignment makes the
        # rendering itself the aligned face, so knob values, the crop and the paste-back all agree.
        m = compose(warp_matrix(result.warp_params, generator.resolution), m)
        crop = warp_face(photo.image, m, generator.resolution)
        result.psnr = psnr(result.image, crop, weight)
    width, height = photo.size
    latent_file = LatentFile(
        generator=generator.identity, resolution=generator.resolution, space=space, latent=result.latent,
        quality=result.quality(),
        photo={"name": photo.name.rsplit("/", 1)[-1], "width": width, "height": height, "sha256": pixel_hash(photo.image),
               "face": 0 if face is None else face, "faces": len(faces),
               "box": [round(v, 3) for v in chosen.box], "landmarks": [[round(x, 3), round(y, 3)] for x, y in chosen.points]},
        alignment={"matrix": [[float(v) for v in row] for row in m.tolist()],
                   "layout": [list(p) for p in layout.points], "layout_faces": layout.faces,
                   "detector": detector.identity})
    return PhotoInversion(latent_file, crop, result, chosen, len(faces))


def layout_of(latent_file: LatentFile) -> Layout:
    """The layout a latent file was aligned with (stored in it), for the paste-back mask."""
    if not latent_file.alignment:
        raise TlganError("this latent file has no alignment (it was not made from a photo): cannot paste it back")
    points = tuple(tuple(float(c) for c in p) for p in latent_file.alignment.get("layout", ()))
    if len(points) != 5:
        raise TlganError("latent file's alignment has no 5-point layout")
    return Layout(points, latent_file.resolution, latent_file.generator, str(latent_file.alignment.get("detector", "")),
                  int(latent_file.alignment.get("layout_faces", 0)), 1.0)


def paste_into(photo: Photo, latent_file: LatentFile, face: torch.Tensor) -> tuple[Image.Image, list[str]]:
    """The photo with ``face`` (3, R, R) blended in where the latent file's face was; same size as the photo.

    Returns (image, warnings): a different photo of the same size is pasted into with a warning; a
    different size is an error.
    """
    info = latent_file.photo or {}
    width, height = photo.size
    if info and (info.get("width"), info.get("height")) != (width, height):
        raise TlganError(f"the latent file was made from a {info.get('width')}x{info.get('height')} photo, "
                         f"but {photo.name} is {width}x{height} (after EXIF rotation)")
    warnings = []
    if info.get("sha256") and info["sha256"] != pixel_hash(photo.image):
        warnings.append(f"{photo.name} is not the photo the latent was made from (pixels differ); pasting anyway")
    return paste_back(photo.image, face, latent_file.matrix(), layout_of(latent_file)), warnings
