"""Helpers shared by the command modules: option parsing, model loading, printing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import click

from tlgan.errors import TlganError

def ray_options(command: Callable) -> Callable:
    """The options of commands that can run on a Ray cluster (docs/scale.md)."""
    command = click.option("--ray-ship", is_flag=True,
                           help="send this tlgan package to the Ray workers (else they use their own install)")(command)
    command = click.option("--ray-workers", type=click.IntRange(1, 100000), default=None,
                           help="at most this many Ray workers [default: one per GPU, or per CPU on CPUs]")(command)
    return click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
                        help="run on a Ray cluster: HEAD_HOST:PORT, auto, ray://HOST:PORT, or local (start one "
                             "here with this machine's cores); needs pip install 'tlgan[ray]'")(command)


def is_uri(location: str) -> bool:
    return "://" in location


def absolute_spec(spec: str) -> str:
    """A model spec with any local file in it made absolute ('pggan:g.pkl' -> 'pggan:/home/u/g.pkl'), for
    workers that run in another directory; each comma-separated part is treated alike."""
    parts = []
    for part in spec.split(","):
        family, sep, rest = part.partition(":")
        for candidate, prefix in ((rest, family + sep), (part, "")):
            if candidate and not is_uri(candidate) and Path(candidate).exists():
                part = prefix + str(Path(candidate).resolve())
                break
        parts.append(part)
    return ",".join(parts)


def teacher_option(what: str) -> Callable:
    """``--teacher``: how taught knobs are fitted (the names of ``tlgan.editing.library.TEACHERS``, not imported
    here so that the CLI starts without torch)."""
    return click.option("--teacher", type=click.Choice(["looks", "sensitivity", "plain"]), default="looks",
                        show_default=True,
                        help=f"how {what} fitted: from the faces' pictures (renders 2,000 faces once per generator, "
                             "cached), under the generator-sensitivity prior, or a plain fit on the latents")


AXES_HELP = "axis set file (.safetensors); default: the shipped knob set of the default generator"


def parse_pairs(items: tuple[str, ...], option: str) -> list[tuple[str, float]]:
    """'name=value' strings -> [(name, float)]; NaN/inf and malformed items are errors."""
    pairs = []
    for item in items:
        name, sep, raw = item.partition("=")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan if sep else None  # type: ignore[assignment]
        if not sep or not name or value is None or not math.isfinite(value):
            raise TlganError(f"{option} expects NAME=NUMBER with a finite number, got '{item}'")
        pairs.append((name.strip(), value))
    return pairs


KNOBS_DIR_HELP = "the knob library folder [default: $TLGAN_KNOBS_DIR, else the user data folder's tlgan/knobs]"


def load_model(generator: str | None, axes: str | None, device: str, knobs_dir: str | None = None,
               library: bool = True) -> tuple[Any, Any]:
    """(generator, axis set) for a command; the generator defaults to the one the axes were made for.

    With ``library``, the knob library's taught knobs for that generator are added to the axis set
    (files it cannot use are skipped with a note on stderr).
    """
    from tlgan.axes.defaults import DEFAULT_GENERATOR, load_default_axes
    from tlgan.axes.store import load_axes
    from tlgan.models.generators import load_generator

    axis_set = load_axes(axes) if axes else load_default_axes()
    gen = load_generator(generator or DEFAULT_GENERATOR, device)
    axis_set.check_generator(gen)
    if library:
        axis_set = with_library_knobs(axis_set, gen, knobs_dir)
    return gen, axis_set


def with_library_knobs(axis_set: Any, gen: Any, knobs_dir: str | None) -> Any:
    """``axis_set`` plus the library's knobs for ``gen``; what was skipped is said on stderr."""
    import click

    from tlgan.editing.library import with_library

    axis_set, notes = with_library(axis_set, gen, knobs_dir)
    for note in notes:
        click.echo(f"tlgan: {note}", err=True)
    return axis_set


def format_info(axis_set: Any) -> str:
    space = axis_set.latent_space + (f", psi {axis_set.truncation:g}" if axis_set.truncation != 1 else "")
    if axis_set.layers:
        space += ", layers " + ", ".join(sorted({f"{a}-{b}" for a, b in axis_set.layers.values()}))
    lines = [
        f"generator   {axis_set.generator} ({space}, {axis_set.latent_dim}-d)",
        f"extractor   {axis_set.extractor or '-'}",
        f"method      {axis_set.method} {json.dumps(axis_set.params)}",
        f"samples     {axis_set.samples:,} (seed {axis_set.seed})",
        "",
        f"{'axis':<22}{'kind':<13}{'group':<21}{'held-out fit':>13}",
    ]
    for name, kind, group in zip(axis_set.names, axis_set.kinds, axis_set.groups):
        q = axis_set.quality.get(name, {})
        score = next((f"{ {'r2': 'R²', 'accuracy': 'acc'}[k]} {v:.3f}" for k, v in q.items()
                      if k in ("r2", "accuracy") and isinstance(v, (int, float))), "-")
        lines.append(f"{name:<22}{kind:<13}{group:<21}{score:>13}")
    return "\n".join(lines)

def readings(image: Any, spec: str, device: str) -> dict[str, float]:
    import torch

    from tlgan.models.extractors import load_extractor

    ext = load_extractor(spec, device)
    with torch.inference_mode():
        values = ext(image[None].to(next(ext.parameters(), torch.empty(0)).device))[0].cpu()
    return {f.name: float(v) for f, v in zip(ext.features, values)}
