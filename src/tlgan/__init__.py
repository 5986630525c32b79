"""tlgan: transparent latent-space GANs — feature axes and knobs for a trained generator.

The public names are imported on first use (PEP 562), so that ``import tlgan``
and the ``tlgan`` command start without loading torch until a command needs it
(a Ctrl-C while starting up then ends cleanly).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import TlganError

__version__ = "0.1.0"

_LAZY = {
    "fit_axes": "tlgan.axes.fit",
    "AxisSet": "tlgan.axes.store",
    "load_axes": "tlgan.axes.store",
    "Edit": "tlgan.editing.editor",
    "Editor": "tlgan.editing.editor",
    "load_extractor": "tlgan.models.extractors",
    "load_generator": "tlgan.models.generators",
    "load_identity": "tlgan.models.extractors.identity",
    "run_samples": "tlgan.sampling.pipeline",
}

__all__ = ["TlganError", "load_generator", "load_extractor", "load_identity", "run_samples", "fit_axes", "AxisSet", "load_axes",
           "Edit", "Editor", "__version__"]

if TYPE_CHECKING:  # for type checkers and readers: the same names, imported eagerly
    from tlgan.axes.fit import fit_axes
    from tlgan.axes.store import AxisSet, load_axes
    from tlgan.editing.editor import Edit, Editor
    from tlgan.models.extractors import load_extractor
    from tlgan.models.extractors.identity import load_identity
    from tlgan.models.generators import load_generator
    from tlgan.sampling.pipeline import run_samples


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tlgan' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
