"""The axis math against planted truths."""

import pytest
import torch

from tlgan.axes.math import (
    NormalEquations,
    conditional_direction,
    gram_schmidt,
    knob_values,
    link,
    lock_all,
    lock_direction,
    move_to_value,
    normalize_rows,
)
from tlgan.errors import TlganError


def _cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def test_least_squares_recovers_planted_direction_and_intercept():
    gen = torch.Generator().manual_seed(1)
    d, n = 50, 5000
    truth = torch.randn(d, 3, generator=gen, dtype=torch.float64)
    z = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = z @ truth + torch.tensor([1.0, -2.0, 0.5]) + 0.3 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    eq = NormalEquations(d, 3)
    for i in range(0, n, 777):  # streamed in uneven batches
        eq.update(z[i:i + 777], y[i:i + 777])
    w, b = eq.solve()
    for k in range(3):
        assert _cos(w[:, k], truth[:, k]) >= 0.99
    assert torch.allclose(b, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), atol=0.05)


def test_streamed_fit_equals_direct_lstsq_and_r2_matches_definition():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(400, 10, generator=gen, dtype=torch.float64)
    y = z[:, :2] * torch.tensor([2.0, -1.0]) + torch.randn(400, 2, generator=gen, dtype=torch.float64)
    eq = NormalEquations(10, 2)
    eq.update(z, y)
    w, b = eq.solve()
    design = torch.cat([z, torch.ones(400, 1, dtype=torch.float64)], 1)
    direct = torch.linalg.lstsq(design, y).solution
    assert torch.allclose(w, direct[:10], atol=1e-9) and torch.allclose(b, direct[10], atol=1e-9)
    pred = z @ w + b
    r2 = 1 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    assert torch.allclose(eq.r2(w, b), r2, atol=1e-9)


def test_ridge_shrinks_weights():
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(300, 20, generator=gen, dtype=torch.float64)
    y = z[:, :1] + torch.randn(300, 1, generator=gen, dtype=torch.float64)
    eq = NormalEquations(20, 1)
    eq.update(z, y)
    assert eq.solve(ridge=1000.0)[0].norm() < eq.solve()[0].norm()
    with pytest.raises(TlganError):
        eq.solve(ridge=-1)


def test_too_few_samples_and_nan_are_refused():
    eq = NormalEquations(5, 1)
    eq.update(torch.randn(4, 5), torch.randn(4, 1))
    with pytest.raises(TlganError, match="more samples"):
        eq.solve()
    with pytest.raises(TlganError, match="NaN"):
        eq.update(torch.full((2, 5), float("nan")), torch.zeros(2, 1))
    with pytest.raises(TlganError, match="expected"):
        eq.update(torch.randn(2, 4), torch.zeros(2, 1))


def test_link_functions():
    p = torch.tensor([[0.5, 0.0, 0.3]], dtype=torch.float64)
    out = link(p, ["probability", "tanh", "real"])
    assert out[0, 0] == 0 and out[0, 1] == 0 and abs(out[0, 2] - 0.3) < 1e-12
    clipped = link(torch.tensor([[1.0, 1.0, 0.0]]), ["probability", "tanh", "real"])
    assert torch.isfinite(clipped).all() and abs(clipped[0, 0] - 6) < 1e-6 and abs(clipped[0, 1] - 3) < 1e-6


def test_no_lock_is_plain_normalised_axis():
    a = torch.randn(12, dtype=torch.float64)
    assert torch.allclose(lock_direction(a, torch.zeros(0, 12, dtype=torch.float64)), a / a.norm())
    axes = normalize_rows(torch.randn(4, 12, dtype=torch.float64))
    assert torch.allclose(lock_all(axes, []), axes)


def test_lock_matches_tlgan_gram_schmidt_construction():
    gen = torch.Generator().manual_seed(4)
    axes = normalize_rows(torch.randn(5, 30, generator=gen, dtype=torch.float64))
    locked = [3, 1]
    # TL-GAN: orthogonalise locked axes in index order, then subtract projections and renormalise.
    basis = []
    for i in sorted(locked):
        v = axes[i].clone()
        for q in basis:
            v -= (v @ q) * q
        basis.append(v / v.norm())
    expected = axes[0].clone()
    for q in basis:
        expected -= (expected @ q) * q
    expected /= expected.norm()
    got = lock_direction(axes[0], axes[sorted(locked)])
    assert torch.allclose(got, expected, atol=1e-12)
    assert torch.allclose(lock_all(axes, sorted(locked))[0], expected, atol=1e-12)


def test_locked_edit_keeps_locked_values_and_reaches_target():
    gen = torch.Generator().manual_seed(5)
    axes = normalize_rows(torch.randn(6, 40, generator=gen, dtype=torch.float64))
    z = torch.randn(40, generator=gen, dtype=torch.float64)
    locked = axes[[1, 2, 4]]
    d = lock_direction(axes[0], locked)
    z2 = move_to_value(z, axes[0], d, 2.5)
    before, after = knob_values(z[None], axes)[0], knob_values(z2[None], axes)[0]
    assert abs(after[0] - 2.5) < 1e-9
    assert torch.allclose(after[[1, 2, 4]], before[[1, 2, 4]], atol=1e-5)
    assert not torch.allclose(after[[3, 5]], before[[3, 5]], atol=1e-5)  # unlocked ones are free to move


def test_axis_in_locked_span_is_refused():
    a = torch.tensor([1.0, 0, 0], dtype=torch.float64)
    with pytest.raises(TlganError, match="span"):
        lock_direction(a, torch.tensor([[1.0, 1, 0], [1.0, -1, 0]], dtype=torch.float64))


def test_gram_schmidt_is_orthonormal_and_skips_dependent_rows():
    v = torch.tensor([[1.0, 1, 0], [2.0, 2, 0], [0, 1, 1]], dtype=torch.float64)
    q = gram_schmidt(v)
    assert q.shape == (2, 3)
    assert torch.allclose(q @ q.T, torch.eye(2, dtype=torch.float64), atol=1e-12)


def test_conditional_edit_equals_lock_for_any_number_of_conditions():
    gen = torch.Generator().manual_seed(6)
    for n_cond in (1, 2, 5):
        p = torch.randn(20, generator=gen, dtype=torch.float64)
        c = torch.randn(n_cond, 20, generator=gen, dtype=torch.float64)
        assert torch.allclose(conditional_direction(p, c), lock_direction(p, c), atol=1e-10)
