"""Identity under a knob: how far a moved face drifts from its unmoved self, per σ moved.

The literature's ID metric for latent edits: for faces z (m, D) moved by offsets t (P,) along a direction, the
mean over faces of the identity-descriptor distance between the moved face and the unmoved face, divided by |t|.
A face whose landmarks are not found (``found`` False) has no usable descriptor: a face not found unmoved is left
out of the whole sweep, and a moved face not found is left out at that offset; both are counted.

The identity model is passed in by the caller (``tlgan.load_identity``, or anything with the same ``read``):
``read(images (N, 3, H, W) in [-1, 1])`` returns an object with ``descriptors`` (N, E) and ``found`` (N,) bool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch

from tlgan.models.generators import Generator


class IdentityReader(Protocol):
    """What evaluation needs from an identity model (``tlgan.models.extractors.identity.IdentityModel``)."""

    identity: str

    def read(self, images: torch.Tensor) -> Any:  # -> .descriptors (N, E), .found (N,) bool
        ...


def identity_stats(descriptors: torch.Tensor, found: torch.Tensor, offsets: torch.Tensor) -> dict[str, Any]:
    """Distance-from-the-unmoved-face figures of one sweep.

    descriptors (P, m, E) and found (P, m) of m faces at offsets (P,) (one of them 0, the unmoved faces).
    Returns {faces, start_not_found, not_found (P,), distance (P,), by_size, per_sigma}:
    distance[p] the mean over faces found unmoved and at p of |desc[p] - desc[0]|; by_size, per distinct |t| > 0,
    that mean over ±|t| with the number of (face, offset) pairs; per_sigma the mean over those pairs at every
    t ≠ 0 of distance / |t| (NaN where no pair is left).
    """
    t = offsets.to(torch.float64)
    zero = int(torch.argmin(t.abs()))
    desc = descriptors.to(torch.float64)
    dist = torch.linalg.vector_norm(desc - desc[zero][None], dim=-1)  # (P, m)
    start = found[zero].bool()
    ok = found.bool() & start[None]
    mean = lambda v: float(v.mean()) if v.numel() else math.nan  # noqa: E731
    moving = t != 0
    by_size = []
    for size in sorted({abs(v) for v in t[moving].tolist()}):
        rows = t.abs() == size
        by_size.append({"size": size, "distance": mean(dist[rows][ok[rows]]), "pairs": int(ok[rows].sum())})
    per = dist[moving] / t[moving].abs()[:, None]
    return {
        "faces": int(found.shape[1]),
        "start_not_found": int((~start).sum()),
        "not_found": [int((start & ~f).sum()) for f in found.bool()],
        "distance": [mean(dist[p][ok[p]]) for p in range(len(t))],
        "by_size": by_size,
        "per_sigma": mean(per[ok[moving]]),
    }


def _device(module: Any) -> torch.device:
    device = getattr(module, "device", None)
    if isinstance(device, torch.device):
        return device
    params = getattr(module, "parameters", None)
    return next(params(), torch.empty(0)).device if params else torch.device("cpu")


@torch.inference_mode()
def read_identity(generator: Generator, identity: IdentityReader, latents: torch.Tensor, batch_size: int = 64,
                  progress: Callable[[int], Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Render latents (M, D) and read them: descriptors (M, E) float32 and found (M,) bool, on the CPU.
    ``progress(k)`` is called after each batch of k images."""
    gen_device, id_device = _device(generator), _device(identity)
    descriptors, found = [], []
    for i in range(0, latents.shape[0], batch_size):
        images = generator(latents[i: i + batch_size].to(gen_device, torch.float32)).float().to(id_device)
        reading = identity.read(images)
        descriptors.append(reading.descriptors.float().cpu())
        found.append(reading.found.bool().cpu())
        if progress:
            progress(images.shape[0])
    if not descriptors:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.bool)
    return torch.cat(descriptors), torch.cat(found)


def sweep_identity(generator: Generator, identity: IdentityReader, latents: torch.Tensor, offsets: torch.Tensor,
                   base: tuple[torch.Tensor, torch.Tensor], batch_size: int = 64,
                   progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """``identity_stats`` of faces at latents (P, m, D) (offsets (P,)); ``base`` = (descriptors (m, E), found (m,))
    of the unmoved faces, reused at offset 0 (whatever latents[zero] holds)."""
    p_count, m, d = latents.shape
    moving = [p for p, t in enumerate(offsets.tolist()) if t != 0]
    desc_m, found_m = read_identity(generator, identity, latents[moving].reshape(-1, d), batch_size, progress)
    desc = torch.empty(p_count, m, base[0].shape[-1])
    found = torch.empty(p_count, m, dtype=torch.bool)
    desc[moving], found[moving] = desc_m.reshape(len(moving), m, -1), found_m.reshape(len(moving), m)
    still = [p for p in range(p_count) if p not in moving]
    desc[still], found[still] = base[0].float(), base[1].bool()
    return identity_stats(desc, found, offsets)


def linear_latents(z0: torch.Tensor, direction: torch.Tensor, offsets: torch.Tensor, gain: float) -> torch.Tensor:
    """Faces z0 (m, D) moved by offsets[p] / gain along direction (D,): (P, m, D) float64."""
    steps = offsets.to(torch.float64)[:, None, None] / gain
    return z0.to(torch.float64)[None] + steps * direction.to(torch.float64)[None, None]


def summarize_identity(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Over per-axis entries (each with "name" and "identity" or None): per_sigma mean, the costliest axis,
    mean distance per |t| over axes, and the faces left out. Empty when no entry has an identity reading."""
    rows = [(e["name"], e["identity"]) for e in entries if e.get("identity")]
    if not rows:
        return {}
    values = [(name, s["per_sigma"]) for name, s in rows
              if s["per_sigma"] is not None and math.isfinite(s["per_sigma"])]
    worst = max(values, key=lambda p: p[1], default=None)
    sizes: dict[float, list[float]] = {}
    for _, s in rows:
        for b in s["by_size"]:
            if math.isfinite(b["distance"]):
                sizes.setdefault(b["size"], []).append(b["distance"])
    return {
        "identity_per_sigma_mean": sum(v for _, v in values) / len(values) if values else math.nan,
        "identity_max": None if worst is None else {"axis": worst[0], "per_sigma": worst[1]},
        "identity_by_size": [{"size": k, "distance": sum(v) / len(v)} for k, v in sorted(sizes.items())],
        "identity_not_found": sum(sum(s["not_found"]) for _, s in rows),
    }
