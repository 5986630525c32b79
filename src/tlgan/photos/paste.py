"""Paste-back: an edited face (generator frame) blended into the photo through the alignment, with a soft mask.

Only photo pixels where the mask is positive change; everything else keeps its bytes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .align import Layout, apply, invert_similarity, region_bounds, region_tensor

def face_mask(uv: torch.Tensor, layout: Layout, feather: float = 0.3) -> torch.Tensor:
    """Soft face mask at generator-frame points uv (..., 2): 1 inside an ellipse around the layout's eyes and
    mouth, fading to exactly 0 at its edge and at the generated frame's border."""
    p = layout.tensor()
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    d = float((p[1] - p[0]).norm())
    centre = (eyes + mouth) / 2
    rx, ry = 1.3 * d, 1.3 * d + float((mouth - eyes).norm()) * 0.9
    uv = uv.to(torch.float64)
    r = (((uv[..., 0] - centre[0]) / rx) ** 2 + ((uv[..., 1] - centre[1]) / ry) ** 2).sqrt()
    t = ((1 - r) / feather).clamp(0, 1)
    res = float(layout.resolution)
    edge = torch.minimum(torch.minimum(uv[..., 0], res - uv[..., 0]), torch.minimum(uv[..., 1], res - uv[..., 1]))
    e = (edge / (0.06 * res)).clamp(0, 1)
    smooth = lambda s: s * s * (3 - 2 * s)  # noqa: E731
    return smooth(t) * smooth(e)

def paste_back(photo: Image.Image, face: torch.Tensor, m: torch.Tensor, layout: Layout) -> Image.Image:
    """The photo (same size) with ``face`` (3, R, R) in [-1, 1] blended in through M⁻¹ with a soft mask.

    Only pixels where the mask is positive change; the face is sampled
    bicubically at each photo pixel, so the output keeps the photo's resolution.
    """
    width, height = photo.size
    res = face.shape[-1]
    m_inv = invert_similarity(m)
    corners = torch.tensor([[0, 0], [res, 0], [0, res], [res, res]], dtype=torch.float64)
    x0, y0, x1, y1 = region_bounds(m_inv, corners, width, height)
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    ys, xs = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float64) + 0.5,
                            torch.arange(x0, x1, dtype=torch.float64) + 0.5, indexing="ij")
    uv = apply(m, torch.stack([xs, ys], dim=-1))                         # (h, w, 2) generator pixels
    grid = (uv / res * 2 - 1)[None].float()
    sampled = F.grid_sample(face[None].float().cpu(), grid, mode="bicubic", padding_mode="border",
                            align_corners=False)[0].clamp(-1, 1)
    mask = face_mask(uv, layout).float()
    region = region_tensor(photo, (x0, y0, x1, y1))
    if float((region - region.mean(dim=0, keepdim=True)).abs().max()) < 2 / 127.5:
        # A black-and-white photo: paste the face in grey too (601 luma), not in the generator's colours.
        sampled = (0.299 * sampled[0:1] + 0.587 * sampled[1:2] + 0.114 * sampled[2:3]).expand(3, -1, -1)
    blended = region * (1 - mask) + sampled * mask
    pixels = ((blended + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    # Where the mask is 0 keep the photo's own bytes (the float round trip is exact, but say so explicitly).
    original = torch.from_numpy(np.asarray(photo.crop((x0, y0, x1, y1))).copy()).permute(2, 0, 1)
    pixels = torch.where(mask[None] > 0, pixels, original)
    out.paste(Image.fromarray(pixels.permute(1, 2, 0).numpy(), "RGB"), (x0, y0))
    return out
