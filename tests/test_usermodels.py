"""Users' own models (entry point, TorchScript, ONNX) and check-model catching each typical mistake."""

from __future__ import annotations

import json
import warnings

import _user_models as um
import numpy as np
import pytest
import torch
from _user_models import (
    ByteRangeNHWC,
    TinyExtractor,
    TinyGenerator,
    onnx_extractor,
    onnx_generator,
)

from tlgan import TlganError, load_extractor, load_generator
from tlgan.models.check import check_model, probe_images
from tlgan.models.user import UserExtractor, UserGenerator

EP = "entrypoint:_user_models"


def _z(n=4, seed=0):
    return torch.randn(n, um.LATENT, generator=torch.Generator().manual_seed(seed))


def _save_script(module, path, extra=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(module)
        torch.jit.save(scripted, str(path), _extra_files=extra or {})
    return path


# --- loading ------------------------------------------------------------------------------------------
def test_entrypoint_generator_module_and_file_forms(tmp_path):
    reference = TinyGenerator()
    z = _z()
    for spec in (f"{EP}:good_generator", f"entrypoint:{um.__file__}:good_generator"):
        generator = load_generator(spec, device="cpu")
        assert isinstance(generator, UserGenerator)
        assert generator.latent_dim == 8 and generator.resolution == 8
        torch.testing.assert_close(generator(z), reference(z))
        assert generator.identity.startswith("entrypoint:") and len(generator.identity.rsplit(":", 1)[1]) == 16
    with pytest.raises(TlganError, match=r"shape \(N, 8\)"):
        generator(torch.zeros(2, 5))


def test_declared_range_and_layout_are_converted():
    generator = load_generator(f"{EP}:byte_nhwc_generator", device="cpu")
    z = _z()
    # ByteRangeNHWC outputs (tanh + 1) * 127.5 in NHWC; tlgan gives back the tanh images in NCHW.
    torch.testing.assert_close(generator(z), TinyGenerator()(z), rtol=1e-5, atol=1e-5)
    assert ByteRangeNHWC()(z).shape == (4, 8, 8, 3)


def test_entrypoint_extractor_gets_declared_input():
    extractor = load_extractor(f"{EP}:good_extractor", device="cpu")
    assert isinstance(extractor, UserExtractor)
    assert extractor.feature_names == ["redness", "bright"]
    assert [f.kind for f in extractor.features] == ["real", "probability"]
    assert extractor.features[0].group == "lighting and colour"
    images = probe_images(3, 64)
    expected = TinyExtractor()(torch.nn.functional.interpolate(images, size=16, mode="bilinear", antialias=True))
    torch.testing.assert_close(extractor(images), expected, rtol=1e-5, atol=1e-5)


def test_torchscript_generator_with_attribute_and_extractor_with_embedded_json(tmp_path):
    gen_file = _save_script(TinyGenerator(seed=1), tmp_path / "gen.pt")
    generator = load_generator(f"torchscript:{gen_file}", device="cpu")
    torch.testing.assert_close(generator(_z()), TinyGenerator(seed=1)(_z()))
    assert generator.identity.startswith("torchscript:") and generator.latent_dim == 8

    class Plain(torch.nn.Module):  # no declarations as attributes: they come from the embedded tlgan.json
        def forward(self, x):
            return torch.sigmoid(x.mean(dim=(2, 3)))

    declared = {"features": [{"name": c, "kind": "probability"} for c in ("r", "g", "b")], "input_size": [12, 10],
                "input_range": [0, 1]}
    ext_file = _save_script(Plain(), tmp_path / "ext.pt", {"tlgan.json": json.dumps(declared)})
    extractor = load_extractor(f"torchscript:{ext_file}", device="cpu")
    assert extractor.feature_names == ["r", "g", "b"]
    images = probe_images(2, 32)
    x = (torch.nn.functional.interpolate(images, size=(12, 10), mode="bilinear", antialias=True) + 1) / 2
    torch.testing.assert_close(extractor(images), torch.sigmoid(x.mean(dim=(2, 3))), rtol=1e-5, atol=1e-5)


def test_sidecar_json_declares_a_torchscript_model(tmp_path):
    class Bare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 3 * 8 * 8)

        def forward(self, z):
            return torch.tanh(self.fc(z)).reshape(-1, 3, 8, 8)

    path = _save_script(Bare(), tmp_path / "bare.pt")
    with pytest.raises(TlganError, match="latent_dim"):
        load_generator(f"torchscript:{path}", device="cpu")
    (tmp_path / "bare.pt.json").write_text(json.dumps({"latent_dim": 8}))
    assert load_generator(f"torchscript:{path}", device="cpu").latent_dim == 8


def test_onnx_generator_and_extractor(tmp_path):
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((8, 192)).astype(np.float32), rng.standard_normal(192).astype(np.float32)
    path = onnx_generator(tmp_path / "gen.onnx", w, b, meta={"name": "tiny-onnx"})
    generator = load_generator(f"onnx:{path}", device="cpu")
    assert generator.latent_dim == 8 and generator.name == "tiny-onnx" and generator.identity.startswith("onnx:")
    z = _z(3)
    expected = np.tanh(z.numpy() @ w + b).reshape(3, 3, 8, 8)
    np.testing.assert_allclose(generator(z).numpy(), expected, rtol=1e-5, atol=1e-5)

    ext = onnx_extractor(tmp_path / "ext.onnx", meta={"features": [{"name": f"mean_{c}", "kind": "probability"}
                                                                   for c in "rgb"], "input_size": 16})
    extractor = load_extractor(f"onnx:{ext}", device="cpu")
    images = probe_images(2, 40)
    x = torch.nn.functional.interpolate(images, size=16, mode="bilinear", antialias=True)
    torch.testing.assert_close(extractor(images), torch.sigmoid(x.mean(dim=(2, 3))), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("entrypoint:no_such_module_xyz:make", "cannot import"),
        (f"{EP}:nothing_here", "no callable 'nothing_here'"),
        ("entrypoint:justamodule", "package.module:factory"),
        (f"{EP}:bad_factory_raises", "RuntimeError: weights file missing"),
        (f"{EP}:bad_generator_no_latent_dim", "latent_dim"),
        (f"{EP}:bad_generator_range", "range: .*outside the declared range.*check-model"),
        (f"{EP}:bad_generator_raises", "rendering one latent failed: ValueError"),
        ("torchscript:/no/such/file.pt", "not found"),
        ("onnx:/no/such/file.onnx", "not found"),
    ],
)
def test_loading_errors_are_clear(spec, message):
    with pytest.raises(TlganError, match=message):
        load_generator(spec, device="cpu")


def test_bad_model_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(TlganError, match="not a loadable TorchScript"):
        load_generator(f"torchscript:{junk}", device="cpu")
    junk_onnx = tmp_path / "junk.onnx"
    junk_onnx.write_bytes(b"\x08\x07garbage")
    with pytest.raises(TlganError, match="not a loadable ONNX"):
        load_generator(f"onnx:{junk_onnx}", device="cpu")
    with pytest.raises(TlganError, match="declare its features"):
        load_extractor(f"{EP}:bad_extractor_no_features", device="cpu")


# --- check-model ----------------------------------------------------------------------------------------
def test_check_model_passes_good_models(tmp_path):
    rng = np.random.default_rng(1)
    onnx_gen = onnx_generator(tmp_path / "g.onnx", rng.standard_normal((8, 192)), rng.standard_normal(192))
    onnx_ext = onnx_extractor(tmp_path / "e.onnx", meta={"features": ["r", "g", "b"], "input_size": 16})
    script = _save_script(TinyGenerator(), tmp_path / "g.pt")
    for spec, kind in [(f"{EP}:good_generator", "generator"), (f"{EP}:byte_nhwc_generator", "generator"),
                       (f"onnx:{onnx_gen}", "generator"), (f"torchscript:{script}", "generator"),
                       (f"{EP}:good_extractor", "extractor"), (f"onnx:{onnx_ext}", "extractor")]:
        report = check_model(spec, kind)
        assert report.ok, report.format()
        checks = [f.check for f in report.findings]
        assert {"load", "shape", "finite", "range", "determinism", "batch", "sensitivity"} <= set(checks), checks


@pytest.mark.parametrize(
    "factory, check, hint",
    [
        ("bad_generator_nhwc", "shape", "looks like NHWC"),
        ("bad_generator_range", "range", r"\[-3|outside the declared range"),
        ("bad_generator_float64", "dtype", "float64"),
        ("bad_generator_uint8", "dtype", "output_range \\[0, 255\\]"),
        ("bad_generator_nan", "finite", "1 of 768 values"),
        ("bad_generator_noise", "determinism", "same input twice"),
        ("bad_generator_batchnorm", "batch", "batch"),
        ("bad_generator_ignores_z", "sensitivity", "ignores the input"),
        ("bad_generator_returns_list", "type", "returned list"),
        ("bad_generator_raises", "run", "ValueError"),
        ("bad_generator_no_latent_dim", "load", "latent_dim"),
        ("bad_factory_raises", "load", "RuntimeError"),
    ],
)
def test_check_model_catches_generator_mistakes(factory, check, hint):
    report = check_model(f"{EP}:{factory}", "generator")
    assert not report.ok
    assert report.failed() == [check], report.format()
    message = next(f.message for f in report.findings if f.check == check)
    assert __import__("re").search(hint, message), message
    assert "FAIL" in report.format() and check in report.format()


@pytest.mark.parametrize(
    "factory, check, hint",
    [
        ("bad_extractor_count", "shape", "returns 3 values per image but declares 2"),
        ("bad_extractor_logits", "range", "'bright' \\(probability\\)"),
        ("bad_extractor_nan", "finite", "NaN"),
        ("bad_extractor_noise", "determinism", "same input twice"),
        ("bad_extractor_no_features", "load", "declare its features"),
    ],
)
def test_check_model_catches_extractor_mistakes(factory, check, hint):
    report = check_model(f"{EP}:{factory}", "extractor")
    assert report.failed() == [check], report.format()
    assert __import__("re").search(hint, next(f.message for f in report.findings if f.check == check))


def test_check_model_on_builtin_specs(tmp_path):
    from _tf1_files import g_paper_variables, write_tf1_pickle

    pkl = write_tf1_pickle(tmp_path / "g.pkl", g_paper_variables(resolution=8), 8)
    report = check_model(f"pggan:{pkl}", "generator")
    assert report.ok, report.format()
    assert not check_model("pggan:/missing.pkl", "generator").ok
    with pytest.raises(TlganError, match="kind"):
        check_model(f"pggan:{pkl}", "discriminator")
