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
