"""Alignment: a detected face mapped onto the generator's own face layout, and the aligned crop.

Coordinates: photo pixels (x right, y down, the photo spans 0..W by 0..H) and
generator pixels (the generated image spans 0..R by 0..R, R its resolution).
An alignment is a 2x3 similarity matrix M (rotation, uniform scale,
translation) taking photo pixels to generator pixels: the least-squares fit of
the photo's five MTCNN landmarks onto the generator's *layout*, the median
landmark positions of the generator's own faces, measured once per generator
and detector and cached as a small JSON file.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tlgan.atomic import write_text_atomic
from tlgan.cache import cache_dir
from tlgan.errors import TlganError
from tlgan.models.extractors.mtcnn import MTCNN, Face
from tlgan.models.generators import Generator
from tlgan.sampling.latents import sample_latents

LAYOUT_VERSION = 1
LAYOUT_UPSCALE = 4      # generated faces are upscaled 4x and reflect-padded before detection, like a photo
MAX_SUPERSAMPLE = 8


@dataclass(frozen=True)
class Layout:
    """Where the generator puts the five landmarks: points (5, 2) in generator pixels, for resolution R."""

    points: tuple[tuple[float, float], ...]
    resolution: int
    generator: str
    detector: str
    faces: int          # faces the median was taken over
    detected: float     # fraction of sampled faces MTCNN found

    def tensor(self) -> torch.Tensor:
        return torch.tensor(self.points, dtype=torch.float64)


# ---- math ------------------------------------------------------------------
def fit_similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity M (2, 3) float64 with M·[src; 1] ≈ dst. src, dst: (K, 2), K >= 2.

    Solves for (a, b, tx, ty) in x' = a x - b y + tx, y' = b x + a y + ty: a
    rotation by atan2(b, a), scale hypot(a, b), no reflection or shear.
    """
    src, dst = src.to(torch.float64), dst.to(torch.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise TlganError(f"similarity fit needs two (K, 2) point sets with K >= 2, got {tuple(src.shape)}, {tuple(dst.shape)}")
    # Closed form (centre both sets; then a, b are the projections of the target onto the source and its
    # 90° rotation), summed in a fixed order on plain floats, so the same points give the same bits every run.
    p, q = src.tolist(), dst.tolist()
    k = len(p)
    mx, my = sum(u for u, _ in p) / k, sum(v for _, v in p) / k
    nx, ny = sum(u for u, _ in q) / k, sum(v for _, v in q) / k
    norm = sum((u - mx) ** 2 + (v - my) ** 2 for u, v in p)
    if norm < 1e-18:
        raise TlganError("landmarks are degenerate (all in one place): cannot align the face")
    a = sum((u - mx) * (s - nx) + (v - my) * (r - ny) for (u, v), (s, r) in zip(p, q)) / norm
    b = sum((u - mx) * (r - ny) - (v - my) * (s - nx) for (u, v), (s, r) in zip(p, q)) / norm
    tx, ty = nx - (a * mx - b * my), ny - (b * mx + a * my)
    if math.hypot(a, b) < 1e-9:
        raise TlganError("landmarks are degenerate (all in one place): cannot align the face")
    return torch.tensor([[a, -b, tx], [b, a, ty]], dtype=torch.float64)


def invert_similarity(m: torch.Tensor) -> torch.Tensor:
    """The inverse (2, 3) of a 2x3 affine matrix."""
    full = torch.cat([m.to(torch.float64), torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)])
    return torch.linalg.inv(full)[:2]


def apply(m: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Points (..., 2) mapped by the 2x3 matrix m."""
    m = m.to(points.dtype)
    return points @ m[:, :2].T + m[:, 2]


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The 2x3 matrix of ``outer`` applied after ``inner`` (both 2x3), float64."""
    bottom = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    return (torch.cat([outer.double(), bottom]) @ torch.cat([inner.double(), bottom]))[:2]


def scale_of(m: torch.Tensor) -> float:
    """The uniform scale of a similarity matrix (generator pixels per photo pixel for an alignment)."""
    return float(torch.linalg.det(m[:, :2].double()).abs().sqrt())


# ---- layout ----------------------------------------------------------------
def measure_layout(generator: Generator, detector: MTCNN, n: int = 64, seed: int = 0, batch: int = 16) -> Layout:
    """Median landmark positions (generator pixels) of MTCNN on ``n`` seeded generated faces.

    Each face is upscaled 4x and reflect-padded by half its size on every side
    (so that MTCNN sees it as it sees a face in a photo); the most confident
    face near the centre counts.
    """
    res, up = generator.resolution, LAYOUT_UPSCALE
    pad = res * up // 2
    found = []
    device = next(generator.parameters(), torch.empty(0)).device
    for start in range(0, n, batch):
        z = sample_latents(seed, start, min(batch, n - start), generator.latent_dim).to(device)
        with torch.inference_mode():
            images = generator.synthesize(z).float().cpu()
        big = F.interpolate(images, scale_factor=up, mode="bicubic", align_corners=False).clamp(-1, 1)
        big = F.pad(big, (pad, pad, pad, pad), mode="reflect")
        for image in (big + 1) * 127.5:
            faces = detector.detect(image, min_face=res * up * 0.4)
            centre = [f for f in faces if abs((f.box[0] + f.box[2]) / 2 - pad - res * up / 2) < res * up / 4
                      and abs((f.box[1] + f.box[3]) / 2 - pad - res * up / 2) < res * up / 4]
            if centre:
                best = max(centre, key=lambda f: f.score)
                found.append((torch.tensor(best.points, dtype=torch.float64) - pad) / up)
    if len(found) < max(3, n // 4):
        raise TlganError(f"MTCNN found faces in only {len(found)} of {n} generated images: this generator's "
                         "faces cannot be aligned to photos")
    median = torch.stack(found).median(dim=0).values
    return Layout(tuple((round(float(x), 4), round(float(y), 4)) for x, y in median.tolist()), res,
                  getattr(generator, "identity", ""), detector.identity, len(found), len(found) / n)


def face_layout(generator: Generator, detector: MTCNN, n: int = 64, directory: Path | None = None) -> Layout:
    """The generator's layout, measured once and cached in ``directory`` (default: cache_dir()/layouts)."""
    key = f"{LAYOUT_VERSION}|{generator.identity}|{generator.resolution}|{detector.identity}|{n}"
    directory = directory or cache_dir() / "layouts"
    path = directory / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("key") == key:
                return Layout(tuple(tuple(p) for p in data["points"]), int(data["resolution"]), data["generator"],
                              data["detector"], int(data["faces"]), float(data["detected"]))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache file is measured again and overwritten
    layout = measure_layout(generator, detector, n)
    record = {"key": key, "points": [list(p) for p in layout.points], "resolution": layout.resolution,
              "generator": layout.generator, "detector": layout.detector, "faces": layout.faces,
              "detected": layout.detected}
    try:
        write_text_atomic(path, json.dumps(record, indent=1))
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time
    return layout


# ---- aligned crops ---------------------------------------------------------
def alignment(face: Face, layout: Layout) -> torch.Tensor:
    """The 2x3 matrix taking photo pixels to generator pixels for this face."""
    return fit_similarity(torch.tensor(face.points, dtype=torch.float64), layout.tensor())


def region_bounds(m_inv: torch.Tensor, corners: torch.Tensor, width: int, height: int, margin: int = 2) -> tuple[int, int, int, int]:
    """Integer photo region (x0, y0, x1, y1) covering the given generator-frame corners, clipped to the photo."""
    pts = apply(m_inv, corners)
    x0, y0 = (pts.min(dim=0).values.floor() - margin).tolist()
    x1, y1 = (pts.max(dim=0).values.ceil() + margin).tolist()
    return max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))


def region_tensor(photo: Image.Image, box: tuple[int, int, int, int]) -> torch.Tensor:
    """(3, h, w) float32 in [-1, 1] of a photo region."""
    region = np.asarray(photo.crop(box), dtype=np.float32)
    return torch.from_numpy(region).permute(2, 0, 1) / 127.5 - 1


def warp_face(photo: Image.Image, m: torch.Tensor, resolution: int) -> torch.Tensor:
    """The aligned crop (3, R, R) in [-1, 1]: photo pixels sampled through M⁻¹.

    Downscaling is anti-aliased by sampling a k-times finer grid (k = photo
    pixels per generator pixel, at most 8) and averaging k x k blocks. Parts of
    the crop outside the photo repeat its edge.
    """
    width, height = photo.size
    m_inv = invert_similarity(m)
    k = int(min(MAX_SUPERSAMPLE, max(1, math.ceil(1 / max(scale_of(m), 1e-6) - 1e-6))))
    r = float(resolution)
    corners = torch.tensor([[0, 0], [r, 0], [0, r], [r, r]], dtype=torch.float64)
    x0, y0, x1, y1 = region_bounds(m_inv, corners, width, height)
    if x1 - x0 < 1 or y1 - y0 < 1:  # the crop lies wholly outside the photo: sample the nearest edge
        x0, y0 = min(max(0, x0), width - 1), min(max(0, y0), height - 1)
        x1, y1 = x0 + 1, y0 + 1
    region = region_tensor(photo, (x0, y0, x1, y1))
    n = resolution * k
    centres = (torch.arange(n, dtype=torch.float64) + 0.5) / k
    gv, gu = torch.meshgrid(centres, centres, indexing="ij")
    xy = apply(m_inv, torch.stack([gu, gv], dim=-1))                     # (n, n, 2) photo pixels
    grid = torch.stack([(xy[..., 0] - x0) / (x1 - x0) * 2 - 1, (xy[..., 1] - y0) / (y1 - y0) * 2 - 1], dim=-1)
    sampled = F.grid_sample(region[None], grid[None].float(), mode="bilinear", padding_mode="border", align_corners=False)
    return F.avg_pool2d(sampled, k)[0] if k > 1 else sampled[0]


