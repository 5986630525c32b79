"""Evaluation against a generator whose features are known linear functions of z."""

import json
import math

import pytest
import torch
from click.testing import CliRunner
from linear_models import LinearFeatures
from planted import PlantedExtractor, PlantedGenerator

from tlgan.axes.math import gram_schmidt, lock_direction
from tlgan.axes.store import AxisSet
from tlgan.errors import TlganError
from tlgan.evaluation.evaluate import (
    DEFAULT_SEED,
    average_ranks,
    evaluate,
    monotonicity,
)
from tlgan.evaluation.report import write_report
from tlgan.sampling.latents import sample_latents
from tlgan.sampling.sweeps import effect_row

D = 12


@pytest.fixture(scope="module")
def world():
    """Features c0..c3 = z·w_j, face_prob = sigmoid(4 z·u) with u ⟂ w_0, w_1; axes along w_0, w_1 and u."""
    gen = torch.Generator().manual_seed(21)
    w = torch.randn(4, D, generator=gen, dtype=torch.float64)
    u = gram_schmidt(torch.cat([w[:2], torch.randn(1, D, generator=gen, dtype=torch.float64)]))[2]
    ext = LinearFeatures(w.float(), u.float())
    axes = torch.stack([w[0] / w[0].norm(), w[1] / w[1].norm(), u])
    axis_set = AxisSet(
        names=["c0", "c1", "mix"], axes=axes.float(), kinds=["real"] * 3, groups=["other"] * 3,
        generator="planted:12", latent_dim=D, method="tlgan", extractor=ext.identity, seed=0,
        weights=torch.stack([w[0], w[1], u], 1).float(), intercepts=torch.zeros(3),
        quality={"c0": {"r2": 0.9}, "c1": {"r2": 0.8}, "mix": {"r2": 0.1}},
    )
    return PlantedGenerator(D), ext, axis_set, w, u


def _truth(z0, w, directions, gains):
    spread = (z0 @ w.T).std(0)
    return torch.stack([(d @ w.T) / g / spread for d, g in zip(directions, gains)])


def test_rescoring_matrix_matches_the_truth_free_and_locked(world):
    gen, ext, axis_set, w, u = world
    n = 300
    ev = evaluate(gen, ext, axis_set, n=n, progress=False, strip_faces=1)
    z0 = sample_latents(DEFAULT_SEED, 0, n, D).double()
    a = axis_set.axes.double()
    truth = _truth(z0, w, a, [1.0] * 3)
    assert torch.allclose(ev.matrix[:, :4], truth, atol=1e-4)
    locked_dirs = [lock_direction(a[k], a[[i for i in range(3) if i != k]]) for k in range(3)]
    gains = [float(d @ a[k]) for k, d in enumerate(locked_dirs)]
    assert torch.allclose(ev.matrix_locked[:, :4], _truth(z0, w, locked_dirs, gains), atol=1e-4)
    # the diagonal of an axis fitted to an exact linear feature is |w| / SD(z·w) = 1 / SD of a unit projection
    assert ev.axes[0]["diagonal"] == pytest.approx(float(truth[0, 0]), abs=1e-4)
    assert ev.axes[0]["locked"]["gain"] == pytest.approx(gains[0], abs=1e-6)
    assert torch.allclose(ev.cosine, a @ a.T, atol=1e-6)


def test_per_axis_numbers(world):
    gen, ext, axis_set, w, u = world
    ev = evaluate(gen, ext, axis_set, n=300, progress=False, strip_faces=0)
    c0, c1, mix = ev.axes
    assert c0["target"] == "c0" and mix["target"] is None
    assert c0["fit_quality"] == {"metric": "r2", "fresh": pytest.approx(1.0, abs=1e-6), "stored": 0.9}
    assert c0["monotonicity"] == pytest.approx(1.0) and c1["monotonicity"] == pytest.approx(1.0)
    # axes orthogonal to u never change face_prob; moving along u by -3 loses nearly every face
    assert c0["faces_kept"] == 1.0 and c0["locked"]["faces_kept"] == 1.0
    assert mix["faces_kept"] < 0.05 and mix["moves_most"]["feature"] == "face_prob"
    assert mix["face_fraction"][3] == pytest.approx(0.5, abs=0.1) and mix["face_fraction"][0] < 0.05
    leak_feature = max(((j, abs(float(ev.matrix[0, j]))) for j in range(1, 5)), key=lambda p: p[1])[0]
    assert c0["worst_leak"]["feature"] == ev.features[leak_feature]
    # locking the other axes removes the leak into c1 (their span is locked)
    assert abs(c0["locked"]["diagonal"] - c0["diagonal"]) < 1e-3
    assert abs(float(ev.matrix_locked[0, 1])) < 1e-4 < abs(float(ev.matrix[0, 1]))
    assert ev.summary["locked"]["axes"] == 2 and ev.summary["free"]["diagonal_mean"] > 0


def test_conditioned_matrix_equals_locked_matrix(world):
    gen, ext, axis_set, *_ = world
    from dataclasses import replace

    svm_like = replace(axis_set, method="svm", params={"thresholds": {"c0": [-1.0, 1.0], "c1": [-1.0, 1.0]}})
    locked = evaluate(gen, ext, axis_set, n=60, progress=False, strip_faces=0)
    conditioned = evaluate(gen, ext, svm_like, n=60, progress=False, strip_faces=0)
    assert conditioned.header["settings"]["lock_mode"] == "condition"
    assert locked.header["settings"]["lock_mode"] == "lock"
    assert torch.allclose(conditioned.matrix_locked, locked.matrix_locked, atol=1e-5, equal_nan=True)
    assert conditioned.axes[0]["fit_quality"]["metric"] == "accuracy"


def test_json_is_valid_and_report_folder_is_complete(world, tmp_path):
    gen, ext, axis_set, *_ = world
    ev = evaluate(gen, ext, axis_set, n=40, sweep=(-2, 0, 2), progress=False)
    data = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    assert data["format"] == "tlgan.evaluation" and data["version"] == 1
    assert data["settings"]["sweep"] == [-2.0, 0.0, 2.0] and data["settings"]["n"] == 40
    assert data["rescoring"]["rows"] == ["c0", "c1", "mix"] and len(data["rescoring"]["values"][0]) == 5
    assert set(data["axes"][0]) >= {"name", "target", "fit_quality", "diagonal", "worst_leak", "moves_most",
                                    "monotonicity", "faces_kept", "face_fraction", "target_curve", "locked"}
    assert data["summary"]["free"]["axes"] == 2  # the two axes with a target feature
    index = write_report(ev, tmp_path / "rep")
    page = index.read_text()
    for name in ("rescoring.png", "rescoring_locked.png", "cosine.png", "strips/00-c0.png", "evaluation.json"):
        assert (tmp_path / "rep" / name).is_file(), name
        assert name in page
    assert (tmp_path / "rep" / "rescoring.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "strips/02-mix.png" in page and not list((tmp_path / "rep").glob(".*tmp"))


def test_unsupervised_set_has_no_locked_matrix_and_no_nan_in_json(world):
    gen, ext, axis_set, *_ = world
    from dataclasses import replace

    sefa_like = replace(axis_set, method="sefa", weights=None, intercepts=None, quality={})
    ev = evaluate(gen, ext, sefa_like, n=30, progress=False, strip_faces=0)
    data = ev.to_dict()
    assert data["rescoring_locked"] is None and data["axes"][0]["target"] is None
    assert data["axes"][0]["moves_most"]["feature"] == "c0" and data["axes"][0]["monotonicity"] == pytest.approx(1.0)
    json.dumps(data, allow_nan=False)


def test_bad_evaluation_settings(world):
    gen, ext, axis_set, *_ = world
    with pytest.raises(TlganError, match="seed the axes were fitted on"):
        evaluate(gen, ext, axis_set, n=10, seed=0, progress=False)
    with pytest.raises(TlganError, match="including 0"):
        evaluate(gen, ext, axis_set, n=10, sweep=(-1, 1, 2), progress=False)
    with pytest.raises(TlganError, match="at least 2 faces"):
        evaluate(gen, ext, axis_set, n=1, progress=False)
    with pytest.raises(TlganError, match="latent size"):
        evaluate(PlantedGenerator(16), ext, axis_set, n=10, progress=False)


def test_slope_and_monotonicity_helpers():
    offsets = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    readings = torch.stack([2 * offsets + 1, -offsets, offsets**3], 1)[:, None, :].repeat(1, 2, 1)  # (P, n=2, F=3)
    row = effect_row(readings, offsets, torch.tensor([1.0, 2.0, 0.0]))
    assert row[0] == pytest.approx(2.0) and row[1] == pytest.approx(-0.5) and math.isnan(row[2])
    assert monotonicity(readings[:, :, 1], offsets) == pytest.approx(-1.0)
    assert monotonicity(torch.tensor([[0.0], [1.0], [0.5], [2.0]]), offsets) == pytest.approx(0.8)
    assert monotonicity(torch.ones(4, 3), offsets) == 0.0
    assert average_ranks(torch.tensor([[1.0], [2.0], [2.0], [0.5]]))[:, 0].tolist() == [2.0, 3.5, 3.5, 1.0]


def test_evaluate_cli(tmp_path, monkeypatch):
    from tlgan.models import extractors, generators
    from tlgan.apps.cli.main import cli
    from tlgan.axes.fit import fit_axes
    from tlgan.sampling.pipeline import run_samples

    generators.register("planted16", lambda arg, device: PlantedGenerator(16))
    extractors.register("planted16", lambda arg, device: PlantedExtractor(16))
    run_samples(PlantedGenerator(16), PlantedExtractor(16), 600, 0, tmp_path / "s", progress=False)
    fit_axes(tmp_path / "s", method="logistic").save(tmp_path / "a.safetensors")
    args = ["evaluate", str(tmp_path / "a.safetensors"), "--generator", "planted16", "--extractor", "planted16",
            "--n", "40", "--steps", "5"]
    result = CliRunner().invoke(cli, [*args, "--json", str(tmp_path / "e.json"), "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["method"] == "logistic" and data["settings"]["sweep"] == [-3.0, -1.5, 0.0, 1.5, 3.0]
    assert (tmp_path / "r" / "index.html").is_file() and "lin" in result.output
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, TlganError) and "nothing to write" in str(result.exception)


# ---- identity under the knobs ---------------------------------------------------------------------------------------
class PlantedIdentity:
    """Descriptor = a fixed linear map B (E, 192) of the image; a face is 'found' while its first pixel < ``cut``."""

    identity = "planted-identity:1"

    def __init__(self, dim: int = 192, cut: float = 0.1, out: int = 5) -> None:
        self.b = torch.randn(out, dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        self.cut = cut
        self.calls = 0

    def read(self, images):
        from tlgan.models.extractors.identity import IdentityReading

        self.calls += 1
        flat = images.reshape(images.shape[0], -1).double()
        found = flat[:, 0] < self.cut
        return IdentityReading((flat @ self.b.T).float(), found, torch.zeros(len(flat), 5, 2), found.float())


def _identity_truth(z0, direction, gain, offsets, b, cut):
    """Hand computation: images hold z/8 in their first D pixels, so a move of s = t/gain along d changes the
    descriptor by s·B[:, :D]·d/8 (distance |s|·|B d|/8), and face i is found at t while (z_i + s d)_0 / 8 < cut."""
    d_len = float((b[:, : z0.shape[1]] @ direction.double()).norm()) / 8
    start = z0[:, 0].double() / 8 < cut
    pairs = []
    for t in offsets:
        if t == 0:
            continue
        ok = start & ((z0[:, 0].double() + t / gain * float(direction[0])) / 8 < cut)
        pairs += [abs(t) / abs(gain) * d_len / abs(t)] * int(ok.sum())
    return sum(pairs) / len(pairs), int((~start).sum())


def test_identity_per_sigma_matches_the_hand_computed_value(world):
    gen, ext, axis_set, *_ = world
    planted = PlantedIdentity(cut=0.1)
    sweep = (-2.0, -1.0, 0.0, 1.0, 2.0)
    ev = evaluate(gen, ext, axis_set, n=40, sweep=sweep, progress=False, strip_faces=0, identity=planted,
                  identity_faces=24)
    z0 = sample_latents(DEFAULT_SEED, 0, 24, D).double()
    a = axis_set.axes.double()
    for k, entry in enumerate(ev.axes):
        want, start_missing = _identity_truth(z0, a[k], 1.0, sweep, planted.b, planted.cut)
        got = entry["identity"]
        assert got["per_sigma"] == pytest.approx(want, rel=1e-5)
        assert got["faces"] == 24 and got["start_not_found"] == start_missing > 0
        assert got["distance"][2] == 0.0  # the unmoved faces themselves
        # a face found unmoved but lost when moved is counted at that offset
        lost = [int(((z0[:, 0] / 8 < 0.1) & ((z0[:, 0] + t * a[k, 0]) / 8 >= 0.1)).sum()) for t in sweep]
        assert got["not_found"] == lost
    lock = ev.axes[0]["locked"]
    d = lock_direction(a[0], a[[1, 2]])
    gain = float(d @ a[0])
    want, _ = _identity_truth(z0, d, gain, sweep, planted.b, planted.cut)
    assert lock["identity"]["per_sigma"] == pytest.approx(want, rel=1e-5)
    # every face found: per_sigma is |B a| / 8 exactly, and the distance at ±2 twice that at ±1
    everyone = evaluate(gen, ext, axis_set, n=10, sweep=sweep, progress=False, strip_faces=0,
                        identity=PlantedIdentity(cut=1e9), locked=False).axes[1]["identity"]
    exact_value = float((planted.b[:, :D] @ a[1]).norm()) / 8
    assert everyone["per_sigma"] == pytest.approx(exact_value, rel=1e-5)
    assert [b["size"] for b in everyone["by_size"]] == [1.0, 2.0] and everyone["by_size"][0]["pairs"] == 20
    assert everyone["by_size"][1]["distance"] == pytest.approx(2 * everyone["by_size"][0]["distance"], rel=1e-5)
    assert everyone["start_not_found"] == 0 and sum(everyone["not_found"]) == 0


def test_identity_in_the_json_and_the_summary(world, tmp_path):
    gen, ext, axis_set, *_ = world
    planted = PlantedIdentity(cut=0.1)
    ev = evaluate(gen, ext, axis_set, n=12, sweep=(-1, 0, 1), progress=False, strip_faces=0, identity=planted,
                  identity_faces=6)
    data = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    assert data["settings"]["identity"]["model"] == "planted-identity:1" and data["settings"]["identity"]["faces"] == 6
    free, locked = data["summary"]["free"], data["summary"]["locked"]
    per = [a["identity"]["per_sigma"] for a in data["axes"] if a["target"]]
    assert free["identity_per_sigma_mean"] == pytest.approx(sum(per) / len(per), rel=1e-4)
    assert free["identity_max"]["per_sigma"] == pytest.approx(max(per), rel=1e-4)
    assert locked["identity_per_sigma_mean"] > 0 and "identity_by_size" in locked
    page = write_report(ev, tmp_path / "rep").read_text()
    assert "identity / σ" in page and "first 6 faces" in page
    # without an identity model nothing is read and the fields are null / absent
    plain = evaluate(gen, ext, axis_set, n=12, sweep=(-1, 0, 1), progress=False, strip_faces=0).to_dict()
    assert plain["settings"]["identity"] is None and plain["axes"][0]["identity"] is None
    assert "identity_per_sigma_mean" not in plain["summary"]["free"]
    with pytest.raises(TlganError, match="at least 1 face"):
        evaluate(gen, ext, axis_set, n=12, progress=False, identity=planted, identity_faces=0)


def test_identity_stats_edge_cases():
    from tlgan.evaluation.identity import identity_stats

    desc = torch.tensor([[[0.0], [5.0]], [[0.0], [0.0]], [[3.0], [1.0]]])  # (P=3, m=2, E=1) at t = -1, 0, 2
    found = torch.tensor([[True, False], [True, True], [False, True]])
    s = identity_stats(desc, found, torch.tensor([-1.0, 0.0, 2.0]))
    assert s["not_found"] == [1, 0, 1] and s["start_not_found"] == 0
    assert s["distance"] == [0.0, 0.0, 1.0] and s["per_sigma"] == pytest.approx((0.0 + 0.5) / 2)
    none = identity_stats(desc, torch.tensor([[True, True], [False, False], [True, True]]), torch.tensor([-1.0, 0.0, 2.0]))
    assert none["start_not_found"] == 2 and math.isnan(none["per_sigma"]) and none["not_found"] == [0, 0, 0]


def test_evaluate_cli_identity_flag(tmp_path, monkeypatch):
    from tlgan.apps.cli.main import cli
    from tlgan.axes.fit import fit_axes
    from tlgan.models import extractors, generators
    from tlgan.models.extractors import identity as identity_module
    from tlgan.sampling.pipeline import run_samples

    generators.register("planted16", lambda arg, device: PlantedGenerator(16))
    extractors.register("planted16", lambda arg, device: PlantedExtractor(16))
    run_samples(PlantedGenerator(16), PlantedExtractor(16), 400, 0, tmp_path / "s", progress=False)
    fit_axes(tmp_path / "s", method="tlgan").save(tmp_path / "a.safetensors")
    loaded = []
    monkeypatch.setattr(identity_module, "load_identity",
                        lambda device: loaded.append(device) or PlantedIdentity(cut=1e9))
    args = ["evaluate", str(tmp_path / "a.safetensors"), "--generator", "planted16", "--extractor", "planted16",
            "--n", "10", "--steps", "3", "--json", str(tmp_path / "e.json")]
    # an 8-px generator: identity is off by default
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e.json").read_text())["settings"]["identity"] is None and not loaded
    result = CliRunner().invoke(cli, [*args, "--identity", "--identity-faces", "4"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["settings"]["identity"] == {"model": "planted-identity:1", "faces": 4, "start_not_found": 0}
    assert data["axes"][0]["identity"]["per_sigma"] > 0 and data["axes"][0]["locked"]["identity"]["faces"] == 4
    assert "id/σ" in result.output and "extra readings" in result.output and len(loaded) == 1
    result = CliRunner().invoke(cli, [*args, "--no-identity"])
    assert result.exit_code == 0 and json.loads((tmp_path / "e.json").read_text())["settings"]["identity"] is None


@pytest.mark.slow
def test_evaluate_cli_reads_identity_of_the_default_faces(tmp_path):
    """The real identity model on the shipped axes, on by default for the 64-px generator (a few seconds)."""
    from tlgan.apps.cli.main import cli

    result = CliRunner().invoke(cli, ["evaluate", "--n", "3", "--steps", "3", "--range", "1", "--identity-faces", "2",
                                      "--no-locked", "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["settings"]["identity"]["model"].startswith("identity:")
    values = [a["identity"]["per_sigma"] for a in data["axes"] if a["identity"]["per_sigma"] is not None]
    # a 1σ move keeps most faces the same person (well under a stranger's ~0.7), but does change them
    assert len(values) >= 15 and 0 < sum(values) / len(values) < 0.6
    assert data["summary"]["free"]["identity_per_sigma_mean"] > 0


def test_identity_on_exact_paths_reads_the_paths_faces(world):
    """A stand-in exact sweeper that moves faces along the axes themselves: the identity figures equal linear mode's."""
    gen, ext, axis_set, *_ = world
    a = axis_set.axes.double()
    calls = []

    def sweeper(z0, k, offsets, locks):
        calls.append((k, tuple(locks)))
        t = torch.tensor(offsets, dtype=torch.float64)[:, None, None]
        return z0.double()[None] + t * a[k][None, None], torch.ones(len(offsets), z0.shape[0], dtype=torch.bool)

    sweep = (-2.0, 0.0, 1.0)
    exact = evaluate(gen, ext, axis_set, n=8, sweep=sweep, progress=False, strip_faces=0, exact=sweeper,
                     identity=PlantedIdentity(cut=0.1), identity_faces=5).to_dict()
    linear = evaluate(gen, ext, axis_set, n=8, sweep=sweep, progress=False, strip_faces=0,
                      identity=PlantedIdentity(cut=0.1), identity_faces=5).to_dict()
    assert exact["mode"] == "exact" and exact["settings"]["identity"]["faces"] == 5
    for k in (0, 1):  # the axes with a target; the locked exact sweep here moves along the axis too
        assert exact["axes"][k]["identity"] == linear["axes"][k]["identity"]
        assert exact["axes"][k]["locked"]["identity"] == linear["axes"][k]["identity"]
    assert exact["axes"][2]["identity"] is None  # no target: not swept in exact mode
    assert exact["summary"]["locked"]["identity_per_sigma_mean"] == pytest.approx(
        linear["summary"]["free"]["identity_per_sigma_mean"])
