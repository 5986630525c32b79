"""The TL-GAN feature CNN read from Keras-layout HDF5 files written here, against a NumPy forward pass."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from _keras_files import celeba_cnn_layers, numpy_celeba_cnn, write_keras_h5

from tlgan import TlganError, load_extractor
from tlgan.models.extractors.base import resize
from tlgan.models.extractors.celeba_attributes import CELEBA_ATTRIBUTES
from tlgan.models.extractors.celeba_cnn import CelebaCNN, subsample_indices


@pytest.fixture(scope="module")
def layers():
    return celeba_cnn_layers(alpha=0.25, seed=0)


@pytest.fixture(scope="module")
def h5_file(tmp_path_factory, layers):
    return write_keras_h5(tmp_path_factory.mktemp("cnn") / "model_20180927_032934.h5", layers)


def _eight_bit_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Images in [-1, 1] on the 8-bit grid (so the original's uint8 round trip changes nothing)."""
    rng = np.random.default_rng(seed)
    smooth = rng.uniform(0, 255, (n, 3, 8, 8))
    pixels = np.kron(smooth, np.ones((size // 8, size // 8))) + rng.normal(0, 20, (n, 3, size, size))
    return torch.from_numpy(np.clip(np.round(pixels), 0, 255) / 127.5 - 1).float()


def test_matches_numpy_forward(h5_file, layers):
    model = load_extractor(f"celeba-cnn:{h5_file}", device="cpu")
    assert isinstance(model, CelebaCNN)
    images = _eight_bit_images(3, 128)
    got = model(images).numpy()
    expected = numpy_celeba_cnn(layers, images.numpy())
    assert got.shape == (3, 40) and got.dtype == np.float32
    assert expected.std(axis=0).mean() > 0.01  # outputs vary with the input: the comparison means something
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_features_are_the_celeba_attributes(h5_file):
    model = load_extractor(f"celeba-cnn:{h5_file}", device="cpu")
    assert model.feature_names == list(CELEBA_ATTRIBUTES)
    assert {f.kind for f in model.features} == {"tanh"}
    assert model.identity.startswith("celeba-cnn:") and not model.identity.endswith("antialias")
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_original_subsampling_and_antialias_option(h5_file):
    assert subsample_indices(1024, 128).tolist() == list(range(4, 1024, 8))  # the original [4::8, 4::8]
    original = load_extractor(f"celeba-cnn:{h5_file}", device="cpu")
    smooth = load_extractor(f"celeba-cnn-antialias:{h5_file}", device="cpu")
    assert smooth.identity.endswith(":antialias") and smooth.identity != original.identity
    images = torch.rand(2, 3, 1024, 1024) * 2 - 1
    quantised = ((images + 1) * 127.5).round() / 127.5 - 1
    torch.testing.assert_close(original(images), original.scores(quantised[:, :, 4::8, 4::8]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(smooth(images), smooth.scores(resize(images, 128)), rtol=1e-5, atol=1e-5)
    # Noise images: every-8th-pixel keeps the noise, anti-aliasing averages it away; the scores differ.
    assert (original(images) - smooth(images)).abs().max() > 1e-3


def test_weights_only_file_gives_the_same_network(tmp_path, layers, h5_file):
    weights_only = write_keras_h5(tmp_path / "weights.h5", layers, weights_only=True)
    images = _eight_bit_images(2, 128, seed=1)
    a = load_extractor(f"celeba-cnn:{h5_file}", device="cpu")(images)
    b = load_extractor(f"celeba-cnn:{weights_only}", device="cpu")(images)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_epsilon_is_read_from_model_config(tmp_path):
    layers = celeba_cnn_layers(alpha=0.25, seed=2)
    layers = [(n, c, {**cfg, "epsilon": 0.5} if n == "conv_pw_13_bn" else cfg, w) for n, c, cfg, w in layers]
    model = load_extractor(f"celeba-cnn:{write_keras_h5(tmp_path / 'm.h5', layers)}", device="cpu")
    assert model.backbone.blocks[12]["pw"].bn.eps == 0.5 and model.backbone.blocks[0]["pw"].bn.eps == 1e-3


def _drop(layers, weight):
    return [(n, c, cfg, [(wn, v) for wn, v in ws if wn != weight]) for n, c, cfg, ws in layers]


def _reshape(layers, weight):
    return [(n, c, cfg, [(wn, v[..., :-1] if wn == weight else v) for wn, v in ws]) for n, c, cfg, ws in layers]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, L: p, "not found"),
        (lambda p, L: (p.write_bytes(b"not hdf5 at all"), p)[1], "not a readable HDF5"),
        (lambda p, L: (h5py.File(p, "w").close(), p)[1], "not a Keras HDF5"),
        (lambda p, L: write_keras_h5(p, _drop(L, "conv_pw_13/kernel:0")), "conv_pw_13/kernel"),
        (lambda p, L: write_keras_h5(p, _reshape(L, "conv_dw_5_bn/gamma:0")), "conv_dw_5_bn/gamma"),
        (lambda p, L: write_keras_h5(p, celeba_cnn_layers(alpha=0.25, outputs=10)), "40 CelebA outputs"),
    ],
    ids=["missing", "not-hdf5", "not-keras", "missing-weight", "wrong-shape", "ten-outputs"],
)
def test_bad_files_give_clear_errors(tmp_path, layers, make, message):
    path = make(tmp_path / "bad.h5", layers)
    with pytest.raises(TlganError, match=message):
        load_extractor(f"celeba-cnn:{path}", device="cpu")


def test_rejects_bad_image_shape(h5_file):
    model = load_extractor(f"celeba-cnn:{h5_file}", device="cpu")
    with pytest.raises(TlganError, match=r"\(N, 3, H, W\)"):
        model(torch.zeros(2, 1, 64, 64))


@pytest.mark.parametrize("style", ["2.2.0", "keras3"])
def test_other_keras_layouts_match_their_numpy_forward(tmp_path, style):
    """Keras 2.2.0 (symmetric ZeroPadding2D((1, 1))) and Keras 3 (no ':0', depthwise 'kernel', Functional)."""
    layers = celeba_cnn_layers(alpha=0.25, seed=3, style=style)
    path = write_keras_h5(tmp_path / "m.h5", layers, keras3=style == "keras3")
    if style == "keras3":
        with h5py.File(path, "r") as f:
            assert "conv_dw_1/kernel" in f["model_weights/conv_dw_1"] and '"Functional"' in str(f.attrs["model_config"])
    model = load_extractor(f"celeba-cnn:{path}", device="cpu")
    images = _eight_bit_images(2, 128, seed=4)
    expected = numpy_celeba_cnn(layers, images.numpy())
    np.testing.assert_allclose(model(images).numpy(), expected, rtol=1e-4, atol=1e-4)
    if style == "2.2.0":
        # The same weights under 2.2.4's asymmetric padding compute something else: the padding matters.
        asymmetric = numpy_celeba_cnn(celeba_cnn_layers(alpha=0.25, seed=3), images.numpy())
        assert np.abs(asymmetric - expected).max() > 1e-2


def test_keras3_weights_only_file(tmp_path):
    layers = celeba_cnn_layers(alpha=0.25, seed=5, style="keras3")
    full = write_keras_h5(tmp_path / "full.h5", layers, keras3=True)
    weights_only = write_keras_h5(tmp_path / "weights.h5", layers, weights_only=True, keras3=True)
    images = _eight_bit_images(2, 128, seed=6)
    a = load_extractor(f"celeba-cnn:{full}", device="cpu")(images)
    b = load_extractor(f"celeba-cnn:{weights_only}", device="cpu")(images)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def _with_config(layers, name, **changes):
    return [(n, c, {**cfg, **changes} if n == name else cfg, w) for n, c, cfg, w in layers]


@pytest.mark.parametrize(
    "change, message",
    [
        (("conv_dw_2", {"strides": [1, 1]}), "conv_dw_2.*stride 2"),
        (("conv_dw_3", {"padding": "causal"}), "conv_dw_3"),
        (("conv_pad_2", {"padding": "reflect-ish"}), "conv_pad_2.*not understood"),
        (("conv_dw_4", {"dilation_rate": [2, 2]}), "dilated"),
    ],
    ids=["strides", "padding-mode", "padding-spec", "dilation"],
)
def test_configs_tlgan_does_not_implement_are_refused(tmp_path, change, message):
    layers = _with_config(celeba_cnn_layers(alpha=0.25, seed=1), change[0], **change[1])
    with pytest.raises(TlganError, match=message):
        load_extractor(f"celeba-cnn:{write_keras_h5(tmp_path / 'm.h5', layers)}", device="cpu")


def _external_storage(path, layers):
    write_keras_h5(path, layers)
    with h5py.File(path, "r+") as f:
        name = "model_weights/fc2_dense/fc2_dense/bias:0"
        del f[name]
        f.create_dataset(name, shape=(40,), dtype="f4", external=[("/etc/passwd", 0, 160)])
    return path


def _other_file(path):
    """A second HDF5 file beside ``path`` holding a (40,) float32 dataset 'b', for links out of the model file."""
    other = path.with_name("other.h5")
    with h5py.File(other, "w") as f:
        f.create_dataset("b", data=np.zeros(40, np.float32))
    return other


def _virtual(path, layers):
    write_keras_h5(path, layers)
    other = _other_file(path)
    with h5py.File(path, "r+") as f:
        name = "model_weights/fc2_dense/fc2_dense/bias:0"
        del f[name]
        layout = h5py.VirtualLayout(shape=(40,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(other), "b", shape=(40,))
        f.create_virtual_dataset(name, layout)
    return path


def _external_link(path, layers):
    write_keras_h5(path, layers)
    other = _other_file(path)
    with h5py.File(path, "r+") as f:
        name = "model_weights/fc2_dense/fc2_dense/bias:0"
        del f[name]
        f[name] = h5py.ExternalLink(str(other), "b")
    return path


@pytest.mark.parametrize("make, message", [(_external_storage, "/etc/passwd"), (_virtual, "virtual"),
                                           (_external_link, "external link")],
                         ids=["external-storage", "virtual", "external-link"])
def test_data_outside_the_file_is_refused(tmp_path, layers, make, message):
    import subprocess
    import sys
    from pathlib import Path

    path = make(tmp_path / "m.h5", layers)
    with pytest.raises(TlganError, match=message):
        load_extractor(f"celeba-cnn:{path}", device="cpu")
    tlgan = str(Path(sys.executable).with_name("tlgan"))
    result = subprocess.run([tlgan, "check-model", f"celeba-cnn:{path}", "--kind", "extractor"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "FAIL" in result.stdout and "self-contained" in result.stdout
