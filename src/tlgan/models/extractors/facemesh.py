"""The mouth and eyes from MediaPipe's 468-point face mesh: where a smile's corners are, how open the mouth is.

MTCNN's five points (landmarks.py) have the mouth's corners but no lip middle,
so they cannot tell a smile's lifted corners from a wider mouth. MediaPipe's
face-landmark network does: ``face_landmark.tflite`` from PyPI
``mediapipe==0.10.21`` (Apache-2.0; the last wheel that ships its models; the
package itself is never imported), read by ``formats.tflite_file`` and run by
``TfliteGraph``. It takes a 192x192 RGB face crop in [0, 1] and gives 468
(x, y, z) points in crop pixels, plus a face-presence logit. On our port the
points agree with Google's own runtime (LiteRT) to 1e-4 px.

The crop is fixed, like the ONet crop: CROP of the image (it reaches past the
edges, which are repeated), bilinearly resampled to 192x192. On 23 default
faces this placement put the mouth corners 1.1 px (of 64) from dlib's 68-point
ones, against 2.2 px for the whole picture and 2.9 for ONet's tighter crop.

Readings, in inter-ocular distances (eye centres from the four eye corners):
``mouth_lift``, the lip middle's height below the corners (dlib's 68-point
definition: > 0 when the corners sit above it, as in a smile); ``mouth_open``,
the gap between the inner lips; ``eyes_open``, the mean gap between the eyelids.
Each is the mean of the face's and its mirror image's reading. Differentiable
through the crop, so exact edits can follow them.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from tlgan.assets import file_hash, package_file
from tlgan.errors import TlganError
from tlgan.models.formats.tflite_file import read_tflite

from .base import Extractor, Feature, check_images
from .tflite_graph import TfliteGraph

MESH_FILE = "modules/face_landmark/face_landmark.tflite"
MESH_SIZE = 192
CROP = (-2 / 64, 2 / 64, 66 / 64, 70 / 64)   # (left, top, right, bottom) fractions of the image

# Mesh indices (image left/right as seen): eye corners, mouth corners, lip middles, eyelid middles.
EYE_LEFT, EYE_RIGHT = (33, 133), (362, 263)
MOUTH_CORNERS = (61, 291)
LIP_MIDDLE = (0, 13, 14, 17)          # upper outer, upper inner, lower inner, lower outer
INNER_LIPS = (13, 14)
EYELIDS = ((159, 145), (386, 374))    # (upper, lower) of each eye

_GROUP = "expression"
FEATURES = (
    Feature("mouth_lift", "real", _GROUP, "height of the mouth corners above the lips' middle (a smile's curve), "
            "per inter-ocular distance, from MediaPipe's face mesh"),
    Feature("mouth_open", "real", _GROUP, "gap between the inner lips per inter-ocular distance (face mesh)"),
    Feature("eyes_open", "real", _GROUP, "mean gap between the eyelids per inter-ocular distance (face mesh)"),
)

# Their spread (SD over 512 default faces, in inter-ocular distances): the unit in which exact edits read them.
SPREAD = (0.047, 0.080, 0.027)


def crop_grid(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sampling grid (n, 192, 192, 2) of CROP for ``F.grid_sample`` (align_corners False)."""
    left, top, right, bottom = CROP
    theta = torch.tensor([[right - left, 0.0, left + right - 1], [0.0, bottom - top, top + bottom - 1]],
                         device=device, dtype=dtype)
    return F.affine_grid(theta.expand(n, 2, 3), [n, 3, MESH_SIZE, MESH_SIZE], align_corners=False)


def mesh_geometry(points: torch.Tensor) -> torch.Tensor:
    """Readings (N, 3) in FEATURES order from mesh points (N, 468, 2) (x, y in any one unit, y down)."""
    eye_l = points[:, list(EYE_LEFT)].mean(1)
    eye_r = points[:, list(EYE_RIGHT)].mean(1)
    iod = (eye_r - eye_l).norm(dim=1).clamp_min(1e-6)
    corners = points[:, list(MOUTH_CORNERS), 1].mean(1)
    middle = points[:, list(LIP_MIDDLE), 1].mean(1)
    lift = (middle - corners) / iod
    opened = (points[:, INNER_LIPS[1]] - points[:, INNER_LIPS[0]]).norm(dim=1) / iod
    eyes = sum((points[:, lo] - points[:, up]).norm(dim=1) for up, lo in EYELIDS) / (2 * iod)
    return torch.stack([lift, opened, eyes], dim=1)


class FaceMeshExtractor(Extractor):
    """images (N, 3, H, W) in [-1, 1] -> (N, 3) in FEATURES order."""

    name = "facemesh"
    features = FEATURES

    def __init__(self, mesh: TfliteGraph, weights_hash: str) -> None:
        super().__init__()
        self.mesh = mesh
        self.identity = f"facemesh:{weights_hash}"

    def detect(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mesh on the fixed crop: (points (N, 468, 2) pixel (x, y) on the image, face logit (N,))."""
        check_images(images)
        n, (height, width) = images.shape[0], images.shape[-2:]
        rgb = ((images.float() + 1) / 2).clamp(0, 1)
        crop = F.grid_sample(rgb, crop_grid(n, rgb.device, rgb.dtype), mode="bilinear", padding_mode="border",
                             align_corners=False)
        coords, logit = self.mesh(crop.permute(0, 2, 3, 1))
        xy = coords.reshape(n, -1, 3)[..., :2] / MESH_SIZE
        left, top, right, bottom = CROP
        scale = torch.tensor([(right - left) * width, (bottom - top) * height], device=xy.device)
        points = xy * scale + torch.tensor([left * width, top * height], device=xy.device)
        return points, logit.reshape(n)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # The readings do not change when the face is mirrored, so the mesh also reads the mirrored picture and the
        # two are averaged: exactly mirror-symmetric readings with less of the network's noise (on 16 default
        # faces one pass read a mirrored face 0.14 SD (lift) to 0.49 SD (eyes) away from the face itself).
        points, _ = self.detect(torch.cat([images, images.flip(-1)]))
        readings = mesh_geometry(points)
        return ((readings[: len(images)] + readings[len(images):]) / 2).float()


def load_facemesh(arg: str | None = None, device: torch.device | str = "cpu") -> FaceMeshExtractor:
    """MediaPipe's face mesh from the mediapipe wheel (or a face_landmark.tflite file given as ``arg``)."""
    path = Path(arg) if arg else package_file("mediapipe", MESH_FILE)
    model = read_tflite(path)
    shapes = [model.shapes[i] for i in (*model.inputs, *model.outputs)]
    if shapes != [(1, MESH_SIZE, MESH_SIZE, 3), (1, 1, 1, 468 * 3), (1, 1, 1, 1)]:
        raise TlganError(f"{path}: not MediaPipe's face mesh (input and outputs {shapes}; expected a 192x192 "
                         "RGB input, 468 x 3 points and a face logit)")
    extractor = FaceMeshExtractor(TfliteGraph(model), file_hash(path))
    return extractor.eval().requires_grad_(False).to(device)
