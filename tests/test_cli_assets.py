"""The asset, user-model and training commands, run through click."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from _celeba_files import make_celeba
from _tf1_files import g_paper_variables, write_tf1_pickle
from click.testing import CliRunner

from tlgan import TlganError, load_generator
from tlgan.apps.cli.assets import (
    check_model,
    convert,
    import_axes,
    ingest_celeba,
    train_extractor,
)
from tlgan.axes.store import load_axes
from tlgan.models.extractors.celeba_attributes import CELEBA_ATTRIBUTES


def invoke(command, args):
    return CliRunner().invoke(command, [str(a) for a in args])


def error_of(result) -> str:
    """The one-line message a failed command gives main() to print (a TlganError, not a crash)."""
    assert result.exit_code == 1 and isinstance(result.exception, TlganError), (result.output, result.exception)
    assert "\n" not in str(result.exception)
    return str(result.exception)


def test_convert_pggan(tmp_path):
    pkl = write_tf1_pickle(tmp_path / "g.pkl", g_paper_variables(resolution=16, seed=2), 16)
    result = invoke(convert, ["pggan-tf1", pkl, tmp_path / "g.safetensors"])
    assert result.exit_code == 0, result.output
    assert "PG-GAN 16x16, latent 32" in result.output
    z = torch.randn(2, 32)
    torch.testing.assert_close(load_generator(f"pggan:{tmp_path / 'g.safetensors'}", "cpu")(z),
                               load_generator(f"pggan:{pkl}", "cpu")(z))
    bad = invoke(convert, ["pggan-tf1", tmp_path / "missing.pkl", tmp_path / "x.safetensors"])
    assert "not found" in error_of(bad)


def test_import_axes_bound_to_a_generator(tmp_path):
    pkl = write_tf1_pickle(tmp_path / "g.pkl", g_paper_variables(resolution=8, seed=2), 8)
    direction = np.random.default_rng(0).standard_normal((32, 40))
    direction /= np.linalg.norm(direction, axis=0)
    src = tmp_path / "feature_direction_20181002_044444.pkl"
    src.write_bytes(pickle.dumps({"direction": direction, "name": list(CELEBA_ATTRIBUTES)}))
    dst = tmp_path / "axes.safetensors"
    result = invoke(import_axes, [src, dst, "--generator", f"pggan:{pkl}", "--notebook-names"])
    assert result.exit_code == 0, result.output
    axes = load_axes(dst)
    generator = load_generator(f"pggan:{pkl}", "cpu")
    axes.check_generator(generator)
    assert "Beard" in axes.names and "No_Beard" not in axes.names
    torch.testing.assert_close(axes.axes[axes.index("Age")], -torch.from_numpy(direction[:, 39]).float())

    unbound = invoke(import_axes, [src, tmp_path / "plain.safetensors"])
    assert unbound.exit_code == 0 and "not bound" in unbound.output
    assert load_axes(tmp_path / "plain.safetensors").names == list(CELEBA_ATTRIBUTES)
    wrong = write_tf1_pickle(tmp_path / "w.pkl", g_paper_variables(resolution=8, fmap_base=64, fmap_max=16), 8)
    mismatch = invoke(import_axes, [src, tmp_path / "m.safetensors", "--generator", f"pggan:{wrong}"])
    assert "latent size 32" in error_of(mismatch)


def test_check_model_exit_codes_and_guessed_kind():
    from tlgan.models.check import guess_kind

    assert guess_kind("pggan:any.pkl") == "generator" and guess_kind("celeba-cnn:any.h5") == "extractor"
    good = invoke(check_model, ["entrypoint:_user_models:good_extractor"])
    assert good.exit_code == 0 and good.output.startswith("extractor ") and "result: OK" in good.output
    bad = invoke(check_model, ["entrypoint:_user_models:bad_generator_noise"])
    assert bad.exit_code == 1 and "FAIL  determinism" in bad.output
    unknown = invoke(check_model, ["entrypoint:_user_models:bad_generator_no_latent_dim"])
    assert "--kind" in error_of(unknown)


@pytest.mark.slow
def test_ingest_and_train_commands(tmp_path):
    make_celeba(tmp_path / "celeba", count=120, splits=(80, 100))
    ingested = invoke(ingest_celeba, [tmp_path / "celeba", "--out", tmp_path / "crop"])
    assert ingested.exit_code == 0, ingested.output
    assert "120 images checked; 120 crops written" in ingested.output
    args = ["--celeba", tmp_path / "crop", "--out", tmp_path / "a.safetensors", "--input-size", 32, "--width", 8,
            "--depth", 2, "--epochs", 1, "--batch-size", 16, "--device", "cpu"]
    partial = invoke(train_extractor, args + ["--max-steps", 2])
    assert partial.exit_code == 0 and "run the same command again to resume" in partial.output
    done = invoke(train_extractor, args)
    assert done.exit_code == 0, done.output
    assert "resuming" in done.output and "test acc" in done.output and "tlgan-cnn:" in done.output
    missing = invoke(train_extractor, ["--celeba", tmp_path / "nowhere", "--out", tmp_path / "b.safetensors"])
    assert "CelebA folder not found" in error_of(missing)
