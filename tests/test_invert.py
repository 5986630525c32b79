"""Inversion of generated faces, the latent file, editing from it, and the photo round trip through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tlgan.photos.invert import invert, psnr, warp_images, warp_matrix
from tlgan.photos.latentfile import LatentFile, load_latent_file, parse_latent_file, save_latent_file
from tlgan.errors import TlganError
from tlgan.models.generators import Generator
from tlgan.sampling.latents import latent_for_seed, sample_latents

TLGAN = str(Path(sys.executable).with_name("tlgan"))


def test_inversion_recovers_a_generated_face(digiface) -> None:
    # A planted face near (not at) one of the sampled starts: the search must find it and close the gap.
    start = sample_latents(0, 0, 64, 100)[17]
    z_true = start + 0.15 * latent_for_seed(5, 100)
    with torch.inference_mode():
        target = digiface.synthesize(z_true[None])[0]
    result = invert(digiface, target, steps=30, seed=0, candidates=64, lr=0.05)
    assert result.start_psnr < result.psnr
    assert result.psnr > 30, result.history
    with torch.inference_mode():
        again = digiface.synthesize(result.latent[None])[0]
    assert psnr(again, target) == pytest.approx(result.psnr, abs=0.01)


def test_inversion_is_deterministic_and_checks_input(digiface) -> None:
    target = digiface.synthesize(latent_for_seed(3, 100)[None])[0].detach()
    a = invert(digiface, target, steps=4, seed=7, candidates=16)
    b = invert(digiface, target, steps=4, seed=7, candidates=16)
    assert torch.equal(a.latent, b.latent)
    with pytest.raises(TlganError, match="shape"):
        invert(digiface, target[:, :32], steps=1)
    with pytest.raises(TlganError, match="space 'w'"):
        invert(digiface, target, space="w", steps=1)


def test_warp_matrix_is_where_warp_images_samples() -> None:
    # Bilinear sampling is exact on a linear ramp: pixel q of the warped image must equal the ramp at M·q.
    res = 32
    centres = torch.arange(res, dtype=torch.float64) + 0.5
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    ramp = torch.stack([0.01 * u, 0.02 * v, 0.01 * u - 0.015 * v]).float()
    params = torch.tensor([0.05, 0.08, 0.1, -0.06])
    warped = warp_images(ramp[None], params[None])[0].double()
    m = warp_matrix(params, res)
    mu, mv = (m[0, 0] * u + m[0, 1] * v + m[0, 2]), (m[1, 0] * u + m[1, 1] * v + m[1, 2])
    expected = torch.stack([0.01 * mu, 0.02 * mv, 0.01 * mu - 0.015 * mv])
    inside = (mu > 1) & (mu < res - 1) & (mv > 1) & (mv < res - 1)
    assert int(inside.sum()) > 500
    assert float((warped - expected)[:, inside].abs().max()) < 1e-5
    assert torch.allclose(warp_matrix(torch.zeros(4), res), torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64))


def test_alignment_refinement_recovers_a_planted_misalignment(digiface) -> None:
    # The target is a generated face seen through a known small similarity (a slightly wrong alignment):
    # with refine_alignment the fitted warp matches it and the rendering is the face itself.
    z_true = sample_latents(0, 0, 64, 100)[17]
    planted = torch.tensor([0.04, 0.05, 0.06, -0.05])
    with torch.inference_mode():
        face = digiface.synthesize(z_true[None])
        target = warp_images(face, planted[None])[0]
    plain = invert(digiface, target, steps=60, seed=0, candidates=64, starts=1)
    refined = invert(digiface, target, steps=60, seed=0, candidates=64, starts=1, refine_alignment=True)
    assert plain.warp_params is None and refined.warp_params is not None
    assert refined.psnr > plain.psnr + 2, (plain.psnr, refined.psnr)
    assert float((refined.warp_params - planted).abs().max()) < 0.02, refined.warp_params
    assert psnr(refined.image, face[0]) > 28


def test_several_starts_are_searched_together_and_deterministically(digiface) -> None:
    # The planted face of the first test: eight starts, pruned to the best, still find and close it.
    z_true = sample_latents(0, 0, 64, 100)[17] + 0.15 * latent_for_seed(5, 100)
    with torch.inference_mode():
        target = digiface.synthesize(z_true[None])[0]
    many = invert(digiface, target, steps=30, seed=0, candidates=64, lr=0.05, starts=8)
    again = invert(digiface, target, steps=30, seed=0, candidates=64, lr=0.05, starts=8)
    assert torch.equal(many.latent, again.latent)
    assert many.psnr > 30, many.history
    with pytest.raises(TlganError, match="starts"):
        invert(digiface, target, steps=1, starts=0)


def test_perceptual_term_runs_and_leaves_no_hooks(digiface) -> None:
    from tlgan.models.extractors import load_extractor

    extractor = load_extractor("landmarks,imagestats", "cpu")
    target = digiface.synthesize(latent_for_seed(4, 100)[None])[0].detach()
    result = invert(digiface, target, steps=3, candidates=16, extractor=extractor)
    assert np.isfinite(result.perceptual) and result.perceptual >= 0
    assert all(not m._forward_hooks for m in extractor.modules())


class TinyStyle(Generator):
    """A small generator with a mapping network: z (N, 8) -> w (N, 6); w or w+ (N, 3, 6) -> (N, 3, 8, 8)."""

    name, latent_dim, resolution, identity, num_ws = "tiny", 8, 8, "tiny:0", 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.map = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 6))
        self.layers = nn.ModuleList([nn.Linear(6, 64) for _ in range(3)])

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.map(z)

    def synthesize_w(self, w: torch.Tensor) -> torch.Tensor:
        ws = w[:, None].expand(-1, self.num_ws, -1) if w.ndim == 2 else w
        x = sum(layer(ws[:, i]) for i, layer in enumerate(self.layers))
        return torch.tanh(x).reshape(-1, 1, 8, 8).expand(-1, 3, -1, -1)

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesize_w(self.mapping(z))


@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("space,shape", [("w", (6,)), ("w+", (3, 6))])
def test_w_spaces_when_the_generator_has_a_mapping(space, shape, refine) -> None:
    gen = TinyStyle().eval().requires_grad_(False)
    w_true = gen.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(1)))
    target = gen.synthesize_w(w_true)[0].detach()
    result = invert(gen, target, space=space, steps=150, candidates=32, refine_alignment=refine)
    assert result.latent.shape == shape
    assert result.psnr > result.start_psnr + 3
    assert (result.warp_params is not None) == refine


def test_latent_file_round_trip_and_bad_files(tmp_path) -> None:
    lf = LatentFile("digiface:abc", 64, "z", torch.randn(100), {"psnr_db": 24.5}, {"width": 10, "height": 20},
                    {"matrix": [[0.5, 0.0, 1.0], [0.0, 0.5, 2.0]], "layout": [[1, 2]] * 5})
    path = tmp_path / "face.json"
    save_latent_file(path, lf)
    back = load_latent_file(path)
    assert torch.equal(back.latent, lf.latent) and back.quality == lf.quality and back.generator == lf.generator
    assert torch.equal(back.matrix(), torch.tensor(lf.alignment["matrix"], dtype=torch.float64))
    save_latent_file(tmp_path / "again.json", back)
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()
    data = json.loads(path.read_text())
    for broken, message in [("{", "not JSON"), (json.dumps({"a": 1}), "not a tlgan latent file"),
                            (json.dumps({**data, "version": 9}), "version"),
                            (json.dumps({**data, "latent": data["latent"][:5]}), "does not fit"),
                            (json.dumps({**data, "latent": ["nan"] * 100}), "NaN"),
                            (json.dumps({**data, "alignment": {"matrix": [[0, 0, 0], [0, 0, 0]]}}), "invertible")]:
        with pytest.raises(TlganError, match=message):
            parse_latent_file(broken)
    with pytest.raises(TlganError, match="must end in .json"):
        save_latent_file(tmp_path / "face.txt", lf)


def test_editor_starts_from_a_latent(digiface) -> None:
    from tlgan.axes.defaults import load_default_axes
    from tlgan.editing.editor import Editor

    axes = load_default_axes()
    z = latent_for_seed(99, 100) * 0.9
    editor = Editor(digiface, axes, 0)
    editor.new_latent(z)
    assert torch.allclose(editor.latent(), z)
    editor.set("happy", 1.5)
    assert editor.value("happy") == pytest.approx(1.5)
    edits = list(editor.edits)
    editor.reset()
    assert torch.allclose(editor.latent(), z) and not editor.edits
    again = Editor.replay(digiface, axes, 0, edits, latent=z)
    editor.set("happy", 1.5)
    assert torch.equal(again.z, editor.z)
    with pytest.raises(TlganError, match="shape"):
        editor.new_latent(torch.zeros(5))


# ---- the CLI, run as a user runs it -------------------------------------------------------------
def _run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([TLGAN, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, digiface) -> Path:
    from tlgan.imaging import to_pil

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    with torch.inference_mode():
        photo.paste(to_pil(digiface.synthesize(latent_for_seed(1001, 100)[None])[0], 256), (300, 150))
    photo.save(folder / "photo.png")
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(folder / "noface.png")
    photo.resize((320, 240)).save(folder / "small.png")
    (folder / "notes.jpg").write_text("not a picture")
    return folder


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory) -> dict:
    # Shared with the other photo tests: the generator's layout is measured once per test session.
    return {**os.environ, "TLGAN_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "tlgan-cache"), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_invert_edit_and_paste_back_through_the_cli(photo_dir, cli_env, tmp_path) -> None:
    out = tmp_path / "face.json"
    args = ["invert", str(photo_dir / "photo.png"), "--out", str(out), "--steps", "8", "--candidates", "64",
            "--extractor", "none", "--device", "cpu", "--preview", str(tmp_path / "preview.png"), "--tune-steps", "6",
            "--no-identity"]
    done = _run(*args, env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "PSNR" in done.stderr
    data = json.loads(out.read_text())
    assert data["format"] == "tlgan-latent" and data["space"] == "z" and len(data["latent"]) == 100
    assert data["generator"].startswith("digiface:") and data["photo"]["width"] == 640
    assert data["quality"]["psnr_db"] > 15 and len(data["alignment"]["matrix"]) == 2
    assert Image.open(tmp_path / "preview.png").size == (3 * 256 + 4, 256)   # crop | reconstruction | tuned
    assert "tuned: PSNR" in done.stderr
    tuning = tmp_path / "face.tune.safetensors"
    assert data["tuning"]["file"] == tuning.name and tuning.stat().st_size < 400 * 1024
    first, first_tuning = out.read_bytes(), tuning.read_bytes()
    assert _run(*args, env=cli_env).returncode == 0
    assert out.read_bytes() == first and tuning.read_bytes() == first_tuning   # same command, same bytes

    edited = tmp_path / "edited.png"
    done = _run("edit", "--latent", str(out), "--set", "happy=1.5", "--paste-into", str(photo_dir / "photo.png"),
                "--out", str(edited), "--json", "--device", "cpu", env=cli_env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["seed"] is None and report["after"]["happy"] == pytest.approx(1.5)
    # The knob values before editing are the latent file's own.
    from tlgan.axes.defaults import load_default_axes

    axes = load_default_axes()
    z = load_latent_file(out).latent.double()
    assert report["before"]["yaw"] == pytest.approx(float(z @ axes.axes[axes.index("yaw")].double()), abs=1e-6)
    before, after = np.asarray(Image.open(photo_dir / "photo.png")), np.asarray(Image.open(edited))
    assert after.shape == before.shape
    changed = np.abs(before.astype(int) - after.astype(int)).sum(axis=2) > 0
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 5000                                        # the face changed
    assert xs.min() >= 280 and xs.max() < 580 and ys.min() >= 130 and ys.max() < 430   # nothing outside it

    # --no-tune renders the untuned latent: another face; a deleted tuning file falls back with a warning
    plain = tmp_path / "plain.png"
    edit = ["edit", "--latent", str(out), "--set", "happy=1.5", "--out", str(plain), "--device", "cpu"]
    assert _run(*edit, "--no-tune", env=cli_env).returncode == 0
    tuned_face = tmp_path / "tuned.png"
    done = _run(*edit[:-4], "--out", str(tuned_face), "--device", "cpu", env=cli_env)
    assert done.returncode == 0 and "warning" not in done.stderr
    assert not np.array_equal(np.asarray(Image.open(plain)), np.asarray(Image.open(tuned_face)))
    tuning.write_bytes(first_tuning[:-10] + b"0123456789")
    done = _run(*edit, env=cli_env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1 and "not the one its latent file was made with" in lines[0]
    tuning.unlink()
    done = _run(*edit, env=cli_env)
    assert done.returncode == 0 and "warning: tuning file" in done.stderr and "missing" in done.stderr
    assert np.array_equal(np.asarray(Image.open(plain)), np.asarray(Image.open(tmp_path / "plain.png")))


def test_cli_errors_are_one_line(photo_dir, cli_env, tmp_path) -> None:
    cases = [(["invert", str(photo_dir / "noface.png"), "--out", str(tmp_path / "a.json")], "no face found"),
             (["invert", str(photo_dir / "notes.jpg"), "--out", str(tmp_path / "a.json")], "not an image"),
             (["invert", str(photo_dir / "photo.png"), "--out", str(tmp_path / "a.txt")], "must end in .json"),
             (["edit", "--latent", str(photo_dir / "notes.jpg"), "--json"], "not JSON"),
             (["edit", "--paste-into", str(photo_dir / "photo.png"), "--out", str(tmp_path / "x.jpg")], "needs --latent")]
    for args, message in cases:
        done = _run(*args, "--device", "cpu", env=cli_env)
        assert done.returncode == 1, (args, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert lines == [lines[0]] and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert not (tmp_path / "a.json").exists()


def test_notebook_panel_starts_from_a_latent_file(digiface, tmp_path) -> None:
    from tlgan.apps.notebook import KnobPanel
    from tlgan.axes.defaults import load_default_axes

    axes = load_default_axes()
    z = latent_for_seed(123, 100)
    path = tmp_path / "face.json"
    save_latent_file(path, LatentFile(digiface.identity, 64, "z", z, {"psnr_db": 20.0}))
    panel = KnobPanel(digiface, axes, seed=0, size=64)
    panel.load_latent(str(path))
    assert torch.allclose(panel.editor.latent(), z) and panel.caption.value.startswith("a latent file's face")
    save_latent_file(path, LatentFile("other:123", 64, "z", z, {}))
    with pytest.raises(TlganError, match="made for generator other:123"):
        panel.load_latent(str(path))
