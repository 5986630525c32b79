"""Light and skin colour where the face is: CIE L*a*b* statistics inside a face region found by the landmarks.

The global image statistics (imagestats) average over the whole picture, so
"brightness held" can still move the light on the face while the background
compensates, and turning the head changes how much of the frame is skin. These
readings look only where the face is. MTCNN's ONet (landmarks.py) gives five
points; the face region is an ellipse centred between the eye midpoint and the
mouth midpoint, its axes along and across the eye line: half-width
FACE_HALF_WIDTH inter-ocular distances, half-height FACE_HALF_HEIGHT eye-to-mouth
distances (from above the eyes to below the mouth: cheeks, nose, mouth). The
surround is everything outside SURROUND times that ellipse (background, hair,
shoulders). Both masks have soft edges so readings are smooth in the image and
in the landmarks, which exact edits differentiate through.

Colours are converted from the generator's sRGB to CIE L*a*b* (D65), the space
in which skin-colour changes are measured (ΔE). The face region's mean L*, a*
and b* are three readings: locked together they hold the skin's colour and the
light on it while the pose or expression changes. (The dermatological skin-tone
angle ITA° = atan2(L* − 50, b*) was tried and left out: on these often dimly lit
faces b* is small and the angle swings with noise.)
"""

from __future__ import annotations

import math

import torch

from tlgan.errors import TlganError

from .base import Extractor, Feature, check_images
from .landmarks import LandmarkExtractor, load_landmarks

FACE_HALF_WIDTH = 0.85   # in inter-ocular distances: reaches the cheeks, not the ears
FACE_HALF_HEIGHT = 1.0   # in eye-to-mouth distances: from just above the eyes to just below the mouth
SURROUND = 1.8           # the surround starts at this multiple of the face ellipse
EDGE = 16.0              # sharpness of the soft mask edges: the mask goes 12% -> 88% over 1/8 of the ellipse radius

_GROUP = "lighting and colour"
FEATURES = (
    Feature("face_light", "real", _GROUP, "mean CIE L* (0 black to 100 white) inside the face region found by the landmarks"),
    Feature("face_red", "real", _GROUP, "mean CIE a* (green − to red +) of the face region: ruddy or pale skin"),
    Feature("face_yellow", "real", _GROUP, "mean CIE b* (blue − to yellow +) of the face region: golden or olive skin"),
    Feature("surround_light", "real", _GROUP, "mean CIE L* outside the head region (background, hair, shoulders)"),
)

# sRGB (D65) -> CIE XYZ, and the D65 white point.
_RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375),
               (0.2126729, 0.7151522, 0.0721750),
               (0.0193339, 0.1191920, 0.9503041))
_WHITE = (0.95047, 1.0, 1.08883)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB in [0, 1] -> (N, 3, H, W) CIE L*a*b* (D65); differentiable everywhere."""
    rgb = rgb.clamp(0, 1)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).clamp_min(1e-6) ** 2.4, rgb / 12.92)
    matrix = torch.tensor(_RGB_TO_XYZ, dtype=rgb.dtype, device=rgb.device)
    white = torch.tensor(_WHITE, dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,njhw->nihw", matrix, linear) / white[None, :, None, None]
    eps = (6 / 29) ** 3
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def face_ellipse_radius(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Squared normalised radius of every pixel centre in the face ellipse.

    points: (N, 5, 2) pixel (x, y) in MTCNN order; size: (height, width).
    Returns (N, H, W): 1 on the ellipse's edge, < 1 inside.
    """
    height, width = size
    eye_l, eye_r, _, mouth_l, mouth_r = points.unbind(dim=1)
    eyes, mouth = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    scale = 0.05 * math.sqrt(width * height)  # floors as in landmarks.geometry: degenerate points stay bounded
    across = eye_r - eye_l
    inter_ocular = across.norm(dim=1).clamp_min(scale)
    ux = across / inter_ocular[:, None]
    uy = torch.stack([-ux[:, 1], ux[:, 0]], dim=1)        # perpendicular, pointing down the face
    eye_mouth = ((mouth - eyes) * uy).sum(dim=1).abs().clamp_min(scale)
    centre = (eyes + mouth) / 2
    ys = torch.arange(height, dtype=points.dtype, device=points.device) + 0.5
    xs = torch.arange(width, dtype=points.dtype, device=points.device) + 0.5
    dx = xs[None, None, :] - centre[:, 0, None, None]       # (N, 1, W)
    dy = ys[None, :, None] - centre[:, 1, None, None]       # (N, H, 1)
    along = dx * ux[:, 0, None, None] + dy * ux[:, 1, None, None]
    down = dx * uy[:, 0, None, None] + dy * uy[:, 1, None, None]
    a = (FACE_HALF_WIDTH * inter_ocular)[:, None, None]
    b = (FACE_HALF_HEIGHT * eye_mouth)[:, None, None]
    return (along / a) ** 2 + (down / b) ** 2


def region_light(images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] and (N, 5, 2) landmarks -> (N, 4) face L*, a*, b* and surround L*."""
    lab = srgb_to_lab((images.float() + 1) * 0.5)
    radius = (face_ellipse_radius(points.float(), tuple(images.shape[-2:])) + 1e-6).sqrt()
    face = torch.sigmoid((1 - radius) * EDGE)
    surround = torch.sigmoid((radius - SURROUND) * EDGE)

    def mean(mask: torch.Tensor, channel: int) -> torch.Tensor:
        return (lab[:, channel] * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp_min(1e-6)

    return torch.stack([mean(face, 0), mean(face, 1), mean(face, 2), mean(surround, 0)], dim=1)


class FaceLightExtractor(Extractor):
    """images (N, 3, H, W) in [-1, 1] -> (N, 4) in FEATURES order."""

    name = "facelight"
    features = FEATURES

    def __init__(self, landmarks: LandmarkExtractor) -> None:
        super().__init__()
        self.landmarks = landmarks
        self.identity = f"facelight:v1:{landmarks.identity}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        points, _, _ = self.landmarks.detect(images)
        return region_light(images, points)


def load_facelight(arg: str | None = None, device: torch.device | str = "cpu") -> FaceLightExtractor:
    """Face-region light and skin colour on MTCNN's ONet landmarks (``arg``: an ONet state dict file, as for landmarks)."""
    try:
        landmarks = load_landmarks(arg, device)
    except TlganError as exc:
        raise TlganError(f"facelight: {exc}") from None
    return FaceLightExtractor(landmarks).eval().requires_grad_(False).to(device)
