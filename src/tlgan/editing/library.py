"""The knob library: knobs taught from labels, kept as files in a per-user folder.

Each knob is an axis-set file (``tlgan.axes.store``) with one axis in group
"taught", made for one generator (its identity is checked like any axis
set's), and with the labels it was fitted to (params['taught'][name]
['examples'] = [[seed, label], ...]) so that it can be refitted or extended.
The folder is ``--knobs-dir``, else $TLGAN_KNOBS_DIR, else the platform's
user data folder (``platformdirs.user_data_dir('tlgan')/knobs``).

A taught axis is stored rounded to float16 components, so that its
*knob code* — 4 bytes naming the generator plus the float16 components,
base64url (~270 characters for a 100-d latent) — rebuilds exactly the same
axis anywhere: a shared link that carries the code renders the same pixels on
a server that never saw the knob.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from tlgan.axes.ops import add_axis, check_axis_name
from tlgan.axes.spaces import with_space
from tlgan.axes.store import AxisSet, load_axes
from tlgan.errors import TlganError

from .active import Example, labels_from_examples
from .looks import Looks
from .teach import DEFAULT_C, teach

ENV = "TLGAN_KNOBS_DIR"
GROUP = "taught"
METHOD = "taught"
SUFFIX = ".safetensors"
_TAG_BYTES = 4


# ---- where ---------------------------------------------------------------------
def knobs_dir(explicit: str | Path | None = None) -> Path:
    """The library folder: ``explicit``, else $TLGAN_KNOBS_DIR, else <user data dir>/tlgan/knobs."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("tlgan", appauthor=False)) / "knobs"


# ---- knob codes (share links) ---------------------------------------------------
def generator_tag(identity: str) -> bytes:
    return hashlib.sha256(identity.encode()).digest()[:_TAG_BYTES]


def knob_code(axis: torch.Tensor, generator_identity: str) -> str:
    """Unit axis (D,) -> 'generator tag + float16 components' as base64url without padding."""
    half = axis.detach().to("cpu", torch.float64).numpy().astype("<f2")
    return base64.urlsafe_b64encode(generator_tag(generator_identity) + half.tobytes()).decode().rstrip("=")


def axis_from_code(code: str, generator_identity: str, latent_dim: int, name: str = "") -> torch.Tensor:
    """The unit axis (D,) float32 a knob code stands for; TlganError if it is malformed or for another generator."""
    what = f"knob '{name}'" if name else "knob code"
    try:
        raw = base64.b64decode(code + "=" * (-len(code) % 4), altchars=b"-_", validate=True)
    except (ValueError, TypeError):
        raise TlganError(f"{what}: the code is not base64url") from None
    if len(raw) != _TAG_BYTES + 2 * latent_dim:
        raise TlganError(f"{what} is for a {(len(raw) - _TAG_BYTES) // 2}-d latent; this generator's is {latent_dim}-d")
    if raw[:_TAG_BYTES] != generator_tag(generator_identity):
        raise TlganError(f"{what} was taught on another generator, not '{generator_identity}'")
    d = torch.from_numpy(np.frombuffer(raw[_TAG_BYTES:], dtype="<f2").astype(np.float32))
    if not bool(torch.isfinite(d).all()) or abs(float(d.double().norm()) - 1) > 1e-3:
        raise TlganError(f"{what}: the code is not a unit direction")
    return d


def quantised(axis: torch.Tensor, generator_identity: str) -> torch.Tensor:
    """Unit ``axis`` (D,) rounded to float16 components (not renormalised: float16 keeps the norm within 1e-3),
    so that ``axis_from_code(knob_code(q)) == q`` exactly: a code always rebuilds the axis it came from."""
    d = axis.detach().to("cpu", torch.float64)
    return axis_from_code(knob_code(d / d.norm(), generator_identity), generator_identity, axis.numel())


# ---- how knobs are fitted -------------------------------------------------------
TEACHERS = ("looks", "sensitivity", "plain")


def teaching_aid(generator: torch.nn.Module, teacher: str) -> tuple[torch.Tensor | None, Looks | None]:
    """What ``make_knob`` and ``active.suggest`` are given for ``teacher``: (scale, looks).

    'looks' learns the labels from the pictures (``tlgan.editing.looks``; renders and caches a pool of faces
    once per generator), 'sensitivity' fits in z under the generator-sensitivity prior (``tlgan.editing.prior``;
    a few hundred backward passes once per generator), 'plain' is an L2 logistic fit in z.
    """
    if teacher == "looks":
        from .looks import looks_for

        return None, looks_for(generator)
    if teacher == "sensitivity":
        from .prior import cached_sensitivity, prior_scale

        return prior_scale(cached_sensitivity(generator)), None
    if teacher == "plain":
        return None, None
    raise TlganError(f"teacher must be one of: {', '.join(TEACHERS)}; got '{teacher}'")


# ---- knobs -----------------------------------------------------------------------
def _empty_set(generator_identity: str, latent_dim: int) -> AxisSet:
    return AxisSet(names=[], axes=torch.zeros(0, latent_dim), kinds=[], groups=[], generator=generator_identity,
                   latent_dim=latent_dim, method=METHOD, weights=torch.zeros(latent_dim, 0),
                   intercepts=torch.zeros(0), feature_mean=torch.zeros(0), feature_std=torch.zeros(0))


def make_knob(name: str, examples: Sequence[Example], generator_identity: str, latent_dim: int,
              history: Sequence[Sequence[float]] = (), c: float = DEFAULT_C, source: str = "web app",
              scale: torch.Tensor | None = None, looks: Looks | None = None,
              generator: torch.nn.Module | None = None) -> AxisSet:
    """Fit a one-axis knob set from (seed, label) pairs (see ``active.check_examples`` for what is refused);
    ``scale``: the fit's prior (``tlgan.editing.prior``); ``looks``: learn from the pictures
    (``tlgan.editing.looks``); neither: a plain L2 fit on the latents. ``generator`` (or looks' generator):
    the faces' latents are in its space (a StyleGAN seen in w), else seeds name z ~ N(0, I).

    Its record (params['taught'][name]) holds the examples and ``history``: [labels, cv accuracy] after each
    fit so far, this one appended.
    """
    check_axis_name(name)
    generator = looks.generator if looks is not None else generator
    labels = labels_from_examples(examples, latent_dim, source, generator)
    knob = teach(_empty_set(generator_identity, latent_dim), name, labels, c=c, group=GROUP, scale=scale, looks=looks)
    record = dict(knob.params["taught"][name])
    record["examples"] = [[s, int(y)] for s, y in zip(labels.ids, labels.y.tolist())]
    record["history"] = [[int(n), float(a)] for n, a in history] + [[len(labels.ids), record["cv_accuracy"]]]
    knob = replace(knob, axes=quantised(knob.axes[0], generator_identity)[None], params={"taught": {name: record}})
    return in_space(knob, generator)


def in_space(knob: AxisSet, generator: torch.nn.Module | None) -> AxisSet:
    """``knob`` with the latent space, psi and (outside z) spread of the generator view it is served with, so
    that it can join a knob set in w or w+ (knob values there are in units of that spread)."""
    if generator is None or getattr(generator, "latent_space", "z") == "z":
        return knob
    return with_space(knob, generator, seed=0)


def knob_record(knob: AxisSet) -> dict[str, Any]:
    """The taught record of a one-axis knob set ({} for an axis that was imported without labels)."""
    return dict(knob.params.get("taught", {}).get(knob.names[0], {}))


def knob_examples(knob: AxisSet) -> list[Example]:
    return [(int(s), int(y)) for s, y in knob_record(knob).get("examples", [])]


def as_knob(axis_set: AxisSet, name: str | None = None, new_name: str | None = None) -> AxisSet:
    """One axis of ``axis_set`` as a library knob (group 'taught', float16-exact), renamed to ``new_name``."""
    if name is None:
        if len(axis_set) != 1:
            raise TlganError(f"the file holds {len(axis_set)} axes ({', '.join(axis_set.names)}); say which one to take")
        name = axis_set.names[0]
    one = axis_set.subset([name])
    record = dict(axis_set.params.get("taught", {}).get(name, {}))
    new_name = check_axis_name(new_name or name)
    one = replace(one.renamed({name: new_name}), groups=[GROUP], method=METHOD,
                  axes=quantised(one.axes[0], axis_set.generator)[None],
                  params={"taught": {new_name: record}} if record else {})
    return one


def merge_knobs(base: AxisSet, knobs: Sequence[AxisSet]) -> AxisSet:
    """``base`` plus one axis per knob (after base's axes, in order); a name clash is a TlganError."""
    out = base
    for knob in knobs:
        name = knob.names[0]
        knob.check_generator(_Identity(base.generator, base.latent_dim))
        if name in out.names:
            where = "a built-in knob" if name in base.names else "another taught knob"
            raise TlganError(f"taught knob '{name}' has the name of {where}; rename it (tlgan knobs import --name)")
        q = knob.quality.get(name, {})
        mean = float(knob.feature_mean[0]) if knob.feature_mean is not None else float("nan")
        out = add_axis(out, name, knob.axes[0], kind=knob.kinds[0], group=GROUP, quality=q,
                       description=knob.descriptions.get(name, ""),
                       weight=None if knob.weights is None else knob.weights[:, 0],
                       intercept=0.0 if knob.intercepts is None else float(knob.intercepts[0]), positive_rate=mean,
                       spread=None if knob.spread is None else float(knob.spread[0]))
        taught = {**out.params.get("taught", {}), **({name: knob_record(knob)} if knob_record(knob) else {})}
        out.params = {**out.params, "taught": taught} if taught else out.params
    return out


class _Identity:
    """What ``AxisSet.check_generator`` reads of a generator."""

    def __init__(self, identity: str, latent_dim: int) -> None:
        self.identity, self.latent_dim = identity, latent_dim


# ---- the folder ------------------------------------------------------------------
class KnobLibrary:
    """Taught knobs as ``<folder>/<name>.safetensors`` files (names are unique within a library)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = knobs_dir(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{check_axis_name(name)}{SUFFIX}"

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.folder.glob(f"*{SUFFIX}") if not p.name.startswith("."))

    def __contains__(self, name: str) -> bool:
        return self.path(name).is_file()

    def load(self, name: str) -> AxisSet:
        """Knob ``name``; TlganError naming the library when it is missing or not a knob file."""
        path = self.path(name)
        if not path.is_file():
            known = ", ".join(self.names()) or "none"
            raise TlganError(f"no taught knob '{name}' in {self.folder} (knobs there: {known})")
        knob = load_axes(path)
        if len(knob) != 1 or knob.names[0] != name:
            raise TlganError(f"{path} is not a knob file: it should hold one axis called '{name}', "
                             f"not {', '.join(knob.names) or 'none'}")
        return knob

    def load_for(self, name: str, generator: Any) -> AxisSet:
        """Knob ``name``, refused clearly when it was made for another generator."""
        knob = self.load(name)
        try:
            knob.check_generator(generator)
        except TlganError as exc:
            raise TlganError(f"taught knob '{name}' cannot be used here: {exc}") from None
        return knob

    def save(self, knob: AxisSet, replace_existing: bool = True) -> Path:
        """Write a one-axis knob set as ``<name>.safetensors`` (atomically)."""
        if len(knob) != 1:
            raise TlganError("a library knob holds exactly one axis")
        path = self.path(knob.names[0])
        if path.exists() and not replace_existing:
            raise TlganError(f"the library already has a knob '{knob.names[0]}'; remove it first or choose another name")
        knob.save(path)
        return path

    def remove(self, name: str) -> Path:
        path = self.path(name)
        if not path.is_file():
            raise TlganError(f"no taught knob '{name}' in {self.folder}")
        path.unlink()
        return path

    def import_file(self, file: str | Path, axis: str | None = None, name: str | None = None,
                    replace_existing: bool = False) -> AxisSet:
        """Add one axis of an axis-set file (a knob exported from another library, or any axis set) to the library."""
        knob = as_knob(load_axes(file), axis, name)
        self.save(knob, replace_existing)
        return knob

    def export(self, name: str, out: str | Path) -> AxisSet:
        knob = self.load(name)
        knob.save(out)
        return knob

    def for_generator(self, generator: Any) -> tuple[list[AxisSet], list[str]]:
        """(knobs made for ``generator``, one-line notes on the files skipped and why)."""
        knobs, notes = [], []
        for name in self.names():
            try:
                knobs.append(self.load_for(name, generator))
            except TlganError as exc:
                notes.append(f"skipped {exc}" if "cannot be used here" in str(exc) else f"skipped knob file: {exc}")
        return knobs, notes


def with_library(axes: AxisSet, generator: Any, folder: str | Path | None = None) -> tuple[AxisSet, list[str]]:
    """``axes`` plus the library's knobs for ``generator`` (clashing or foreign ones skipped, with notes)."""
    knobs, notes = KnobLibrary(folder).for_generator(generator)
    for knob in knobs:
        try:
            axes = merge_knobs(axes, [knob])
        except TlganError as exc:
            notes.append(f"skipped {exc}")
    return axes, notes


__all__ = ["TEACHERS", "teaching_aid", "in_space", "ENV", "GROUP", "KnobLibrary", "knobs_dir", "knob_code", "axis_from_code", "quantised", "make_knob",
           "knob_record", "knob_examples", "as_knob", "merge_knobs", "with_library"]
