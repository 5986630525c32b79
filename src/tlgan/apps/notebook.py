"""The knobs as ipywidgets in Jupyter, like the original TL-GAN notebook: built on the same Editor.

    from tlgan.apps.notebook import KnobPanel
    panel = KnobPanel()          # default generator and knob set
    panel                        # shows: image, "random face", and per knob a lock toggle, − and +

Each knob is a toggle button with its name (pressed = locked), − and +
buttons that step it by 0.4σ, and its current value. The "exact" checkbox
switches new moves to exact mode: values become the extractor's standardised
readings and locked knobs keep their readings (``KnobPanel(exact=True)``). "Keep the person" locks
identity for new moves (exact moves hold it; linear ones only measure it; off by default: holding it
makes an exact move several times slower and roughly halves an expression's change, docs/exact.md), and
after each move a line says how far the face is from the one it started as ("0.08 from the original;
another person is about 0.67"), as a warning past the tolerance. Problems (a knob that would leave the
±10σ range, a locked knob) are shown in the panel, not raised.
"""

from __future__ import annotations

import html
import random
from typing import Any

import ipywidgets as widgets

from tlgan.axes.store import AxisSet
from tlgan.editing.editor import DEFAULT_STEP, Editor
from tlgan.editing.identity import IDENTITY
from tlgan.errors import TlganError
from tlgan.imaging import encode, to_pil
from tlgan.models.extractors import GROUPS
from tlgan.models.generators import Generator


class KnobPanel:
    """An ipywidgets GUI over an Editor.

    Args:
        generator: defaults to ``tlgan.defaults.DEFAULT_GENERATOR`` on CPU.
        axes: defaults to the shipped knob set (``tlgan.defaults.load_default_axes``).
        seed: the starting face.
        size: displayed image size in px (bicubic upscaling).
        step: σ per − / + click.
        library: add the knob library's taught knobs for the generator (a str: that library folder).
        keep_person: lock identity for new moves (the "Keep the person" checkbox).
        identity: show the identity line after each move (reads dlib's face descriptor: ~0.3 s to load once,
            tens of ms per move at 64 px on a CPU).

    Attributes: ``editor`` (the Editor), ``widget`` (the root widget),
    ``image``, ``random_button``, ``reset_button``, ``exact_box``, ``keep_box``, ``message``, ``identity_line``
    and ``knobs`` ({name: {"lock": ToggleButton, "minus": Button, "plus": Button, "value": Label}}).
    """

    def __init__(self, generator: Generator | None = None, axes: AxisSet | None = None, seed: int = 0,
                 size: int = 256, step: float = DEFAULT_STEP, library: bool | str = True, exact: bool = False,
                 extractor: Any = None, keep_person: bool = False, identity: bool = True) -> None:
        if generator is None or axes is None:
            from tlgan.axes.defaults import DEFAULT_GENERATOR, load_default_axes
            from tlgan.models.generators import load_generator

            axes = axes if axes is not None else load_default_axes()
            generator = generator if generator is not None else load_generator(DEFAULT_GENERATOR, "cpu")
        self.library_notes: list[str] = []
        if library:  # the knob library's taught knobs for this generator (a str names the library folder)
            from tlgan.editing.library import with_library

            axes, self.library_notes = with_library(axes, generator, None if library is True else library)
        self.editor = Editor(generator, axes, seed, extractor=extractor, exact=exact)
        self.size, self.step = size, step
        self.image = widgets.Image(format="png", width=size, height=size)
        self.random_button = widgets.Button(description="random face", button_style="primary", icon="random")
        self.reset_button = widgets.Button(description="reset knobs", icon="undo")
        self.exact_box = widgets.Checkbox(value=exact, description="exact", indent=False,
                                          tooltip="exact mode: knobs move what the extractor reads; locks hold readings")
        self.exact_box.observe(lambda change: self.set_exact(bool(change["new"])), names="value")
        self.show_identity = identity
        self.keep_box = widgets.Checkbox(value=False, description="Keep the person", indent=False,
                                         tooltip="new moves lock identity: exact moves hold it within the tolerance; "
                                                 "linear moves cannot, and the identity line warns past it")
        self.keep_box.observe(lambda change: self.set_keep_person(bool(change["new"])), names="value")
        self.identity_line = widgets.HTML()
        self.caption = widgets.Label()
        self.message = widgets.HTML()
        self.knobs: dict[str, dict[str, Any]] = {}
        self.random_button.on_click(lambda _: self.random_face())
        self.reset_button.on_click(lambda _: self._run(self.editor.reset))

        groups = []
        for group in [*GROUPS, *sorted(set(axes.groups) - set(GROUPS))]:
            names = [n for n, g in zip(axes.names, axes.groups) if g == group]
            if names:
                groups.append(widgets.HTML(f"<b>{group}</b>"))
                groups.extend(self._knob_row(name) for name in names)
        controls = widgets.VBox([widgets.HBox([self.random_button, self.reset_button, self.exact_box, self.keep_box]),
                                 self.message, *groups])
        self.widget = widgets.HBox([widgets.VBox([self.image, self.caption, self.identity_line]), controls])
        if keep_person:
            self.set_keep_person(True)
        self.refresh()

    def _knob_row(self, name: str) -> widgets.HBox:
        r2 = self.editor.axes.r2(name)
        tip = "click to lock / unlock" + ("" if r2 is None else f"; held-out R² {r2:.2f}")
        lock = widgets.ToggleButton(value=False, description=name, tooltip=tip, icon="unlock",
                                    layout=widgets.Layout(width="190px"))
        minus = widgets.Button(description="−", tooltip=f"{name} −{self.step}σ", layout=widgets.Layout(width="36px"))
        plus = widgets.Button(description="+", tooltip=f"{name} +{self.step}σ", layout=widgets.Layout(width="36px"))
        value = widgets.Label(layout=widgets.Layout(width="70px"))
        lock.observe(lambda change: self.set_lock(name, bool(change["new"])), names="value")
        minus.on_click(lambda _: self._run(self.editor.step, name, -self.step))
        plus.on_click(lambda _: self._run(self.editor.step, name, self.step))
        self.knobs[name] = {"lock": lock, "minus": minus, "plus": plus, "value": value}
        return widgets.HBox([lock, minus, plus, value])

    # ---- actions (the callbacks call these) -------------------------------------
    def _run(self, action: Any, *args: Any) -> None:
        """Do an Editor action; show a TlganError in the panel instead of raising it."""
        try:
            action(*args)
        except TlganError as exc:
            self.message.value = f"<span style='color:#a3222b'>{exc}</span>"
            return
        report = self.editor.last_report()
        typical = self.editor.typicality()
        if report is not None and not report["converged"] and self.editor.edits:
            hint = " (untick Keep the person to go further)" if report.get("blocked_by") == IDENTITY else ""
            self.message.value = f"<span style='color:#a3222b'>{html.escape(report['message'] + hint)}</span>"
        elif typical["warn"]:
            self.message.value = f"<span style='color:#8a4b00'>{typical['message']}</span>"
        else:
            self.message.value = ""
        self.refresh()
        self.update_identity()

    def update_identity(self) -> None:
        """The identity line: the face's distance from the face it started as (after moves; empty before)."""
        if not self.show_identity or not self.editor.edits:
            self.identity_line.value = ""
            return
        try:
            check = self.editor.identity()
        except TlganError as exc:  # no weights installed, or no face found in the start image
            text = html.escape(f"identity cannot be read: {exc}")
            self.identity_line.value = f"<span style='color:#8a4b00'>{text}</span>"
            return
        text = f"identity: {check.message()}"
        if check.found and not check.kept:
            keep = IDENTITY in self.editor.locks
            text += (f" (past the {check.tolerance:.2f} tolerance" +
                     ("" if keep and self.editor.exact else "; linear moves cannot hold it: exact ones do" if keep
                      else "; Keep the person, with exact, holds it") + ")")
        colour = "#8a4b00" if not check.kept else "inherit"
        self.identity_line.value = f"<span style='color:{colour}'>{html.escape(text)}</span>"

    def set_keep_person(self, keep: bool) -> None:
        """Lock identity for new moves (exact moves hold it; linear moves measure it), or stop."""
        self.editor.lock(IDENTITY, keep)
        if self.keep_box.value != keep:
            self.keep_box.value = keep

    def set_exact(self, exact: bool) -> None:
        """Switch the mode of new moves (exact: on readings, with readings held by locks); values are re-shown."""
        self.editor.exact = exact
        if self.exact_box.value != exact:
            self.exact_box.value = exact
        self.refresh()

    def random_face(self, seed: int | None = None) -> None:
        """Jump to face ``seed`` (a random one by default); locks are kept."""
        self._run(self.editor.new_face, random.randrange(2**31 - 1) if seed is None else seed)

    def load_latent(self, path: str) -> None:
        """Start from a latent file written by ``tlgan invert`` (a photo's face) instead of a seed; locks are kept."""
        from tlgan.photos.latentfile import check_for, load_latent_file

        latent_file = load_latent_file(path)
        check_for(latent_file, self.editor.generator, self.editor.axes.latent_space)
        if latent_file.tuning:
            import warnings

            warnings.warn("the notebook panel edits the untuned latent (its generator is shared by every face); "
                          "tlgan edit --latent and the web app use the photo's tuning", stacklevel=2)
        self._run(self.editor.new_latent, latent_file.latent)

    def set_lock(self, name: str, locked: bool) -> None:
        self.editor.lock(name, locked)
        widget = self.knobs[name]["lock"]
        widget.icon = "lock" if locked else "unlock"
        widget.button_style = "warning" if locked else ""
        if widget.value != locked:
            widget.value = locked

    def refresh(self) -> None:
        """Re-render the image and the knob values from the Editor."""
        self.image.value = encode(to_pil(self.editor.render(), self.size), "png")
        values = self.editor.values()
        if self.editor.exact:
            values.update(self.editor.exact_values())
        for name, value in values.items():
            self.knobs[name]["value"].value = f"{value:+.2f}σ"
        edits = len(self.editor.edits)
        start = "a latent file's face" if getattr(self.editor, "start_latent", None) is not None else f"face #{self.editor.seed}"
        self.caption.value = start + (f" · {edits} edit{'s' * (edits > 1)}" if edits else "")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def knob_panel(**kwargs: Any) -> widgets.Widget:
    """``KnobPanel(**kwargs).widget``: the GUI, ready to display."""
    return KnobPanel(**kwargs).widget
