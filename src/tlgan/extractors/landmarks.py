"""Face geometry from MTCNN's ONet: five landmarks on a fixed crop, turned into pose and smile features.

The weights are PyPI facenet-pytorch's ``facenet_pytorch/data/onet.pt``, a plain
state dict read with ``weights_only=True``; the network is written here (the
package is never imported). Instead of MTCNN's P-Net/R-Net cascade, ONet runs
once on a fixed crop where the default generator puts the face: x 4..60,
y 8..64 of a 64x64 image (scaled proportionally for other sizes), area-resized
to 48x48 as MTCNN does, pixels p in 0..255 mapped to (p - 127.5)/128.

Coordinates: image x to the right, y down, as fractions of the image width and
height. MTCNN's landmark order is: eye on the image's left (the subject's right
eye), eye on the image's right, nose tip, mouth corner on the image's left,
mouth corner on the image's right. ONet's outputs are relative to the crop box
(0 = its left/top edge, 1 = its right/bottom edge).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..assets import file_hash, package_file
from ..errors import TlganError
from .base import Extractor, Feature, check_images

# The crop on a 64x64 image, as (left, top, right, bottom) fractions of the image.
CROP = (4 / 64, 8 / 64, 60 / 64, 64 / 64)
ONET_SIZE = 48


class ONet(nn.Module):
    """MTCNN's output network. (N, 3, 48, 48) normalised RGB -> (face_prob (N,), box (N, 4), landmarks (N, 10)).

    box: offsets of the face box's (x1, y1, x2, y2) from the crop's, in crop widths/heights.
    landmarks: 5 x then 5 y, relative to the crop box.
    Parameter names match facenet-pytorch's state dict.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)   # 46 -> 23
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)   # 21 -> 10
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)   # 8 -> 4
        x = self.prelu4(self.conv4(x))                                       # (N, 128, 3, 3)
        # The weights were converted from a network that saw images transposed
        # (Caffe/Matlab column-major): dense5 expects features in (W, H, C) order.
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        face_prob = torch.softmax(self.dense6_1(x), dim=1)[:, 1]
        return face_prob, self.dense6_2(x), self.dense6_3(x)


FEATURES = (
    Feature("yaw", "real", "pose",
            "head turn: nose offset from the eye midpoint along the eye line, in inter-ocular distances; "
            "positive when the nose points to the image's right (the subject turns to their left)"),
    Feature("roll", "real", "pose",
            "head tilt in degrees: angle of the eye line; positive when the eye on the image's right is lower "
            "(clockwise as seen in the image)"),
    Feature("mouth_width", "real", "expression",
            "distance between the mouth corners over the inter-ocular distance (wider in a smile)"),
    Feature("face_scale", "real", "pose",
            "side of ONet's refined face box (geometric mean of width and height) as a fraction of the image size"),
    Feature("face_x", "real", "pose",
            "horizontal centre of the five landmarks as a fraction of the image width (0 left, 1 right)"),
    Feature("face_y", "real", "pose",
            "vertical centre of the five landmarks as a fraction of the image height (0 top, 1 bottom)"),
    Feature("face_prob", "probability", "other",
            "ONet's probability that the crop holds a face (low for broken or very dark samples)"),
)


def crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The fixed crop (left, top, right, bottom) in pixels for an image of this size; right/bottom exclusive."""
    left, top = round(CROP[0] * width), round(CROP[1] * height)
    right, bottom = round(CROP[2] * width), round(CROP[3] * height)
    if right - left < 1 or bottom - top < 1:
        raise TlganError(f"images of {width}x{height} are too small for the landmark extractor")
    return left, top, right, bottom


def geometry(landmarks: torch.Tensor, box: torch.Tensor, crop: tuple[int, int, int, int],
             size: tuple[int, int]) -> torch.Tensor:
    """Pose and smile features from ONet's outputs.

    landmarks: (N, 10) relative to the crop (5 x, then 5 y); box: (N, 4) ONet box offsets;
    crop: (left, top, right, bottom) pixels; size: image (height, width).
    Returns (N, 6): yaw, roll, mouth_width, face_scale, face_x, face_y; finite for finite input.
    """
    height, width = size
    left, top, right, bottom = crop
    cw, ch = right - left, bottom - top
    xs = left + landmarks[:, :5] * cw          # pixels
    ys = top + landmarks[:, 5:] * ch
    pts = torch.stack([xs, ys], dim=-1)        # (N, 5, 2)
    eye_l, eye_r, nose, mouth_l, mouth_r = pts.unbind(dim=1)

    eye_vec = eye_r - eye_l
    eye_dist = eye_vec.norm(dim=1)
    # Below a tenth of the crop the eye line is noise; the floor keeps ratios bounded for degenerate outputs.
    floor = 0.1 * math.sqrt(cw * ch)
    safe_dist = eye_dist.clamp_min(floor)
    axis = torch.where((eye_dist > 1e-6)[:, None], eye_vec / eye_dist.clamp_min(1e-6)[:, None],
                       torch.tensor([1.0, 0.0], device=pts.device, dtype=pts.dtype))
    yaw = ((nose - (eye_l + eye_r) / 2) * axis).sum(dim=1) / safe_dist
    roll = torch.rad2deg(torch.atan2(eye_vec[:, 1], eye_vec[:, 0]))
    mouth_width = (mouth_r - mouth_l).norm(dim=1) / safe_dist

    # ONet's box regression refines the crop box: x1' = x1 + dx1 * w, etc.
    x1 = left + box[:, 0] * cw
    y1 = top + box[:, 1] * ch
    x2 = right + box[:, 2] * cw
    y2 = bottom + box[:, 3] * ch
    face_scale = torch.sqrt((x2 - x1).abs() * (y2 - y1).abs()) / math.sqrt(width * height)
    face_x = xs.mean(dim=1) / width
    face_y = ys.mean(dim=1) / height
    return torch.stack([yaw, roll, mouth_width, face_scale, face_x, face_y], dim=1)


class LandmarkExtractor(Extractor):
    """images (N, 3, H, W) in [-1, 1] -> (N, 7) in FEATURES order."""

    name = "landmarks"
    features = FEATURES

    def __init__(self, onet: ONet, identity: str) -> None:
        super().__init__()
        self.onet = onet
        self.identity = identity

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        height, width = images.shape[-2:]
        crop = crop_box(height, width)
        left, top, right, bottom = crop
        x = images[:, :, top:bottom, left:right].float()
        # NHWC runs ONet's convolutions about 2x faster on CPU (measured); the weights are converted at load.
        x = F.interpolate(x, size=(ONET_SIZE, ONET_SIZE), mode="area").contiguous(memory_format=torch.channels_last)
        # (p - 127.5)/128 with p = (x + 1) * 127.5
        face_prob, box, landmarks = self.onet(x * (127.5 / 128.0))
        features = geometry(landmarks, box, crop, (height, width))
        return torch.cat([features, face_prob[:, None]], dim=1).float()


def load_landmarks(arg: str | None = None, device: torch.device | str = "cpu") -> LandmarkExtractor:
    """Load MTCNN's ONet from facenet-pytorch (or a compatible state dict file given as ``arg``)."""
    path = Path(arg) if arg else package_file("facenet_pytorch", "data/onet.pt")
    if not path.is_file():
        raise TlganError(f"ONet weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise TlganError(f"cannot read ONet weights from {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TlganError(f"{path} is not a state dict of tensors (expected MTCNN ONet weights)")
    onet = ONet()
    expected = onet.state_dict()
    problems = [k for k in expected if k not in state or tuple(state[k].shape) != tuple(expected[k].shape)]
    unexpected = [k for k in state if k not in expected]
    if problems or unexpected:
        shown = ", ".join((problems + unexpected)[:4])
        raise TlganError(f"{path} does not match MTCNN's ONet (missing, misshapen or unexpected: {shown})")
    onet.load_state_dict({k: v.float() for k, v in state.items()})
    onet = onet.to(memory_format=torch.channels_last)
    extractor = LandmarkExtractor(onet, f"landmarks:{file_hash(path)}")
    return extractor.eval().requires_grad_(False).to(device)
