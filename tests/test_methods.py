"""The direction-finding methods against planted truths: svm, logistic, conditional edits, SeFa, PCA, discovery."""

import pytest
import torch
from click.testing import CliRunner
from linear_models import LinearFeatures, LinearGenerator
from planted import PlantedExtractor, PlantedGenerator

from tlgan.axes.fit import fit_axes
from tlgan.axes.math import conditional_direction, lock_direction, normalize_rows
from tlgan.axes.methods.activations import default_layer, layer_activations
from tlgan.axes.methods.discover import LABEL_SEED, discover_axes
from tlgan.axes.methods.logistic import choose_threshold
from tlgan.axes.methods.pca import generator_pca, pca_to_latent
from tlgan.axes.methods.sefa import generator_sefa, sefa_directions
from tlgan.axes.methods.svm import extremes
from tlgan.axes.store import load_axes
from tlgan.errors import TlganError
from tlgan.sampling.latents import sample_latents
from tlgan.sampling.pipeline import run_samples

NAMES = ["lin", "prob", "score", "noisy"]


def _cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


@pytest.fixture(scope="module")
def planted_samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("samples")
    ext = PlantedExtractor(16)
    run_samples(PlantedGenerator(16), ext, 6000, seed=1, folder=folder, shard_size=2500, progress=False)
    return folder, ext.truth


def test_svm_recovers_planted_directions_and_records_accuracy(planted_samples):
    folder, truth = planted_samples
    axes = fit_axes(folder, method="svm")
    assert axes.method == "svm" and axes.params["percent"] == 2.0
    for k, name in enumerate(NAMES):
        assert _cos(axes.axes[axes.index(name)], truth[k]) >= 0.98, name
        q = axes.quality[name]
        assert q["val_samples"] > 0 and q["accuracy"] >= 0.95
        lo, hi = axes.params["thresholds"][name]
        assert lo < hi
    # the two classes are the extremes: cut values bracket ~96% of the readings
    assert axes.samples == 6000 and axes.weights.shape == (16, 4)


def test_svm_extremes_pick_exact_class_sizes_and_refuse_tiny_classes():
    values = torch.tensor([5.0, 1, 1, 1, 2, 3, 4, 9, 9, 9] * 10)
    train = torch.ones(100, dtype=torch.bool)
    low, high, lo, hi = extremes(values, train, 10.0)
    assert len(low) == len(high) == 10 and lo == 1 and hi == 9
    with pytest.raises(TlganError, match="at least 5"):
        extremes(values, train, 2.0)
    with pytest.raises(TlganError, match="same value"):
        extremes(torch.ones(100), train, 10.0)


def test_logistic_recovers_planted_directions_with_kind_thresholds(planted_samples):
    folder, truth = planted_samples
    axes = fit_axes(folder, method="logistic")
    for k, name in enumerate(NAMES):
        assert _cos(axes.axes[axes.index(name)], truth[k]) >= 0.98, name
    assert axes.quality["lin"]["accuracy"] > 0.97 and 0.4 < axes.quality["lin"]["balance"] < 0.6
    assert axes.params["threshold_rules"]["prob"] == "0.5" and axes.params["threshold_rules"]["score"] == "0"
    assert axes.params["threshold_rules"]["lin"] == "median"
    # a noisy feature is harder to classify than an exact one
    assert axes.quality["noisy"]["accuracy"] < axes.quality["lin"]["accuracy"]


def test_logistic_threshold_falls_back_to_median_for_rare_classes():
    rare = torch.cat([torch.full((995,), 0.1), torch.full((5,), 0.9)])  # 0.5% above 0.5
    cut, rule = choose_threshold(rare + torch.linspace(0, 1e-3, 1000), "probability")
    assert rule.startswith("median") and cut < 0.5
    assert choose_threshold(torch.linspace(0, 1, 101), "probability") == (0.5, "0.5")


def test_fit_refuses_unsupervised_methods_and_bad_options(planted_samples):
    folder, _ = planted_samples
    with pytest.raises(TlganError, match="tlgan discover --method sefa"):
        fit_axes(folder, method="sefa")
    with pytest.raises(TlganError, match="percent"):
        fit_axes(folder, method="svm", percent=60)
    with pytest.raises(TlganError, match="C must be positive"):
        fit_axes(folder, method="logistic", c=0)


def test_conditional_projection_is_the_lock_construction_for_many_conditions():
    gen = torch.Generator().manual_seed(11)
    for n_cond in (1, 3, 8):
        p = torch.randn(100, generator=gen, dtype=torch.float64)
        c = torch.randn(n_cond, 100, generator=gen, dtype=torch.float64)
        # InterFaceGAN's formula written out with an explicit inverse
        n_prime = p - c.T @ torch.linalg.inv(c @ c.T) @ c @ p
        n_prime = n_prime / n_prime.norm()
        assert torch.allclose(conditional_direction(p, c), n_prime, atol=1e-10)
        assert torch.allclose(lock_direction(p, c), n_prime, atol=1e-10)
        assert float((c @ n_prime).abs().max()) < 1e-10  # moving along n' leaves every condition unchanged


def test_sefa_equals_eigenvectors_of_ata():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(40, 12, generator=gen, dtype=torch.float64)
    axes, values = sefa_directions(a, 5)
    # independent route: right singular vectors of A, singular values squared
    _, s, vh = torch.linalg.svd(a, full_matrices=False)
    assert torch.allclose(values, s[:5] ** 2, rtol=1e-10)
    for k in range(5):
        assert abs(_cos(axes[k], vh[k])) > 1 - 1e-10
    assert torch.allclose(axes @ axes.T, torch.eye(5, dtype=torch.float64), atol=1e-10)
    # through a generator whose first layer is that weight
    g_axes, g_values = generator_sefa(LinearGenerator(a.float()), 5)
    assert torch.allclose(g_values, s[:5] ** 2, rtol=1e-5)
    assert all(abs(_cos(g_axes[k], vh[k])) > 1 - 1e-6 for k in range(5))
    with pytest.raises(TlganError, match="first_layer_weight"):
        generator_sefa(PlantedGenerator(16), 3)
    with pytest.raises(TlganError, match="between 1 and"):
        sefa_directions(a, 13)


def test_dcgan_first_layer_weight_is_the_linear_map_sefa_assumes(digiface):
    z = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    out = digiface.main[0](z[:, :, None, None]).flatten(1)  # first ConvTranspose, before BatchNorm
    assert torch.allclose(out, z @ digiface.first_layer_weight().T, atol=1e-4)
    axes, values = generator_sefa(digiface, 4)
    assert axes.shape == (4, 100) and bool((values[:-1] >= values[1:]).all())


def test_pca_maps_a_planted_dominant_direction_back_to_latent_space():
    gen = torch.Generator().manual_seed(5)
    d, m = 16, 48
    v = torch.nn.functional.normalize(torch.randn(d, generator=gen), dim=0)
    u = torch.nn.functional.normalize(torch.randn(m, generator=gen), dim=0)
    weight = 10 * torch.outer(u, v) + 0.3 * torch.randn(m, d, generator=gen)
    g = LinearGenerator(weight)
    directions, ratios, layer = generator_pca(g, 2, n=3000, seed=1, layer="first")
    assert layer == "first" and ratios[0] > 0.5 > ratios[1]
    assert abs(_cos(directions[0], v)) > 0.99
    # the plain function on a hand-made activation: h = [3 (z·v), noise] -> direction v, up to the regression's
    # sampling error (about sqrt((D - 1) / N) in the orthogonal directions)
    z = torch.randn(8000, d, generator=gen, dtype=torch.float64)
    acts = torch.cat([3 * (z @ v.double())[:, None], 0.1 * torch.randn(8000, 5, generator=gen, dtype=torch.float64)], 1)
    dirs, _ = pca_to_latent(z, acts, 1)
    assert abs(_cos(dirs[0], v)) > 0.995


def test_layer_activations_hook_any_module_and_stop_early():
    calls = []

    class Tail(torch.nn.Module):
        def forward(self, x):
            calls.append(1)
            return x

    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LeakyReLU(0.2), Tail())
    z = torch.randn(5, 4)
    acts = layer_activations(net, z, "1")
    assert torch.allclose(acts, torch.nn.functional.leaky_relu(net[0](z), 0.2)) and not calls
    assert default_layer(net) == "1"
    with pytest.raises(TlganError, match="unknown layer 'nope'; layers: 0, 1, 2"):
        layer_activations(net, z, "nope")
    with pytest.raises(TlganError, match="no nonlinearity"):
        default_layer(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_discovered_axes_are_named_labelled_oriented_and_renamable(tmp_path):
    scales = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
    g = LinearGenerator(torch.diag(scales))  # SeFa's axes are ±e_0, ±e_1, ... in that order
    ext = LinearFeatures(torch.eye(6)[[2, 0, 1]])  # c0 reads coordinate 2, c1 coordinate 0, c2 coordinate 1
    axes = discover_axes(g, "sefa", 3, ext, label_faces=40)
    assert axes.names == ["sefa_0", "sefa_1", "sefa_2"] and axes.method == "sefa"
    expected = {"sefa_0": "c1", "sefa_1": "c2", "sefa_2": "c0"}
    # moving e_k by 1 raises coordinate k by scale_k; its SD over the labelling faces is scale_k · SD(z_k)
    faces = sample_latents(LABEL_SEED, 0, 40, 6).double()
    for k, name in enumerate(axes.names):
        effect = 1 / float(faces[:, k].std())
        assert axes.descriptions[name].startswith(f"moves {expected[name]} most ({effect:+.2f} SD per σ)")
        assert axes.axes[k, k] > 0.999  # flipped so that it raises its feature
        assert axes.quality[name]["top_effect"] == pytest.approx(effect, rel=1e-4)
    assert axes.extractor == ext.identity
    path = tmp_path / "sefa.safetensors"
    axes.save(path)
    from tlgan.apps.cli.main import cli

    result = CliRunner().invoke(cli, ["rename", str(path), "sefa_0=first", "sefa_2=third"])
    assert result.exit_code == 0, result.output
    back = load_axes(path)
    assert back.names == ["first", "sefa_1", "third"]
    assert back.descriptions["first"].startswith("moves c1") and "eigenvalue" in back.quality["third"]
    for bad in (["sefa_1=first"], ["nope=x"], ["sefa_1"], ["sefa_1=has space"]):
        result = CliRunner().invoke(cli, ["rename", str(path), *bad])
        assert isinstance(result.exception, TlganError), bad


def test_discover_pca_on_planted_generator_labels_axes():
    weight = torch.diag(torch.tensor([6.0, 1.0, 1.0, 1.0]))
    axes = discover_axes(LinearGenerator(weight), "pca", 1, LinearFeatures(torch.eye(4)), n=2000, layer="first",
                         label_faces=30)
    assert axes.names == ["pca_0"] and axes.axes[0, 0] > 0.99
    assert axes.descriptions["pca_0"].startswith("moves c0 most")
    assert axes.params["layer"] == "first" and axes.quality["pca_0"]["explained_variance"] > 0.8
    with pytest.raises(TlganError, match="not 'svm'"):
        discover_axes(LinearGenerator(weight), "svm")


def test_renaming_a_supervised_axis_keeps_its_target(planted_samples):
    from tlgan.axes.ops import rename_axes
    from tlgan.evaluation.evaluate import axis_targets

    folder, _ = planted_samples
    axes = rename_axes(fit_axes(folder, method="svm"), {"prob": "smile"})
    assert axes.params["targets"] == {"smile": "prob"} and "smile" in axes.params["thresholds"]
    assert axis_targets(axes, NAMES) == ["lin", "prob", "score", "noisy"]
    back = rename_axes(axes, {"smile": "prob"})
    assert "targets" not in back.params


def test_normalised_classifier_axes_are_unit(planted_samples):
    folder, _ = planted_samples
    for method in ("svm", "logistic"):
        axes = fit_axes(folder, method=method, features=["lin", "prob"])
        assert torch.allclose(axes.axes.double().norm(dim=1), torch.ones(2, dtype=torch.float64), atol=1e-6)
        assert torch.allclose(normalize_rows(axes.weights.T.double()), axes.axes.double(), atol=1e-6)


def test_discover_and_build_cli_with_sefa(tmp_path):
    from tlgan.apps.cli.main import cli

    out = tmp_path / "sefa.safetensors"
    result = CliRunner().invoke(cli, ["discover", "--method", "sefa", "-k", "3", "--extractor", "none",
                                      "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    axes = load_axes(out)
    assert axes.names == ["sefa_0", "sefa_1", "sefa_2"] and axes.generator.startswith("digiface:")
    eig = [axes.quality[n]["eigenvalue"] for n in axes.names]
    assert eig == sorted(eig, reverse=True)
    out2 = tmp_path / "b.safetensors"
    result = CliRunner().invoke(cli, ["build", "--method", "sefa", "--extractor", "none", "--device", "cpu",
                                      "--out", str(out2)])
    assert result.exit_code == 0, result.output
    assert torch.allclose(load_axes(out2).axes[:3], axes.axes) and not (tmp_path / "b.samples").exists()
