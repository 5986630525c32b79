"""How long the last fit or build took, kept out of the files tlgan writes (the same command gives the same bytes).

Fitting functions ``record`` their durations here; the CLI prints them next to
"wrote ..." and benchmarks read them with ``last``. They are also logged at
DEBUG level on the ``tlgan.timing`` logger.
"""

from __future__ import annotations

import logging

_LOG = logging.getLogger("tlgan.timing")
_last: dict[str, float] = {}


def record(name: str, seconds: float) -> None:
    """Remember that step ``name`` (e.g. 'fit_seconds') took ``seconds`` in this process."""
    _last[name] = round(float(seconds), 4)
    _LOG.debug("%s: %.4f", name, seconds)


def last(name: str) -> float | None:
    """The duration last recorded under ``name`` in this process, or None."""
    return _last.get(name)


def summary(names: tuple[str, ...] = ("build_seconds", "fit_seconds")) -> str:
    """'fit 0.53 s' style text of the recorded durations among ``names`` ('' when none)."""
    parts = [f"{n.removesuffix('_seconds')} {_last[n]:.2f} s" for n in names if n in _last]
    return ", ".join(parts)
