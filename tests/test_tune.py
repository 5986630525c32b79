"""Pivotal tuning: it fits the photo, leaves other faces nearly alone, and its file is small, checked and reproducible."""

from __future__ import annotations

import json

import pytest
import torch

from tlgan.errors import TlganError
from tlgan.photos.latentfile import LatentFile, load_latent_file
from tlgan.photos.pipeline import load_photo_latent, save_photo_files, tuned_generator
from tlgan.photos.tune import TuneSettings, apply_delta, delta_numel, locality, tune, weights_hash
from tlgan.photos.tunefile import (
    load_tuning_file,
    make_tuning_file,
    save_tuning_file,
    tuning_path,
)
from tlgan.sampling.latents import latent_for_seed

SMALL = TuneSettings(steps=30, locality_bank=8, locality_batch=2)


@pytest.fixture(scope="module")
def tuned(digiface):
    """Face 5's latent tuned towards face 9's picture (a target the latent does not render)."""
    pivot = latent_for_seed(5, 100)
    with torch.no_grad():
        target = digiface.synthesize(latent_for_seed(9, 100)[None])[0]
    return pivot, target, tune(digiface, pivot, target, settings=SMALL)


def test_tuning_fits_the_target_and_keeps_other_faces(digiface, tuned) -> None:
    pivot, target, result = tuned
    assert result.psnr_after > result.psnr_before + 3          # the pivot now renders (more of) the target
    assert result.locality_psnr > 20                           # random faces change far less than the pivot
    assert result.history and len(result.history) >= 3
    with torch.no_grad():
        again = result.generator.synthesize(pivot[None])[0]
    from tlgan.photos.invert import psnr

    assert psnr(again, target) == pytest.approx(result.psnr_after, abs=1e-4)


def test_base_generator_is_untouched_and_delta_is_small(digiface, tuned) -> None:
    _, _, result = tuned
    base_params = sum(p.numel() for p in digiface.parameters())
    assert result.delta.numel() == delta_numel(digiface, SMALL.rank) < base_params / 40
    assert weights_hash(digiface) != weights_hash(result.generator)
    # applying the stored delta again gives the same weights, bit for bit
    again = apply_delta(digiface, result.delta)
    assert weights_hash(again) == weights_hash(result.generator)
    # the tuned copy is a plain generator (weights computed once, no per-call update): it renders as fast
    from torch.nn.utils import parametrize

    assert not any(parametrize.is_parametrized(m) for m in result.generator.modules())
    assert [p.shape for p in result.generator.parameters()] == [p.shape for p in digiface.parameters()]
    assert not any(p.requires_grad for p in result.generator.parameters())


@pytest.mark.slow
def test_locality_without_regulariser_is_worse(digiface, tuned) -> None:
    pivot, target, result = tuned
    loose = tune(digiface, pivot, target, settings=TuneSettings(steps=30, locality_batch=0, locality_bank=8))
    assert loose.locality_psnr < result.locality_psnr


def test_stylegan2_256_delta_size() -> None:
    from tlgan.models.generators.stylegan2 import StyleGAN2, StyleGAN2Config

    config = StyleGAN2Config(img_resolution=256, channels=StyleGAN2Config.channels_for(256))
    with torch.device("meta"):
        model = StyleGAN2(config)
    synthesis = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("mapping"))
    numel = delta_numel(model, 4)
    assert 0 < numel < synthesis / 50          # a few hundred KiB against ~100 MB of weights


def _latent_file(digiface, latent: torch.Tensor) -> LatentFile:
    return LatentFile(generator=digiface.identity, resolution=64, space="z", latent=latent, quality={},
                      photo={"sha256": "0" * 16, "width": 10, "height": 10},
                      alignment={"matrix": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "layout": [[0, 0]] * 5})


def test_tuning_file_round_trip_and_checks(digiface, tuned, tmp_path) -> None:
    pivot, _, result = tuned
    tuning = make_tuning_file(result.delta, digiface, "z", pivot, "0" * 16, SMALL.to_json(), result.quality())
    written = save_photo_files(tmp_path / "me.json", _latent_file(digiface, pivot), tuning)
    path = tuning_path(tmp_path / "me.json")
    assert path.name == "me.tune.safetensors" and written.tuning["file"] == path.name
    assert path.stat().st_size < 400 * 1024
    assert json.loads((tmp_path / "me.json").read_text())["tuning"]["sha256"] == written.tuning["sha256"]
    # same tuning, same bytes
    digest = save_tuning_file(tmp_path / "again.tune.safetensors", tuning)
    assert digest == written.tuning["sha256"]

    latent_file, gen, warnings = load_photo_latent(tmp_path / "me.json", digiface)
    assert not warnings and gen is not digiface
    with torch.no_grad():
        assert torch.equal(gen.synthesize(pivot[None]), result.generator.synthesize(pivot[None]))
    # --no-tune: the base generator
    assert load_photo_latent(tmp_path / "me.json", digiface, tune=False)[1] is digiface

    # another latent, another generator's weights: one-line errors
    other = _latent_file(digiface, latent_for_seed(6, 100))
    with pytest.raises(TlganError, match="another latent"):
        tuned_generator(other, digiface, load_tuning_file(path))
    changed = apply_delta(digiface, result.delta)
    with pytest.raises(TlganError, match="other weights"):
        tuned_generator(latent_file, changed, load_tuning_file(path))


def test_corrupt_or_missing_tuning_file(digiface, tuned, tmp_path) -> None:
    pivot, _, result = tuned
    tuning = make_tuning_file(result.delta, digiface, "z", pivot, "0" * 16, SMALL.to_json(), result.quality())
    save_photo_files(tmp_path / "me.json", _latent_file(digiface, pivot), tuning)
    path = tuning_path(tmp_path / "me.json")
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TlganError) as err:
        load_photo_latent(tmp_path / "me.json", digiface)
    assert "not the one its latent file was made with" in str(err.value) and "\n" not in str(err.value)
    path.write_bytes(b"garbage")
    with pytest.raises(TlganError):
        load_tuning_file(path)                          # no recorded hash: still a one-line error
    path.unlink()
    latent_file, gen, warnings = load_photo_latent(tmp_path / "me.json", digiface)
    assert gen is digiface and len(warnings) == 1 and "missing" in warnings[0]
    assert torch.equal(latent_file.latent, pivot)


def test_latent_file_refuses_a_tuning_path_outside_its_folder(digiface, tmp_path) -> None:
    save_photo_files(tmp_path / "me.json", _latent_file(digiface, latent_for_seed(1, 100)), None)
    data = json.loads((tmp_path / "me.json").read_text())
    data["tuning"] = {"file": "../x.safetensors", "sha256": "0" * 64}
    (tmp_path / "me.json").write_text(json.dumps(data))
    with pytest.raises(TlganError, match="beside it"):
        load_latent_file(tmp_path / "me.json")


def test_locality_measure_is_exact_for_the_same_generator(digiface) -> None:
    assert min(locality(digiface, digiface, n=4)) >= 100
