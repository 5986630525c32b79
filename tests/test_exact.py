"""Exact edits on a tiny differentiable model with planted non-linear features (tests/planted_nonlinear.py)."""

from __future__ import annotations

import pytest
import torch
from planted_nonlinear import BentExtractor, BentGenerator, bent_axes

from tlgan.editing.editor import Edit, Editor
from tlgan.editing.exact import (
    ExactSettings,
    ReadingModel,
    exact_link,
    exact_move,
    feature_stats,
    free_rate,
    predictor_step,
    typicality,
    with_reading_stats,
)
from tlgan.errors import TlganError
from tlgan.models.extractors import Feature

SEEDS = range(8)


@pytest.fixture(scope="module")
def bent():
    gen, ext = BentGenerator(), BentExtractor()
    axes = with_reading_stats(bent_axes(gen, ext), gen, ext, n=2000)
    return gen, ext, axes


def test_predictor_step_moves_target_and_holds_constraints_to_first_order():
    gen = torch.Generator().manual_seed(0)
    g, c = torch.randn(10, generator=gen, dtype=torch.float64), torch.randn(3, 10, generator=gen, dtype=torch.float64)
    axis = torch.randn(10, generator=gen, dtype=torch.float64)
    res = torch.tensor([0.1, -0.2, 0.0], dtype=torch.float64)
    dz, planned = predictor_step(g, c, 0.5, res, axis, radius=100.0)
    assert planned == 0.5
    assert abs(float(g @ dz) - 0.5) < 1e-9 and torch.allclose(c @ dz, res, atol=1e-9)
    # a trust region shrinks the planned target change, not the corrections
    v0, _ = predictor_step(g, c, 0.0, res, axis, radius=100.0)
    dz, planned = predictor_step(g, c, 0.5, res, axis, radius=(float(dz.norm()) + float(v0.norm())) / 2)
    assert 0 < planned < 0.5 and torch.allclose(c @ dz, res, atol=1e-9)
    # a gradient inside the span of the constraints leaves no free share
    assert free_rate(c[0] + 2 * c[1], c) < 1e-9 and free_rate(g, c[:0]) == 1.0


def test_exact_link_matches_the_fitting_link_inside_its_clip():
    y = torch.tensor([[0.3, -0.5, 2.0]])
    linked = exact_link(y, ["probability", "tanh", "real"])
    expected = torch.tensor([torch.logit(torch.tensor(0.3)), torch.atanh(torch.tensor(-0.5)), 2.0], dtype=torch.float64)
    assert torch.allclose(linked[0], expected, atol=1e-6)


def test_linear_locks_fail_where_exact_locks_hold(bent):
    gen, ext, axes = bent
    linear_drift, exact_errors = [], []
    for seed in SEEDS:
        lin = Editor(gen, axes, seed, extractor=ext)
        lin.set_locks(["bend", "smile"])
        before = lin.readings()
        lin.set("tilt", 2.0)
        after = lin.readings()
        linear_drift.append(max(abs(after[k]["value"] - before[k]["value"]) for k in ("bend", "smile")))

        ex = Editor(gen, axes, seed, extractor=ext, exact=True)
        ex.set_locks(["bend", "smile"])
        ex.set("tilt", 2.0)
        report = ex.last_report()
        assert report["converged"], report["message"]
        now = ex.readings()
        assert abs(now["tilt"]["value"] - 2.0) <= ex.settings.goal_tol + 1e-9
        exact_errors.append(max(abs(now[k]["value"] - before[k]["value"]) for k in ("bend", "smile")))
        assert typicality(ex.z)["warn"] is False
    # the planted bend = z·u1 + 0.4 (z·u0)²: latent-space locks let the picture drift visibly ...
    assert sum(linear_drift) / len(linear_drift) > 0.3
    # ... exact locks hold every locked reading within the stated tolerance
    assert max(exact_errors) <= ExactSettings().lock_tol + 1e-9


def test_free_exact_move_reaches_goals_in_both_directions(bent):
    gen, ext, axes = bent
    for knob, goal in (("smile", 1.5), ("glow", -1.0), ("bend", -1.5)):
        ed = Editor(gen, axes, 3, extractor=ext, exact=True)
        ed.set(knob, goal)
        assert ed.last_report()["converged"]
        assert abs(ed.exact_values()[knob] - goal) <= ed.settings.goal_tol + 1e-9
        ed.step(knob, 0.5)
        assert abs(ed.exact_values()[knob] - goal - 0.5) <= ed.settings.goal_tol * 2 + 1e-9


def test_infeasible_goal_stops_and_says_which_lock_is_in_the_way(bent):
    gen, ext, axes = bent
    ed = Editor(gen, axes, 0, extractor=ext, exact=True)
    ed.set_locks(["bend", "smile"])
    ed.set("tilt", 9.0)
    report = ed.last_report()
    assert not report["converged"]
    assert report["blocked_by"] in ("bend", "smile")
    assert f"'{report['blocked_by']}' is in the way" in report["message"] and "reached" in report["message"]
    assert report["reached"] < 9.0 - 1 and report["reached"] > report["start"]
    # the locks held all the way, even though the goal was out of reach
    assert max(abs(v) for v in report["lock_errors"].values()) <= ed.settings.lock_tol + 1e-9
    # releasing the blocking lock lets it go further
    ed2 = Editor(gen, axes, 0, extractor=ext, exact=True)
    ed2.set_locks({"bend", "smile"} - {report["blocked_by"]})
    ed2.set("tilt", 9.0)
    assert ed2.last_report()["reached"] > report["reached"] + 0.5


def test_replay_is_bit_identical_and_edits_round_trip(bent):
    gen, ext, axes = bent
    ed = Editor(gen, axes, 5, extractor=ext, exact=True)
    ed.lock("bend")
    ed.set("tilt", 1.5)
    ed.exact = False
    ed.step("glow", 0.8)
    ed.exact = True
    ed.step("smile", -0.7)
    edits = [Edit.from_dict(e.to_dict()) for e in ed.edits]
    assert [e.exact for e in edits] == [True, False, True]
    again = Editor.replay(gen, axes, 5, edits, extractor=ext)
    assert again.z.numpy().tobytes() == ed.z.numpy().tobytes()
    assert Edit("set", "a", 1.0).to_dict() == {"op": "set", "knob": "a", "value": 1.0, "locks": []}


def test_knob_without_reading_and_locked_knob(bent):
    gen, ext, axes = bent
    ed = Editor(gen, axes, 1, extractor=ext, exact=True)
    ed.lock("tilt")
    with pytest.raises(TlganError, match="locked"):
        ed.set("tilt", 1.0)
    with pytest.raises(TlganError, match="within"):
        ed.set("smile", 11.0)


def test_stats_are_stored_and_reused(bent, tmp_path):
    from tlgan.axes.store import load_axes

    gen, ext, axes = bent
    axes.save(tmp_path / "a.safetensors")
    loaded = load_axes(tmp_path / "a.safetensors")
    assert loaded.reading_stats["samples"] == 2000
    assert torch.equal(loaded.reading_mean, axes.reading_mean) and torch.equal(loaded.reading_std, axes.reading_std)
    mean, std = feature_stats(loaded, gen, ext)
    assert torch.isfinite(mean).all() and (std > 0).all()


def test_onnx_extractor_is_refused_with_the_alternatives(tmp_path):
    pytest.importorskip("onnxruntime")
    from _user_models import onnx_extractor

    from tlgan.models.extractors import load_extractor

    path = onnx_extractor(tmp_path / "ext.onnx", meta={"features": [{"name": f"mean_{c}", "kind": "probability"}
                                                                      for c in "rgb"], "input_size": 16})
    ext = load_extractor(f"onnx:{path}", device="cpu")
    with pytest.raises(TlganError, match="not differentiable.*torchscript.*entrypoint.*tlgan-cnn.*celeba-cnn"):
        ReadingModel(BentGenerator(), ext, torch.zeros(3), torch.ones(3))


def test_non_differentiable_readings_are_detected():
    class Detached(BentExtractor):
        def forward(self, images):
            return super().forward(images).detach()

    model = ReadingModel(BentGenerator(), Detached(), torch.zeros(4), torch.ones(4))
    with pytest.raises(TlganError, match="not differentiable"):
        exact_move(model, torch.randn(12, dtype=torch.float64), 0, 1.0)


def test_linear_typicality_warns_far_from_typical_faces(bent):
    gen, _ext, axes = bent
    ed = Editor(gen, axes, 2)
    assert not ed.typicality()["warn"]
    ed.set("tilt", 9.0)
    t = ed.typicality()
    assert t["warn"] and "exact mode" in t["message"].lower() and t["norm"] > t["expected"] + 3 * t["sd"]


def test_blocker_with_a_single_constraint():
    from tlgan.editing.exact import _blocker

    g = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert _blocker(g, [("prior", torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))]) == "prior"
    assert _blocker(g, [("prior", torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))]) is None


def test_an_added_reading_can_be_held_and_a_duplicate_lock_is_refused_before_moving(bent):
    gen, ext, axes = bent
    mean, std = feature_stats(axes, gen, ext)
    model = ReadingModel(gen, ext, mean, std)
    # an extra differentiable reading of the images (as an identity lock would be): here the planted z·u3
    u3 = ext.u[3].double()
    extra = model.add_reading("u3", lambda images: (images.reshape(images.shape[0], -1)[:, :12].double() * 8) @ u3)
    z = torch.randn(12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    r = exact_move(model, z, 0, float(model.read(z, [0])[0]) + 1.0, [extra], ["u3"])
    assert r.converged and abs(r.lock_errors["u3"]) <= ExactSettings().lock_tol
    # a lock that reads the very same thing as the target leaves no room: refused at once, nothing moved
    same = model.add_reading("tilt again", lambda images: model.readings(images, [0]))
    r = exact_move(model, z, 0, 1.0, [same], ["tilt again"], target_name="tilt")
    assert r.refused and not r.converged and r.steps == 0 and torch.equal(r.z, z)
    assert "cannot move" in r.message and "unlock 'tilt again'" in r.message


def test_readings_added_together_are_read_in_one_call_and_differentiate_like_separate_ones(bent):
    gen, ext, axes = bent
    mean, std = feature_stats(axes, gen, ext)
    model = ReadingModel(gen, ext, mean, std)
    u = ext.u[:3].double()
    calls = []

    def together(images):
        calls.append(len(images))
        return (images.reshape(images.shape[0], -1)[:, :12].double() * 8) @ u.T

    idx = model.add_readings("u", together, 3)
    single = [model.add_reading(f"u{i}", lambda images, i=i: together(images)[:, i]) for i in range(3)]
    z = torch.randn(12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    calls.clear()
    values, jac = model.jacobian(z, [0, *idx])
    assert calls == [3]  # the three rows' images in one call
    calls.clear()
    assert model.read(z, idx).shape == (3,) and calls == [1]  # a plain read: one image, once
    values1, jac1 = model.jacobian(z, [0, *single])
    assert torch.allclose(values, values1) and torch.allclose(jac, jac1, atol=1e-9)


def test_a_guard_ends_the_path_at_its_bound_and_is_named(bent):
    from tlgan.editing.exact import Guard

    gen, ext, axes = bent
    mean, std = feature_stats(axes, gen, ext)
    model = ReadingModel(gen, ext, mean, std)
    z = torch.randn(12, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    start = float(model.read(z, [0])[0])
    free = exact_move(model, z, 0, start + 2.0)
    assert free.converged
    moved = float((free.z - z).norm())
    guard = Guard("budget", lambda at: float((at - z).norm()), moved / 3)
    r = exact_move(model, z, 0, start + 2.0, guard=guard)
    assert not r.converged and r.blocked_by == "budget"
    used = float((r.z - z).norm()) / (moved / 3)
    assert 0.9 <= used <= 1 and start < r.reached < start + 2.0  # part of the way: up to its bound, within it
    assert r.steps <= free.steps + 1   # the stride aims at the crossing instead of halving toward it
    assert "'budget' would go beyond its tolerance" in r.message and "'budget' is in the way" in r.message
    # already beyond it at the start: refused, nothing moved
    far = exact_move(model, z, 0, start + 2.0, guard=Guard("budget", lambda at: 1.0, 0.5))
    assert far.refused and torch.equal(far.z, z) and "already 1.000" in far.message


def test_jitter_is_seeded_small_and_image_major():
    from tlgan.editing.exact import Jitter

    ramp = torch.linspace(-0.8, 0.8, 16)
    images = torch.stack([(ramp[None, :, None] * ramp[None, None, :]).expand(3, 16, 16), ramp.expand(3, 16, 16)])
    a, b = Jitter().apply(images), Jitter().apply(images)
    assert a.shape == (2 * Jitter().count, 3, 16, 16) and torch.equal(a, b)
    assert (a[: Jitter().count] - images[0]).abs().mean() < 0.1  # small changes of the same picture ...
    assert not torch.equal(a[0], a[1])                          # ... each a different one


def test_emotion_scores_are_the_pre_softmax_of_its_probabilities():
    from tlgan.models.extractors import load_extractor

    ext = load_extractor("emotion,imagestats", "cpu")
    assert ext.softmax_groups == (tuple(range(7)),)
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    scores, probs = ext.scores(images), ext(images)
    assert torch.allclose(torch.softmax(scores[:, :7], 1), probs[:, :7], atol=1e-6)
    assert torch.equal(scores[:, 7:], probs[:, 7:])


def test_a_follower_moves_with_the_target_at_its_rate_and_a_lock_stays(bent):
    gen, ext, axes = bent
    mean, std = feature_stats(axes, gen, ext)
    model = ReadingModel(gen, ext, mean, std)
    for seed in range(3):
        z = torch.randn(12, generator=torch.Generator().manual_seed(20 + seed), dtype=torch.float64)
        start = model.read(z, [0, 1, 3])
        r = exact_move(model, z, 0, float(start[0]) + 1.0, locks=[1, 3], lock_names=["bend", "glow"],
                       follow=[(1, -0.6)])
        assert r.converged, r.message
        end = model.read(r.z, [0, 1, 3])   # tilt (moved), bend (held), glow (follows at −0.6)
        assert abs(float(end[1] - start[1])) <= 0.02
        assert float(end[2] - start[2]) == pytest.approx(-0.6 * float(end[0] - start[0]), abs=0.03)
        assert set(r.lock_errors) == {"bend"}                                     # a follower is not a lock


def test_chords_predict_a_follower_from_the_jacobian_instead_of_reading_it(bent):
    gen, ext, axes = bent
    mean, std = feature_stats(axes, gen, ext)
    model = ReadingModel(gen, ext, mean, std)
    read_for: list[list[int]] = []
    plain_read = model.read
    model.read = lambda z, idx: read_for.append(list(idx)) or plain_read(z, idx)   # type: ignore[method-assign]
    z = torch.randn(12, generator=torch.Generator().manual_seed(21), dtype=torch.float64)
    start = float(plain_read(z, [0])[0])
    r = exact_move(model, z, 0, start + 1.0, locks=[1, 3], lock_names=["bend", "glow"], follow=[(1, -0.6)])
    assert r.converged and r.steps >= 1 and read_for
    assert all(idx == [0, 1] for idx in read_for)         # the chords read the target and the lock, not 'glow'


def test_happy_takes_the_mouth_along_to_where_linear_mode_takes_it():
    from tlgan.axes.defaults import load_default_axes
    from tlgan.axes.math import move_to_value
    from tlgan.models.generators import load_generator

    editor = Editor(load_generator("digiface", "cpu"), load_default_axes(), 3, exact=True)
    reader = editor.reader()
    target = reader.names.index("happy")

    def followers(edit: Edit, locks: list[str], ed: Editor = editor) -> dict[str, float]:
        return {name: rate for _, rate, name in ed._followers(edit, reader, target, 2.0, locks)}

    smile = Edit("set", "happy", 2.0, (), True)
    rates = followers(smile, ["yaw"])
    assert set(rates) == {"mouth_width", "mouth_lift"} and all(0 < r < 3 for r in rates.values())
    # the mouth's width locked: the corners (read by the face mesh; no knob holds them) still go along
    assert set(followers(smile, ["mouth_width"])) == {"mouth_lift"}
    # the rate leads it to linear mode's reading at the same knob value when the knob's reading gets to its goal
    k = editor.axes.index("happy")
    end = move_to_value(editor.z, editor._axes64[k], editor._axes64[k], 2.0 * float(editor._spread[k]))
    i = reader.names.index("face mesh")
    now, there = reader.read(editor.z, [target, i]), reader.read(end, [target, i])
    assert rates["mouth_lift"] == pytest.approx(float((there[1] - now[1]) / (2.0 - now[0])), rel=1e-6)
    assert followers(Edit("set", "yaw", 1.0, (), True), []) == {}
    bare = Editor(editor.generator, editor.axes, 3, exact=True, companions={}, looks={})
    bare._reader = reader
    assert followers(smile, [], bare) == {}


class MoodExtractor(BentExtractor):
    """Three classes of one softmax with planted scores: calm = t1, glad = 2 t1, cross = 0.5 t2 + t1 (t = z·u).

    Every score shares t1, a shift the probabilities partly do not see: holding calm's and cross's scores pins t1,
    so glad cannot move; holding them *among themselves* (cross − calm = 0.5 t2) leaves t1 free."""

    def __init__(self) -> None:
        super().__init__()
        self.name, self.identity = "mood", "mood:1"
        self.features = (Feature("calm", "probability", "expression"), Feature("glad", "probability", "expression"),
                         Feature("cross", "probability", "expression"))
        self.softmax_groups = ((0, 1, 2),)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        t = images.reshape(images.shape[0], -1)[:, : self.dim] * 8 @ self.u.T
        return torch.stack([t[:, 1], 2 * t[:, 1], 0.5 * t[:, 2] + t[:, 1]], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.scores(images), dim=1)


def test_one_class_of_a_softmax_moves_with_every_other_class_held_among_themselves():
    gen, ext = BentGenerator(), MoodExtractor()
    axes = bent_axes(gen, ext)
    editor = Editor(gen, axes, 4, extractor=ext, exact=True)
    reader = editor.reader()
    # the raw scores held: glad's gradient lies in theirs, so the move is refused before it starts
    z = editor.z.clone()
    refused = exact_move(reader, z, 1, 1.0, locks=[0, 2], lock_names=["calm", "cross"])
    assert refused.refused or not refused.converged
    start = ext(gen.synthesize(z.float()[None]))[0]
    editor.set_locks(["calm", "cross"])
    editor.set("glad", 1.0)
    report = editor.last_report()
    assert report["converged"], report["message"]
    end = ext(gen.synthesize(editor.z.float()[None]))[0]
    assert float(end[1]) > float(start[1]) + 0.05                          # more glad, in the probabilities
    ratio = lambda p: float(torch.log(p[2] / p[0]))                        # noqa: E731
    assert ratio(end) == pytest.approx(ratio(start), abs=0.02 * float(reader.std[2]) * 1.5)   # the others' proportions
    assert report["goal"] == 1.0 and abs(report["reached"] - 1.0) <= ExactSettings().goal_tol
    assert report["message"] == "" and set(report["lock_errors"]) == {"cross"}
