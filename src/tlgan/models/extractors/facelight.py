"""Light and skin colour where the face is: CIE L*a*b* statistics inside face regions found by the landmarks.

The global image statistics (imagestats) average over the whole picture, so
"brightness held" can still move the light on the face while the background
compensates, and turning the head changes how much of the frame is skin. These
readings look only where the face is. MTCNN's ONet (landmarks.py) gives five
points, and two ellipses are placed on them, their axes along and across the
eye line (``Ellipse``):

* SKIN, the nose and inner cheeks, between the lower eyelids and the upper lip:
  the skin that stays skin whatever the expression, so a smile's teeth, open
  eyes or a frown are not read as light. Its size and place were fitted to
  dlib's 68-point face centre (the nose and the cheeks half-way to it) on 64
  generated faces (IoU 0.73; the first version's whole-face ellipse, eyes and
  mouth included, overlapped that region by 0.15 and, held, still let a turn
  move the light on the nose and cheeks).
* HEAD, from above the eyes to below the mouth; the surround is everything
  outside SURROUND times it (background, hair, shoulders).

Both masks have soft edges so readings are smooth in the image and in the
landmarks, which exact edits differentiate through.

Colours are converted from the generator's sRGB to CIE L*a*b* (D65), the space
in which skin-colour changes are measured (ΔE). The skin region's mean L*, a*
and b* are three readings: locked together they hold the skin's colour and the
light on it while the pose or expression changes. (The dermatological skin-tone
angle ITA° = atan2(L* − 50, b*) was tried and left out: on these often dimly lit
faces b* is small and the angle swings with noise.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tlgan.errors import TlganError

from .base import Extractor, Feature, check_images
from .landmarks import LandmarkExtractor, load_landmarks



@dataclass(frozen=True)
class Ellipse:
    """A face region in landmark units: its centre ``down`` eye-to-mouth distances below the eyes' midpoint,
    half-axes ``half_width`` inter-ocular distances along the eye line and ``half_height`` eye-to-mouth
    distances across it; ``edge``: the soft mask's sharpness (it goes 12% -> 88% over 4/edge of the radius)."""

    down: float
    half_width: float
    half_height: float
    edge: float


SKIN = Ellipse(down=0.45, half_width=0.55, half_height=0.25, edge=8.0)   # nose and inner cheeks
HEAD = Ellipse(down=0.5, half_width=0.85, half_height=1.0, edge=16.0)    # brows to chin, cheek to cheek
SURROUND = 1.8           # the surround starts at this multiple of the HEAD ellipse

_GROUP = "lighting and colour"
FEATURES = (
    Feature("face_light", "real", _GROUP, "mean CIE L* (0 black to 100 white) of the nose and cheeks found by the landmarks"),
    Feature("face_red", "real", _GROUP, "mean CIE a* (green − to red +) of the nose and cheeks: ruddy or pale skin"),
    Feature("face_yellow", "real", _GROUP, "mean CIE b* (blue − to yellow +) of the nose and cheeks: golden or olive skin"),
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


def ellipse_radius(points: torch.Tensor, size: tuple[int, int], ellipse: Ellipse) -> torch.Tensor:
    """Squared normalised radius of every pixel centre in ``ellipse`` placed on the landmarks.

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
    centre = eyes + uy * (ellipse.down * eye_mouth)[:, None]
    ys = torch.arange(height, dtype=points.dtype, device=points.device) + 0.5
    xs = torch.arange(width, dtype=points.dtype, device=points.device) + 0.5
    dx = xs[None, None, :] - centre[:, 0, None, None]       # (N, 1, W)
    dy = ys[None, :, None] - centre[:, 1, None, None]       # (N, H, 1)
    along = dx * ux[:, 0, None, None] + dy * ux[:, 1, None, None]
    down = dx * uy[:, 0, None, None] + dy * uy[:, 1, None, None]
    a = (ellipse.half_width * inter_ocular)[:, None, None]
    b = (ellipse.half_height * eye_mouth)[:, None, None]
    return (along / a) ** 2 + (down / b) ** 2


def region_light(images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] and (N, 5, 2) landmarks -> (N, 4) skin L*, a*, b* and surround L*."""
    lab = srgb_to_lab((images.float() + 1) * 0.5)
    size = tuple(images.shape[-2:])
    skin = (ellipse_radius(points.float(), size, SKIN) + 1e-6).sqrt()
    head = (ellipse_radius(points.float(), size, HEAD) + 1e-6).sqrt()
    face = torch.sigmoid((1 - skin) * SKIN.edge)
    surround = torch.sigmoid((head - SURROUND) * HEAD.edge)

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
        self.identity = f"facelight:v2:{landmarks.identity}"

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
