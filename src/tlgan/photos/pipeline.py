"""A photo end to end: find the face, align it, invert it into a latent file, tune the generator around it, and
paste an edited face back.

The front ends (``tlgan invert`` / ``tlgan edit --latent --paste-into``, the web app's photo panel) call
``invert_photo``, ``tune_photo``, ``load_photo_latent`` and ``paste_into``; the work is in the stage modules.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

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
from .tune import Tuning, TuneSettings, apply_delta, tune
from .tunefile import TuningFile, check_tuning, load_tuning_file, make_tuning_file, save_tuning_file, tuning_path

FACE_WEIGHT = 0.8       # share of the pixel loss on the face mask (the rest on the whole crop, background included)
IDENTITY_WEIGHT = 0.01  # of the identity distance in the inversion, when an identity model is given
TUNE_IDENTITY_WEIGHT = 0.003  # of the identity distance in pivotal tuning (benchmarks/identity_weight.py)


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
                 progress: bool | Callable[[int, int, float], None] = False, identity_model: Any = None,
                 identity_weight: float = IDENTITY_WEIGHT) -> PhotoInversion:
    """Detect (largest face, or ``face``-th largest), align onto the generator's layout, and invert
    (``starts`` candidates searched together; the alignment refined with the latent). ``identity_model``
    (``tlgan.models.extractors.identity``) adds the identity distance to the photo's face, weighted by
    ``identity_weight``."""
    faces = find_faces(photo.image, detector)
    chosen = pick_face(faces, face, photo.name)
    layout = layout or face_layout(generator, detector)
    if layout.resolution != generator.resolution:
        raise TlganError(f"layout is for {layout.resolution} px but the generator renders {generator.resolution} px")
    m = alignment(chosen, layout)
    crop = warp_face(photo.image, m, generator.resolution)
    weight = loss_weight(layout)
    describe = target_id = None
    if identity_model is not None and identity_weight > 0:
        from .identity import frame_descriptor, photo_descriptor

        describe, target_id = frame_descriptor(identity_model, layout), photo_descriptor(identity_model, photo.image, m, layout)
    result = invert(generator, crop, space=space, steps=steps, seed=seed, candidates=candidates, extractor=extractor,
                    weight=weight, progress=progress, starts=starts, refine_alignment=True, identity=describe,
                    identity_target=target_id, identity_weight=identity_weight)
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


def tune_photo(photo: Photo, latent_file: LatentFile, generator: Generator, extractor: Extractor | None, *,
               settings: TuneSettings | None = None, identity_model: Any = None,
               progress: bool | Callable[[int, int, float], None] = False) -> tuple[Tuning, TuningFile]:
    """Pivotal tuning for an inverted photo: a copy of ``generator`` tuned so that the latent file's latent renders
    the photo's aligned crop (with the identity term when ``identity_model`` is given). Returns the tuning (its
    ``generator`` is the tuned copy) and the file to save beside the latent file."""
    settings = settings or TuneSettings(identity_weight=TUNE_IDENTITY_WEIGHT if identity_model is not None else 0.0)
    if identity_model is None and settings.identity_weight > 0:
        settings = replace(settings, identity_weight=0.0)
    layout = layout_of(latent_file)
    m = latent_file.matrix()
    crop = warp_face(photo.image, m, generator.resolution)
    describe = target_id = None
    if identity_model is not None and settings.identity_weight > 0:
        from .identity import frame_descriptor, photo_descriptor

        describe, target_id = frame_descriptor(identity_model, layout), photo_descriptor(identity_model, photo.image, m, layout)
    result = tune(generator, latent_file.latent, crop, space=latent_file.space, settings=settings,
                  weight=loss_weight(layout), extractor=extractor, identity=describe, identity_target=target_id,
                  progress=progress)
    file = make_tuning_file(result.delta, generator, latent_file.space, latent_file.latent, pixel_hash(photo.image),
                            settings.to_json(), result.quality())
    return result, file


def save_photo_files(latent_path: str | Path, latent_file: LatentFile, tuning: TuningFile | None) -> LatentFile:
    """Write the latent file and, when tuned, its tuning file beside it (each atomically; the tuning file first,
    so a latent file never names a tuning file that is not there). Returns the latent file as written."""
    from .latentfile import save_latent_file

    latent_path = Path(latent_path)
    if tuning is not None:
        path = tuning_path(latent_path)
        digest = save_tuning_file(path, tuning)
        latent_file = replace(latent_file, tuning={"file": path.name, "sha256": digest})
    else:
        latent_file = replace(latent_file, tuning=None)
        stale = tuning_path(latent_path)
        if latent_path.suffix.lower() == ".json" and stale.is_file():
            stale.unlink()   # an older tuning of this name belongs to a latent that is being replaced
    save_latent_file(latent_path, latent_file)
    return latent_file


def tuned_generator(latent_file: LatentFile, generator: Generator, tuning: TuningFile, label: str = "tuning file") -> Generator:
    """``generator`` with the latent file's tuning applied (checked against both), weights computed once."""
    base = getattr(generator, "base", None)
    if isinstance(base, torch.nn.Module):
        # A view of a generator in another latent space (tlgan.sampling.spaces): tune the generator it shows.
        check_tuning(tuning, base, None, label)
        view = copy.copy(generator)
        view._modules = dict(generator._modules)
        view.base = apply_delta(base, tuning.delta)
        return view
    check_tuning(tuning, generator, latent_file.latent, label)
    return apply_delta(generator, tuning.delta)


def load_photo_latent(path: str | Path, generator: Generator, tune: bool = True) -> tuple[LatentFile, Generator, list[str]]:
    """A latent file and the generator to edit it with: the tuned copy when the file names a tuning file beside it
    (and ``tune``), else ``generator`` itself. A tuning file that is missing gives a warning (the untuned latent
    is used); one that is corrupt or made for another generator, latent or photo is a one-line TlganError."""
    from .latentfile import load_latent_file

    path = Path(path)
    latent_file = load_latent_file(path)
    if not tune or not latent_file.tuning:
        return latent_file, generator, []
    tpath = path.with_name(latent_file.tuning["file"])
    if not tpath.is_file():
        return latent_file, generator, [f"tuning file {tpath} is missing: editing the untuned latent "
                                        "(the face will look less like the photo)"]
    tuning = load_tuning_file(tpath, latent_file.tuning["sha256"])
    return latent_file, tuned_generator(latent_file, generator, tuning, str(tpath)), []
