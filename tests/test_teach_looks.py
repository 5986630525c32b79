"""Teaching from the pictures (tlgan.editing.looks): the descriptor, the picture space, and a planted rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlgan.editing import looks as looks_module
from tlgan.editing.active import quick_fit, suggest
from tlgan.editing.looks import DESCRIPTOR_SIZE, PictureSpace, descriptor, looks_for
from tlgan.editing.teach import teach_direction
from tlgan.models.generators import Generator
from tlgan.sampling.latents import latent_for_seed

D = 60
RULE = torch.nn.functional.normalize(torch.randn(D, generator=torch.Generator().manual_seed(3)), dim=0)
OTHER = torch.nn.functional.normalize(torch.randn(D, generator=torch.Generator().manual_seed(4)), dim=0)


class LitSides(Generator):
    """16x16 faces whose left half's brightness is tanh(z·RULE) and right half's tanh(z·OTHER), with a fine
    checker pattern of strength (z₀² − 1): picture variation that no latent direction moves linearly."""

    def __init__(self, identity: str = "litsides:1") -> None:
        super().__init__()
        self.latent_dim, self.resolution, self.name, self.identity = D, 16, "litsides", identity

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        z = z.double()
        left, right = torch.tanh(z @ RULE.double()), torch.tanh(z @ OTHER.double())
        img = torch.zeros(len(z), 3, 16, 16, dtype=torch.float64)
        img[..., :8] = 0.6 * left[:, None, None, None]
        img[..., 8:] = 0.6 * right[:, None, None, None]
        checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2 - 1
        img = img + 0.2 * (z[:, :1, None, None] ** 2 - 1).clamp(-1, 2) / 2 * checker
        return img.clamp(-1, 1).float()


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def test_descriptor_reads_colour_layout_and_detail():
    flat = torch.zeros(2, 3, 16, 16)
    flat[0, 0], flat[0, 1], flat[0, 2] = 0.5, 0.0, -0.5            # an orange-ish grey, rgb = (0.75, 0.5, 0.25)
    flat[1, :, :, :8] = 1.0                                           # white left half, black right half
    flat[1, :, :, 8:] = -1.0
    d = descriptor(flat)
    assert d.shape == (2, DESCRIPTOR_SIZE) and d.dtype == torch.float64
    luma, red_green, blue_yellow = d[0, :64], d[0, 64:128], d[0, 128:192]
    assert torch.allclose(luma, torch.full((64,), 0.299 * 0.75 + 0.587 * 0.5 + 0.114 * 0.25, dtype=torch.float64))
    assert torch.allclose(red_green, torch.full((64,), 0.25, dtype=torch.float64))
    assert torch.allclose(blue_yellow, torch.full((64,), 0.25 - 0.625, dtype=torch.float64))
    assert float(d[0, 192:].abs().max()) < 1e-12                      # no detail in a flat picture
    thumb = d[1, :64].view(8, 8)
    assert torch.allclose(thumb[:, :4], torch.ones(8, 4, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(thumb[:, 4:], torch.zeros(8, 4, dtype=torch.float64), atol=1e-6)
    assert float(d[1, 192:].max()) > 0                                # the edge is detail


def test_the_picture_space_keeps_what_the_latent_controls_and_drops_the_rest():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3000, 10, generator=g, dtype=torch.float64)
    linear = z[:, :2] @ torch.randn(2, 30, generator=g, dtype=torch.float64)          # moved by z
    wild = 5 * (z[:, 2:3] ** 2 - 1) * torch.randn(1, 30, generator=g, dtype=torch.float64)  # not linear in z
    space = PictureSpace.fit(torch.cat([linear, wild], 1), z, components=2)
    assert space.basis.shape == (60, 2)
    assert float(space.basis[30:].norm()) < 0.05                      # the uncontrolled block is left out
    x = space.project(torch.cat([linear, wild], 1))
    assert abs(float(x[:, 0].std()) - 1) < 1e-9


@pytest.fixture
def looks(tmp_path, monkeypatch):
    monkeypatch.setenv("TLGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(looks_module, "_cache", {})
    return looks_for(LitSides(), pool_size=600)


def test_a_rule_on_the_picture_is_taught_from_few_labels(looks):
    # the labeller answers "is the left side light?" for 40 random faces, 10% of answers flipped
    rng = np.random.default_rng(0)
    seeds = rng.choice(10**9, 40, replace=False).tolist()
    z = torch.stack([latent_for_seed(s, D) for s in seeds]).double()
    y = ((z @ RULE.double()) > 0).long()
    y = torch.where(torch.from_numpy(rng.random(40) < 0.1), 1 - y, y)
    w, b, accuracy, folds = teach_direction(z, y, looks=looks)
    plain, _ = quick_fit(z, y)
    assert cos(w, RULE) > 0.9 > cos(plain, RULE) + 0.15
    assert folds == 5 and accuracy > 0.7
    assert looks.params() == {"pool": 0, "pool_size": 600, "components": looks.pool_x.shape[1], "colour_grid": 8,
                              "detail_grid": 4, "C_picture": 3.0, "C_latent": 1.0}
    probe = torch.stack([latent_for_seed(s, D) for s in range(10**9, 10**9 + 500)]).double()
    assert float((((probe @ w + b) > 0) == ((probe @ RULE.double()) > 0)).double().mean()) > 0.9


def test_suggestions_are_the_faces_the_picture_classifier_is_least_sure_of(looks):
    labels = [(s, int(float(latent_for_seed(s, D) @ RULE) > 0)) for s in range(30)]
    found = suggest(labels, D, 12, pool=0, random_share=0.25, looks=looks, pool_size=600)
    assert len(set(found.seeds)) == 12 and found.reasons.count("random") == 3
    assert not set(found.seeds) & set(range(30))
    uncertain = [s for s, r in zip(found.seeds, found.reasons) if r == "uncertain"]
    near = [abs(float(latent_for_seed(s, D) @ RULE)) for s in uncertain]
    everyone = [abs(float(z @ RULE.double())) for z in looks.pool_z]
    assert np.median(near) < np.quantile(everyone, 0.25)    # near the boundary of the rule itself


def test_the_pool_is_rendered_once_per_generator_then_read_from_the_cache(looks, tmp_path, monkeypatch):
    assert len(list((tmp_path / "looks").glob("*.safetensors"))) == 1
    monkeypatch.setattr(looks_module, "_cache", {})
    monkeypatch.setattr(looks_module, "render_descriptors", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    again = looks_for(LitSides(), pool_size=600)
    assert torch.allclose(again.pool_x, looks.pool_x, rtol=0, atol=1e-9)
    with pytest.raises(AssertionError):      # another generator is not served from this one's cache
        looks_for(LitSides("litsides:2"), pool_size=600)


def test_every_teacher_is_offered_and_an_unknown_one_is_refused():
    from tlgan.apps.cli.main import cli
    from tlgan.editing.library import TEACHERS, teaching_aid
    from tlgan.errors import TlganError

    for command in ("teach", "serve"):
        option = next(p for p in cli.commands[command].params if p.name == "teacher")
        assert tuple(option.type.choices) == TEACHERS
    assert teaching_aid(LitSides(), "plain") == (None, None)
    with pytest.raises(TlganError, match="teacher must be one of: looks, sensitivity, plain; got 'magic'"):
        teaching_aid(LitSides(), "magic")


def test_a_generator_that_draws_nan_is_a_one_line_error(looks, monkeypatch):
    from tlgan.errors import TlganError

    monkeypatch.setattr(looks.generator, "synthesize", lambda z: torch.full((len(z), 3, 16, 16), float("nan")))
    with pytest.raises(TlganError, match="^the generator's pictures contain NaN or infinite values"):
        teach_direction(torch.randn(20, D, dtype=torch.float64), torch.tensor([0, 1] * 10), looks=looks)
