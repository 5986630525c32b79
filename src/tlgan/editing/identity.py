"""Identity while editing: how far an edited face has moved from the person it started as.

The reading is the distance between dlib face-recognition descriptors
(models/extractors/identity.py) of the current image and of the face the edit
started from: 0 at the start; dlib calls two faces under 0.6 the same person.
To make the number mean something on the generator in use, it is shown next to
that generator's *stranger distance*: the median distance between two of its
random faces (measured once per generator and cached).

``IDENTITY`` is the name under which identity appears among locks: exact edits
hold the descriptor's change along the generator's main directions of
between-face variation (``identity_lock_readings``), and their path is guarded
by the whole distance (``IdentityWatch.distance_at``): it ends before the face
goes beyond ``tolerance`` and says identity is in the way (docs/exact.md has
the figures). Linear edits only show it and warn past the tolerance.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from tlgan.cache import cache_dir
from tlgan.errors import TlganError
from tlgan.sampling.latents import sample_latents

if TYPE_CHECKING:
    from tlgan.models.extractors.identity import IdentityModel
    from tlgan.models.generators import Generator

IDENTITY = "identity"
# Held identity may drift this far (descriptor distance). 0.1 is where dlib's own pipeline sees no
# difference on these faces; the port's reading of the *same* face moved 2 px is 0.11 (median), so
# a tighter hold would chase alignment noise rather than the person.
DEFAULT_TOLERANCE = 0.1
STRANGER_FACES = 128
STRANGER_SEED = 2024
BASIS_SIZE = 8   # descriptor directions held by the identity lock (43% of between-face variance on the default)


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


def identity_stats(generator: Generator, model: IdentityModel, faces: int = STRANGER_FACES,
                   seed: int = STRANGER_SEED, basis_size: int = BASIS_SIZE) -> tuple[float, torch.Tensor]:
    """(stranger distance, basis (basis_size, 128) float64) over random faces of ``generator`` (faces found only).

    The stranger distance is the median descriptor distance between two different faces; the basis
    holds the principal directions of the descriptors over faces (most variance first).
    """
    z = sample_latents(seed, 0, faces, generator.latent_dim)
    reading = model.read(render(generator, z))
    desc = reading.descriptors[reading.found].double()
    if len(desc) < max(2, basis_size):
        raise TlganError("identity: the landmarks found too few faces among the generator's random faces, "
                         "so identity cannot be read on this generator")
    pairs = torch.triu_indices(len(desc), len(desc), offset=1)
    stranger = float(torch.cdist(desc, desc)[pairs[0], pairs[1]].median())
    _, _, vt = torch.linalg.svd(desc - desc.mean(0), full_matrices=False)
    # fix each direction's sign (SVD's is arbitrary) so the basis is the same on every machine
    signs = torch.sign(vt[:basis_size].gather(1, vt[:basis_size].abs().argmax(1, keepdim=True)))
    return stranger, vt[:basis_size] * signs


def cached_identity_stats(generator: Generator, model: IdentityModel) -> tuple[float, torch.Tensor]:
    """``identity_stats``, kept in <cache>/identity/<key>.safetensors per generator and identity model."""
    from safetensors.torch import load_file, save_file

    from tlgan.atomic import atomic_path

    name = getattr(generator, "identity", "") or ""
    key = hashlib.sha256(f"{name}|{model.identity}|{STRANGER_FACES}|{STRANGER_SEED}|{BASIS_SIZE}".encode()).hexdigest()[:24]
    path = cache_dir() / "identity" / f"{key}.safetensors"
    if name and path.is_file():
        try:
            saved = load_file(str(path))
            stranger, basis = float(saved["stranger"]), saved["basis"].double()
            if math.isfinite(stranger) and stranger > 0 and basis.shape == (BASIS_SIZE, 128):
                return stranger, basis
        except Exception:  # a damaged cache file is measured again
            pass
    stranger, basis = identity_stats(generator, model)
    if name:
        try:
            with atomic_path(path) as tmp:
                save_file({"stranger": torch.tensor(stranger, dtype=torch.float64), "basis": basis.contiguous()},
                          str(tmp), metadata={"generator": name})
        except OSError:
            pass  # no writable cache: measure again next time
    return stranger, basis


def identity_lock_readings(model: IdentityModel, reference: torch.Tensor, points: torch.Tensor,
                           basis: torch.Tensor, tolerance: float,
                           lock_tol: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Identity as K readings exact mode can hold: maps images (M, 3, H, W) -> (M, K) float64, differentiable.

    A distance cannot be held at 0 (a norm has no gradient there; a hinge on it leaves the path
    blind until it has drifted, then fights a badly conditioned constraint: measured, the path
    then moved nothing). So identity is held through K linear coordinates of the descriptor
    change from ``reference`` (128,), along ``basis`` (K, 128): the directions in which this
    generator's faces differ most (``identity_stats``). Each is scaled so that exact mode's lock
    tolerance ``lock_tol`` is tolerance/√K of descriptor distance. The chip is cut at fixed
    landmarks ``points`` (5, 2) (the face's at the start of the move): landmarks found anew on
    every image jump with it, and the port's distance moves by about 0.1 for a 2-pixel shift.
    All K coordinates of an image come from one pass of the network (``ReadingModel.add_readings``).
    """
    scale = tolerance / (lock_tol * math.sqrt(basis.shape[0]))

    def coordinates(images: torch.Tensor) -> torch.Tensor:
        at = points.to(images.device, torch.float32).expand(len(images), 5, 2)
        change = model.read(images, at).descriptors.double() - reference.to(images.device).double()
        return change @ basis.to(images.device).double().T / scale

    return coordinates


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
        self._stats: tuple[float, torch.Tensor] | None = None

    @property
    def model(self) -> IdentityModel:
        if self._model is None:
            from tlgan.models.extractors.identity import load_identity

            device = next((p.device for p in self.generator.parameters()), torch.device("cpu"))
            self._model = load_identity(device)
        return self._model

    @property
    def stranger(self) -> float:
        """The generator's median distance between two different faces."""
        return self._identity_stats()[0]

    @property
    def basis(self) -> torch.Tensor:
        """(BASIS_SIZE, 128): the descriptor directions in which the generator's faces differ most."""
        return self._identity_stats()[1]

    def _identity_stats(self) -> tuple[float, torch.Tensor]:
        if self._stats is None:
            self._stats = cached_identity_stats(self.generator, self.model)
        return self._stats

    @torch.no_grad()
    def face(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(descriptor (128,), five landmarks (5, 2)) of the face of latent z (D,); None when no face is found."""
        reading = self.model.read(render(self.generator, z[None]))
        if not bool(reading.found[0]):
            return None
        return reading.descriptors[0].detach(), reading.points[0].detach()

    def reference(self, z: torch.Tensor) -> torch.Tensor:
        """Descriptor (128,) float32 of the face of latent z (D,); TlganError when no face is found there."""
        face = self.face(z)
        if face is None:
            raise TlganError("identity: no face found in the start image (the landmarks miss it), so identity "
                             "cannot be read or held for this face")
        return face[0]

    def points(self, z: torch.Tensor) -> torch.Tensor:
        """The five landmarks (5, 2) of the face of latent z (D,); TlganError when no face is found there."""
        face = self.face(z)
        if face is None:
            raise TlganError("identity: no face found in this image (the landmarks miss it), so identity cannot be "
                             "held from here")
        return face[1]

    @torch.no_grad()
    def distance_at(self, z: torch.Tensor, reference: torch.Tensor, points: torch.Tensor) -> float:
        """What the identity lock's path is guarded by: the descriptor distance of the face of latent z (D,) from
        ``reference`` (128,), the larger of two readings: the chip cut at fixed landmarks ``points`` (5, 2) (what
        the held coordinates read) and at the face's own landmarks (what ``check`` shows the user); infinite when
        the landmarks find no face (identity cannot be vouched for there)."""
        images = render(self.generator, z[None])
        fresh = self.model.read(images)
        if not bool(fresh.found[0]):
            return math.inf
        fixed = self.model.read(images, points.to(images.device, torch.float32)[None])
        ref = reference.to(images.device).double()
        return max(float(torch.linalg.vector_norm(r.descriptors[0].double() - ref)) for r in (fixed, fresh))

    @torch.no_grad()
    def check(self, z: torch.Tensor, reference: torch.Tensor) -> IdentityCheck:
        """The identity reading of latent z (D,) against a start descriptor (128,)."""
        reading = self.model.read(render(self.generator, z[None]))
        distance = None
        if bool(reading.found[0]):
            distance = float(torch.linalg.vector_norm(reading.descriptors[0].double() - reference.double()))
        return IdentityCheck(distance, self.tolerance, self.stranger)


__all__ = ["IDENTITY", "DEFAULT_TOLERANCE", "IdentityCheck", "IdentityWatch", "identity_lock_readings",
           "identity_stats", "cached_identity_stats"]
