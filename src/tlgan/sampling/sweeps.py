"""Moving faces along directions and reading them: the measurement under evaluation and axis labelling.

Faces are latents z0 (n, D); a move is (direction (D,), gain) and offsets t (P,) are in knob σ, so a face moves
t / gain along the direction. Readings come back as (P, n, F) float32 on CPU.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator

from .pipeline import label


# ---- slopes of readings ------------------------------------------------------------------------------------------
def sweep_slopes(readings: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Least-squares slope per face and feature (n, F) of readings (P, n, F) against offsets (P,)."""
    t = offsets.to(torch.float64)
    tc = t - t.mean()
    r = readings.to(torch.float64)
    return torch.einsum("p,pnf->nf", tc, r - r.mean(0)) / (tc * tc).sum()


def effect_row(readings: torch.Tensor, offsets: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """Re-scoring row (F,): mean slope per σ over faces, divided by each feature's spread (F,) (NaN where 0)."""
    slope = sweep_slopes(readings, offsets).mean(0)
    spread = spread.to(torch.float64)
    return torch.where(spread > 1e-12, slope / spread.clamp_min(1e-12), torch.full_like(slope, math.nan))


# ---- rendering and reading -------------------------------------------------------------------------------------------
def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters(), torch.empty(0)).device


def read_faces(generator: Generator, extractor: Extractor, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Readings (N, F) float32 on CPU of latents z (N, D), rendered in batches."""
    device = _device(generator)
    out = [label(generator, extractor, z[i: i + batch_size].to(device, torch.float32)).cpu()
           for i in range(0, z.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, len(extractor.features))


def read_sweeps(
    generator: Generator,
    extractor: Extractor,
    z0: torch.Tensor,
    moves: Sequence[tuple[torch.Tensor, float]],
    offsets: torch.Tensor,
    base: torch.Tensor | None = None,
    batch_size: int = 256,
    progress: bool = False,
    reader: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Readings (P, n, F) per move: faces z0 (n, D) moved by offsets[p] / gain along each (direction (D,), gain).

    ``base`` (n, F), the readings of the unmoved faces, is reused for offset 0.
    The moved faces of every move and offset go through the models together,
    in full batches of ``batch_size``. ``reader`` (latents (M, D) float32 on the
    CPU -> readings (M, F)) reads them elsewhere instead, e.g. on a Ray cluster
    (``distributed.WorkerPool.read_faces``, in the same batches).
    """
    n, d = z0.shape
    moving = [p for p, t in enumerate(offsets.tolist()) if not (t == 0 and base is not None)]
    still = [p for p in range(len(offsets)) if p not in moving]
    steps = offsets[moving].to(torch.float64)[:, None, None]
    z = torch.cat([(z0.to(torch.float64)[None] + steps / gain * direction.to(torch.float64)[None, None]).reshape(-1, d)
                   for direction, gain in moves]) if moves else torch.empty(0, d, dtype=torch.float64)
    device = _device(generator)
    out = []
    if reader is not None:
        out = [reader(z.float())] if z.shape[0] else []
    else:
        with tqdm(total=z.shape[0], unit="img", desc="evaluate", disable=not progress, dynamic_ncols=True) as bar:
            for i in range(0, z.shape[0], batch_size):
                out.append(label(generator, extractor, z[i: i + batch_size].to(device, torch.float32)).cpu())
                bar.update(min(batch_size, z.shape[0] - i))
    moved = torch.cat(out).reshape(len(moves), len(moving), n, -1) if out else torch.empty(0)
    results = []
    for m in range(len(moves)):
        r = torch.empty(len(offsets), n, moved.shape[-1])
        r[moving] = moved[m]
        if still:
            r[still] = base.float()
        results.append(r)
    return results


def read_sweep(generator: Generator, extractor: Extractor, z0: torch.Tensor, direction: torch.Tensor,
               offsets: torch.Tensor, gain: float = 1.0, base: torch.Tensor | None = None,
               batch_size: int = 256) -> torch.Tensor:
    """``read_sweeps`` for one direction: readings (P, n, F)."""
    return read_sweeps(generator, extractor, z0, [(direction, gain)], offsets, base, batch_size)[0]


@torch.inference_mode()
def strip_images(generator: Generator, z0: torch.Tensor, direction: torch.Tensor, offsets: torch.Tensor,
                 gain: float = 1.0) -> list[torch.Tensor]:
    """Images (3, H, W) on CPU, row-major: each face of z0 (s, D) at every offset, moved as in ``read_sweep``."""
    steps = offsets.to(torch.float64)[None, :, None] / gain
    z = (z0.to(torch.float64)[:, None] + steps * direction.to(torch.float64)[None, None]).reshape(-1, z0.shape[1])
    images = generator(z.float().to(_device(generator))).float().cpu()
    return list(images)


# ---- which axis measures what ----------------------------------------------------------------------------------------
