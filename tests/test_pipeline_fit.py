"""Sampling, resuming, fitting and the axis-set file, on planted models."""

import json

import pytest
import torch
from planted import PlantedExtractor, PlantedGenerator
from safetensors.torch import load_file

from tlgan.axes.fit import fit_axes
from tlgan.axes.store import AxisSet, load_axes
from tlgan.errors import TlganError
from tlgan.sampling.latents import sample_latents
from tlgan.sampling.pipeline import iter_shards, load_samples, run_samples


def _cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def test_latents_do_not_depend_on_how_they_are_drawn():
    whole = sample_latents(7, 0, 3000, 5)
    parts = torch.cat([sample_latents(7, s, c, 5) for s, c in [(0, 1), (1, 1500), (1501, 1499)]])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, sample_latents(8, 0, 3000, 5))
    assert abs(float(whole.std()) - 1) < 0.05


def test_fit_recovers_planted_features(tmp_path):
    gen, ext = PlantedGenerator(16), PlantedExtractor(16)
    run_samples(gen, ext, 3000, seed=1, folder=tmp_path / "s", batch_size=200, shard_size=1000, progress=False)
    axes = fit_axes(tmp_path / "s")
    for k, name in enumerate(["lin", "prob", "score", "noisy"]):
        assert _cos(axes.axes[axes.index(name)], ext.truth[k]) >= 0.99, name
    assert axes.quality["lin"]["r2"] > 0.999            # exact linear feature
    assert 0.5 < axes.quality["noisy"]["r2"] < 0.99     # noise costs R² on held-out data
    assert axes.samples == 3000 and axes.generator == gen.identity


def test_resume_after_interrupt_gives_identical_files(tmp_path):
    gen, ext = PlantedGenerator(16), PlantedExtractor(16)
    run_samples(gen, ext, 2500, 3, tmp_path / "full", batch_size=128, shard_size=1000, progress=False)

    class Interrupting(PlantedExtractor):
        calls = 0

        def forward(self, images):
            Interrupting.calls += 1
            if Interrupting.calls == 12:  # in the middle of the second shard
                raise KeyboardInterrupt
            return super().forward(images)

    with pytest.raises(KeyboardInterrupt):
        run_samples(gen, Interrupting(16), 2500, 3, tmp_path / "part", batch_size=128, shard_size=1000, progress=False)
    shards = sorted(p.name for p in (tmp_path / "part").glob("shard-*"))
    assert shards == ["shard-0000000000-1000.safetensors"]  # finished shard kept, nothing half-written
    assert not list((tmp_path / "part").glob(".*tmp"))
    run_samples(gen, ext, 2500, 3, tmp_path / "part", batch_size=300, shard_size=1000, progress=False)
    for path in (tmp_path / "full").glob("shard-*"):
        assert (tmp_path / "part" / path.name).read_bytes() == path.read_bytes()


def test_rerun_with_other_seed_or_extractor_is_refused(tmp_path):
    gen, ext = PlantedGenerator(16), PlantedExtractor(16)
    run_samples(gen, ext, 100, 0, tmp_path, progress=False)
    with pytest.raises(TlganError, match="another generator"):
        run_samples(gen, ext, 100, 1, tmp_path, progress=False)
    with pytest.raises(TlganError, match="another generator"):
        run_samples(gen, PlantedExtractor(16, seed=9), 100, 0, tmp_path, progress=False)


@pytest.mark.parametrize("n", [0, -5])
def test_bad_sample_count(tmp_path, n):
    with pytest.raises(TlganError, match="N must be"):
        run_samples(PlantedGenerator(), PlantedExtractor(), n, 0, tmp_path, progress=False)


def test_nan_readings_are_refused(tmp_path):
    class NaNExtractor(PlantedExtractor):
        def forward(self, images):
            out = super().forward(images)
            out[0, 1] = float("nan")
            return out

    with pytest.raises(TlganError, match="prob"):
        run_samples(PlantedGenerator(16), NaNExtractor(16), 50, 0, tmp_path, progress=False)
    assert not list(tmp_path.glob("shard-*"))


def test_corrupt_shard_is_reported(tmp_path):
    run_samples(PlantedGenerator(16), PlantedExtractor(16), 300, 0, tmp_path, shard_size=100, progress=False)
    victim = next(tmp_path.glob("shard-0000000100-*"))
    victim.write_bytes(victim.read_bytes()[:50])
    with pytest.raises(TlganError, match="corrupt"):
        list(iter_shards(tmp_path))
    victim.unlink()
    with pytest.raises(TlganError, match="incomplete"):
        load_samples(tmp_path)


def _axis_set(**kw):
    base = dict(names=["a", "b"], axes=torch.nn.functional.normalize(torch.randn(2, 4), dim=1), kinds=["real", "real"],
                groups=["other", "other"], generator="g:1", latent_dim=4, method="test")
    base.update(kw)
    return AxisSet(**base)


def test_axis_set_roundtrip_and_header(tmp_path):
    axes = fit_axes_from_planted(tmp_path)
    axes.save(tmp_path / "a.safetensors")
    back = load_axes(tmp_path / "a.safetensors")
    assert back.names == axes.names and torch.equal(back.axes, axes.axes)
    assert back.quality == axes.quality and back.kinds == axes.kinds and back.seed == axes.seed
    assert torch.equal(back.weights, axes.weights)
    header = json.loads(__import__("safetensors").safe_open(str(tmp_path / "a.safetensors"), "pt").metadata()["tlgan"])
    assert header["format"] == "tlgan.axes" and header["version"] == 1 and header["latent_space"] == "z"
    assert set(load_file(str(tmp_path / "a.safetensors"))) >= {"axes", "weights", "intercepts", "feature_std"}


def fit_axes_from_planted(tmp_path):
    run_samples(PlantedGenerator(16), PlantedExtractor(16), 500, 0, tmp_path / "s", progress=False)
    return fit_axes(tmp_path / "s")


def test_bad_axis_files(tmp_path):
    with pytest.raises(TlganError, match="not found"):
        load_axes(tmp_path / "nope.safetensors")
    good = tmp_path / "good.safetensors"
    _axis_set().save(good)
    (tmp_path / "trunc.safetensors").write_bytes(good.read_bytes()[:-20])
    with pytest.raises(TlganError, match="corrupt or truncated"):
        load_axes(tmp_path / "trunc.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(TlganError):
        load_axes(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file
    save_file({"axes": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(TlganError, match="no tlgan header"):
        load_axes(tmp_path / "other.safetensors")


def test_axis_set_validation():
    with pytest.raises(TlganError, match="shape"):
        _axis_set(axes=torch.zeros(3, 4))
    with pytest.raises(TlganError, match="unit"):
        _axis_set(axes=torch.ones(2, 4))
    with pytest.raises(TlganError, match="NaN"):
        _axis_set(axes=torch.full((2, 4), float("nan")))
    with pytest.raises(TlganError, match="valid names: a, b"):
        _axis_set().index("c")


def test_axis_set_for_another_generator_is_refused():
    axes = _axis_set()
    with pytest.raises(TlganError, match="made for generator 'g:1'"):
        axes.check_generator(type("G", (), {"latent_dim": 4, "identity": "other:2"})())
    with pytest.raises(TlganError, match="latent size"):
        axes.check_generator(type("G", (), {"latent_dim": 5, "identity": "g:1"})())


def test_fit_options(tmp_path):
    run_samples(PlantedGenerator(16), PlantedExtractor(16), 600, 0, tmp_path, progress=False)
    sub = fit_axes(tmp_path, features=["prob", "lin"])
    assert sub.names == ["prob", "lin"]
    ridge = fit_axes(tmp_path, method="ridge", ridge=50.0)
    assert ridge.method == "ridge" and ridge.params["ridge"] == 50.0
    with pytest.raises(TlganError, match="unknown feature 'x'"):
        fit_axes(tmp_path, features=["x"])
    with pytest.raises(TlganError, match="unknown method"):
        fit_axes(tmp_path, method="magic")
