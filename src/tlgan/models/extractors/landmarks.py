"""Face geometry from MTCNN's ONet: five landmarks on a fixed crop, turned into pose and smile features.

The weights are PyPI facenet-pytorch's ``facenet_pytorch/data/onet.pt``, a plain
state dict read with ``weights_only=True``; the network is written here (the
package is never imported). Instead of MTCNN's P-Net/R-Net cascade, ONet runs
once on a fixed crop where the default generator puts the face: x 4..60,
y 8..64 of a 64x64 image (scaled proportionally for other sizes), area-resized
to 48x48 as MTCNN does, pixels p in 0..255 mapped to (p - 127.5)/128.
By default ONet also reads the mirrored crop and the two answers are
averaged: on 6,000 default faces this lifted the held-out R^2 of linear fits
z -> feature from 0.67 to 0.70 (yaw) and 0.61 to 0.64 (mouth_width).

Coordinates: image x to the right, y down, as fractions of the image width and
height. MTCNN's landmark order is: eye on the image's left (the subject's right
eye), eye on the image's right, nose tip, mouth corner on the image's left,
mouth corner on the image's right. ONet's outputs are relative to the crop box
(0 = its left/top edge, 1 = its right/bottom edge).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tlgan.assets import file_hash, package_file
from tlgan.errors import TlganError

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
        # The dense head always runs in float32: under bfloat16 autocast its 8-bit-mantissa
        # outputs moved the points by up to a pixel (mouth_width correlation with float32 0.994);
        # with only the convolutions in bfloat16 it stays above 0.9999, at 1.3x ONet's fp32 speed.
        with _without_autocast(x.device.type):
            # facenet-pytorch's converted weights expect the features flattened in (W, H, C)
            # order (its permute(0, 3, 2, 1)); without it landmarks miss the face (tested).
            x = x.float().permute(0, 3, 2, 1).reshape(x.shape[0], -1)
            x = self.prelu5(self.dense5(x))
            face_prob = torch.softmax(self.dense6_1(x), dim=1)[:, 1]
            return face_prob, self.dense6_2(x), self.dense6_3(x)


def _without_autocast(device_type: str):
    """A block where autocast (if any is on for this device type) is off."""
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()


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


def geometry(points: torch.Tensor, box: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pose and smile features from landmarks and a face box, both in pixels.

    points: (N, 5, 2) (x, y) in MTCNN order; box: (N, 4) (x1, y1, x2, y2); size: image (height, width).
    Returns (N, 6): yaw, roll, mouth_width, face_scale, face_x, face_y; finite for finite input,
    degenerate landmarks included (coincident eyes give yaw 0, roll 0).
    """
    height, width = size
    eye_l, eye_r, nose, mouth_l, mouth_r = points.unbind(dim=1)
    eye_vec = eye_r - eye_l
    eye_dist = eye_vec.norm(dim=1)
    # An eye distance under 5% of the image is noise, not a face; the floor keeps the ratios bounded.
    safe_dist = eye_dist.clamp_min(0.05 * math.sqrt(width * height))
    # Coincident eyes: fall back to the image's x axis (built without a host-to-device copy).
    unit_x = torch.zeros_like(eye_vec)
    unit_x[:, 0] = 1
    axis = torch.where((eye_dist > 1e-6)[:, None], eye_vec / eye_dist.clamp_min(1e-6)[:, None], unit_x)
    yaw = ((nose - (eye_l + eye_r) / 2) * axis).sum(dim=1) / safe_dist
    roll = torch.rad2deg(torch.atan2(eye_vec[:, 1], eye_vec[:, 0]))
    mouth_width = (mouth_r - mouth_l).norm(dim=1) / safe_dist
    face_scale = torch.sqrt((box[:, 2] - box[:, 0]).abs() * (box[:, 3] - box[:, 1]).abs()) / math.sqrt(width * height)
    centre = points.mean(dim=1)
    return torch.stack([yaw, roll, mouth_width, face_scale, centre[:, 0] / width, centre[:, 1] / height], dim=1)


class LandmarkExtractor(Extractor):
    """images (N, 3, H, W) in [-1, 1] -> (N, 7) in FEATURES order."""

    name = "landmarks"
    features = FEATURES

    def __init__(self, onet: ONet, weights_hash: str, mirror_average: bool = True) -> None:
        super().__init__()
        self.onet = onet
        self.mirror_average = mirror_average
        # The two modes give different readings, so they must not share an identity.
        self.identity = f"landmarks:{weights_hash}" + ("" if mirror_average else ":single-pass")

    def detect(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run ONet on the fixed crop. images (N, 3, H, W) in [-1, 1] ->
        (points (N, 5, 2) pixel (x, y) in MTCNN order, box (N, 4) pixel (x1, y1, x2, y2), face_prob (N,)).

        Pixel coordinates are continuous: the image spans 0..W by 0..H. With
        ``mirror_average`` ONet also sees the mirrored crop and the two answers
        are averaged (mapped back and with left/right swapped): half the
        landmark noise for twice the compute, and features of a mirrored image
        are exactly mirrored (yaw and roll change sign).
        """
        check_images(images)
        n = images.shape[0]
        left, top, right, bottom = crop_box(*images.shape[-2:])
        x = images[:, :, top:bottom, left:right].float()
        x = F.interpolate(x, size=(ONET_SIZE, ONET_SIZE), mode="area")
        if self.mirror_average:
            x = torch.cat([x, x.flip(-1)])
        # (p - 127.5)/128 with p = (x + 1) * 127.5. NHWC runs ONet about 2x faster on CPU (measured).
        face_prob, reg, marks = self.onet((x * (127.5 / 128.0)).contiguous(memory_format=torch.channels_last))
        if self.mirror_average:
            # In the mirrored crop a point at relative x u is at 1 - u, and image-left/right labels swap.
            # (Columns are picked by slicing: indexing a GPU tensor with a Python list costs a host sync.)
            m = marks[n:]
            flipped = torch.cat([1 - m[:, 1:2], 1 - m[:, 0:1], 1 - m[:, 2:3], 1 - m[:, 4:5], 1 - m[:, 3:4],
                                 m[:, 6:7], m[:, 5:6], m[:, 7:8], m[:, 9:10], m[:, 8:9]], dim=1)
            marks = (marks[:n] + flipped) / 2
            # Mirroring swaps the box's left and right edges and negates their offsets.
            r = reg[n:]
            reg = (reg[:n] + torch.cat([-r[:, 2:3], r[:, 1:2], -r[:, 0:1], r[:, 3:4]], dim=1)) / 2
            face_prob = (face_prob[:n] + face_prob[n:]) / 2
        cw, ch = right - left, bottom - top
        points = torch.stack([left + marks[:, :5] * cw, top + marks[:, 5:] * ch], dim=-1)
        # ONet's box regression moves each crop edge by a fraction of the crop's size.
        box = torch.stack([left + reg[:, 0] * cw, top + reg[:, 1] * ch,
                           right + reg[:, 2] * cw, bottom + reg[:, 3] * ch], dim=1)
        return points, box, face_prob

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        points, box, face_prob = self.detect(images)
        features = geometry(points, box, tuple(images.shape[-2:]))
        return torch.cat([features, face_prob[:, None]], dim=1).float()


def read_mtcnn_net(net: nn.Module, path: Path, what: str) -> nn.Module:
    """Fill ``net`` (PNet, RNet or ONet) from a plain state dict file read with ``weights_only=True``; checked names and shapes."""
    if not path.is_file():
        raise TlganError(f"{what} weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise TlganError(f"cannot read {what} weights from {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TlganError(f"{path} is not a state dict of tensors (expected MTCNN {what} weights)")
    expected = net.state_dict()
    problems = [k for k in expected if k not in state or tuple(state[k].shape) != tuple(expected[k].shape)]
    unexpected = [k for k in state if k not in expected]
    if problems or unexpected:
        shown = ", ".join((problems + unexpected)[:4])
        raise TlganError(f"{path} does not match MTCNN's {what} (missing, misshapen or unexpected: {shown})")
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net


def load_landmarks(arg: str | None = None, device: torch.device | str = "cpu") -> LandmarkExtractor:
    """Load MTCNN's ONet from facenet-pytorch (or a compatible state dict file given as ``arg``)."""
    path = Path(arg) if arg else package_file("facenet_pytorch", "data/onet.pt")
    onet = read_mtcnn_net(ONet(), path, "ONet")
    onet = onet.to(memory_format=torch.channels_last)
    extractor = LandmarkExtractor(onet, file_hash(path))
    return extractor.eval().requires_grad_(False).to(device)
