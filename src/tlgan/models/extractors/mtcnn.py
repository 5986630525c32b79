"""Face detection in photos of any size: the full MTCNN cascade (P-Net, R-Net, O-Net) with its own NMS.

Weights: facenet-pytorch's ``data/{pnet,rnet,onet}.pt`` (plain state dicts read
with ``weights_only=True``; the package is never imported). The networks are
written here (ONet is shared with the landmark extractor). The cascade follows
Zhang et al. 2016 and facenet-pytorch's ``detect_face``: an image pyramid for
P-Net (a fully convolutional 12x12 face/no-face classifier with box
regression), non-maximum suppression within each scale and across scales,
boxes squared and refined by R-Net on 24x24 crops, then by O-Net on 48x48
crops, which also gives the five landmarks; a last NMS uses
intersection-over-minimum. Coordinates are continuous pixels: the image spans
0..W by 0..H, and a crop box [x1, x2) covers pixels x1..x2-1.

Bounded work: a photo whose longer side exceeds ``max_side`` is downscaled
(area filter) for detection and the results are scaled back; candidates per
stage are capped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tlgan.assets import file_hash, package_file
from tlgan.errors import TlganError

from .landmarks import ONet, read_mtcnn_net

MAX_CANDIDATES = 2000   # per stage, highest scores first: bounds time and memory on busy photos


class PNet(nn.Module):
    """Proposal network. (N, 3, H, W) normalised RGB -> (face_prob (N, H', W'), box offsets (N, 4, H', W')).

    Fully convolutional: each output cell looks at a 12x12 window, cells 2 px apart.
    Parameter names match facenet-pytorch's state dict.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network. (N, 3, 24, 24) normalised RGB -> (face_prob (N,), box offsets (N, 4))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)   # 22 -> 11
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)   # 9 -> 4
        x = self.prelu3(self.conv3(x))                                       # (N, 64, 3, 3)
        # The converted weights expect (W, H, C) flattening, as in ONet.
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


@dataclass(frozen=True)
class Face:
    """One detected face. box: (x1, y1, x2, y2) pixels; points: (5, 2) pixel (x, y) in MTCNN order
    (eye on the image's left, eye on the image's right, nose, mouth corner left, mouth corner right)."""

    box: tuple[float, float, float, float]
    score: float
    points: tuple[tuple[float, float], ...]

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, method: str = "union") -> torch.Tensor:
    """Greedy non-maximum suppression. boxes (N, 4) (x1, y1, x2, y2), scores (N,) -> kept indices (K,), best first.

    A box is dropped when its overlap with a kept, higher-scoring box exceeds
    ``threshold``; overlap is intersection over union, or over the smaller
    box's area with method 'min' (MTCNN's last stage).
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    order = torch.argsort(scores, descending=True, stable=True)
    b = boxes[order].double()
    area = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(dim=2)
    if method == "min":
        overlap = inter / torch.minimum(area[:, None], area[None, :]).clamp_min(1e-12)
    else:
        overlap = inter / (area[:, None] + area[None, :] - inter).clamp_min(1e-12)
    suppress = (overlap > threshold).tolist()
    alive = [True] * len(suppress)
    keep = []
    for i in range(len(suppress)):
        if not alive[i]:
            continue
        keep.append(i)
        row = suppress[i]
        for j in range(i + 1, len(row)):
            if row[j]:
                alive[j] = False
    return order[torch.tensor(keep, dtype=torch.long)]


def _top(scores: torch.Tensor, limit: int = MAX_CANDIDATES) -> torch.Tensor:
    """Indices of the ``limit`` highest scores (all when fewer)."""
    return torch.argsort(scores, descending=True, stable=True)[:limit]


def square(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes (N, 4) -> squares (N, 4) of side max(w, h) with the same centres."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    cx, cy = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2
    return torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dim=1)


def refine(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply MTCNN box regression: each edge moves by its offset times the box's width/height."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes + offsets * torch.stack([w, h, w, h], dim=1)


def crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut (N, 3, size, size) crops from image (3, H, W) at integer-rounded boxes; outside the image is 0 (black).

    Resized with area filtering, as MTCNN does.
    """
    _, height, width = image.shape
    out = []
    for x1, y1, x2, y2 in boxes.round().long().tolist():
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        patch = image.new_zeros(3, y2 - y1, x2 - x1)
        ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if ix2 > ix1 and iy2 > iy1:
            patch[:, iy1 - y1: iy2 - y1, ix1 - x1: ix2 - x1] = image[:, iy1:iy2, ix1:ix2]
        out.append(F.interpolate(patch[None], size=(size, size), mode="area"))
    return torch.cat(out) if out else image.new_zeros(0, 3, size, size)


class MTCNN(nn.Module):
    """The three-stage detector. ``detect(image)`` -> faces, largest first.

    Args:
        pnet, rnet, onet: the networks with facenet-pytorch's weights.
        identity: hash of the three weight files.
        thresholds: face-probability cut for each stage (MTCNN's defaults).
        factor: pyramid scale step.
        max_side: photos with a longer side are downscaled to it for detection.
    """

    def __init__(self, pnet: PNet, rnet: RNet, onet: ONet, identity: str,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 max_side: int = 1024) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.identity = identity
        self.thresholds = thresholds
        self.factor = factor
        self.max_side = max_side

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.inference_mode()
    def detect(self, image: torch.Tensor, min_face: float = 20.0) -> list[Face]:
        """Faces in image (3, H, W) with pixel values 0..255 (uint8 or float), largest box first.

        ``min_face``: smallest face side searched, in pixels of the (possibly downscaled) detection image.
        Coordinates returned are in the pixels of ``image`` itself.
        """
        if image.ndim != 3 or image.shape[0] != 3:
            raise TlganError(f"image must have shape (3, H, W), got {tuple(image.shape)}")
        height, width = image.shape[-2:]
        if min(height, width) < 12:
            raise TlganError(f"image of {width}x{height} is too small to find a face in")
        x = image.to(self.device, torch.float32)
        scale_back = (1.0, 1.0)
        if max(height, width) > self.max_side:
            shrink = max(height, width) / self.max_side
            size = (max(12, round(height / shrink)), max(12, round(width / shrink)))
            x = F.interpolate(x[None], size=size, mode="area")[0]
            scale_back = (height / size[0], width / size[1])
        x = (x - 127.5) * 0.0078125
        boxes, scores = self._propose(x, min_face)
        boxes, scores = self._stage(x, boxes, scores, self.rnet, 24, self.thresholds[1])
        faces = self._output(x, boxes) if len(boxes) else []
        sy, sx = scale_back
        if (sx, sy) != (1.0, 1.0):
            faces = [Face((f.box[0] * sx, f.box[1] * sy, f.box[2] * sx, f.box[3] * sy), f.score,
                          tuple((px * sx, py * sy) for px, py in f.points)) for f in faces]
        return sorted(faces, key=lambda f: (-f.area, -f.score))

    def _propose(self, x: torch.Tensor, min_face: float) -> tuple[torch.Tensor, torch.Tensor]:
        """P-Net over the pyramid: candidate squares (M, 4) and scores (M,) in the detection image's pixels."""
        height, width = x.shape[-2:]
        scale = 12.0 / max(min_face, 12.0)
        all_boxes, all_scores = [], []
        while min(height, width) * scale >= 12:
            size = (math.ceil(height * scale), math.ceil(width * scale))
            prob, reg = self.pnet(F.interpolate(x[None], size=size, mode="area"))
            prob, reg = prob[0], reg[0]
            ys, xs = torch.nonzero(prob >= self.thresholds[0], as_tuple=True)
            if len(ys):
                score = prob[ys, xs]
                # Each cell covers a 12x12 window at stride 2 in the scaled image.
                cells = torch.stack([xs, ys, xs, ys], dim=1).float() * 2 + torch.tensor([0.0, 0.0, 12.0, 12.0], device=x.device)
                boxes = refine(cells / scale, reg[:, ys, xs].T)
                keep = _top(score)
                boxes, score = boxes[keep], score[keep]
                keep = nms(boxes.cpu(), score.cpu(), 0.5).to(x.device)
                all_boxes.append(boxes[keep])
                all_scores.append(score[keep])
            scale *= self.factor
        if not all_boxes:
            return x.new_zeros(0, 4), x.new_zeros(0)
        boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
        keep = _top(scores)
        boxes, scores = boxes[keep], scores[keep]
        keep = nms(boxes.cpu(), scores.cpu(), 0.7).to(x.device)
        return square(boxes[keep]), scores[keep]

    def _stage(self, x: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor, net: nn.Module, size: int,
               threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-score and refine candidate squares with R-Net: (squares (K, 4), scores (K,))."""
        if len(boxes) == 0:
            return boxes, scores
        prob, reg = net(crops(x, boxes, size))
        ok = prob > threshold
        boxes, prob, reg = boxes[ok], prob[ok], reg[ok]
        keep = nms(boxes.cpu(), prob.cpu(), 0.7).to(x.device)
        return square(refine(boxes[keep], reg[keep])), prob[keep]

    def _output(self, x: torch.Tensor, boxes: torch.Tensor) -> list[Face]:
        """O-Net on the final squares: faces with refined boxes and landmarks, in the detection image's pixels."""
        prob, reg, marks = self.onet(crops(x, boxes, 48).contiguous(memory_format=torch.channels_last))
        ok = prob > self.thresholds[2]
        boxes, prob, reg, marks = boxes[ok], prob[ok], reg[ok], marks[ok]
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        points = torch.stack([boxes[:, 0:1] + marks[:, :5] * w[:, None], boxes[:, 1:2] + marks[:, 5:] * h[:, None]], dim=-1)
        boxes = refine(boxes, reg)
        keep = nms(boxes.cpu(), prob.cpu(), 0.7, "min")
        return [Face(tuple(boxes[i].tolist()), float(prob[i]), tuple(tuple(p) for p in points[i].tolist()))
                for i in keep.tolist()]


def load_mtcnn(device: torch.device | str = "cpu", max_side: int = 1024) -> MTCNN:
    """The MTCNN detector with facenet-pytorch's shipped weights, in eval mode without grads."""
    paths = [package_file("facenet_pytorch", f"data/{n}.pt") for n in ("pnet", "rnet", "onet")]
    pnet = read_mtcnn_net(PNet(), paths[0], "PNet")
    rnet = read_mtcnn_net(RNet(), paths[1], "RNet")
    onet = read_mtcnn_net(ONet(), paths[2], "ONet").to(memory_format=torch.channels_last)
    identity = "mtcnn:" + "-".join(file_hash(p, 8) for p in paths)
    return MTCNN(pnet, rnet, onet, identity, max_side=max_side).eval().requires_grad_(False).to(device)


__all__ = ["MTCNN", "Face", "PNet", "RNet", "nms", "load_mtcnn"]
