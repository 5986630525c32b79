"""Exact sweeps holding identity (ExactSweeper(identity=...), exact_sweep(guard=...)) on tiny planted models."""

from __future__ import annotations

import pytest
import torch
from planted_nonlinear import BentExtractor, BentGenerator, bent_axes

from tlgan.editing.exact import ExactSweeper, Guard, ReadingModel, exact_sweep, feature_stats, with_reading_stats
from tlgan.editing.identity import IdentityWatch
from tlgan.models.extractors.identity import IdentityReading

OFFSETS = [-1.0, 0.0, 1.0]


class CodeIdentity(torch.nn.Module):
    """A planted identity model for BentGenerator images: the descriptor (128,) is the image's first 12 pixels (its
    latent / 8) padded with zeros; 'no face' when the first pixel is below -0.3 (z[0] < -2.4). Differentiable."""

    identity = "planted-code-identity:1"

    def read(self, images: torch.Tensor, points=None) -> IdentityReading:
        flat = images.reshape(len(images), -1).float()
        n = len(images)
        desc = torch.cat([flat[:, :12], torch.zeros(n, 116, dtype=flat.dtype, device=flat.device)], 1)
        return IdentityReading(desc, flat[:, 0] > -0.3, torch.zeros(n, 5, 2), torch.ones(n))


class PlantedWatch(IdentityWatch):
    """An IdentityWatch whose stranger distance and basis are given (no cache files)."""

    def __init__(self, generator, model, tolerance: float, basis: torch.Tensor) -> None:
        super().__init__(generator, model, tolerance)
        self._stats = (1.0, basis)


@pytest.fixture(scope="module")
def bent():
    gen, ext = BentGenerator(), BentExtractor()
    return gen, ext, with_reading_stats(bent_axes(gen, ext), gen, ext, n=2000)


def faces(n: int) -> torch.Tensor:
    z = torch.randn(n, 12, generator=torch.Generator().manual_seed(11), dtype=torch.float64).clamp(-2, 2)
    return z.float()


def distances(watch: IdentityWatch, z0: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """(P, n) whole descriptor distances of the swept latents from their start faces."""
    ref = watch.model.read(watch.generator.synthesize(z0)).descriptors
    return torch.tensor([[watch.distance_at(latents[p, i].double(), ref[i], torch.zeros(5, 2)) for i in range(len(z0))]
                         for p in range(len(latents))])


def test_exact_sweep_passes_its_guard_to_every_move(bent):
    gen, ext, axes = bent
    mean, std = feature_stats(axes, gen, ext)
    model = ReadingModel(gen, ext, mean, std)
    z0 = faces(2)
    free, ok_free, _ = exact_sweep(model, z0[:1], 0, OFFSETS)
    moved = max(float((free[p, 0] - z0[0]).norm()) for p in (0, 2))
    assert bool(ok_free[[0, 2], 0].all()) and moved > 0
    start = z0[0].double()
    guard = Guard("budget", lambda at: float((at - start).norm()), moved / 3)
    held, ok, reached = exact_sweep(model, z0[:1], 0, OFFSETS, guard=guard)
    for p in (0, 2):  # both sides stop inside the bound, part of the way
        assert float((held[p, 0].double() - start).norm()) <= moved / 3 + 1e-5
    assert not bool(ok[[0, 2], 0].any()) and bool(ok[1, 0])
    assert -1.0 < float(reached[0, 0]) < 0 < float(reached[2, 0]) < 1.0


def test_the_sweep_holds_each_faces_identity_within_the_tolerance(bent):
    gen, ext, axes = bent
    basis = torch.zeros(2, 128, dtype=torch.float64)
    basis[0, 3] = basis[1, 4] = 1.0
    z0 = faces(3)
    free = ExactSweeper(gen, ext, axes)
    latents_free, ok_free = free(z0, 0, OFFSETS)
    watch = PlantedWatch(gen, CodeIdentity(), 0.05, basis)
    drift_free = distances(watch, z0, latents_free)
    assert bool(ok_free.all()) and float(drift_free.max()) > 0.05  # left free, the knob moves identity past 0.05
    sweeper = ExactSweeper(gen, ext, axes, identity=watch)
    latents, ok = sweeper(z0, 0, OFFSETS)
    drift = distances(watch, z0, latents)
    assert float(drift.max()) <= 0.05 + 1e-6  # the guard: the whole distance stays within the tolerance
    assert not bool(ok.all())  # and some goal is out of reach because of it
    # the held coordinates stay at their start value (0) within tolerance / sqrt(K), plus the lock's slack
    ref = watch.model.read(gen.synthesize(z0)).descriptors.double()
    for p in range(len(OFFSETS)):
        change = watch.model.read(gen.synthesize(latents[p])).descriptors.double() - ref
        assert float((change @ basis.T).abs().max()) <= 0.05 / 2 ** 0.5 * 1.5
    # the readings were added once: a second knob's sweep reads through the same indices, face by face
    count = len(sweeper.model.names)
    sweeper(z0, 1, OFFSETS)
    assert len(sweeper.model.names) == count == len(ext.features) + 2
    assert sweeper.log[-1]["identity_not_found"] == 0


def test_a_face_without_landmarks_is_not_moved(bent):
    gen, ext, axes = bent
    basis = torch.zeros(2, 128, dtype=torch.float64)
    basis[0, 3] = basis[1, 4] = 1.0
    z0 = faces(2)
    z0[1, 0] = -3.0  # its first pixel is below -0.3: no landmarks
    sweeper = ExactSweeper(gen, ext, axes, identity=PlantedWatch(gen, CodeIdentity(), 0.2, basis))
    latents, ok = sweeper(z0, 0, OFFSETS)
    assert torch.equal(latents[:, 1], z0[1].expand(3, -1)) and ok[:, 1].tolist() == [False, True, False]
    assert float((latents[2, 0] - z0[0]).norm()) > 0
    assert sweeper.log[-1]["identity_not_found"] == 1
