"""StyleGAN2: loading NVlabs pickles (no embedded code ever runs) and rosinality checkpoints, the W/W+
API, truncation, conversion round trips, and the modulated convolution against its definition."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tlgan.errors import TlganError
from tlgan.models.generators import load_generator
from tlgan.models.generators.stylegan_ops import (
    make_filter,
    modulated_conv2d,
    upsample2d,
)

sys.path.insert(0, str(Path(__file__).parent))
from _stylegan_files import (
    random_stylegan2,
    write_nvlabs_pickle,
    write_rosinality,
)

TLGAN = str(Path(sys.executable).with_name("tlgan"))


@pytest.fixture(scope="module")
def model():
    return random_stylegan2(seed=0)


@pytest.fixture(scope="module")
def nvlabs_file(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("sg2")
    marker = d / "module_src_ran"
    return write_nvlabs_pickle(d / "network-snapshot.pkl", model, marker=marker), marker


def z_batch(n=3, dim=32, seed=1):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


# --- loading --------------------------------------------------------------------------------------------
def test_nvlabs_pickle_loads_g_ema_and_never_runs_module_src(nvlabs_file, model):
    path, marker = nvlabs_file
    g = load_generator(f"stylegan:{path}", "cpu")
    assert not marker.exists(), "module_src embedded in the pickle was executed"
    z = z_batch()
    assert torch.equal(g.synthesize(z), model.synthesize(z))  # G_ema, not G (written with other weights)
    assert g.name == "stylegan2" and g.spaces == ("z", "w", "w+")
    assert (g.latent_dim, g.w_dim, g.num_ws, g.resolution) == (32, 32, 8, 32)
    assert g.identity.startswith("stylegan2:") and g.identity == load_generator(f"stylegan:{path}", "cpu").identity
    # FFHQ-like flags were read from the pickled modules: fp16 blocks (run in float32 on CPU) and clamp 256.
    assert g.config.conv_clamp == 256.0 and [b.use_fp16 for b in g.synthesis.blocks()] == [False, True, True, True]
    assert g.config.mapping_layers == 8 and g.config.mapping_lr_multiplier == pytest.approx(0.01)


@pytest.mark.parametrize("protocol,top", [(2, "dict"), (4, "dict"), (5, "module")])
def test_pickle_protocols_and_bare_module(tmp_path, model, protocol, top):
    marker = tmp_path / "ran"
    path = write_nvlabs_pickle(tmp_path / "g.pkl", model, marker=marker, protocol=protocol, top=top)
    g = load_generator(f"stylegan:{path}", "cpu")
    z = z_batch(2)
    assert torch.equal(g.synthesize(z), model.synthesize(z))
    assert not marker.exists()


def test_pickle_naming_other_callables_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Evil()}))
    with pytest.raises(TlganError, match="builtins.print"):
        load_generator(f"stylegan:{path}", "cpu")


def test_bad_files_give_one_line_errors(tmp_path):
    (tmp_path / "trunc.pkl").write_bytes(b"\x80\x04\x95")
    for spec, pattern in [(f"stylegan:{tmp_path / 'missing.pkl'}", "not found"),
                          (f"stylegan:{tmp_path / 'trunc.pkl'}", "not a readable"),
                          ("stylegan", "needs a weights file")]:
        with pytest.raises(TlganError, match=pattern) as info:
            load_generator(spec, "cpu")
        assert "\n" not in str(info.value)
    other = tmp_path / "weights.txt"
    other.write_text("x")
    with pytest.raises(TlganError, match=r"\.pkl"):
        load_generator(f"stylegan:{other}", "cpu")


def test_rosinality_checkpoints(tmp_path):
    source = random_stylegan2(seed=3, conv_clamp=None, num_fp16_res=0)
    z = z_batch()
    g = load_generator(f"stylegan:{write_rosinality(tmp_path / 'ffhq.pt', source)}", "cpu")
    assert torch.allclose(g.w_avg, source.w_avg)
    assert (g.synthesize(z) - source.synthesize(z)).abs().max() < 1e-4
    # A training checkpoint (with argparse 'args', no latent_avg): w_avg estimated from mapped z.
    g2 = load_generator(f"stylegan:{write_rosinality(tmp_path / 'train.pt', source, training_checkpoint=True)}", "cpu")
    assert (g2.synthesize(z) - source.synthesize(z)).abs().max() < 1e-4
    assert (g2.w_avg - source.w_avg).norm() < 0.2 * source.w_avg.norm() + 0.1


@pytest.mark.slow
def test_convert_round_trip_cli(tmp_path, nvlabs_file):
    path, marker = nvlabs_file
    out = tmp_path / "ffhq.safetensors"
    run = subprocess.run([TLGAN, "convert", "stylegan", str(path), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "stylegan2 32x32" in run.stdout
    a, b = load_generator(f"stylegan:{path}", "cpu"), load_generator(f"stylegan:{out}", "cpu")
    assert a.identity == b.identity and a.config == b.config
    z = z_batch()
    assert torch.equal(a.synthesize(z), b.synthesize(z))
    bad = subprocess.run([TLGAN, "convert", "stylegan", str(path), str(tmp_path / "x.pt")], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().startswith("error:") and "safetensors" in bad.stderr
    assert not marker.exists()


# --- spaces, truncation, layers ----------------------------------------------------------------------
def test_mapping_truncation_and_synthesize_w(model):
    z = z_batch(4)
    w = model.mapping(z)
    assert w.shape == (4, model.w_dim)
    assert torch.allclose(model.mapping(z, truncation=0.0), model.w_avg.expand(4, -1))
    assert torch.allclose(model.mapping(z, truncation=0.7), model.w_avg + 0.7 * (w - model.w_avg), atol=1e-6)
    ws = model.mapping_ws(z, truncation=0.7, cutoff=3)
    assert ws.shape == (4, model.num_ws, model.w_dim)
    assert torch.allclose(ws[:, :3], model.mapping(z, truncation=0.7)[:, None].expand(-1, 3, -1), atol=1e-6)
    assert torch.allclose(ws[:, 3:], w[:, None].expand(-1, model.num_ws - 3, -1))
    images = model.synthesize_w(w)
    assert torch.equal(images, model.synthesize_w(w[:, None].repeat(1, model.num_ws, 1)))
    assert torch.equal(images, model(z)) and images.dtype == torch.float32
    assert images.shape == (4, 3, 32, 32) and images.abs().max() <= 1 and images.std() > 0.05
    with pytest.raises(TlganError, match="shape"):
        model.synthesize_w(torch.zeros(2, model.num_ws + 1, model.w_dim))


def test_noise_modes(model):
    w = model.mapping(z_batch(2))
    const = model.synthesize_w(w)
    model.noise_mode = "random"
    try:
        assert not torch.equal(model.synthesize_w(w), model.synthesize_w(w))
        model.noise_mode = "none"
        none = model.synthesize_w(w)
        assert not torch.equal(none, const) and torch.equal(none, model.synthesize_w(w))
        model.noise_mode = "loud"
        with pytest.raises(TlganError, match="noise mode"):
            model.synthesize_w(w)
    finally:
        model.noise_mode = "const"


def test_layer_range_changes_only_those_layers_styles(model):
    ws = model.mapping_ws(z_batch(2))
    edited = ws.clone()
    edited[:, 2:5] += torch.randn(model.w_dim)
    before, after = model.styles(ws), model.styles(edited)
    for index, name, _ in model.style_layers():
        changed = not torch.equal(before[name], after[name])
        assert changed == (2 <= index <= 4), name
    assert model.style_weights(range(2, 5)).shape[1] == model.w_dim


# --- the operations against their definitions -----------------------------------------------------------
def test_modulated_conv_equals_per_sample_kernels():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 4, 8, 8), torch.randn(5, 4, 3, 3), torch.randn(3, 4) + 1
    out = modulated_conv2d(x, weight, styles, padding=1)
    for n in range(3):
        kernel = weight * styles[n].reshape(1, -1, 1, 1)
        kernel = kernel / kernel.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        assert torch.allclose(out[n], F.conv2d(x[n: n + 1], kernel, padding=1)[0], atol=1e-5)
    up = modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=make_filter([1, 3, 3, 1]))
    assert up.shape == (3, 5, 16, 16)
    # Upsampling a constant image with the normalised FIR filter keeps it constant away from the border.
    flat = upsample2d(torch.ones(1, 1, 8, 8), make_filter([1, 3, 3, 1]))
    assert flat.shape == (1, 1, 16, 16) and torch.allclose(flat[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


# --- StyleGAN3 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("radial", [False, True], ids=["T", "R"])
def test_stylegan3_pickle_round_trip(tmp_path, radial):
    from _stylegan_files import random_stylegan3, write_nvlabs_pickle3

    from tlgan.models.generators.stylegan_files import convert_to_safetensors

    model = random_stylegan3(seed=1, radial=radial)
    marker = tmp_path / "ran"
    path = write_nvlabs_pickle3(tmp_path / "sg3.pkl", model, marker)
    g = load_generator(f"stylegan:{path}", "cpu")
    assert not marker.exists() and g.name == "stylegan3" and g.identity == model.identity
    assert any(layer.spec.down_radial for layer in map(lambda n: getattr(g.synthesis, n), g.synthesis.layer_names)) == radial
    z = z_batch(2, 16)
    images = g.synthesize(z)
    assert torch.equal(images, model.synthesize(z)) and images.shape == (2, 3, 16, 16) and images.std() > 0.01
    w = g.mapping(z, truncation=0.7)
    assert torch.allclose(w, g.w_avg + 0.7 * (g.mapping(z) - g.w_avg), atol=1e-6)
    assert torch.equal(g.synthesize_w(w), g.synthesize_w(w[:, None].repeat(1, g.num_ws, 1)))
    out = convert_to_safetensors(path, tmp_path / "sg3.safetensors")
    h = load_generator(f"stylegan:{tmp_path / 'sg3.safetensors'}", "cpu")
    assert out.family == "stylegan3" and h.identity == g.identity and torch.equal(h.synthesize(z), images)


def test_tensorflow_stylegan2_pickle(tmp_path, model):
    from _stylegan_files import write_tf_stylegan2

    marker = tmp_path / "ran"
    path = write_tf_stylegan2(tmp_path / "stylegan2-ffhq-config-f.pkl", model, marker)
    g = load_generator(f"stylegan:{path}", "cpu")
    assert not marker.exists() and g.name == "stylegan2" and g.config.channels == model.config.channels
    z = z_batch()
    assert (g.synthesize(z) - model.synthesize(z)).abs().max() < 1e-5
    assert torch.allclose(g.w_avg, model.w_avg)
    broken = write_tf_stylegan2(tmp_path / "broken.pkl", model, marker, drop="16x16/Conv1/mod_bias")
    with pytest.raises(TlganError, match="16x16/Conv1/mod_bias"):
        load_generator(f"stylegan:{broken}", "cpu")


def _upfirdn_by_definition(x, f, up, down, pad, gain):
    """Zero insertion, pad/crop, true convolution with f, keep every down-th pixel: the definition."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = pad
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    f2 = f if f.ndim == 2 else torch.outer(f, f)
    x = F.conv2d(x, (f2 * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (4, 2), (1, 2), (2, 2)])
@pytest.mark.parametrize("separable", [True, False])
def test_upfirdn2d_matches_its_definition(up, down, separable):
    from tlgan.models.generators.stylegan_ops import upfirdn2d

    gen = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn(2, 3, 13, 15, generator=gen)
    f = torch.rand(12 if separable else 5, generator=gen)
    f = f if separable else torch.outer(f, torch.rand(5, generator=gen))
    for pad in [(0, 0, 0, 0), (9, 8, 9, 8), (-1, 6, 5, -2)]:
        expected = _upfirdn_by_definition(x, f, up, down, pad, up * up)
        got = upfirdn2d(x, f, up, down, pad, up * up)
        assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
