"""Changing an axis set after fitting: renaming axes and adding one (from tlgan teach).

Both return a new AxisSet; name-keyed entries of ``params`` (thresholds,
taught axes, ...) follow a rename so that evaluation still finds them.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import torch

from tlgan.errors import TlganError

from .methods import SUPERVISED
from .store import AxisSet

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def check_axis_name(name: str) -> str:
    """Axis names appear in NAME=VALUE options, URLs and file names: letters, digits, '_', '.', '-' (≤ 64)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise TlganError(f"bad axis name {name!r}: use letters, digits, '_', '.' or '-' (at most 64, not starting "
                         "with '.' or '-')")
    return name


def parse_renames(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """'old=new' strings -> {old: new}; malformed items are errors."""
    mapping: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise TlganError(f"renames are written OLD=NEW, got '{item}'")
        old, new = old.strip(), new.strip()
        if old in mapping:
            raise TlganError(f"axis '{old}' is renamed twice")
        mapping[old] = check_axis_name(new)
    return mapping


def rename_axes(axis_set: AxisSet, mapping: dict[str, str]) -> AxisSet:
    """A copy of ``axis_set`` with axes renamed per ``mapping`` (old -> new).

    Supervised axes remember the feature they were fitted to
    (params['targets']), so evaluation still compares them with it.
    """
    if not mapping:
        raise TlganError("nothing to rename: give OLD=NEW pairs")
    for old, new in mapping.items():
        axis_set.index(old)
        check_axis_name(new)
    names = [mapping.get(n, n) for n in axis_set.names]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise TlganError(f"renaming would give two axes the name {', '.join(repr(d) for d in dupes)}")
    old_names = set(axis_set.names)
    params: dict[str, Any] = {}
    for key, value in axis_set.params.items():
        if isinstance(value, dict) and value and set(value) <= old_names:
            value = {mapping.get(k, k): v for k, v in value.items()}
        params[key] = value
    if axis_set.method in SUPERVISED:
        taught = set(axis_set.params.get("taught", {}))
        old_targets = axis_set.params.get("targets", {})
        targets = {}
        for old in axis_set.names:
            target, new = old_targets.get(old, old), mapping.get(old, old)
            if old not in taught and new != target:
                targets[new] = target
        params.pop("targets", None)
        if targets:
            params["targets"] = targets
    out = axis_set.renamed(mapping)
    return replace(out, params=params)


def add_axis(
    axis_set: AxisSet,
    name: str,
    direction: torch.Tensor,
    *,
    kind: str = "probability",
    group: str = "other",
    quality: dict[str, float] | None = None,
    description: str = "",
    weight: torch.Tensor | None = None,
    intercept: float = 0.0,
    positive_rate: float = math.nan,
    replace_existing: bool = False,
    spread: float | None = None,
) -> AxisSet:
    """A copy of ``axis_set`` with one more axis ``name`` along unit-normalised ``direction`` (D,).

    weight (D,) and intercept are the raw model (logit space for a yes/no
    label); positive_rate gives the stored feature mean p and SD √(p(1 − p)).
    ``spread``: the SD of the generator's latents along the new axis, needed
    (and only used) when the set has spreads (w, w+). An existing axis of
    that name is an error unless ``replace_existing``.
    """
    check_axis_name(name)
    if axis_set.spread is not None and not (spread is not None and math.isfinite(spread) and spread > 0):
        raise TlganError(f"an axis added to a set in {axis_set.latent_space} needs its spread (the SD of the faces' "
                         f"latents along it), got {spread}")
    if name in axis_set.names:
        if not replace_existing:
            raise TlganError(f"the axis set already has an axis '{name}'; pass --replace to overwrite it")
        axis_set = axis_set.subset([n for n in axis_set.names if n != name])
    d = direction.detach().to("cpu", torch.float64).flatten()
    if d.shape != (axis_set.latent_dim,):
        raise TlganError(f"direction must have {axis_set.latent_dim} entries, got {d.numel()}")
    if not bool(torch.isfinite(d).all()) or float(d.norm()) < 1e-12:
        raise TlganError("the new direction is zero or not finite")
    w = (d if weight is None else weight.detach().to("cpu", torch.float64).flatten()).float()

    def grow(t: torch.Tensor | None, extra: float | torch.Tensor) -> torch.Tensor | None:
        if t is None:
            return None
        if t.ndim == 2:
            return torch.cat([t.float(), torch.as_tensor(extra, dtype=torch.float32).reshape(-1, 1)], 1)
        return torch.cat([t.float(), torch.tensor([float(extra)])])

    p = positive_rate
    return replace(
        axis_set,
        names=[*axis_set.names, name], axes=torch.cat([axis_set.axes, (d / d.norm()).float()[None]]),
        kinds=[*axis_set.kinds, kind], groups=[*axis_set.groups, group],
        quality={**axis_set.quality, name: dict(quality or {})},
        descriptions={**axis_set.descriptions, **({name: description} if description else {})},
        weights=grow(axis_set.weights, w), intercepts=grow(axis_set.intercepts, intercept),
        feature_mean=grow(axis_set.feature_mean, p),
        feature_std=grow(axis_set.feature_std, math.sqrt(p * (1 - p)) if math.isfinite(p) else math.nan),
        reading_mean=grow(axis_set.reading_mean, math.nan), reading_std=grow(axis_set.reading_std, math.nan),
        spread=grow(axis_set.spread, spread if spread is not None else math.nan),
    )
