"""The generator-sensitivity prior for taught knobs: measured on a generator with a planted sensitive subspace."""

from __future__ import annotations

import pytest
import torch

from tlgan.editing.active import quick_fit
from tlgan.editing.prior import cached_sensitivity, prior_scale, sensitivity
from tlgan.models.generators import Generator
from tlgan.sampling.latents import latent_for_seed

D, ACTIVE = 40, 4


class FewDims(Generator):
    """An (3, 8, 8) image that depends only on the first ACTIVE latent dimensions (tanh of a fixed mix)."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim, self.resolution, self.name, self.identity = D, 8, "fewdims", "fewdims:1"
        self.mix = torch.nn.Parameter(torch.randn(ACTIVE, 3 * 8 * 8, generator=torch.Generator().manual_seed(1)),
                                      requires_grad=False)

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z[:, :ACTIVE] @ self.mix / 4).view(-1, 3, 8, 8)


def test_sensitivity_finds_the_dimensions_the_picture_depends_on(tmp_path, monkeypatch):
    gen = FewDims()
    s = sensitivity(gen, faces=32, rounds=2, batch=16)
    assert s.shape == (D, D) and torch.allclose(s, s.T)
    # normalised to trace D; the sum of D rounded diagonal terms may differ from D in the last bits (seen: 40 + 7e-15
    # on an AMD EPYC), so compare to a few ulps of D per term, far below any real error in the normalisation
    assert float(s.trace()) == pytest.approx(D, rel=D * torch.finfo(s.dtype).eps)
    assert float(s[:ACTIVE, :ACTIVE].trace()) > 0.999 * D
    assert all(p.requires_grad is False for p in gen.parameters())
    # cached per generator: the second call reads the file
    monkeypatch.setenv("TLGAN_CACHE_DIR", str(tmp_path))
    first = cached_sensitivity(gen)
    assert list((tmp_path / "priors").glob("*.safetensors"))
    monkeypatch.setattr("tlgan.editing.prior.sensitivity", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert torch.equal(cached_sensitivity(gen), first)


def test_the_prior_recovers_a_visible_rule_from_fewer_labels():
    gen = FewDims()
    scale = prior_scale(sensitivity(gen, faces=32, rounds=2, batch=16))
    rule = torch.zeros(D, dtype=torch.float64)
    rule[:ACTIVE] = torch.tensor([1.0, -2.0, 0.5, 1.0])
    rule /= rule.norm()

    def cos(w):
        return float(torch.nn.functional.cosine_similarity(w, rule, dim=0))

    plain, prior = [], []
    for start in range(0, 400, 40):  # ten labellers, 40 faces each, 10% of answers flipped
        seeds = range(start, start + 40)
        z = torch.stack([latent_for_seed(s, D) for s in seeds]).double()
        y = ((z @ rule) > 0).long()
        y[::10] = 1 - y[::10]
        plain.append(cos(quick_fit(z, y)[0]))
        prior.append(cos(quick_fit(z, y, scale=scale)[0]))
    assert sorted(prior)[5] > 0.9 and sorted(prior)[5] > sorted(plain)[5] + 0.15
