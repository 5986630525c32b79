"""Detection: the faces in a photo (MTCNN), largest first, and the one a user picked.

Coordinates are the photo's pixels (x right, y down). Huge photos are detected on a
shrunk copy, so memory stays bounded; the boxes and landmarks are mapped back.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from tlgan.errors import TlganError
from tlgan.models.extractors.mtcnn import MTCNN, Face

def find_faces(photo: Image.Image, detector: MTCNN) -> list[Face]:
    """Faces in an RGB photo, largest first, in the photo's pixels. Huge photos are shrunk (Pillow, box filter)
    to the detector's ``max_side`` before any float copy is made, so memory stays bounded."""
    width, height = photo.size
    shrink = max(width, height) / detector.max_side
    small = photo
    if shrink > 1:
        small = photo.resize((max(12, round(width / shrink)), max(12, round(height / shrink))), Image.Resampling.BOX)
    pixels = torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1)
    faces = detector.detect(pixels)
    sx, sy = width / small.width, height / small.height
    if (sx, sy) == (1.0, 1.0):
        return faces
    return [Face((f.box[0] * sx, f.box[1] * sy, f.box[2] * sx, f.box[3] * sy), f.score,
                 tuple((x * sx, y * sy) for x, y in f.points)) for f in faces]

def pick_face(faces: list[Face], index: int | None, label: str = "photo") -> Face:
    """The face to use: ``index`` into the largest-first list (default 0, the largest)."""
    if not faces:
        raise TlganError(f"no face found in {label}")
    index = 0 if index is None else index
    if not 0 <= index < len(faces):
        raise TlganError(f"--face {index} asked for, but {label} has {len(faces)} face(s) (0..{len(faces) - 1}, largest first)")
    return faces[index]

