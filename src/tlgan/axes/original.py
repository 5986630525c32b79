"""The original TL-GAN asset folder: what ``tlgan serve --assets DIR`` needs from it.

Layout of the original release (files as named there)::

    DIR/asset_model/karras2018iclr-celebahq-1024x1024.pkl              PG-GAN (TF1 pickle)
    DIR/asset_model/cnn_face_attr_celeba/model_20180927_032934.h5     feature CNN (Keras)
    DIR/asset_results/pg_gan_celeba_feature_direction_40/feature_direction_20181002_044444.pkl

``find_original_assets`` locates the three files, reads the directions and
applies the notebook's view: its display names, its sign flips (No_Beard ->
Beard, Pale_Skin -> Skin_Tone, Young -> Age) and its 21-knob default selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlgan.errors import TlganError
from tlgan.models.extractors.celeba_attributes import (
    NOTEBOOK_LAYOUT,
    NOTEBOOK_RENAMES,
    NOTEBOOK_SIGN_FLIPS,
    group_of,
)

from .original_directions import apply_view, read_original_directions, to_axis_set

GENERATOR_FILE = "asset_model/karras2018iclr-celebahq-1024x1024.pkl"
EXTRACTOR_GLOBS = ("asset_model/cnn_face_attr_celeba/model_*.h5", "asset_model/model_*.h5", "asset_model/*.h5")
DIRECTIONS_GLOB = "asset_results/pg_gan_celeba_feature_direction_40/feature_direction_*.pkl"


@dataclass
class OriginalAssets:
    """Everything needed to serve the original knobs.

    directions: (D, K) unit columns in the notebook's view (sign flips applied);
    names: display names; original_names: the CelebA names in the file;
    default_knobs: the notebook's 21 knobs (display names, row-major layout order).
    extractor_spec is None when the feature CNN is absent (serving does not need it).
    """

    root: Path
    generator_spec: str
    extractor_spec: str | None
    directions_path: Path
    directions: np.ndarray
    names: list[str]
    original_names: list[str]
    sign_flips: list[str]
    default_knobs: list[str]
    groups: list[str]
    descriptions: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def axis_set(self, generator_identity: str = ""):
        """The directions as an AxisSet bound to ``generator_identity`` (the loaded PG-GAN's identity)."""
        meta = {**self.meta, "default_knobs": self.default_knobs}
        return to_axis_set(self.directions, self.names, meta, generator=generator_identity, groups=self.groups,
                           descriptions=self.descriptions)


def _last(root: Path, pattern: str) -> Path | None:
    found = sorted(p for p in root.glob(pattern) if p.is_file())
    return found[-1] if found else None


def _find_generator(root: Path) -> Path:
    pkl = root / GENERATOR_FILE
    converted = pkl.with_suffix(".safetensors")
    if converted.is_file():  # made by `tlgan convert pggan-tf1`: same weights, faster to load
        return converted
    if pkl.is_file():
        return pkl
    others = sorted(p for p in (root / "asset_model").glob("*.pkl") if p.is_file())
    if len(others) == 1:
        return others[0]
    raise TlganError(f"no PG-GAN generator in {root}: expected {GENERATOR_FILE}"
                     + (f" (found several .pkl files: {', '.join(p.name for p in others)})" if others else ""))


def find_original_assets(root: str | Path) -> OriginalAssets:
    """Locate and read the original TL-GAN assets under ``root`` (layout in the module docstring)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise TlganError(f"asset folder not found: {root}")
    generator = _find_generator(root)
    extractor = next((p for p in (_last(root, g) for g in EXTRACTOR_GLOBS) if p is not None), None)
    directions_path = _last(root, DIRECTIONS_GLOB)
    if directions_path is None:
        raise TlganError(f"no feature directions in {root}: expected {DIRECTIONS_GLOB}")

    directions, names, meta = read_original_directions(directions_path)
    flips = sorted(NOTEBOOK_SIGN_FLIPS & set(names))
    renames = {n: NOTEBOOK_RENAMES[n] for n in names if n in NOTEBOOK_RENAMES}
    shown_directions, shown = apply_view(directions, names, renames, frozenset(flips))
    default = [renames.get(n, n) for row in NOTEBOOK_LAYOUT for n in row if n in names]
    descriptions = {renames.get(n, n): f"CelebA attribute '{n}'" + (", sign flipped" if n in flips else "")
                    for n in names}
    meta = {**meta, "view": "tl-gan notebook", "renames": renames, "sign_flips": flips}
    return OriginalAssets(
        root=root, generator_spec=f"pggan:{generator}",
        extractor_spec=f"celeba-cnn:{extractor}" if extractor is not None else None,
        directions_path=directions_path, directions=shown_directions, names=shown, original_names=list(names),
        sign_flips=flips, default_knobs=default, groups=[group_of(n) for n in names], descriptions=descriptions,
        meta=meta,
    )
