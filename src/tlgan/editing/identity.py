"""Identity while editing: how far an edited face has moved from the person it started as.

The reading is the distance between dlib face-recognition descriptors
(models/extractors/identity.py) of the current image and of the face the edit
started from: 0 at the start; dlib calls two faces under 0.6 the same person.
To make the number mean something on the generator in use, it is shown next to
that generator's *stranger distance*: the median distance between two of its
random faces (measured once per generator and cached).

``IDENTITY`` is the name under which identity appears among locks: held by
exact edits (editing/exact.py: the distance stays under ``tolerance``), shown
and warned about by linear ones.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from tlgan.errors import TlganError
from tlgan.sampling.latents import sample_latents

from .prior import cache_dir

if TYPE_CHECKING:
    from tlgan.models.extractors.identity import IdentityModel
    from tlgan.models.generators import Generator

IDENTITY = "identity"
# Held identity may drift this far (descriptor distance). 0.1 is where dlib's own pipeline sees no
# difference on these faces; the port's reading of the *same* face moved 2 px is 0.11 (median), so
# a tighter hold would chase alignment noise rather than the person.
DEFAULT_TOLERANCE = 0.1
STRANGER_FACES = 48
STRANGER_SEED = 2024


@dataclass(frozen=True)
class IdentityCheck:
    """The identity reading of one edited face.

    distance: descriptor distance from the start face (None when the landmarks find no face);
    tolerance: how far a held identity may drift; stranger: the generator's median distance
    between two different faces.
    """

    distance: float | None
    tolerance: float
    stranger: float

    @property
    def found(self) -> bool:
        return self.distance is not None

    @property
    def kept(self) -> bool:
        return self.distance is not None and self.distance <= self.tolerance

    def message(self) -> str:
        if self.distance is None:
            return "identity: no face found in the edited image, so its distance from the original cannot be read"
        return f"{self.distance:.2f} from the original; another person is about {self.stranger:.2f}"

    def to_dict(self) -> dict[str, Any]:
        return {"distance": self.distance, "found": self.found, "tolerance": self.tolerance,
                "stranger": self.stranger, "kept": self.kept, "message": self.message()}


@torch.no_grad()
def render(generator: Generator, latents: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] of latents (N, D) (any float dtype), on the generator's device."""
    device = next((p.device for p in generator.parameters()), torch.device("cpu"))
    return generator.synthesize(latents.to(device, torch.float32))


def stranger_distance(generator: Generator, model: IdentityModel, faces: int = STRANGER_FACES,
                      seed: int = STRANGER_SEED) -> float:
    """Median descriptor distance between two different random faces of ``generator`` (faces found only)."""
    z = sample_latents(seed, 0, faces, generator.latent_dim)
    reading = model.read(render(generator, z))
    desc = reading.descriptors[reading.found].double()
    if len(desc) < 2:
        raise TlganError("identity: the landmarks found fewer than two faces among the generator's random faces, "
                         "so identity cannot be read on this generator")
    pairs = torch.triu_indices(len(desc), len(desc), offset=1)
    return float(torch.cdist(desc, desc)[pairs[0], pairs[1]].median())


def cached_stranger_distance(generator: Generator, model: IdentityModel) -> float:
    """``stranger_distance``, kept in <cache>/identity/<key>.txt per generator and identity model."""
    from tlgan.atomic import write_text_atomic

    name = getattr(generator, "identity", "") or ""
    key = hashlib.sha256(f"{name}|{model.identity}|{STRANGER_FACES}|{STRANGER_SEED}".encode()).hexdigest()[:24]
    path = cache_dir() / "identity" / f"{key}.txt"
    if name and path.is_file():
        try:
            value = float(path.read_text().strip())
            if math.isfinite(value) and value > 0:
                return value
        except (OSError, ValueError):  # a damaged cache file is measured again
            pass
    value = stranger_distance(generator, model)
    if name:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, f"{value!r}\n")
        except OSError:
            pass  # no writable cache: measure again next time
    return value


def identity_lock_reading(model: IdentityModel, reference: torch.Tensor, tolerance: float,
                          lock_tol: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Identity as a reading exact mode can hold: images (M, 3, H, W) -> (M,) float64, differentiable.

    Holding a distance at 0 cannot work (a norm has no gradient at 0, and no edit keeps a face
    bit-identical), so the reading is a smooth hinge of the distance d from ``reference`` (128,):
    about 0 while d is under half the tolerance, then rising as softplus(β(d − τ/2))/β, scaled
    so that exact mode's lock tolerance ``lock_tol`` corresponds to the other half. Held at its
    start value, it keeps d ≤ ``tolerance`` and is pulled back toward τ/2 whenever it drifts past.
    A face the landmarks lose reads as far away (d = 1), with no gradient: the path cannot
    follow it there.
    """
    from tlgan.models.extractors.identity import identity_distance

    knee, scale = tolerance / 2, (tolerance / 2) / lock_tol
    beta = 40.0 / tolerance   # the hinge bends over about a twentieth of the tolerance

    def read(images: torch.Tensor) -> torch.Tensor:
        reading = model.read(images)
        d = identity_distance(reading.descriptors.double(), reference.to(reading.descriptors.device).double())
        d = torch.where(reading.found, d, torch.ones_like(d))
        return torch.nn.functional.softplus(beta * (d - knee)) / beta / scale

    return read


class IdentityWatch:
    """Reads identity for one generator: the start face's descriptor, then each edited face's distance from it.

    Loads the identity model on first use (``model`` may be passed in to share one).
    """

    def __init__(self, generator: Generator, model: IdentityModel | None = None,
                 tolerance: float = DEFAULT_TOLERANCE) -> None:
        if not (math.isfinite(tolerance) and 0 < tolerance < 2):
            raise TlganError(f"identity tolerance must be in (0, 2) (a descriptor distance), got {tolerance}")
        self.generator = generator
        self.tolerance = float(tolerance)
        self._model = model
        self._stranger: float | None = None

    @property
    def model(self) -> IdentityModel:
        if self._model is None:
            from tlgan.models.extractors.identity import load_identity

            device = next((p.device for p in self.generator.parameters()), torch.device("cpu"))
            self._model = load_identity(device)
        return self._model

    @property
    def stranger(self) -> float:
        if self._stranger is None:
            self._stranger = cached_stranger_distance(self.generator, self.model)
        return self._stranger

    @torch.no_grad()
    def reference(self, z: torch.Tensor) -> torch.Tensor:
        """Descriptor (128,) float32 of the face of latent z (D,); TlganError when no face is found there."""
        reading = self.model.read(render(self.generator, z[None]))
        if not bool(reading.found[0]):
            raise TlganError("identity: no face found in the start image (the landmarks miss it), so identity "
                             "cannot be read or held for this face")
        return reading.descriptors[0].detach()

    @torch.no_grad()
    def check(self, z: torch.Tensor, reference: torch.Tensor) -> IdentityCheck:
        """The identity reading of latent z (D,) against a start descriptor (128,)."""
        reading = self.model.read(render(self.generator, z[None]))
        distance = None
        if bool(reading.found[0]):
            distance = float(torch.linalg.vector_norm(reading.descriptors[0].double() - reference.double()))
        return IdentityCheck(distance, self.tolerance, self.stranger)


__all__ = ["IDENTITY", "DEFAULT_TOLERANCE", "IdentityCheck", "IdentityWatch", "identity_lock_reading", "stranger_distance",
           "cached_stranger_distance"]
