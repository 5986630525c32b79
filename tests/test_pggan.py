"""PG-GAN (G_paper) in PyTorch, read from TF1-style pickles built here, against an independent NumPy forward pass."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from _tf1_files import g_paper_variables, numpy_g_paper, write_tf1_pickle

from tlgan import TlganError, load_generator
from tlgan.models.generators.pggan import (
    PGGAN,
    convert_tf1_to_safetensors,
    read_tf1_pickle,
)


def _z(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize(
    "resolution, fused, lod",
    [(32, False, 0.0), (16, True, 0.0), (16, False, 0.5), (8, True, 1.0)],
    ids=["32px", "16px-fused-upconv", "16px-lod0.5", "8px-fused-lod1"],
)
def test_matches_numpy_forward(tmp_path, resolution, fused, lod):
    variables = g_paper_variables(resolution=resolution, fused=fused, lod=lod, seed=resolution)
    path = write_tf1_pickle(tmp_path / "pggan.pkl", variables, resolution)
    generator = load_generator(f"pggan:{path}", device="cpu")
    assert isinstance(generator, PGGAN)
    assert generator.resolution == resolution and generator.latent_dim == 32

    z = _z(5, 32, seed=lod.__hash__() % 100)
    expected = numpy_g_paper(variables, z)
    got = generator.render_raw(torch.from_numpy(z)).numpy()
    assert got.shape == (5, 3, resolution, resolution)
    assert np.abs(expected).max() > 1.0  # random weights: some pixels fall outside [-1, 1], so clamping is tested
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    clamped = generator(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(clamped, np.clip(expected, -1, 1), rtol=1e-4, atol=1e-4)


def test_reads_gs_not_g_and_never_runs_build_source(tmp_path):
    marker = tmp_path / "ran.txt"
    variables = g_paper_variables(resolution=16, seed=3)
    src = f"open({str(marker)!r}, 'w').write('build_module_src ran')\ndef G_paper(*a, **k): pass\n"
    path = write_tf1_pickle(tmp_path / "g.pkl", variables, 16, build_module_src=src)
    weights = read_tf1_pickle(path)
    assert not marker.exists()
    # Gs holds the variables as given; G (first in the tuple) holds them halved.
    np.testing.assert_array_equal(weights.variables["4x4/Dense/weight"], dict(variables)["4x4/Dense/weight"])
    assert weights.static_kwargs["resolution"] == 16


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_pickle_protocols_and_numpy1_names(tmp_path, protocol):
    variables = g_paper_variables(resolution=8, seed=7)
    path = write_tf1_pickle(tmp_path / "g.pkl", variables, 8, protocol=protocol)
    if protocol in (0, 2):
        # Release pickles were written by NumPy 1.x, which names numpy.core (text opcodes allow the rewrite).
        data = path.read_bytes()
        assert b"numpy._core" in data
        path.write_bytes(data.replace(b"numpy._core", b"numpy.core"))
    generator = load_generator(f"pggan:{path}", device="cpu")
    z = _z(2, 32)
    np.testing.assert_allclose(generator.render_raw(torch.from_numpy(z)).numpy(), numpy_g_paper(variables, z),
                               rtol=1e-4, atol=1e-4)


def test_convert_to_safetensors_gives_same_generator(tmp_path):
    variables = g_paper_variables(resolution=16, fused=True, seed=11)
    src = write_tf1_pickle(tmp_path / "g.pkl", variables, 16)
    dst = tmp_path / "out" / "g.safetensors"
    config = convert_tf1_to_safetensors(src, dst)
    assert config.resolution == 16 and config.fused == (True, True)
    assert sorted(p.name for p in dst.parent.iterdir()) == ["g.safetensors"]  # no temporary file left behind

    from_pickle = load_generator(f"pggan:{src}", device="cpu")
    converted = load_generator(f"pggan:{dst}", device="cpu")
    assert converted.identity == from_pickle.identity and converted.identity.startswith("pggan:")
    z = torch.from_numpy(_z(3, 32))
    torch.testing.assert_close(converted(z), from_pickle(z), rtol=0, atol=0)


def test_identity_depends_on_weights(tmp_path):
    a = write_tf1_pickle(tmp_path / "a.pkl", g_paper_variables(resolution=8, seed=1), 8)
    b = write_tf1_pickle(tmp_path / "b.pkl", g_paper_variables(resolution=8, seed=2), 8)
    assert load_generator(f"pggan:{a}", "cpu").identity != load_generator(f"pggan:{b}", "cpu").identity


def test_generator_contract(tmp_path):
    path = write_tf1_pickle(tmp_path / "g.pkl", g_paper_variables(resolution=16, seed=5), 16)
    generator = load_generator(f"pggan:{path}", device="cpu")
    assert not any(p.requires_grad for p in generator.parameters())
    a = generator.first_layer_weight()
    assert a.shape == (32 * 16, 32)
    with pytest.raises(TlganError, match=r"shape \(N, 32\)"):
        generator(torch.zeros(2, 31))
    # Pixel-norm of z: the image depends on z's direction only, as in the original.
    z = torch.from_numpy(_z(2, 32))
    torch.testing.assert_close(generator(z), generator(3.0 * z), rtol=1e-4, atol=1e-4)


def test_bfloat16_runs_close_to_float32(tmp_path):
    path = write_tf1_pickle(tmp_path / "g.pkl", g_paper_variables(resolution=16, seed=9), 16)
    generator = load_generator(f"pggan:{path}", device="cpu")
    z = torch.from_numpy(_z(4, 32))
    full = generator(z)
    half = generator.to(torch.bfloat16)(z)
    assert half.dtype == torch.float32 and half.shape == full.shape
    assert (half - full).abs().mean() < 0.05


def _variables_without(name: str) -> list:
    return [(n, v) for n, v in g_paper_variables(resolution=16, seed=1) if n != name]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "not found"),
        (lambda p: (p.write_bytes(b"\x80\x04\x95garbage"), p)[1], "not a readable"),
        (lambda p: write_tf1_pickle(p, g_paper_variables(resolution=8), 8, build_func_name="G_style"), "G_paper"),
        (lambda p: write_tf1_pickle(p, _variables_without("8x8/Conv1/bias"), 16), "8x8/Conv1/bias"),
        (lambda p: write_tf1_pickle(p, _variables_without("ToRGB_lod0/weight"), 16), "ToRGB_lod0/weight"),
        (lambda p: write_tf1_pickle(p, g_paper_variables(resolution=8), 8, extra_static={"label_size": 4}), "conditional"),
        (lambda p: (p.write_bytes(pickle.dumps({"direction": np.zeros(3)})), p)[1], "tfutil.Network"),
    ],
    ids=["missing", "garbage", "not-g-paper", "missing-bias", "missing-torgb", "conditional", "not-a-network"],
)
def test_bad_pickles_give_clear_errors(tmp_path, make, message):
    path = make(tmp_path / "bad.pkl")
    with pytest.raises(TlganError, match=message):
        load_generator(f"pggan:{path}", device="cpu")


def test_bad_shapes_and_files(tmp_path):
    variables = [(n, v[..., :-1] if n == "16x16/Conv1/weight" else v) for n, v in g_paper_variables(resolution=16)]
    path = write_tf1_pickle(tmp_path / "g.pkl", variables, 16)
    with pytest.raises(TlganError, match="does not fit|reads"):
        load_generator(f"pggan:{path}", device="cpu")
    with pytest.raises(TlganError, match=r"\.pkl .* or \.safetensors"):
        load_generator(f"pggan:{tmp_path / 'g.h5'}", device="cpu")
    with pytest.raises(TlganError, match="needs a weights file"):
        load_generator("pggan", device="cpu")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(TlganError, match="not a readable safetensors"):
        load_generator(f"pggan:{broken}", device="cpu")
    from safetensors.numpy import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"x": np.zeros(2, np.float32)}, str(plain))
    with pytest.raises(TlganError, match="no tlgan header"):
        load_generator(f"pggan:{plain}", device="cpu")


@pytest.mark.parametrize("names", [("G", "D", "Gs"), ("G_paper", "D_paper", "G_paper")], ids=["G-D-Gs", "G_paper-names"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_release_tuple_is_positional_whatever_the_names(tmp_path, names, protocol):
    """(G, D, Gs) by position: Karras' converted release names its networks after their build functions."""
    variables = g_paper_variables(resolution=8, seed=12)
    path = write_tf1_pickle(tmp_path / "g.pkl", variables, 8, protocol=protocol, names=names, numpy1=True)
    data = path.read_bytes()
    assert b"numpy.core.multiarray" in data and b"numpy._core" not in data  # written as NumPy 1.x wrote it
    weights = read_tf1_pickle(path)
    np.testing.assert_array_equal(weights.variables["4x4/Dense/weight"], dict(variables)["4x4/Dense/weight"])
    generator = load_generator(f"pggan:{path}", device="cpu")
    z = _z(2, 32)
    np.testing.assert_allclose(generator.render_raw(torch.from_numpy(z)).numpy(), numpy_g_paper(variables, z),
                               rtol=1e-4, atol=1e-4)


def test_convert_cli_reads_the_g_paper_named_release(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    variables = g_paper_variables(resolution=8, seed=13)
    src = write_tf1_pickle(tmp_path / "karras.pkl", variables, 8, names=("G_paper", "D_paper", "G_paper"), numpy1=True)
    dst = tmp_path / "g.safetensors"
    tlgan = str(Path(sys.executable).with_name("tlgan"))
    result = subprocess.run([tlgan, "convert", "pggan-tf1", str(src), str(dst)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "PG-GAN 8x8, latent 32" in result.stdout
    converted = load_generator(f"pggan:{dst}", device="cpu")
    assert converted.identity == load_generator(f"pggan:{src}", device="cpu").identity
    z = _z(2, 32)
    np.testing.assert_allclose(converted.render_raw(torch.from_numpy(z)).numpy(), numpy_g_paper(variables, z),
                               rtol=1e-4, atol=1e-4)


def test_pick_generator_layouts():
    from tlgan.models.formats.tf1_network import TF1Network, pick_generator

    def net(name: str, func: str) -> TF1Network:
        return TF1Network(name=name, build_func_name=func, static_kwargs={}, variables={})

    release = [net("G_paper", "G_paper"), net("D_paper", "D_paper"), net("G_paper", "G_paper")]
    assert pick_generator(release, "x") is release[2]
    single = [net("G_paper", "G_paper")]
    assert pick_generator(single, "x") is single[0]
    named = [net("Gs", "G_paper"), net("D", "D_paper")]
    assert pick_generator(named, "x") is named[0]
    with pytest.raises(TlganError, match="cannot tell"):
        pick_generator([net("a", "G_paper"), net("b", "G_paper")], "x")
    with pytest.raises(TlganError, match="cannot tell"):
        pick_generator([net("G", "G_paper"), net("Gs", "G_paper"), net("D", "D_paper"), net("Gs", "G_paper")], "x")
