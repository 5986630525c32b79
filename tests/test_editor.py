"""Editor semantics: knob values, set/step, locks, replay, bad input."""

import pytest
import torch
from planted import PlantedGenerator

from tlgan.axes.store import AxisSet
from tlgan.editing.editor import Edit, Editor
from tlgan.errors import TlganError


@pytest.fixture()
def editor():
    gen = PlantedGenerator(16)
    axes = torch.nn.functional.normalize(torch.randn(5, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    axis_set = AxisSet(names=list("abcde"), axes=axes, kinds=["real"] * 5, groups=["other"] * 5,
                       generator=gen.identity, latent_dim=16, method="test")
    return Editor(gen, axis_set, seed=11)


def test_values_are_projections(editor):
    z = editor.latent().double()
    for name, value in editor.values().items():
        assert abs(value - float(z @ editor.axes.axes[editor.axes.index(name)].double())) < 1e-6


def test_set_and_step(editor):
    editor.set("a", 2.0)
    assert abs(editor.value("a") - 2.0) < 1e-9
    editor.step("a")
    assert abs(editor.value("a") - 2.4) < 1e-9
    editor.step("a", -1.0)
    assert abs(editor.value("a") - 1.4) < 1e-9


def test_locked_knobs_do_not_move(editor):
    editor.lock("b")
    editor.lock("d")
    before = editor.values()
    editor.set("a", -3.0)
    assert abs(editor.value("a") - -3.0) < 1e-9
    mid = editor.values()
    editor.step("c", 1.2)
    after = editor.values()
    assert abs(after["c"] - (mid["c"] + 1.2)) < 1e-9
    for k in "bd":
        assert abs(after[k] - before[k]) < 1e-5 and abs(mid[k] - before[k]) < 1e-5
    assert abs(after["e"] - before["e"]) > 1e-3  # unlocked knobs are free to drift


def test_locked_knob_cannot_be_moved(editor):
    editor.lock("a")
    with pytest.raises(TlganError, match="locked"):
        editor.set("a", 1.0)


def test_replay_is_exact(editor):
    editor.lock("c")
    editor.set("a", 1.5)
    editor.lock("c", False)
    editor.lock("e")
    editor.step("b", -0.8)
    again = Editor.replay(editor.generator, editor.axes, editor.seed, [Edit.from_dict(e.to_dict()) for e in editor.edits],
                          locks=editor.locks)
    assert torch.equal(again.z, editor.z) and again.locks == editor.locks
    assert torch.equal(again.render(), editor.render())


def test_reset_and_new_face(editor):
    start = editor.latent().clone()
    editor.set("a", 3.0)
    editor.reset()
    assert torch.equal(editor.latent(), start) and editor.edits == []
    seed = editor.random_face(torch.Generator().manual_seed(1))
    assert editor.seed == seed and not torch.equal(editor.latent(), start)


@pytest.mark.parametrize("bad", [
    lambda e: e.set("nope", 1.0),
    lambda e: e.set("a", float("nan")),
    lambda e: e.set("a", float("inf")),
    lambda e: e.set("a", 50.0),
    lambda e: e.lock("zz"),
    lambda e: e.apply(Edit("jump", "a", 1.0)),
    lambda e: e.new_face(-1),
    lambda e: Edit.from_dict({"op": "set"}),
])
def test_bad_input(editor, bad):
    with pytest.raises(TlganError):
        bad(editor)


def test_unknown_name_lists_valid_ones(editor):
    with pytest.raises(TlganError, match="valid names: a, b, c, d, e"):
        editor.set("happy", 1.0)


def test_generator_latent_checks():
    gen = PlantedGenerator(16)
    for z in (torch.zeros(2, 15), torch.zeros(16), torch.full((1, 16), float("nan")), torch.zeros(1, 16, dtype=torch.int64)):
        with pytest.raises(TlganError):
            gen(z)
