"""The ipywidgets GUI, driven through its widgets' own callbacks (button clicks, toggle changes)."""

from __future__ import annotations

import numpy as np
import pytest
from webtools import KNOBS, decode, web_model

from tlgan.apps.notebook import KnobPanel, knob_panel
from tlgan.editing.editor import Editor
from tlgan.imaging import to_pil


@pytest.fixture
def panel():
    generator, axes = web_model()
    return KnobPanel(generator, axes, seed=7, size=128)


def shown(panel) -> np.ndarray:
    return decode(panel.image.value)


def test_panel_shows_the_editors_face_and_every_knob(panel):
    generator, axes = web_model()
    assert list(panel.knobs) == [k[0] for k in KNOBS]
    assert np.array_equal(shown(panel), np.asarray(to_pil(Editor(generator, axes, 7).render(), 128)))
    for name, value in Editor(generator, axes, 7).values().items():
        assert panel.knobs[name]["value"].value == f"{value:+.2f}σ"
        assert panel.knobs[name]["lock"].description == name
    assert "held-out R² 0.55" in panel.knobs["happy"]["lock"].tooltip
    assert panel.caption.value == "face #7"


def test_plus_and_minus_step_the_knob_and_redraw(panel):
    start, image = panel.editor.value("happy"), panel.image.value
    panel.knobs["happy"]["plus"].click()
    panel.knobs["happy"]["plus"].click()
    assert panel.editor.value("happy") == pytest.approx(start + 0.8, abs=1e-9)
    assert panel.knobs["happy"]["value"].value == f"{start + 0.8:+.2f}σ"
    assert panel.image.value != image
    panel.knobs["happy"]["minus"].click()
    assert panel.editor.value("happy") == pytest.approx(start + 0.4, abs=1e-9)
    assert np.array_equal(shown(panel), np.asarray(to_pil(panel.editor.render(), 128)))
    assert panel.caption.value == "face #7 · 3 edits"


def test_toggle_locks_and_locked_knobs_hold(panel):
    toggle = panel.knobs["brightness"]["lock"]
    toggle.value = True  # what a click on the toggle does
    assert panel.editor.locks == {"brightness"} and toggle.icon == "lock"
    brightness = panel.editor.value("brightness")
    for _ in range(3):
        panel.knobs["warmth"]["plus"].click()
    assert panel.editor.value("brightness") == pytest.approx(brightness, abs=1e-9)
    assert panel.editor.edits[-1].locks == ("brightness",)
    # a locked knob's own buttons are refused, with the reason shown in the panel
    panel.knobs["brightness"]["plus"].click()
    assert "locked" in panel.message.value
    assert panel.editor.value("brightness") == pytest.approx(brightness, abs=1e-9)
    toggle.value = False
    assert panel.editor.locks == set() and toggle.icon == "unlock"
    panel.knobs["brightness"]["plus"].click()
    assert panel.message.value == ""
    assert panel.editor.value("brightness") == pytest.approx(brightness + 0.4, abs=1e-9)


def test_random_face_and_reset_buttons(panel):
    panel.knobs["yaw"]["lock"].value = True
    panel.knobs["happy"]["plus"].click()
    image = panel.image.value
    panel.random_button.click()
    assert panel.editor.seed != 7 and panel.editor.edits == [] and panel.editor.locks == {"yaw"}
    assert panel.image.value != image
    generator, axes = web_model()
    assert np.array_equal(shown(panel), np.asarray(to_pil(Editor(generator, axes, panel.editor.seed).render(), 128)))
    panel.knobs["happy"]["minus"].click()
    panel.reset_button.click()
    assert panel.editor.edits == []
    assert np.array_equal(shown(panel), np.asarray(to_pil(Editor(generator, axes, panel.editor.seed).render(), 128)))


def test_out_of_range_is_refused_and_shown(panel):
    panel.editor.set("surprise", 9.8)
    panel.refresh()
    panel.knobs["surprise"]["plus"].click()
    assert "within ±10σ" in panel.message.value
    assert panel.editor.value("surprise") == pytest.approx(9.8, abs=1e-9)


def test_knob_panel_returns_a_displayable_widget():
    import ipywidgets

    generator, axes = web_model()
    widget = knob_panel(generator=generator, axes=axes, seed=1, size=64)
    assert isinstance(widget, ipywidgets.HBox)
    image = widget.children[0].children[0]
    assert isinstance(image, ipywidgets.Image) and decode(image.value).shape == (64, 64, 3)


def test_default_panel_uses_the_shipped_knob_set():
    from tlgan.axes.defaults import load_default_axes

    panel = KnobPanel(size=64)
    assert sorted(panel.knobs) == sorted(load_default_axes().names)
    panel.knobs["happy"]["plus"].click()
    assert panel.editor.edits[-1].knob == "happy" and panel.message.value == ""


def test_exact_checkbox_moves_readings_and_holds_locked_readings():
    from planted_nonlinear import BentExtractor, BentGenerator, bent_axes

    from tlgan.editing.exact import with_reading_stats

    gen, ext = BentGenerator(), BentExtractor()
    axes = with_reading_stats(bent_axes(gen, ext), gen, ext, n=2000)
    panel = KnobPanel(gen, axes, seed=2, size=32, extractor=ext)
    panel.exact_box.value = True  # as a click on the checkbox does
    assert panel.editor.exact
    panel.knobs["bend"]["lock"].value = True
    before = panel.editor.readings()
    panel.knobs["tilt"]["plus"].click()
    after = panel.editor.readings()
    assert panel.editor.edits[-1].exact and panel.message.value == ""
    assert abs(after["tilt"]["value"] - before["tilt"]["value"] - 0.4) <= 0.06
    assert abs(after["bend"]["value"] - before["bend"]["value"]) <= 0.02
    assert panel.knobs["tilt"]["value"].value == f"{after['tilt']['value']:+.2f}σ"


def test_keep_the_person_locks_identity_for_new_moves_and_the_identity_line_follows_them(panel):
    generator, axes = web_model()
    assert not panel.keep_box.value and panel.identity_line.value == ""   # off by default; nothing moved yet
    panel.keep_box.value = True  # what a click on the checkbox does
    assert "identity" in panel.editor.locks
    for _ in range(8):
        panel.knobs["happy"]["plus"].click()
    assert panel.editor.edits[-1].locks == ("identity",) and panel.message.value == ""
    # the line is the library's reading of this state: distance from face #7, on the generator's scale
    check = Editor.replay(generator, axes, 7, panel.editor.edits).identity()
    assert check.found and check.distance > 0.1
    assert f"identity: {check.distance:.2f} from the original; another person is about {check.stranger:.2f}" \
        in panel.identity_line.value
    assert "past the 0.10 tolerance; linear moves cannot hold it" in panel.identity_line.value
    assert "#8a4b00" in panel.identity_line.value   # a warning
    panel.keep_box.value = False
    panel.knobs["yaw"]["plus"].click()
    assert "identity" not in panel.editor.locks and panel.editor.edits[-1].locks == ()
    assert "Keep the person, with exact, holds it" in panel.identity_line.value
    panel.reset_button.click()
    assert panel.identity_line.value == ""   # back at the start face


def test_the_panel_can_start_with_the_person_kept():
    generator, axes = web_model()
    panel = KnobPanel(generator, axes, seed=7, size=64, keep_person=True, identity=False)
    assert panel.keep_box.value and panel.editor.locks == {"identity"}
    panel.knobs["happy"]["plus"].click()
    assert panel.editor.edits[-1].locks == ("identity",) and panel.identity_line.value == ""  # line turned off
