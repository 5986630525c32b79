"""Latent spaces of StyleGAN: sampling in w (psi recorded), planted directions recovered in w, knob values in
units of the stored spread, W+ layer ranges (only the chosen layers' styles change), NVlabs seeds, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tlgan.axes.spaces import (
    match_space,
    measure_spread,
    parse_layers,
    to_wplus,
    with_space,
)
from tlgan.axes.store import AxisSet, load_axes
from tlgan.editing.editor import Editor
from tlgan.errors import TlganError
from tlgan.models.generators import Generator
from tlgan.sampling.latents import latent_for_seed, sample_latents
from tlgan.sampling.pipeline import load_samples, run_samples
from tlgan.sampling.spaces import SpaceView, nvlabs_latent, space_view

sys.path.insert(0, str(Path(__file__).parent))
from _stylegan_files import random_stylegan2, write_nvlabs_pickle
from planted import PlantedExtractor, PlantedGenerator

TLGAN = str(Path(sys.executable).with_name("tlgan"))


class PlantedStyleGAN(Generator):
    """A StyleGAN-shaped generator with a nonlinear mapping whose images carry w: features planted in w.

    mapping: w = tanh(A z) * 2 + b (nonlinear in z); synthesize_w writes w/8 (the mean over layers for ws)
    into the pixels PlantedExtractor reads, so the extractor's features are linear in w, not in z.
    """

    spaces = ("z", "w", "w+")

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.latent_dim = self.z_dim = self.w_dim = dim
        self.num_ws, self.resolution, self.name, self.identity = 4, 8, "plantedsg", f"plantedsg:{dim}"
        self.A = torch.nn.Parameter(torch.randn(dim, dim, generator=gen) / dim ** 0.5 * 2, requires_grad=False)
        self.b = torch.nn.Parameter(torch.randn(dim, generator=gen), requires_grad=False)
        self.register_buffer("w_avg", self.mapping(torch.randn(20000, dim, generator=gen)).mean(0))

    def mapping(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        w = torch.tanh(z.float() @ self.A.T) * 2 + self.b
        return w if truncation == 1 else self.w_avg.lerp(w, truncation)

    def synthesize_w(self, w: torch.Tensor) -> torch.Tensor:
        w = w.mean(1) if w.ndim == 3 else w
        flat = torch.zeros(w.shape[0], 3 * 8 * 8, dtype=w.dtype, device=w.device)
        flat[:, : self.w_dim] = w / 8
        return flat.view(-1, 3, 8, 8)

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        return self.synthesize_w(self.mapping(z))


def test_planted_directions_recovered_in_w_not_z(tmp_path):
    from tlgan.axes.fit import fit_axes

    gen, ext = PlantedStyleGAN(), PlantedExtractor(dim=16, noise=0.0)
    view = space_view(gen, "w", truncation=0.7)
    assert view.identity == "plantedsg:16@w,psi=0.7" and view.latent_dim == 16
    run_samples(view, ext, 3000, 0, tmp_path / "w", batch_size=500, progress=False)
    _, latents, _ = load_samples(tmp_path / "w")
    # samples are mapped seeded z, truncated, centred on w_avg
    z = sample_latents(0, 0, 3000, 16)
    assert torch.allclose(latents, gen.mapping(z, 0.7) - gen.w_avg, atol=1e-5)
    axes_w = fit_axes(tmp_path / "w", method="tlgan")
    lin = axes_w.index("lin")
    assert float(axes_w.axes[lin] @ ext.truth[0]) > 0.999  # planted w direction recovered
    from tlgan.axes.fit import fit_streaming

    streamed = with_space(fit_streaming(view, ext, 3000, 0, batch_size=500, progress=False), view, 0, 3000)
    assert torch.allclose(streamed.axes, axes_w.axes, atol=1e-4)
    assert streamed.latent_space == "w" and streamed.truncation == 0.7
    assert torch.allclose(streamed.spread, (latents @ streamed.axes.T).std(0), rtol=1e-3)
    run_samples(gen, ext, 3000, 0, tmp_path / "z", batch_size=500, progress=False)
    axes_z = fit_axes(tmp_path / "z", method="tlgan")
    assert axes_z.quality["lin"]["r2"] < axes_w.quality["lin"]["r2"] - 0.05  # z is the worse space here


def test_spread_makes_knob_values_sigma():
    gen = PlantedStyleGAN()
    view = space_view(gen, "w")
    truth = PlantedExtractor(dim=16).truth
    axis_set = AxisSet(names=["a", "b"], axes=truth[:2], kinds=["real"] * 2, groups=["x"] * 2, generator=view.identity,
                       latent_dim=16, method="manual", seed=3)
    axis_set = with_space(axis_set, view, seed=3, n=4000)
    assert axis_set.latent_space == "w" and axis_set.spread.shape == (2,)
    latents = view.draw_latents(3, 0, 4000)
    assert torch.allclose(axis_set.spread, (latents @ truth[:2].T).std(0), rtol=1e-4)
    # Knob values of fresh faces are ~N(0, 1) in w: "σ" keeps its meaning.
    values = torch.tensor([list(Editor(gen, axis_set, seed).values().values()) for seed in range(300)])
    assert values.mean(0).abs().max() < 0.2 and (values.std(0) - 1).abs().max() < 0.15
    editor = Editor(gen, axis_set, 11)
    editor.lock("b")
    b = editor.value("b")
    editor.set("a", 2.0)
    assert editor.value("a") == pytest.approx(2.0, abs=1e-9) and editor.value("b") == pytest.approx(b, abs=1e-9)
    assert editor.generator.latent_space == "w"


@pytest.fixture(scope="module")
def sg2():
    return random_stylegan2(seed=2)


def test_wplus_layer_ranges_change_only_those_styles(sg2):
    view = space_view(sg2, "w")
    torch.manual_seed(0)
    axes = torch.nn.functional.normalize(torch.randn(2, sg2.w_dim), dim=1)
    axis_set = with_space(AxisSet(names=["p", "q"], axes=axes, kinds=["real"] * 2, groups=["x"] * 2,
                                  generator=view.identity, latent_dim=sg2.w_dim, method="manual"), view, 0, 2000)
    assert parse_layers("2-4", sg2.num_ws) == (2, 4) and parse_layers("coarse", sg2.num_ws) == (0, 3)
    with pytest.raises(TlganError, match="outside"):
        parse_layers("3-9", sg2.num_ws)
    editor = Editor(sg2, axis_set, seed=4, layers="2-4")
    assert editor.generator.latent_space == "w+" and editor.axes.layers == {"p": [2, 4], "q": [2, 4]}
    free = Editor(sg2, axis_set, seed=4)
    assert editor.values() == pytest.approx(free.values(), abs=1e-6)  # same σ in w and in a w+ layer range
    before = sg2.styles(editor.generator.to_w(editor.latent()[None]))
    editor.set("p", 2.5)
    after = sg2.styles(editor.generator.to_w(editor.latent()[None]))
    for index, name, _ in sg2.style_layers():
        assert (not torch.allclose(before[name], after[name])) == (2 <= index <= 4), name
    assert editor.value("p") == pytest.approx(2.5)
    image = editor.render()
    assert image.shape == (3, 32, 32) and not torch.equal(image, free.render())
    # A w+ set converted back is not possible; layer ranges need a set in w.
    with pytest.raises(TlganError, match="in w"):
        match_space(sg2, to_wplus(axis_set, sg2.num_ws, (0, 1)), layers="0-1")


def test_nvlabs_seed_convention_and_truncation(sg2):
    view = SpaceView(sg2, "w", truncation=0.7, seeds="nvlabs")
    z = torch.from_numpy(np.random.RandomState(85).randn(1, sg2.z_dim)).float()
    assert torch.allclose(nvlabs_latent(85, sg2.z_dim), z[0])
    assert torch.allclose(view.face_latent(85) + sg2.w_avg, sg2.mapping(z, truncation=0.7)[0], atol=1e-6)
    assert torch.allclose(view.synthesize(view.face_latent(85)[None]),
                          sg2.synthesize_w(sg2.mapping(z, truncation=0.7)), atol=1e-4)
    plain = SpaceView(sg2, "w")
    assert torch.allclose(plain.face_latent(85) + sg2.w_avg, sg2.mapping(latent_for_seed(85, sg2.z_dim)[None])[0], atol=1e-6)
    zview = space_view(sg2, "z", seeds="nvlabs")
    assert torch.equal(zview.face_latent(85), z[0]) and zview.identity == sg2.identity
    with pytest.raises(TlganError, match="truncation"):
        SpaceView(sg2, "z", truncation=0.5)
    with pytest.raises(TlganError, match="offers"):
        SpaceView(PlantedGenerator(), "w")


def test_axes_made_in_w_refuse_other_generators_and_spaces(sg2):
    view = space_view(sg2, "w")
    axis_set = AxisSet(names=["p"], axes=torch.nn.functional.normalize(torch.ones(1, sg2.w_dim)), kinds=["real"],
                       groups=["x"], generator=view.identity, latent_dim=sg2.w_dim, method="manual", latent_space="w")
    other = random_stylegan2(seed=7)
    with pytest.raises(TlganError, match="made for generator"):
        Editor(other, axis_set)
    with pytest.raises(TlganError, match="made for generator"):
        Editor(space_view(sg2, "w", truncation=0.5), axis_set)


@pytest.mark.slow
def test_cli_build_in_w_then_edit_layers(tmp_path, sg2):
    pkl = write_nvlabs_pickle(tmp_path / "sg2.pkl", sg2)
    out = tmp_path / "axes.safetensors"
    run = subprocess.run([TLGAN, "build", "--generator", f"stylegan:{pkl}", "--extractor", "imagestats", "--n", "96",
                          "--truncation", "0.8", "--device", "cpu", "--batch-size", "32", "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    axis_set = load_axes(out)
    assert axis_set.latent_space == "w" and axis_set.truncation == 0.8 and axis_set.generator.endswith("@w,psi=0.8")
    assert axis_set.spread is not None and bool((axis_set.spread > 0).all())
    edit = subprocess.run([TLGAN, "edit", "--generator", f"stylegan:{pkl}", "--axes", str(out), "--seed", "85",
                           "--nvlabs-seeds", "--set", "brightness=1.5", "--layers", "0-3", "--json",
                           "--out", str(tmp_path / "face.png"), "--device", "cpu"], capture_output=True, text=True)
    assert edit.returncode == 0, edit.stderr
    report = json.loads(edit.stdout)
    assert report["after"]["brightness"] == pytest.approx(1.5, abs=1e-6)
    assert (tmp_path / "face.png").stat().st_size > 0
    bad = subprocess.run([TLGAN, "edit", "--generator", f"stylegan:{pkl}", "--axes", str(out), "--layers", "0-99",
                          "--json", "--device", "cpu"], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().startswith("error:") and "outside" in bad.stderr


def test_measure_spread_matches_definition():
    gen = PlantedStyleGAN()
    view = space_view(gen, "w")
    axis_set = AxisSet(names=["a"], axes=torch.nn.functional.normalize(torch.ones(1, 16)), kinds=["real"],
                       groups=["x"], generator=view.identity, latent_dim=16, method="manual")
    s = measure_spread(axis_set, view, seed=1, n=500)
    lat = view.draw_latents(1, 0, 500)
    assert torch.allclose(s, (lat @ axis_set.axes.T).std(0))


def test_sefa_and_ganspace_in_their_native_settings(sg2):
    from tlgan.axes.methods.discover import discover_axes
    from tlgan.axes.methods.pca import generator_pca
    from tlgan.axes.methods.sefa import sefa_directions

    coarse = space_view(sg2, "w", layers=parse_layers("coarse", sg2.num_ws))
    weight = coarse.first_layer_weight()
    assert torch.equal(weight, sg2.style_weights(range(4)))
    assert weight.shape[0] == sum(layer.affine.weight.shape[0] for i, _, layer in sg2.style_layers() if i < 4)
    axis_set = discover_axes(coarse, "sefa", 3, None)
    assert axis_set.latent_dim == sg2.w_dim and axis_set.generator == coarse.identity
    expected, _ = sefa_directions(weight, 3)
    assert torch.allclose(axis_set.axes.abs(), expected.abs().float(), atol=1e-5)  # eigenvectors of AᵀA
    view = space_view(sg2, "w")
    directions, _, layer = generator_pca(view, 3, n=600)
    assert layer == "w" and directions.shape == (3, sg2.w_dim)
    w = view.draw_latents(0, 0, 600).double()
    top = torch.linalg.eigh(torch.cov(w.T))[1][:, -1]  # the principal axis of sampled w
    assert abs(float(directions[0] @ top)) > 0.99


def test_replay_keeps_layer_range(sg2):
    view = space_view(sg2, "w")
    axis_set = with_space(AxisSet(names=["p"], axes=torch.nn.functional.normalize(torch.ones(1, sg2.w_dim)),
                                  kinds=["real"], groups=["x"], generator=view.identity, latent_dim=sg2.w_dim,
                                  method="manual"), view, 0, 500)
    editor = Editor(sg2, axis_set, 3, layers="middle")
    editor.set("p", -1.0)
    again = Editor.replay(sg2, axis_set, 3, editor.edits, layers="middle")
    assert torch.equal(again.latent(), editor.latent()) and again.axes.layers == {"p": [4, 7]}


def test_a_knob_taught_in_w_is_fitted_on_the_faces_w_not_their_z():
    """Seeds name faces by their z; in w the face is that z mapped, and the labels are about that face."""
    from tlgan.editing.library import make_knob
    from tlgan.editing.looks import looks_for
    from tlgan.sampling.spaces import face_latent

    gen = PlantedStyleGAN()
    view = space_view(gen, "w")
    rule = PlantedExtractor(dim=16).truth[0].double()
    seeds = range(200)
    examples = [(s, int(float(face_latent(view, s).double() @ rule) > 0)) for s in seeds]
    taught = make_knob("lin", examples, view.identity, 16, generator=view)
    assert float(taught.axes[0].double() @ rule) > 0.95
    # the seeds' plain z would have given another direction
    seed_z = make_knob("lin", examples, view.identity, 16)
    assert float(seed_z.axes[0].double() @ rule) < float(taught.axes[0].double() @ rule) - 0.1
    # learning from the pictures renders the faces in w too (the planted picture carries w)
    by_looks = make_knob("lin", examples, view.identity, 16, looks=looks_for(view, pool_size=500))
    assert float(by_looks.axes[0].double() @ rule) > 0.9


def one_knob_in_w() -> tuple[PlantedStyleGAN, SpaceView, AxisSet, torch.Tensor]:
    """(generator, its view in w, a one-knob set 'a' in w with its spread, the planted rule truth[0] (D,) float64)."""
    gen = PlantedStyleGAN()
    view = space_view(gen, "w")
    truth = PlantedExtractor(dim=16).truth
    axis_set = with_space(AxisSet(names=["a"], axes=truth[1:2], kinds=["real"], groups=["x"], generator=view.identity,
                                  latent_dim=16, method="manual", seed=3), view, seed=3, n=2000)
    return gen, view, axis_set, truth[0].double()


def test_blending_with_another_face_in_w_blends_the_faces_w():
    from tlgan.apps.web.state import Replayer
    from tlgan.sampling.latents import slerp
    from tlgan.sampling.spaces import face_latent

    _, view, axis_set, _ = one_knob_in_w()
    editor = Replayer(view, axis_set).start(4, mix=(9, 0.5))
    expected = slerp(face_latent(view, 4).double(), face_latent(view, 9).double(), 0.5)
    assert torch.allclose(editor.z.double(), expected, atol=1e-6)


def test_a_server_in_w_teaches_knobs_and_opens_shared_ones():
    """Knobs in w are in units of their spread: a taught (or shared) knob joins the set with its own."""
    from fastapi.testclient import TestClient

    from tlgan.apps.web.app import create_app
    from tlgan.sampling.spaces import face_latent

    gen, view, axis_set, rule = one_knob_in_w()
    labels = [{"seed": s, "label": int(float(face_latent(view, s).double() @ rule) > 0)} for s in range(60)]
    with TestClient(create_app(gen, axis_set, None, teacher="plain"), base_url="http://127.0.0.1") as client:
        res = client.post("/api/knobs", json={"name": "lin", "labels": labels, "save": False})
        assert res.status_code == 200, res.text
        served = client.app.state.tlgan.replayer.axes
        k = served.index("lin")
        assert float(served.axes[k].double() @ rule) > 0.95
        latents = view.draw_latents(0, 0, 4000).double()
        assert float(served.spread[k]) == pytest.approx(float((latents @ served.axes[k].double()).std()), rel=0.05)
        body = {"seed": 5, "edits": [{"op": "set", "knob": "lin", "value": 1.0, "locks": ["a"]}], "locks": [],
                "size": 16, "format": "png"}
        res = client.post("/api/render", json=body)
        assert res.status_code == 200, res.text
        values = json.loads(res.headers["x-knob-values"])
        assert values[k] == pytest.approx(1.0, abs=1e-6)
        code = client.app.state.knobs.describe("lin")["code"]
    with TestClient(create_app(gen, axis_set, None, teacher="plain"), base_url="http://127.0.0.1") as other:
        assert other.post("/api/knobs/shared", json={"name": "lin", "code": code}).status_code == 200
        assert "lin" in other.app.state.tlgan.replayer.axes.names


def test_teaching_into_an_axis_set_in_w_measures_the_new_knobs_spread():
    from tlgan.editing.active import labels_from_examples
    from tlgan.editing.teach import teach
    from tlgan.sampling.spaces import face_latent

    _, view, axis_set, rule = one_knob_in_w()
    examples = [(s, int(float(face_latent(view, s).double() @ rule) > 0)) for s in range(60)]
    labels = labels_from_examples(examples, 16, generator=view)
    with pytest.raises(TlganError, match="the axis set is in w: teaching into it needs its generator"):
        teach(axis_set, "lin", labels)
    out = teach(axis_set, "lin", labels, generator=view)
    k = out.index("lin")
    latents = view.draw_latents(0, 0, 4000).double()
    assert out.spread.shape == (2,) and torch.equal(out.spread[:1], axis_set.spread)
    assert float(out.spread[k]) == pytest.approx(float((latents @ out.axes[k].double()).std()), rel=0.05)
