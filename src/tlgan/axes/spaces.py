"""Axis sets in StyleGAN's W and W+: spreads, layer ranges, and matching a generator to an axis set.

- ``measure_spread``: the standard deviation of seeded latents along each axis (stored in the set),
  so that a knob's value is (w - w_avg)·a / spread: "σ" means what it means in z.
- ``to_wplus``: a w axis set as a w+ one in which each knob moves only the w's of a range of layers
  (GANSpace / SeFa style edits). A w axis a restricted to layers L becomes the w+ unit vector
  a on L's rows / sqrt(|L|); its spread is sqrt(|L|) times a's, so knob values are unchanged
  for an unedited face, and only the styles of layers in L change when it moves.
- ``match_space``: the generator seen in the space an axis set was made in (what Editor, edit and
  evaluate use), optionally with layer ranges.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from tlgan.errors import TlganError
from tlgan.models.generators import Generator
from tlgan.sampling.spaces import (
    SpaceView,
    draw_latents,
    offers,
    space_identity,
    space_view,
)

from .store import AxisSet

SPREAD_SAMPLES = 10_000


def layer_presets(num_ws: int) -> dict[str, tuple[int, int]]:
    """GANSpace's coarse / middle / fine layer groups for a generator with ``num_ws`` w inputs."""
    coarse_end = min(3, num_ws - 1)
    middle_end = min(7, num_ws - 1)
    return {"coarse": (0, coarse_end), "middle": (min(coarse_end + 1, middle_end), middle_end),
            "fine": (min(middle_end + 1, num_ws - 1), num_ws - 1), "all": (0, num_ws - 1)}


def parse_layers(text: str, num_ws: int) -> tuple[int, int]:
    """'0-5', '3', or a preset name (coarse, middle, fine, all) -> (first, last) inclusive, checked against num_ws."""
    text = text.strip().lower()
    presets = layer_presets(num_ws)
    if text in presets:
        return presets[text]
    first, sep, last = text.partition("-")
    try:
        a, b = int(first), int(last) if sep else int(first)
    except ValueError:
        raise TlganError(f"layers must be FIRST-LAST (e.g. 0-5), one index, or one of {', '.join(presets)}; got '{text}'") from None
    if not 0 <= a <= b < num_ws:
        raise TlganError(f"layer range {a}-{b} is outside this generator's layers 0-{num_ws - 1}")
    return a, b


@torch.no_grad()
def measure_spread(axis_set: AxisSet, generator: Generator, seed: int, n: int = SPREAD_SAMPLES) -> torch.Tensor:
    """Standard deviation (K,) of ``generator``'s seeded latents (run ``seed``, first n) along each axis."""
    latents = draw_latents(generator, seed, 0, n).to(torch.float64)
    return (latents @ axis_set.axes.to(torch.float64).T).std(0).clamp_min(1e-12).to(torch.float32)


def with_space(axis_set: AxisSet, generator: Generator, seed: int | None = None, n: int = SPREAD_SAMPLES) -> AxisSet:
    """``axis_set`` with the space, psi and (outside z) spread of the generator view it was fitted with."""
    space = getattr(generator, "latent_space", "z")
    truncation = float(getattr(generator, "truncation", 1.0))
    spread = None
    if space != "z":
        spread = measure_spread(axis_set, generator, 0 if seed is None else seed, n)
    return replace(axis_set, latent_space=space, truncation=truncation, spread=spread)


def to_wplus(axis_set: AxisSet, num_ws: int, layers: dict[str, tuple[int, int]] | tuple[int, int]) -> AxisSet:
    """A w axis set as w+ axes (K, num_ws * w_dim), knob k moving only the layers ``layers[k]`` (inclusive)."""
    if axis_set.latent_space != "w":
        raise TlganError(f"layer ranges need an axis set in w; this one is in {axis_set.latent_space}")
    ranges = {name: tuple(layers) if isinstance(layers, tuple) else
              tuple(layers.get(name, axis_set.layers.get(name, (0, num_ws - 1)))) for name in axis_set.names}
    w_dim = axis_set.latent_dim
    rows, spreads = [], []
    base_spread = axis_set.spread if axis_set.spread is not None else torch.ones(len(axis_set))
    for k, name in enumerate(axis_set.names):
        a, b = ranges[name]
        if not 0 <= a <= b < num_ws:
            raise TlganError(f"layer range {a}-{b} for '{name}' is outside layers 0-{num_ws - 1}")
        row = torch.zeros(num_ws, w_dim)
        row[a: b + 1] = axis_set.axes[k] / math.sqrt(b - a + 1)
        rows.append(row.flatten())
        spreads.append(float(base_spread[k]) * math.sqrt(b - a + 1))
    base_identity = axis_set.generator.split("@")[0]
    return replace(axis_set, axes=torch.stack(rows), latent_dim=num_ws * w_dim, latent_space="w+",
                   generator=space_identity(base_identity, "w+", axis_set.truncation) if base_identity else "",
                   spread=torch.tensor(spreads, dtype=torch.float32),
                   layers={name: [int(ranges[name][0]), int(ranges[name][1])] for name in axis_set.names},
                   weights=None, intercepts=None)


def match_space(generator: Generator, axis_set: AxisSet, layers: str | tuple[int, int] | None = None,
                seeds: str = "tlgan") -> tuple[Generator, AxisSet]:
    """(generator seen in the axis set's space, axis set), with ``layers`` ('0-5', a preset) turning w axes into w+.

    A plain z axis set with tlgan seeds returns the generator unchanged.
    """
    base = generator.base if isinstance(generator, SpaceView) else generator
    space = axis_set.latent_space
    if space != "z" and not offers(base, space):
        raise TlganError(f"the axis set is in {space}, which generator '{base.name}' does not offer")
    if layers is not None:
        if space != "w":
            raise TlganError(f"layer ranges need a StyleGAN axis set made in w; this one is in {space}")
        rng = parse_layers(layers, base.num_ws) if isinstance(layers, str) else tuple(layers)
        axis_set, space = to_wplus(axis_set, base.num_ws, rng), "w+"
    elif space == "w" and axis_set.layers:
        # knobs found for a range of layers (e.g. SeFa on the coarse layers) move only those
        axis_set, space = to_wplus(axis_set, base.num_ws, {}), "w+"
    return space_view(base, space, axis_set.truncation, seeds), axis_set


def parse_space_identity(identity: str) -> tuple[str, float]:
    """(space, psi) from a view identity 'family:hash@w+,psi=0.7' ('z', 1.0 without a suffix)."""
    _, sep, suffix = identity.partition("@")
    if not sep:
        return "z", 1.0
    space, _, rest = suffix.partition(",")
    psi = float(rest.partition("=")[2]) if rest.startswith("psi=") else 1.0
    return space, psi


def with_space_from_samples(axis_set: AxisSet, latents: torch.Tensor) -> AxisSet:
    """``axis_set`` (fitted on a sample folder) with the space and psi its generator identity names and,
    outside z, the spread of the folder's latents (N, D) along each axis."""
    space, psi = parse_space_identity(axis_set.generator)
    if space == "z":
        return axis_set
    spread = (latents.to(torch.float64) @ axis_set.axes.to(torch.float64).T).std(0).clamp_min(1e-12)
    return replace(axis_set, latent_space=space, truncation=psi, spread=spread.to(torch.float32))
