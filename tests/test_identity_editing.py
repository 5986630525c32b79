"""Identity while editing (editing/identity.py): start descriptor, distances, stranger distance and its cache."""

from __future__ import annotations

import pytest
import torch

from tlgan.editing.identity import IdentityWatch, cached_identity_stats, identity_stats
from tlgan.errors import TlganError
from tlgan.models.extractors.identity import IdentityReading
from tlgan.models.generators import Generator
from tlgan.sampling.latents import sample_latents

D = 6


class Pixels(Generator):
    """A (3, 4, 4) image whose first D pixels are tanh(z) (the rest 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim, self.resolution, self.name, self.identity = D, 4, "pixels", "pixels:1"

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(z), 48)
        out[:, :D] = torch.tanh(z)
        return out.view(-1, 3, 4, 4)


class FirstPixels(torch.nn.Module):
    """A planted identity model: the descriptor is the first D pixels; 'no face' when pixel 0 is below -0.9."""

    identity = "planted-identity:1"

    def read(self, images: torch.Tensor, points=None) -> IdentityReading:
        flat = images.reshape(len(images), -1)
        n = len(images)
        return IdentityReading(flat[:, :D], flat[:, 0] > -0.9, torch.zeros(n, 5, 2), torch.ones(n))


def test_distance_from_the_start_face_and_its_message():
    gen, model = Pixels(), FirstPixels()
    watch = IdentityWatch(gen, model, tolerance=0.25)
    z0 = torch.zeros(D, dtype=torch.float64)
    ref = watch.reference(z0)
    moved = z0.clone()
    moved[1] = 0.3
    check = watch.check(moved, ref)
    assert check.distance == pytest.approx(float(torch.tanh(torch.tensor(0.3))), abs=1e-6)
    assert check.kept is False and check.tolerance == 0.25
    assert check.message().startswith(f"{check.distance:.2f} from the original; another person is about ")
    assert watch.check(z0, ref).distance == 0.0 and watch.check(z0, ref).kept


def test_stranger_distance_and_basis_of_found_faces():
    gen, model = Pixels(), FirstPixels()
    z = sample_latents(7, 0, 12, D)
    desc = torch.tanh(z).double()
    desc = desc[desc[:, 0] > -0.9]
    pairs = torch.triu_indices(len(desc), len(desc), offset=1)
    expected = float(torch.cdist(desc, desc)[pairs[0], pairs[1]].median())
    stranger, basis = identity_stats(gen, model, faces=12, seed=7, basis_size=3)
    assert stranger == pytest.approx(expected, rel=1e-5)
    # the basis: orthonormal principal directions of the descriptors, most variance first
    assert basis.shape == (3, D) and torch.allclose(basis @ basis.T, torch.eye(3, dtype=basis.dtype), atol=1e-9)
    centred = desc - desc.mean(0)
    variances = (centred @ basis.T).var(0)
    assert bool((variances[:-1] >= variances[1:]).all())
    top = torch.linalg.eigh(centred.T @ centred).eigenvectors[:, -1]
    assert abs(float(top @ basis[0])) == pytest.approx(1.0, abs=1e-6)


def test_a_face_without_landmarks_gets_a_clear_answer():
    gen, model = Pixels(), FirstPixels()
    watch = IdentityWatch(gen, model)
    lost = torch.zeros(D, dtype=torch.float64)
    lost[0] = -5.0  # pixel 0 = tanh(-5) < -0.9: 'no face'
    with pytest.raises(TlganError, match="no face found in the start image"):
        watch.reference(lost)
    check = watch.check(lost, watch.reference(torch.zeros(D)))
    assert check.distance is None and not check.found and not check.kept
    assert "no face found" in check.message() and check.to_dict()["distance"] is None


def test_the_identity_stats_are_cached_per_generator(tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    import tlgan.editing.identity as identity

    monkeypatch.setenv("TLGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(identity, "STRANGER_FACES", 12)
    monkeypatch.setattr(identity, "BASIS_SIZE", 3)
    monkeypatch.setattr(identity, "identity_stats",
                        lambda g, m: (0.5, torch.eye(3, 128, dtype=torch.float64)))
    gen, model = Pixels(), FirstPixels()
    first = cached_identity_stats(gen, model)
    files = list((tmp_path / "identity").glob("*.safetensors"))
    assert len(files) == 1 and first[0] == 0.5
    save_file({"stranger": torch.tensor(0.25, dtype=torch.float64), "basis": first[1]}, str(files[0]))
    assert cached_identity_stats(gen, model)[0] == 0.25     # the cache is what is read back
    files[0].write_bytes(b"garbage")                         # a damaged file is measured again
    assert cached_identity_stats(gen, model)[0] == 0.5
    assert float(load_file(str(files[0]))["stranger"]) == 0.5


def test_absurd_tolerances_are_refused():
    for bad in (0.0, -1.0, float("nan"), 5.0):
        with pytest.raises(TlganError, match="identity tolerance"):
            IdentityWatch(Pixels(), FirstPixels(), tolerance=bad)


# ---- on the default generator, with the real identity network ------------------------------------------------------

@pytest.mark.slow
def test_the_cli_reports_identity_and_warns_past_the_tolerance(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    tlgan = str(Path(sys.executable).with_name("tlgan"))
    proc = subprocess.run([tlgan, "edit", "--seed", "11", "--set", "happy=2.5", "--lock", "identity",
                           "--identity-tolerance", "0.05", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["identity"]
    assert report["found"] and report["distance"] > 0.05 and not report["kept"]
    assert report["tolerance"] == 0.05 and 0.4 < report["stranger"] < 1.0
    assert "identity: " in proc.stderr and "from the original; another person is about" in proc.stderr


@pytest.mark.slow
def test_an_exact_move_holding_identity_keeps_the_whole_distance_within_the_tolerance(digiface):
    from tlgan.axes.defaults import load_default_axes
    from tlgan.editing.editor import Editor
    from tlgan.editing.identity import render

    axes = load_default_axes()
    held = Editor(digiface, axes, 900002, exact=True)
    held.set_locks(["yaw", "identity"])
    start = held.z.clone()
    held.set("happy", 1.5)
    report = held.last_report()
    assert report["converged"] or report["blocked_by"] == "identity", report["message"]
    assert held.value("happy") != 0 and not torch.equal(held.z, start)  # it moved
    # what the lock promises: the descriptor's change along the held directions (chip cut where the move
    # started) stays within the identity tolerance (each of the 8 coordinates within tolerance/sqrt(8))
    watch = held.identity_watch
    points = watch.points(start)
    with torch.no_grad():
        desc = watch.model.read(render(digiface, held.z[None]), points[None]).descriptors[0].double()
    change = desc - held._identity_reference().double()
    assert float((watch.basis @ change).norm()) <= watch.tolerance * 1.05, change
    # and the whole distance those coordinates stand for (the path is guarded by it): within the tolerance
    assert float(change.norm()) <= watch.tolerance, float(change.norm())
    assert held.identity().found and held.identity().distance < 0.3  # read with fresh landmarks: near, not exact


@pytest.mark.slow
def test_identity_stops_a_move_it_cannot_keep_and_says_how_far_it_got(digiface):
    from tlgan.axes.defaults import load_default_axes
    from tlgan.editing.editor import Editor

    axes = load_default_axes()
    free = Editor(digiface, axes, 930004, exact=True)
    free.set_locks(["brightness"])
    free.set("yaw", 1.2)
    assert free.last_report()["converged"] and free.identity().distance > 0.3  # the turn makes another person
    held = Editor(digiface, axes, 930004, exact=True, identity=free.identity_watch)
    held.set_locks(["brightness", "identity"])
    held.set("yaw", 1.2)
    report = held.last_report()
    assert not report["converged"] and report["blocked_by"] == "identity"
    assert "'identity' would go beyond its tolerance" in report["message"] and "'yaw' reached" in report["message"]
    assert report["start"] <= report["reached"] < 1.2  # as far as it could, short of the goal
    assert held.identity().distance < 0.3
