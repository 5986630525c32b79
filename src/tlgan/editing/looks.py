"""Teaching a knob through what the faces look like: labels learnt in picture space, then carried to the latent.

A person's yes/no rule ("lit from the left", "greenish", "blurry", "hat")
is a simple function of the picture and a complicated one of z: sixty answers
cannot pin down a direction in a 100-d latent space, but they can fit a
classifier on a few dozen numbers that describe the picture. So a knob is
taught in three steps:

1. every face of a fixed *transfer pool* (candidate pool 0, 2,000 faces) is
   rendered once and described by a small picture descriptor — colour
   thumbnails in an opponent colour space and a map of fine detail — reduced
   to the ``COMPONENTS`` principal directions of its part that is linear in z
   (the descriptors are cached on disk per generator);
2. a logistic regression on the labelled faces' descriptors gives every pool
   face a probability of *has it*;
3. the knob is the logistic regression of those soft answers on the pool's
   latents (each face counted as *yes* with weight p and as *no* with weight
   1 − p), i.e. the latent direction along which the classifier's verdict
   rises: the same kind of axis a fully labelled set of 2,000 faces gives.

Active selection ranks candidates by the picture-space classifier's margin.
The descriptor knows nothing about faces in particular; a rule it cannot see
(a detail below its resolution) teaches a weak knob, and the cross-validated
accuracy says so.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from tlgan.cache import cache_dir
from tlgan.errors import TlganError

from .pools import POOL_SIZE, candidate_pool

COLOUR_GRID = 8      # thumbnails of luma, red−green and blue−yellow, COLOUR_GRID² cells each
DETAIL_GRID = 4      # mean |Laplacian of luma| over DETAIL_GRID² cells
COMPONENTS = 32      # components of the picture space kept
C_PICTURE = 3.0      # L2 strength of the picture-space classifier (sklearn's C)
C_LATENT = 1.0       # ... and of the soft-label fit on the pool's latents
TRANSFER_POOL = 0
KEPT_POOLS = 8       # candidate pools' pictures kept in memory (the web app picks one pool per teaching session)
DESCRIPTOR_SIZE = 3 * COLOUR_GRID**2 + DETAIL_GRID**2


def descriptor(images: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] -> picture descriptors (N, DESCRIPTOR_SIZE) float64.

    Opponent colours (luma, R − G, B − (R + G)/2) so that a tint is as visible
    to the PCA as a change of brightness; the detail map sees sharpness, which
    averages away in a thumbnail.
    """
    x = (images.detach().to("cpu", torch.float64) + 1) / 2
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    opponent = torch.stack([luma, r - g, b - (r + g) / 2], 1)
    colour = F.adaptive_avg_pool2d(opponent, COLOUR_GRID).flatten(1)
    lap = (4 * luma[:, 1:-1, 1:-1] - luma[:, :-2, 1:-1] - luma[:, 2:, 1:-1] - luma[:, 1:-1, :-2]
           - luma[:, 1:-1, 2:]).abs()
    detail = F.adaptive_avg_pool2d(lap[:, None], DETAIL_GRID).flatten(1)
    return torch.cat([colour, detail], 1)


@torch.inference_mode()
def render_descriptors(generator: torch.nn.Module, z: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """Latents (N, D) -> descriptors (N, DESCRIPTOR_SIZE) float64 of the faces the generator renders
    (``batch`` faces at a time; default 250 at 64 px, fewer for larger pictures, at least 8)."""
    if batch is None:
        batch = max(8, 250 * 64**2 // max(64, int(getattr(generator, "resolution", 64) or 64)) ** 2)
    device = next(generator.parameters(), torch.empty(0)).device
    out = [descriptor(generator(z[i: i + batch].to(device, torch.float32))) for i in range(0, len(z), batch)]
    return torch.cat(out) if out else torch.empty(0, DESCRIPTOR_SIZE, dtype=torch.float64)


@dataclass
class PictureSpace:
    """Standardise each descriptor entry, then keep the components the latent controls: (N, F) -> (N, K)."""

    mean: torch.Tensor    # (F,)
    std: torch.Tensor     # (F,)
    basis: torch.Tensor   # (F, K), orthonormal columns
    scale: float          # std of the first component over the pool, so that it is 1

    @classmethod
    def fit(cls, descriptors: torch.Tensor, z: torch.Tensor, components: int = COMPONENTS) -> PictureSpace:
        """From a pool's descriptors (P, F) and latents (P, D): the top principal directions of the part of
        the (standardised) descriptors that is linear in z. Picture variation no latent direction moves can
        never end up in a knob, so the classifier is not given it to fit."""
        d = descriptors.double()
        mean, std = d.mean(0), d.std(0).clamp_min(1e-9)
        e = (d - mean) / std
        zz = z.double()
        explained = zz @ torch.linalg.lstsq(zz, e).solution
        _, sv, vt = torch.linalg.svd(explained, full_matrices=False)
        kept = min(components, int((sv > 1e-6 * sv[0]).sum()))  # directions z does not move at all are noise
        basis = vt[:kept].T
        # a fixed sign per component (SVD's is arbitrary, and may differ with the thread count)
        basis = (basis * basis.gather(0, basis.abs().argmax(0, keepdim=True)).sign()).contiguous()
        return cls(mean, std, basis, float((e @ basis[:, 0]).std()))

    def project(self, descriptors: torch.Tensor) -> torch.Tensor:
        return ((descriptors.double() - self.mean) / self.std) @ self.basis / self.scale


def _logistic(c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000)


def _fit(model, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y, sample_weight=weights)


@dataclass
class Looks:
    """A generator's transfer pool in picture space: what ``classifier`` and ``knob`` work with.

    ``pool_z`` (P, D) float64 latents and ``pool_x`` (P, K) their pictures' projected descriptors.
    """

    generator: torch.nn.Module
    space: PictureSpace
    pool_z: torch.Tensor
    pool_x: torch.Tensor
    _pools: OrderedDict[int, torch.Tensor] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def params(self) -> dict[str, float | int]:
        """What a knob taught through this pool depends on, for its record."""
        return {"pool": TRANSFER_POOL, "pool_size": len(self.pool_z), "components": int(self.pool_x.shape[1]),
                "colour_grid": COLOUR_GRID, "detail_grid": DETAIL_GRID, "C_picture": C_PICTURE, "C_latent": C_LATENT}

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, D) -> the projected descriptors (N, K) of their faces (rendered now)."""
        return self.space.project(_finite(render_descriptors(self.generator, z)))

    def pool_features(self, pool: int) -> torch.Tensor:
        """Candidate pool ``pool``'s faces (POOL_SIZE, K), rendered on first use; the last KEPT_POOLS are kept."""
        if pool == TRANSFER_POOL:
            return self.pool_x
        with self._lock:
            if pool not in self._pools:
                z = candidate_pool(pool, self.generator.latent_dim, generator=self.generator)[1]
                self._pools[pool] = self.features(z)
                while len(self._pools) > KEPT_POOLS:
                    self._pools.popitem(last=False)
            self._pools.move_to_end(pool)
            return self._pools[pool]

    def classifier(self, x: torch.Tensor, y: torch.Tensor, c: float = C_PICTURE):
        """The picture-space logistic regression of labels y (N,) on projected descriptors x (N, K)."""
        return _fit(_logistic(c), x.double().numpy(), y.numpy().astype(np.int64))

    def knob(self, x: torch.Tensor, y: torch.Tensor, c: float = C_PICTURE,
             c_latent: float = C_LATENT) -> tuple[torch.Tensor, float]:
        """Labels y (N,) of faces with descriptors x (N, K) -> the knob's logistic model in z: (w (D,) float64, b)."""
        p = self.classifier(x, y, c).predict_proba(self.pool_x.double().numpy())[:, 1]
        z = self.pool_z.double().numpy()
        both = np.concatenate([z, z])
        answers = np.concatenate([np.ones(len(z), np.int64), np.zeros(len(z), np.int64)])
        model = _fit(_logistic(c_latent), both, answers, np.concatenate([p, 1 - p]))
        return torch.from_numpy(model.coef_[0].astype(np.float64)), float(model.intercept_[0])


def _finite(descriptors: torch.Tensor) -> torch.Tensor:
    if not bool(torch.isfinite(descriptors).all()):
        raise TlganError("the generator's pictures contain NaN or infinite values; cannot teach from them")
    return descriptors


_cache: dict[str, Looks] = {}
_cache_lock = threading.Lock()


def looks_for(generator: torch.nn.Module, pool_size: int = POOL_SIZE) -> Looks:
    """The generator's ``Looks``: its transfer pool rendered and described once, then read from
    <cache>/looks/<identity hash>.safetensors (and kept in memory)."""
    from safetensors.torch import load_file, save_file

    from tlgan.atomic import atomic_path

    identity = getattr(generator, "identity", "") or ""
    key = hashlib.sha256(f"{identity}|{TRANSFER_POOL}|{pool_size}|{DESCRIPTOR_SIZE}|v1".encode()).hexdigest()[:24]
    with _cache_lock:
        if identity and key in _cache:
            return _cache[key]
        _, z = candidate_pool(TRANSFER_POOL, generator.latent_dim, pool_size, generator)
        path = cache_dir() / "looks" / f"{key}.safetensors"
        descriptors = None
        if identity and path.is_file():
            try:
                descriptors = load_file(str(path))["descriptors"].double()
                if descriptors.shape != (len(z), DESCRIPTOR_SIZE) or not bool(torch.isfinite(descriptors).all()):
                    descriptors = None
            except Exception:  # a damaged cache file is recomputed
                descriptors = None
        if descriptors is None:
            descriptors = _finite(render_descriptors(generator, z))
            if identity:
                try:
                    with atomic_path(path) as tmp:
                        save_file({"descriptors": descriptors.contiguous()}, str(tmp), metadata={"generator": identity})
                except OSError:
                    pass  # no writable cache: render again next time
        space = PictureSpace.fit(descriptors, z)
        looks = Looks(generator, space, z.double(), space.project(descriptors))
        if identity:
            _cache[key] = looks
        return looks


__all__ = ["descriptor", "render_descriptors", "PictureSpace", "Looks", "looks_for", "COMPONENTS"]
