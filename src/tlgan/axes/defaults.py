"""The embedded default: DigiFace DCGAN + emotion, landmarks, image statistics and age/gender, with a shipped knob set."""

from __future__ import annotations

from pathlib import Path

from tlgan.errors import TlganError
from tlgan.models.extractors import DEFAULT_EXTRACTORS

from .store import AxisSet, load_axes

DEFAULT_GENERATOR = "digiface"
DEFAULT_AXES = Path(__file__).parents[1] / "data" / "digiface-default.safetensors"
# The commands that rebuilt the shipped file: the recipe of `make default-axes` (a test checks they agree; another
# rebuilds a smaller set and compares). bfloat16 autocast: the age/gender network is ~4x faster on CPUs with AMX.
_FILE = f"src/tlgan/data/{DEFAULT_AXES.name}"
REBUILD_COMMAND = (f"tlgan build --n 8192 --seed 0 --dtype bfloat16 --samples .tlgan-cache/default-samples --out {_FILE}"
                   f" && tlgan exact-stats {_FILE} --n 1024")


def load_default_axes() -> AxisSet:
    """The knob set shipped for the default generator and extractors."""
    if not DEFAULT_AXES.is_file():
        raise TlganError(f"default axis set missing ({DEFAULT_AXES}); rebuild it with: {REBUILD_COMMAND}")
    return load_axes(DEFAULT_AXES)


__all__ = ["DEFAULT_GENERATOR", "DEFAULT_EXTRACTORS", "DEFAULT_AXES", "REBUILD_COMMAND", "load_default_axes"]
